"""Uploads: checked by their bytes, decoded in memory, series spooled to private folders.

No upload is ever written under the client's file name: single images are decoded from memory (the
multipart parser's own spill file is anonymous); a series (a zip of DICOM files, or several files) is
written into ``<data_dir>/spool/<job id>/`` (mode 0700) as ``00000.dcm``, ``00001.dcm``... and the folder
is deleted when the job ends; folders left behind by a kill are removed at the next start
(:func:`remove_orphan_spools`). The names results carry are the server's: ``upload-<id>`` (with
``.dcm`` for a client's ``.dcm``/``.dicom`` name, :func:`upload_name`), ``series-<id>``.
Any exception while reading an upload answers 4xx with a problem body; neither the body nor the log
quotes a zip member name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from chestlens.errors import ChestlensInputError
from chestlens.io import MedicalImage, read_image
from chestlens.io.raster import READ_MAX_SIDE
from chestlens.io.sniff import DICOM_SUFFIXES, sniff_format
from chestlens.serve.problems import ProblemError, busy, log_failure
from chestlens.serve.settings import ServeSettings

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: General-purpose flag bit 0 of a zip member: the member is encrypted.
ZIP_ENCRYPTED = 0x1
SPOOL = "spool"
#: Spool folders are named by their job id: :func:`chestlens.serve.store.new_id`, 32 hex characters.
SPOOL_NAME = re.compile(r"[0-9a-f]{32}")
#: A spool folder written to this recently (seconds) may be an upload another worker is still spooling.
SPOOL_GRACE_S = 60.0
#: A zip member is copied to the spool in chunks of this size (the only member bytes held in memory).
SPOOL_CHUNK_BYTES = 1024 * 1024
SUPPORTED = "PNG, JPEG, TIFF, BMP, DICOM, NIfTI, or a zip of a DICOM series"


def is_zip(data: bytes) -> bool:
    return data[:4] in ZIP_MAGIC


def unsupported(detail: str) -> ProblemError:
    return ProblemError(
        415, "unsupported-media-type", "Unsupported media type", f"{detail}; expected {SUPPORTED}"
    )


def check_image_bytes(data: bytes, name: str) -> str:
    """The format sniffed from ``data`` (never from the client's name or content type); 415 otherwise."""
    if not data:
        raise ProblemError(422, "empty-file", "The upload is empty", "the uploaded file has no bytes")
    try:
        return sniff_format(data, name=name)
    except ChestlensInputError as error:
        raise unsupported(f"{name}: {error.reason}") from error


def renamed(image: MedicalImage, name: str) -> MedicalImage:
    """The same image, naming its source ``name`` (never a client file name or a server path)."""
    return MedicalImage(pixels=image.pixels, meta=dataclasses.replace(image.meta, source_path=name))


def upload_name(screening_id: str, client_name: str | None) -> str:
    """The server's name for an upload, ``upload-<id>``, plus ``.dcm`` when the client called it a DICOM
    file (``.dcm``/``.dicom``): the only suffix that changes how bytes are read (a DICOM file cut inside
    its preamble, :mod:`chestlens.io.sniff`). Nothing else of the client's name is used."""
    suffix = Path(client_name or "").suffix.lower()
    return f"upload-{screening_id}" + (".dcm" if suffix in DICOM_SUFFIXES else "")


def decode_image(data: bytes, name: str, settings: ServeSettings) -> MedicalImage:
    """Decode one uploaded image in memory (blocking: run it in a worker thread).

    Raises:
        ProblemError: 415 for bytes of no supported format, 422 for an empty file.
        ChestlensInputError: unreadable or oversized content (answered 422 with the reader's reason),
            also for any unexpected reader exception (logged by type and stack, never its message).
    """
    check_image_bytes(data, name)
    try:
        image = read_image(data, name=name, max_pixels=settings.max_pixels, max_side=READ_MAX_SIDE)
    except ChestlensInputError:
        raise
    except Exception as error:
        log_failure("reading an upload failed", error, event="unreadable_upload")
        raise ChestlensInputError(name, f"the upload cannot be read ({type(error).__name__})") from error
    return renamed(image, name)


def spool_folder(settings: ServeSettings, job_id: str) -> Path:
    return Path(settings.data_dir) / SPOOL / job_id


def remove_orphan_spools(
    settings: ServeSettings, pending: set[str], *, grace_s: float = SPOOL_GRACE_S
) -> int:
    """Delete the spool folders a killed upload or job left behind; returns how many were removed.

    Removed: folders (not links) named like a job id (:data:`SPOOL_NAME`), that no pending job in
    ``pending`` (ids of queued or running jobs) refers to, and that nothing wrote to for ``grace_s``
    seconds (another worker process may still be writing a new upload). Anything else in the spool is
    not the service's and is left alone.
    """
    root = Path(settings.data_dir) / SPOOL
    if not root.is_dir():
        return 0
    cutoff = time.time() - grace_s
    orphans = [folder for folder in root.iterdir() if _is_orphan(folder, pending, cutoff)]
    for folder in orphans:
        shutil.rmtree(folder, ignore_errors=True)
    return len(orphans)


def _is_orphan(folder: Path, pending: set[str], cutoff: float) -> bool:
    if not SPOOL_NAME.fullmatch(folder.name) or folder.name in pending:
        return False
    if folder.is_symlink() or not folder.is_dir():
        return False
    return _last_write(folder) < cutoff


def _last_write(folder: Path) -> float:
    """The latest modification time of the folder and the entries in it (links not followed)."""
    return max([folder.lstat().st_mtime, *(entry.lstat().st_mtime for entry in folder.iterdir())])


def _private_folder(folder: Path) -> Path:
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)
    return folder


