"""The ``chestlens`` command: a thin layer over the library.

Every sub-command lives in its own module with a ``register(app)`` function. Bad input anywhere
raises :class:`chestlens.ChestlensInputError`; :func:`main` prints it as one line on stderr and exits
with code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from chestlens import ChestlensInputError, __version__
from chestlens.cli import (
    audit_cmd,
    data_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    info_cmd,
    listen_cmd,
    models_cmd,
    predict_cmd,
    series_cmd,
    serve_cmd,
    train_cmd,
)
from chestlens.cli.help_types import use_plain_type_names
from chestlens.io.redact import withhold_dicom_values

EXIT_BAD_INPUT = 2
#: Top-level modules of the ``[train]`` extra: a command that imports one of them needs that extra.
TRAIN_EXTRA_MODULES = frozenset(
    {
        "torch", "torchvision", "timm", "segmentation_models_pytorch", "pytorch_grad_cam", "safetensors",
        "tensorboard", "onnx", "onnxscript", "onnx_ir",
    }
)  # fmt: skip

use_plain_type_names()

app = typer.Typer(
    name="chestlens",
    help="Chest X-ray and CT screening toolkit. Research use only: never a diagnosis.\n\n"
    "In every command: --json prints JSON on stdout instead of tables; -o/--out names where output is "
    "written; -q silences progress, never errors; --device is auto, cpu, cuda or cuda:N.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"chestlens {__version__}")
        raise typer.Exit()


info_cmd.register(app)
demo_cmd.register(app)
data_cmd.register(app)
train_cmd.register(app)
evaluate_cmd.register(app)
audit_cmd.register(app)
models_cmd.register(app)
predict_cmd.register(app)
series_cmd.register(app)
serve_cmd.register(app)
listen_cmd.register(app)
export_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``chestlens``)."""
    withhold_dicom_values()
    try:
        app(args=argv, prog_name="chestlens")
    except ChestlensInputError as error:
        print(f"chestlens: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        command = _command_name(argv or sys.argv[1:])
        print(
            f"chestlens: error: chestlens {command} needs PyTorch ({error.name} is not installed): "
            "install it with pip install 'chestlens[train]'",
            file=sys.stderr,
        )
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("chestlens: interrupted", file=sys.stderr)
        sys.exit(130)


def _command_name(args: list[str]) -> str:
    """``predict`` or ``train classify``: the (sub)command the arguments name."""
    words = [a for a in args if not a.startswith("-")][:2]
    groups = {group.name for group in app.registered_groups}
    return " ".join(words if words and words[0] in groups else words[:1])
