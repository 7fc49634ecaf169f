"""The browser's lung-field preprocessing (web/lungroi.js) computes what chestlens.data.lung_roi does:
the same box, crop, nearest resize and dilated mask on a real lung mask (run in Node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from chestlens.data.lung_roi import crop_to_lungs
from chestlens.preprocess.lung_roi import inside_mask, lung_box, mask_radius
from chestlens.preprocess.resize import resize_nearest
from chestlens.preprocess.spec import PreprocessSpec

WEB = Path(__file__).resolve().parents[2] / "web"
SCRIPT = """
import {{ crop, dilate, lungBox, resizeNearest }} from "{module}";
const {{ mask, size, margin, rows, cols, grid, radius }} = JSON.parse(process.argv[2]);
const m = Uint8Array.from(mask);
const box = lungBox(m, size, size, margin);
const unit = Float32Array.from({{ length: rows * cols }}, (_, i) => i);
const frame = crop(unit, rows, cols, box);
const lungs = crop(m, size, size, box);
const onGrid = resizeNearest(lungs.values, lungs.rows, lungs.cols, grid, grid);
console.log(JSON.stringify({{ box, shape: [frame.rows, frame.cols], first: frame.values[0],
  grid: Array.from(onGrid), inside: Array.from(dilate(onGrid, grid, radius)) }}));
"""


@pytest.fixture(scope="module")
def lung_mask() -> np.ndarray:
    """The shipped lung segmenter's mask of the pip chest radiograph RG1 (64 x 64 grid, downsampled)."""
    from chestlens.io import read_image
    from chestlens.io.samples import sample_path
    from chestlens.models.bundle import load_bundle
    from chestlens.models.inference import lung_masker
    from chestlens.preprocess.units import to_unit_range

    lungs = load_bundle("lungs-segmenter")
    unit = to_unit_range(read_image(sample_path("RG1_UNCR.dcm")), lungs.spec.preprocess)
    mask = lung_masker(lungs.build_model(), lungs.spec.preprocess)([torch.from_numpy(unit.copy())[None]])[0]
    return resize_nearest(mask, (64, 64))


def test_lungroi_js_matches_python(lung_mask, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    spec = PreprocessSpec(input_size=48, mean=[0.5], std=[0.5], lung_roi="mask", lung_margin=0.08)
    rows, cols = 300, 260
    args = {
        "mask": lung_mask.astype(int).ravel().tolist(),
        "size": 64,
        "margin": spec.lung_margin,
        "rows": rows,
        "cols": cols,
        "grid": spec.input_size,
        "radius": mask_radius(spec.input_size),
    }
    script = tmp_path / "check.mjs"
    script.write_text(SCRIPT.format(module=(WEB / "lungroi.js").as_uri()))
    out = json.loads(
        subprocess.run([node, script, json.dumps(args)], capture_output=True, text=True, check=True).stdout
    )
    assert out["box"] == pytest.approx(list(lung_box(lung_mask, spec.lung_margin)), abs=1e-12)
    unit = torch.arange(rows * cols, dtype=torch.float32).reshape(1, rows, cols)
    cropped, cropped_lungs = crop_to_lungs(unit, lung_mask, spec)
    assert out["shape"] == list(cropped.shape[1:]) and out["first"] == float(cropped[0, 0, 0])
    grid = resize_nearest(cropped_lungs, (48, 48))
    assert out["grid"] == grid.astype(int).ravel().tolist()
    assert out["inside"] == inside_mask(cropped_lungs, spec).astype(int).ravel().tolist()