def spool_bytes(settings: ServeSettings) -> int:
    """Bytes the spool holds now (the series of queued and running jobs)."""
    root = Path(settings.data_dir) / SPOOL
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0


def spool_series(parts: list[bytes], settings: ServeSettings, job_id: str) -> Path:
    """Write a series into its private spool folder under numbered names; returns the folder.

    ``parts``: either one zip file or several DICOM files. A zip's members are streamed to their spool
    files in chunks of :data:`SPOOL_CHUNK_BYTES`, never held in memory whole: peak memory is the upload
    plus one chunk, whatever the series' size. Before anything is written the zip is checked from its
    directory (encryption, file count, declared total size, against zip bombs); while writing, a running
    byte budget (``max_series_bytes``) stops at the limit without reading the rest. Folder names inside
    the zip are ignored (no path traversal). Raises :class:`ProblemError` (413/415/422) for what cannot
    be a series, and 503 (with Retry-After) when the spool would hold more than ``max_spool_bytes``.
    """
    if len(parts) == 1:
        with _open_zip(parts[0]) as archive:
            infos = _checked_infos(archive, settings)
            folder = _reserve(settings, job_id, sum(i.file_size for i in infos))
            budget = _Budget(settings.max_series_bytes)
            with _removed_on_error(folder):
                for index, info in enumerate(infos):
                    _stream_member(archive, info, folder / _spool_name(index), budget)
        return folder
    if len(parts) > settings.max_series_files:
        raise ProblemError(
            413,
            "too-many-files",
            "Too many files",
            f"{len(parts)} files exceed the limit of {settings.max_series_files} per series",
        )
    folder = _reserve(settings, job_id, sum(len(data) for data in parts))
    with _removed_on_error(folder):
        for index, data in enumerate(parts):
            (folder / _spool_name(index)).write_bytes(data)
    return folder


def _reserve(settings: ServeSettings, job_id: str, incoming: int) -> Path:
    """The job's new private spool folder; 503 (nothing written) when ``incoming`` bytes would overfill
    the spool."""
    if spool_bytes(settings) + incoming > settings.max_spool_bytes:
        raise busy("the series spool", settings.retry_after_s)
    return _private_folder(spool_folder(settings, job_id))


