"""Options that several commands share: one spelling, one help text and one check each."""

from __future__ import annotations

from pathlib import Path
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
    try:
        import torch
    except ImportError as error:
        from chestlens.runtime.base import missing_extra

        raise missing_extra(f"--device {name}") from error

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


def check_runtime(name: str) -> str:
    """``name`` when it is a runtime (``onnx`` or ``torch``); ``torch`` also needs PyTorch installed."""
    if name not in ("onnx", "torch"):
        raise ChestlensInputError(None, f"--runtime {name}: unknown runtime; use onnx or torch")
    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError as error:
            from chestlens.runtime.base import missing_extra

            raise missing_extra("--runtime torch") from error
    return name


RuntimeOption = Annotated[
    str,
    typer.Option(
        "--runtime",
        callback=check_runtime,
        help="onnx (ONNX Runtime, the default; needs no PyTorch) or torch (the same graphs in PyTorch; "
        "needs chestlens[train]).",
    ),
]

#: Heatmap choices of ``--cam`` (``none``: no heatmap).
CAM_CHOICES = ("cam", "gradcam", "gradcam++", "hirescam", "none")

Cam = Annotated[
    str,
    typer.Option(
        "--cam",
        help="Heatmap: cam (class-activation map, any runtime), gradcam, gradcam++, hirescam "
        "(--runtime torch) or none.",
    ),
]

Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bar, table or counts; errors still print."),
]


def check_out_folder(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``value`` unless it names an existing file: an output folder cannot be made there. Checked before
    any model loads, so the mistake costs no screening."""
    if value is not None and value.exists() and not value.is_dir():
        reason = f"a file, not a folder: {param.opts[0]} names a folder to write into"
        raise ChestlensInputError(value, reason)
    return value
