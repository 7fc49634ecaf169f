"""The ``chestlens`` command: a thin layer over the library.

Every sub-command lives in its own module with a ``register(app)`` function. Bad input anywhere
raises :class:`chestlens.ChestlensInputError`; :func:`main` prints it as one line on stderr and exits
with code 2, never a traceback. So do usage errors (an unknown option, a bad value, a missing argument),
a missing ``[train]`` extra and a file the system refuses to read or write.
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
#: The usage error a group without a sub-command raises after printing its help (typer names it only).
NO_ARGS_IS_HELP = "NoArgsIsHelpError"
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
        code = app(args=argv, prog_name="chestlens", standalone_mode=False)
    except ChestlensInputError as error:
        print(f"chestlens: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except typer.TyperException as error:  # usage errors (typer's click exceptions)
        if type(error).__name__ != NO_ARGS_IS_HELP:  # that one printed the help when it was raised
            print(f"chestlens: error: {usage_error_text(error)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except typer.Abort:
        print("chestlens: aborted", file=sys.stderr)
        sys.exit(1)
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
    except OSError as error:
        print(f"chestlens: error: {os_error_text(error)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code if isinstance(code, int) else 0)


def usage_error_text(error: typer.TyperException) -> str:
    """A usage error on one line, naming where to read the usage: ``No such option: --bogus; see
    chestlens predict --help``."""
    message = " ".join(error.format_message().split()).removesuffix(".")
    context = getattr(error, "ctx", None)
    return f"{message}; see {context.command_path} --help" if context is not None else message


def os_error_text(error: OSError) -> str:
    """``PATH: what the system said``, e.g. ``out: not allowed here (permission denied)``."""
    reason = (error.strerror or type(error).__name__).lower()
    if isinstance(error, FileExistsError | NotADirectoryError):
        reason = f"a file is in the way of a folder ({reason})"
    elif isinstance(error, PermissionError):
        reason = f"not allowed here ({reason})"
    return f"{error.filename}: {reason}" if error.filename else reason


def _command_name(args: list[str]) -> str:
    """``predict`` or ``train classify``: the (sub)command the arguments name."""
    words = [a for a in args if not a.startswith("-")][:2]
    groups = {group.name for group in app.registered_groups}
    return " ".join(words if words and words[0] in groups else words[:1])