@contextlib.contextmanager
def _removed_on_error(folder: Path) -> Iterator[None]:
    """Delete ``folder`` when the block fails: a half-written series is never left in the spool."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _spool_name(index: int) -> str:
    return f"{index:05d}.dcm"


def _open_zip(data: bytes) -> zipfile.ZipFile:
    """The zip's directory (members are not read yet); any failure is a 422 problem."""
    with _zip_errors():
        return zipfile.ZipFile(io.BytesIO(data))


@contextlib.contextmanager
def _zip_errors() -> Iterator[None]:
    """Turn anything zipfile or a decompressor raises while *reading* the client's zip into a 422.

    Neither the detail nor the log ever quotes a member name (names can hold patient ids): zipfile's
    messages do, so only the kind of error is reported. Writing to the spool is not wrapped: a full disk
    is the server's problem, not the client's.
    """
    try:
        yield
    except ProblemError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as error:
        raise _bad_zip(f"the zip cannot be read ({type(error).__name__})") from error
    except Exception as error:  # anything else zipfile or a decompressor raises: still the client's zip
        log_failure("reading a zip upload failed", error, event="unreadable_zip")
        raise _bad_zip(f"the zip cannot be read ({type(error).__name__})") from error


def _checked_infos(archive: zipfile.ZipFile, settings: ServeSettings) -> list[zipfile.ZipInfo]:
    """The zip's files (hidden files and folders skipped), checked from its directory alone: no member
    is encrypted, and their count and declared total size are within the series limits."""
    infos = [
        i
        for i in archive.infolist()
        if not i.is_dir() and not any(p.startswith((".", "__MACOSX")) for p in Path(i.filename).parts)
    ]
    if not infos:
        raise ProblemError(422, "empty-series", "The series is empty", "the zip holds no files")
    if any(i.flag_bits & ZIP_ENCRYPTED for i in infos):
        raise _bad_zip("the zip is encrypted (password-protected); upload it without a password")
    if len(infos) > settings.max_series_files:
        raise ProblemError(
            413,
            "too-many-files",
            "Too many files",
            f"the zip holds {len(infos)} files, more than the limit of {settings.max_series_files}",
        )
    total = sum(i.file_size for i in infos)
    if total > settings.max_series_bytes:
        raise _too_large(
            f"the zip unpacks to {total:,} bytes, more than the limit of {settings.max_series_bytes:,}"
        )
    return infos


def _bad_zip(detail: str) -> ProblemError:
    return ProblemError(422, "bad-zip", "The zip cannot be read", detail)


def _too_large(detail: str) -> ProblemError:
    return ProblemError(413, "series-too-large", "Series too large", detail)


@dataclasses.dataclass
class _Budget:
    """The bytes a series may still unpack to: every chunk is counted before it is written."""

    left: int

    def take(self, size: int) -> None:
        """Count ``size`` more bytes; 413 when they go over (the rest of the zip is never read)."""
        self.left -= size
        if self.left < 0:
            raise _too_large("the zip unpacks to more than the series limit")


def _stream_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: _Budget) -> None:
    """Copy one member to ``target`` chunk by chunk, within ``budget`` (a lying header cannot inflate
    it: zipfile stops at the declared size and checks the CRC)."""
    with _zip_errors():
        stream = archive.open(info)
    with stream, target.open("xb") as out:
        while True:
            with _zip_errors():
                chunk = stream.read(SPOOL_CHUNK_BYTES)
            if not chunk:
                return
            budget.take(len(chunk))
            out.write(chunk)


def read_spooled_series(folder: Path, name: str, settings: ServeSettings) -> MedicalImage:
    """Read the spooled series (blocking); a folder of one DICOM file reads as that image."""
    files = sorted(folder.iterdir())
    source: Path = files[0] if len(files) == 1 else folder
    return renamed(read_image(source, max_pixels=settings.max_pixels), name)
