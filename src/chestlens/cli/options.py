"""Options that several commands share: one spelling, one help text and one check each."""

from __future__ import annotations

from typing import Annotated

import typer

from chestlens.errors import ChestlensInputError

DEVICE_KINDS = ("auto", "cpu", "cuda")


def _unknown_device(name: str) -> ChestlensInputError:
    return ChestlensInputError(None, f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")


def check_device(name: str) -> str:
    """``name`` when this machine can run models on it (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Raises :class:`~chestlens.errors.ChestlensInputError` (one line, exit code 2 in the CLI) for an
    unknown device or a CUDA device this machine does not have, before any model is loaded.
    """
    kind, _, index = name.partition(":")
    if kind not in DEVICE_KINDS or (index and (kind != "cuda" or not index.isdigit())):
        raise _unknown_device(name)
    if kind != "cuda":
        return name
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ChestlensInputError(None, f"--device {name}: no CUDA GPU here; use --device auto or cpu")
    if index and int(index) >= count:
        raise ChestlensInputError(None, f"--device {name}: this machine has {count} CUDA GPU(s)")
    return name


Device = Annotated[
    str,
    typer.Option(
        "--device",
        callback=check_device,
        help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N.",
    ),
]
