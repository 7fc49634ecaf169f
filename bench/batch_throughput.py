"""Batch inference throughput of the shipped classifier (eager, torch.compile, ONNX Runtime), the anchor,
the model FLOPs and the machine's measured peak matrix throughput.

    python bench/batch_throughput.py [--quick] [--batch 8] [--json OUT.json]

* throughput: images/s of ``xray3-screener`` forward passes on batches of ``--batch`` (grey, at the
  bundle's input size) with PyTorch eager, ``torch.compile`` (compile time reported apart; skipped with
  ``--quick``) and ONNX Runtime (CPU provider; largest difference from eager reported); the anchor is
  torchxrayvision's DenseNet-121 (random weights) at 224 px, eager, same batch;
* FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``: 2 per multiply-add) of the classifier,
  the lung segmenter and the anchor;
* peak: float32 matrix multiply throughput measured with a timed ``torch.matmul`` of two N x N matrices;
  utilisation = FLOPs per image x images/s / peak, i.e. how far from the machine's limit inference runs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import json_main
from torch.utils.flop_counter import FlopCounterMode

from chestlens.models.bundle import load_bundle
from chestlens.models.device import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_matmul_flops(size: int, repeats: int, device: torch.device) -> float:
    """Measured float32 FLOP/s of ``size x size`` matrix products (best of ``repeats`` timed runs)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def flops_per_image(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Forward FLOPs of ``module`` on a batch of one."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


def images_per_s(forward: Callable[[], object], batch: int, batches: int, device: torch.device) -> float:
    """Images/s of ``batches`` calls of ``forward`` (one untimed warm-up call)."""
    forward()
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        forward()
    _sync(device)
    return batch * batches / (time.perf_counter() - start)


def onnx_session(module: torch.nn.Module, x: torch.Tensor, folder: Path):
    """ONNX export of ``module`` (dynamic batch) and an ONNX Runtime CPU session on it."""
    import onnxruntime as ort

    path = folder / "model.onnx"
    torch.onnx.export(
        module.cpu(),
        (x.cpu(),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(quick: bool = False, batch: int = 8) -> dict[str, object]:
    device = resolve_device("auto")
    batches = 1 if quick else 8
    classifier, lungs = load_bundle("xray3-screener"), load_bundle("lungs-segmenter")
    size = classifier.spec.preprocess.input_size
    x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=torch.channels_last)
    module = classifier.build_model().to(device).to(memory_format=torch.channels_last).eval()
    lung_module = lungs.build_model().to(device).eval()

    import torchxrayvision as xrv

    anchor = xrv.models.DenseNet(weights=None).eval().to(device)
    anchor_x = torch.randn(batch, 1, 224, 224, device=device)
    lung_size = lungs.spec.preprocess.input_size
    lung_x = torch.randn(1, 1, lung_size, lung_size, device=device)
    flops = {
        "xray3-screener": flops_per_image(module, x[:1]),
        "lungs-segmenter": flops_per_image(lung_module, lung_x),
        "anchor xrv DenseNet-121 224": flops_per_image(anchor, anchor_x[:1]),
    }
    with torch.no_grad():
        eager = module(x).float().cpu()
        rates: dict[str, object] = {"eager": images_per_s(lambda: module(x), batch, batches, device)}
        anchor_rate = images_per_s(lambda: anchor(anchor_x), batch, batches, device)
        rates["anchor xrv DenseNet-121 224 eager"] = anchor_rate
        if quick:
            rates["torch.compile"] = "skipped (--quick)"
            compile_s = None
        else:
            compiled = torch.compile(module)
            start = time.perf_counter()
            compiled(x)
            compile_s = time.perf_counter() - start
            rates["torch.compile"] = images_per_s(lambda: compiled(x), batch, batches, device)
    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(module, x, Path(tmp))
        feed = {"x": x.cpu().contiguous().numpy()}
        rates["onnxruntime (CPU)"] = images_per_s(lambda: session.run(None, feed), batch, batches, device)
        ort_diff = float(np.abs(session.run(None, feed)[0] - eager.numpy()).max())
    module.to(device)
    peak = peak_matmul_flops(512 if quick else 2048, 2 if quick else 10, device)
    return {
        "device": str(device),
        "batch": batch,
        "input_size": size,
        "img_per_s": rates,
        "torch_compile_seconds": compile_s,
        "onnxruntime_max_abs_logit_difference": ort_diff,
        "flops_per_image": flops,
        "peak_matmul_flops_per_s": peak,
        "utilisation_of_peak": {
            "xray3-screener eager": flops["xray3-screener"] * rates["eager"] / peak,
            "anchor eager": flops["anchor xrv DenseNet-121 224"]
            * rates["anchor xrv DenseNet-121 224 eager"]
            / peak,
        },
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    def configure(parser):
        parser.add_argument("--quick", action="store_true", help="tiny counts, no torch.compile (smoke test)")
        parser.add_argument("--batch", type=int, default=8)

    return json_main(__doc__.splitlines()[0], argv, configure, lambda args: run(args.quick, args.batch))


if __name__ == "__main__":
    main()
