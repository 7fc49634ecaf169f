"""The browser's quality gate (web/gate.js, run in Node) computes what chestlens.pipeline.gate and
chestlens.pipeline.view compute, on the same inputs: OpenCV's resizes, the working image, the lung-field
statistics of the real lung segmenter's output, the view features and P(lateral), and the words of every
metadata and pixel check; and gate.json (chestlens export web) holds the Python constants."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from chestlens.export.web import gate_json
from chestlens.io import read_image
from chestlens.io.samples import sample_path
from chestlens.pipeline import gate, view
from chestlens.pipeline.browser_gate import browser_gate_rules
from chestlens.pipeline.screener import WORKING_IMAGE_FACTOR
from chestlens.preprocess.graph_io import INPUT_NAME
from chestlens.preprocess.resize import working_image

WEB = Path(__file__).resolve().parents[2] / "web"
RULES = gate_json(browser_gate_rules(), [256])
#: Node runs one call per line of `calls.json`: [function, args...]; arrays are passed as files of float64.
SCRIPT = """
import fs from "node:fs";
import * as gate from "{module}";
const bytes = (path) => {{
  const b = fs.readFileSync(path);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
}};
const f64 = (arg) => (arg && arg.f64 ? new Float64Array(bytes(arg.f64)) : arg);
const load = (arg) => (arg && arg.values && arg.values.f64
  ? {{ ...arg, values: f64(arg.values) }} : f64(arg));
