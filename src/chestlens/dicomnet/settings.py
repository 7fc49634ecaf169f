"""Settings of ``chestlens listen``: its own AE title and port, who may call, where results go, timings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from chestlens.errors import ChestlensInputError

DEFAULT_AE_TITLE = "CHESTLENS"
DEFAULT_PORT = 11112
DEFAULT_MAX_ASSOCIATIONS = 32
DEFAULT_SETTLE_S = 10.0
DEFAULT_RETRY_BASE_S = 5.0
DEFAULT_RETRY_MAX_S = 300.0
DEFAULT_MAX_ATTEMPTS = 20

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # default character repertoire, no backslash
_DESTINATION = re.compile(r"^(?P<ae>[^@]+)@(?P<host>[^:@]+):(?P<port>\d{1,5})$")


def check_ae_title(title: str) -> str:
    """``title`` stripped, or :class:`ChestlensInputError` when it is not a valid AE title (1-16 chars)."""
    stripped = title.strip()
    if not _AE_TITLE.match(stripped):
        raise ChestlensInputError(None, f"invalid AE title {title!r}: 1 to 16 printable ASCII characters")
    return stripped


@dataclass(frozen=True, slots=True)
class Destination:
    """A node results are sent to: by C-STORE (AE title, host, port) or by STOW-RS (``url``, the DICOMweb
    base URL; instances are POSTed to ``<url>/studies``)."""

    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str | None = None

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@HOST:PORT`` (e.g. ``ORTHANC@127.0.0.1:4242``) or a DICOMweb base URL
        (e.g. ``http://127.0.0.1:8042/dicom-web``) as a destination."""
        stripped = text.strip()
        if stripped.startswith(("http://", "https://")):
            return cls(url=stripped.rstrip("/"))
        match = _DESTINATION.match(stripped)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ChestlensInputError(None, f"invalid destination {text!r}: expected AE@HOST:PORT or a URL")
        return cls(check_ae_title(match["ae"]), match["host"], int(match["port"]))

    def __str__(self) -> str:
        return self.url or f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Everything ``chestlens listen`` is configured with.

    Attributes:
        state_dir: the listener's folder: received files, results, the outbox, the audit log, the salt.
        ae_title: the listener's own AE title (called AE title the senders use).
        host: address to listen on.
        port: DICOM port.
        allowed_callers: calling AE titles accepted at association; empty accepts any.
        destinations: where every result (SR, SEG, SC) is sent (C-STORE or STOW-RS).
        settle_s: a CT series is screened once no slice of it arrived for this many seconds (at once when
            complete by count: :func:`chestlens.dicomnet.screening.expected_slices`).
        retry_base_s: first retry delay of a failed delivery; it doubles per attempt ...
        retry_max_s: ... up to this.
        max_attempts: a delivery is marked failed after this many attempts.
        secondary_capture: also return the overlay picture as an RGB DICOM Secondary Capture image, for
            viewers that cannot show a SEG (see :mod:`chestlens.pipeline.dicom_sc`).
        max_associations: associations served at once; one more is rejected (transient, "local limit
            exceeded"), so the sender retries, and the audit log says why.
    """

    state_dir: Path
    ae_title: str = DEFAULT_AE_TITLE
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allowed_callers: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = field(default_factory=tuple)
    settle_s: float = DEFAULT_SETTLE_S
    retry_base_s: float = DEFAULT_RETRY_BASE_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    secondary_capture: bool = False
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title)
        for caller in self.allowed_callers:
            check_ae_title(caller)
        if not 0 <= self.port < 65536:
            raise ChestlensInputError(None, f"invalid port {self.port}")
        if self.settle_s < 0 or self.retry_base_s <= 0 or self.retry_max_s < self.retry_base_s:
            raise ChestlensInputError(None, "settle time >= 0 and 0 < retry base <= retry max are required")
        if self.max_attempts < 1 or self.max_associations < 1:
            raise ChestlensInputError(None, "max attempts and max associations must be at least 1")

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts: exponential backoff, capped."""
        return min(self.retry_max_s, self.retry_base_s * 2 ** max(0, attempts - 1))
