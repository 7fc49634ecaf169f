"""``chestlens export onnx BUNDLE`` and ``chestlens export web [DIR]``: the offline mode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

export_app = typer.Typer(
    name="export",
    help="Offline mode: verified ONNX exports and the installable in-browser screener (PWA).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app)


def _data_root(root: Path | None) -> Path:
    from chestlens.data.root import DATA_ENV, data_root
    from chestlens.errors import ChestlensInputError

    found = data_root(root)
    if found is None or not found.is_dir():
        raise ChestlensInputError(root, f"exports are verified on real images: pass --root or set {DATA_ENV}")
    return found


def _summary(variant: str, check: dict[str, Any]) -> str:
    if variant == "fp32":
        verdict = "PASSED" if check["passed"] else "FAILED"
        return (
            f"fp32: max |p_onnx - p_torch| = {check['max_abs_diff_probabilities']:.2e} over "
            f"{check['n_images']} images (< {check['tolerance']:g}: {verdict})"
        )
    quality = (
        f"macro AUC change {check['macro_auc_change']:+.4f}"
        if "macro_auc_change" in check
        else f"mask Dice vs fp32 {check['mean_dice_vs_fp32']:.4f}"
    )
    megabytes = check["size_bytes"] / 1e6
    return (
        f"{variant}: {quality}, size x{check['size_ratio_vs_fp32']:.2f} ({megabytes:.1f} MB), "
        f"speed x{check['speedup_vs_fp32']:.2f} ({check['ms_per_image']:.1f} vs "
        f"{check['ms_per_image_fp32']:.1f} ms) -> {'usable' if check['usable'] else 'NOT usable'}"
    )


@export_app.command("onnx")
def onnx(
    bundle: Annotated[str, typer.Argument(help="Classifier or segmenter bundle (folder or bundled name).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("onnx"),
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (>= 18).")] = 18,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write an fp16-weight variant.")] = False,
    int8_calibrate: Annotated[
        Path | None,
        typer.Option("--int8-calibrate", help="Folder of images: also write a static int8 variant."),
    ] = None,
    root: Annotated[Path | None, typer.Option("--root", help="Data root (default $CHESTLENS_DATA).")] = None,
    splits: Annotated[
        Path | None, typer.Option("--splits", help="Split CSV whose test split checks the export.")
    ] = None,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="At most this many test images (default all).")
    ] = None,
) -> None:
    """Export BUNDLE to one self-contained .onnx (plus optional fp16 / int8 variants), each with a JSON
    sidecar, and verify it against PyTorch on the real test split."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.errors import ChestlensInputError
    from chestlens.export.bundle_export import export_bundle
    from chestlens.export.images import folder_units, test_split_set
    from chestlens.models.bundle import load_bundle

    loaded = load_bundle(bundle)
    check = test_split_set(loaded.spec, _data_root(root), splits=splits, max_images=max_images)
    calibration = None if int8_calibrate is None else folder_units(int8_calibrate, loaded.spec)
    report = export_bundle(loaded, out, check, opset=opset, fp16=fp16, calibration=calibration)
    for variant, path in report.files.items():
        typer.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB) + {path.with_suffix('.json').name}")
        typer.echo("  " + _summary(variant, report.checks[variant]))
    typer.echo(RESEARCH_USE_DISCLAIMER)
    if not report.passed:
        raise ChestlensInputError(out, "the fp32 export does not match PyTorch (see the sidecar)")


@export_app.command("web")
def web(
    folder: Annotated[
        Path | None, typer.Argument(help="Output folder, as --out (kept for existing scripts).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder (default: $CHESTLENS_WEB_DIR, ~/.cache/chestlens/web)."
        ),
    ] = None,
    classifier: Annotated[str, typer.Option("--classifier", help="Classifier bundle.")] = "xray3-screener",
    lungs: Annotated[str, typer.Option("--lungs", help="Lung segmenter bundle ('' for none).")] = (
        "lungs-segmenter"
    ),
) -> None:
    """Build the offline screener (PWA) as a static folder: serve it from any static host, or with
    `chestlens serve` at /offline/. It runs each bundle's verified model.onnx; needs npm (vendors
    onnxruntime-web by npm ci), not PyTorch."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.export.offline import default_web_dir
    from chestlens.export.web import build_web
    from chestlens.pipeline.browser_gate import browser_gate_rules

    folder = out or folder or default_web_dir()
    built = build_web(folder, gate_rules=browser_gate_rules(), classifier=classifier, lungs=lungs or None)
    for role, (name, record) in built.graphs.items():
        typer.echo(
            f"{role}: {name}: model.onnx verified against PyTorch, max |p_onnx - p_torch| = "
            f"{record.max_abs_diff_probabilities:.2e} on {record.parity_n_images} images "
            f"({record.parity_images})"
        )
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    typer.echo(f"built {folder} (build {built.build_id}, {size / 1e6:.1f} MB)")
    typer.echo("serve it from any static host, or run `chestlens serve` and open /offline/")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@export_app.command("graph")
def graph(
    bundle: Annotated[Path, typer.Argument(help="Classifier or segmenter bundle folder.")],
    root: Annotated[Path | None, typer.Option("--root", help="Data root (default $CHESTLENS_DATA).")] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="Folder of images to verify on instead of the data root.")
    ] = None,
    n_images: Annotated[int, typer.Option("--n-images", help="Images of the data root to verify on.")] = 16,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (>= 18).")] = 18,
) -> None:
    """Add the inference graph (model.onnx) to BUNDLE, verified against PyTorch on real images, so that
    ONNX Runtime (the default runtime) can screen with it."""
    from chestlens.export.bundle_graph import add_graph
    from chestlens.export.images import folder_units, sample_set
    from chestlens.models.spec import read_spec

    spec = read_spec(bundle)
    check = folder_units(images, spec) if images else sample_set(spec, _data_root(root), n_images)
    record = add_graph(bundle, check, opset=opset)
    typer.echo(
        f"{bundle}/{record.file}: max |p_onnx - p_torch| = {record.max_abs_diff_probabilities:.2e} over "
        f"{record.parity_n_images} images ({record.parity_images})"
    )