const rules = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const calls = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const out = calls.map(([name, ...args]) => {{
  const value = gate[name](...args.map(load).map((a) => (a === "RULES" ? rules : a)));
  return value instanceof Float64Array || value instanceof Float32Array ? Array.from(value)
    : value && value.rows ? {{ ...value, values: Array.from(value.values) }}
    : value && value.stats ? {{ ...value, stats: {{ ...value.stats, mask: undefined }} }} : value;
}});
fs.writeFileSync(process.argv[4], JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def node_gate(tmp_path_factory):
    """``node_gate(calls)``: run gate.js functions in Node; numpy arrays are passed as float64 files."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    folder = tmp_path_factory.mktemp("gate-js")
    script = folder / "run.mjs"
    script.write_text(SCRIPT.format(module=(WEB / "gate.js").as_uri()))
    rules = folder / "rules.json"
    rules.write_text(json.dumps(RULES))

    def run(calls: list[list[object]]) -> list[object]:
        def file(array: np.ndarray, name: str) -> dict[str, str]:
            path = folder / f"{name}.f64"
            path.write_bytes(np.ascontiguousarray(array, np.float64).tobytes())
            return {"f64": str(path)}

        encoded = []
        for k, call in enumerate(calls):
            args = []
            for j, arg in enumerate(call):
                if isinstance(arg, np.ndarray):
                    arg = file(arg, f"a{k}_{j}")
                elif isinstance(arg, dict) and isinstance(arg.get("values"), np.ndarray):
                    arg = {**arg, "values": file(arg["values"], f"v{k}_{j}")}
                args.append(arg)
            encoded.append(args)
        (folder / "calls.json").write_text(json.dumps(encoded))
        out = folder / "out.json"
        subprocess.run(
            [node, script, rules, folder / "calls.json", out], check=True, capture_output=True, text=True
        )
        return json.loads(out.read_text())

    return run


@pytest.fixture(scope="module")
def lung_graph():
    from chestlens.runtime import load_graph

    return load_graph("lungs-segmenter", "segmenter", threads=1)


def test_gate_json_is_the_python_gate():
    """gate.json carries the pipeline's own constants (read from source) and view model."""
    for name, value in RULES["gate"].items():
        expected = getattr(gate, name)
        expected = sorted(expected) if isinstance(expected, frozenset) else expected
        assert value == json.loads(json.dumps(expected)), name
    for name in ("THUMBNAIL", "FEATURE_GRID", "PROFILE", "GRADIENT_CELLS", "GRADIENT_BINS"):
        assert RULES["view"][name] == getattr(view, name)
    for key, model in (("model", view.view_model()), ("ct_picture_model", view.ct_picture_model())):
        assert np.array_equal(RULES["view"][key]["weights"], model.weights)
        assert RULES["view"][key]["threshold"] == model.threshold and len(model.mean) == view.N_FEATURES
    assert RULES["working_side"] == WORKING_IMAGE_FACTOR * 256


def test_opencv_resizes(node_gate):
    rng = np.random.default_rng(0)
    cases = [((300, 241), (64, 64), "area"), ((256, 256), (64, 64), "area"), ((64, 64), (6, 6), "area")]
    cases += [((26, 512), (64, 64), "area"), ((40, 30), (64, 64), "area"), ((1, 64), (1, 16), "linear")]
    calls, expected = [], []
    for (rows, cols), (h, w), mode in cases:
        src = rng.random((rows, cols), dtype=np.float32)
        calls.append(["resize", src.astype(np.float64), rows, cols, h, w, mode])
        flag = cv2.INTER_AREA if mode == "area" else cv2.INTER_LINEAR
        expected.append(cv2.resize(src, (w, h), interpolation=flag))
    src = rng.random((1203, 997), dtype=np.float32)
    calls.append(["workingImage", src.astype(np.float64), 1203, 997, 512])
    for got, want in zip(node_gate(calls)[:-1], expected, strict=True):
        assert np.abs(np.reshape(got, want.shape) - want).max() < 1e-5
    work = node_gate(calls[-1:])[0]
    want = working_image(src, 512)
    assert [work["rows"], work["cols"]] == list(want.shape)
    assert np.abs(np.reshape(work["values"], want.shape) - want).max() < 1e-5


def real_inputs(lung_graph, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The working image and the lung segmenter's probabilities of a real radiograph, as the screener
    computes them."""
    work = working_image(read_image(path).pixels.astype(np.float32), RULES["working_side"])
    probability = lung_graph.run({INPUT_NAME: work[None, None]})["probabilities"][0, 0]
    return work, probability


@pytest.mark.shared_data
def test_lung_fields_and_view_match_python(node_gate, lung_graph, source_dir):
    """Real inputs: a frontal DICOM, the leg (RG3), a frontal and a lateral picture of ieee8023, and a
    picture of a CT slice (Inf-Net)."""
    images = source_dir("covid-chestxray-dataset") / "images"
    paths = [sample_path("RG1_UNCR.dcm"), sample_path("RG3_UNCR.dcm")]
    paths += [images / "covid-19-pneumonia-7-L.jpg", images / "covid-19-pneumonia-7-PA.jpg"]
    infnet = source_dir("infnet-covid-semiseg") / "Dataset" / "TrainingSet" / "MultiClassInfection-Train"
    paths.append(infnet / "Imgs" / "2.jpg")  # a picture of a CT slice: the ct_picture check fails
    calls, python = [], []
    for path in paths:
        work, probability = real_inputs(lung_graph, path)
        size = probability.shape[0]
        calls.append(["checkLungFields", probability.astype(np.float64), size, "RULES"])
        calls.append(
            ["checkView", work.astype(np.float64), *work.shape, probability.astype(np.float64), size, "RULES"]
        )
        features = view.view_features(work, probability)
        python.append((gate.check_lung_fields(probability), view.check_view(work, probability), features))
    out = node_gate(calls)
    for k, (lungs, view_check, features) in enumerate(python):
        js_lungs, js_view = out[2 * k], out[2 * k + 1]
        assert js_lungs["check"] == {"name": "lung_fields", "passed": lungs.passed, "detail": lungs.detail}
        stats = gate.lung_field_stats(np.asarray(calls[2 * k][1], np.float32))
        for key in ("area", "confidence", "outline", "extent", "solidity", "centre_row"):
            assert js_lungs["stats"][key] == pytest.approx(getattr(stats, key), abs=1e-6), (
                paths[k].name,
                key,
            )
        # float32 (OpenCV) and float64 (JavaScript) sums differ in the last bits; a pixel whose gradient
        # lies on an orientation bin's edge can then move to the next bin: a few 1e-3 of one cell's share
        edges = view.GRADIENT_CELLS**2 * view.GRADIENT_BINS
        difference = np.abs(np.array(js_view["features"]) - features)
        assert difference[:-edges].max() < 1e-4 and difference[-edges:].max() < 1e-2, paths[k].name
        assert js_view["probability"] == pytest.approx(view.view_model().probability(features), abs=1e-3)
        assert js_view["check"]["passed"] == view_check.passed, paths[k].name
    ct_calls = [["checkCtPicture", features, "RULES"] for _, _, features in python]
    for (_, _, features), js_ct, path in zip(python, node_gate(ct_calls), paths, strict=True):
        work, probability = real_inputs(lung_graph, path)
        ct_check = view.check_ct_picture(work, probability, features=features)
        assert js_ct["check"] == {"name": "ct_picture", "passed": ct_check.passed, "detail": ct_check.detail}
        assert js_ct["probability"] == pytest.approx(view.ct_picture_model().probability(features), abs=1e-9)


@pytest.mark.shared_data
def test_metadata_and_pixel_checks_match_python(node_gate, source_dir):
    """The words of every tag and pixel check on real files, decoded by chestlens (same input)."""
    images = source_dir("covid-chestxray-dataset") / "images"
    paths = [sample_path(n) for n in ("RG1_UNCR.dcm", "RG3_UNCR.dcm", "MR_small.dcm", "CT_small.dcm")]
    paths += [sample_path("US1_UNCR.dcm"), sample_path("SC_rgb.dcm"), images / "covid-19-pneumonia-7-L.jpg"]
    calls, expected = [], []
    for path in paths:
        image = read_image(path)
        meta = image.meta
        pixels = image.pixels if image.pixels.ndim == 2 else image.pixels[0]
        js_meta = {"modality": meta.modality, "bodyPart": meta.body_part, "view": meta.view}
        pixel_meta = {
            "format": "dicom" if meta.format.startswith("dicom") else "picture",
            "photometric": meta.photometric_interpretation,
            "frames": image.pixels.shape[0] if image.pixels.ndim == 3 and meta.pixel_unit != "HU" else 1,
            "colouredFraction": 1.0 if meta.is_colour else None,
        }
        js_image = {
            "rows": pixels.shape[0],
            "cols": pixels.shape[1],
            "unit": meta.pixel_unit,
            "meta": pixel_meta,
        }
        calls.append(["checkMetadata", js_meta, "RULES"])
        calls.append(["checkPixels", {**js_image, "values": pixels.ravel()}, "RULES"])
        python = gate.check_metadata(meta) + gate.check_pixels(image)
        expected.append([c for c in python if c.name != "ct_lungs"])  # not in the browser (gate.json)
    out = node_gate(calls)
    for k, checks in enumerate(expected):
        got = out[2 * k] + out[2 * k + 1]
        assert got == [c.model_dump() for c in checks], paths[k].name
