"""``chestlens export web DIR``: the offline screener as a static folder (any static host will do).

Layout of the built folder::

    index.html app.js dicom.js gate.js lungroi.js style.css icon.svg manifest.webmanifest
    sw.js                 # service worker; its cache name is the build id, so a new build replaces the old
    models.json           # build id, the models (onnx + sidecar), every file to cache for offline use
    gate.json             # the quality gate's numbers and word lists (see below)
    models/NAME.onnx      # each bundle's own verified model.onnx, the graph every runtime runs
    models/NAME.json      # its JSON sidecar (chestlens.export.sidecar)
    vendor/               # onnxruntime-web (wasm backend only) and dicom-parser,
                          # from `npm ci` of web/package-lock.json

The page, the models and the runtimes are all same-origin files: nothing is fetched from a CDN and no
image ever leaves the browser. The graphs are copied from the bundles, checked against the SHA-256 in
``bundle.json``; their parity with PyTorch was verified when they were put into the bundle, and the
sidecar carries that check. Building therefore needs neither PyTorch nor the data root.

The quality gate: ``gate.js`` runs the rules of :mod:`chestlens.pipeline.gate` and
:mod:`chestlens.pipeline.view` in the browser, and ``gate.json`` (:func:`gate_json`) gives it their
thresholds, word lists and the view model's numbers, taken from those modules at build time
(:func:`chestlens.pipeline.browser_gate.browser_gate_rules`, handed in by the CLI: ``chestlens.export``
sits below ``chestlens.pipeline`` in the import layers), so a change there changes the next build. The CT
lung check (``ct_lungs``) does not run in the browser: the page has no CT models, and rejects CT
(``not_in_browser``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.atomic import write_text_atomic
from chestlens.errors import ChestlensInputError
from chestlens.export.sidecar import sidecar
from chestlens.models.catalog import resolve_bundle
from chestlens.models.spec import GraphRecord, read_spec
from chestlens.preprocess.lung_roi import needs_lungs
from chestlens.runtime.onnx import verified_graph

#: The PWA source folder of a source checkout (not shipped inside the wheel).
WEB_SOURCE = Path(__file__).resolve().parents[3] / "web"
APP_FILES = (
    "index.html",
    "app.js",
    "dicom.js",
    "gate.js",
    "lungroi.js",
    "style.css",
    "icon.svg",
    "manifest.webmanifest",
)
SERVICE_WORKER = "sw.js"
BUILD_PLACEHOLDER = "__CHESTLENS_BUILD__"
#: node_modules path -> vendor/ name: the wasm-only onnxruntime-web build and dicom-parser.
VENDOR_FILES = {
    "onnxruntime-web/dist/ort.wasm.min.mjs": "ort.wasm.min.mjs",
    "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.mjs",
    "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
    "dicom-parser/dist/dicomParser.min.js": "dicomParser.min.js",
}


GATE_FILE = "gate.json"
#: What the Python gate checks that the page does not, and why (shown on the page and in docs/offline.md).
NOT_IN_BROWSER = [
    {
        "check": "ct_lungs",
        "why": "CT: the Hounsfield-unit lung rule (chestlens.pipeline.ct_lungs) and the CT models do not "
        "run in this page, which screens chest radiographs only; CT is rejected here: screen it with "
        "chestlens predict or chestlens serve",
    },
]
#: The rejection the page gives a CT image after the checks it shares with Python.
CT_REJECTION = (
    "CT is not screened in the offline page (chest radiographs only): use chestlens predict or serve"
)


def gate_json(rules: Mapping[str, Any], radiograph_input_sizes: list[int]) -> dict[str, Any]:
    """``gate.json``: the pipeline's ``rules`` (:func:`chestlens.pipeline.browser_gate.browser_gate_rules`)
    plus the working image's longer side, which the screener sets to the working-image factor times the
    largest input size of its radiograph models (here: the page's classifier and lung segmenter), and
    what the page does not check."""
    return {
        "format": "chestlens-browser-gate",
        "format_version": 1,
        "source": "chestlens.pipeline.gate, chestlens.pipeline.view (view_model.json), chestlens.io.colour",
        "chestlens_version": __version__,
        "gate": rules["gate"],
        "view": rules["view"],
        "colour": rules["colour"],
        "working_side": rules["working_image_factor"] * max(radiograph_input_sizes),
        "not_in_browser": NOT_IN_BROWSER,
        "ct_rejection": CT_REJECTION,
    }


@dataclass(frozen=True, slots=True)
class WebBuild:
    """A finished build: its folder, build id and each model's graph record (role -> bundle name, record)."""

    folder: Path
    build_id: str
    graphs: dict[str, tuple[str, GraphRecord]]


def vendor_modules(cache: Path | None = None) -> Path:
    """``node_modules`` installed by ``npm ci`` from ``web/package-lock.json`` (exact pinned versions),
    kept in a cache folder named by the lock file's hash so a rebuild needs no network."""
    lock = WEB_SOURCE / "package-lock.json"
    if not lock.is_file():
        raise ChestlensInputError(WEB_SOURCE, "web/package-lock.json not found: build from a source checkout")
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    base = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chestlens" / "npm"
    folder = base / digest
    modules = folder / "node_modules"
    if all((modules / name).is_file() for name in VENDOR_FILES):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise ChestlensInputError(None, "npm not found: install Node.js (npm) to vendor onnxruntime-web")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(WEB_SOURCE / name, folder / name)
    done = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ChestlensInputError(lock, f"npm ci failed: {done.stderr.strip()[-400:]}")
    return modules


def build_web(
    out: Path,
    *,
    gate_rules: Mapping[str, Any],
    classifier: str = "xray3-screener",
    lungs: str | None = "lungs-segmenter",
) -> WebBuild:
    """Build the static offline screener into ``out`` (replaced if it exists; see the module docstring).

    Args:
        gate_rules: the quality gate's rules (:func:`chestlens.pipeline.browser_gate.browser_gate_rules`).
        classifier, lungs: bundles (names or folders) whose verified ``model.onnx`` the page runs.
    """
    missing = [name for name in (*APP_FILES, SERVICE_WORKER) if not (WEB_SOURCE / name).is_file()]
    if missing:
        raise ChestlensInputError(WEB_SOURCE, f"web source incomplete, missing {missing}")
    if lungs is None and needs_lungs(read_spec(classifier).preprocess):
        raise ChestlensInputError(classifier, "this classifier reads the lung fields: it needs --lungs")
    modules = vendor_modules()
    staging = out.with_name(f".{out.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "models").mkdir(parents=True)
    (staging / "vendor").mkdir()
    for name in APP_FILES:
        shutil.copy2(WEB_SOURCE / name, staging / name)
    for source, name in VENDOR_FILES.items():
        shutil.copy2(modules / source, staging / "vendor" / name)
    graphs, models, input_sizes = {}, {}, []
    for role, name in (("classifier", classifier), ("lungs", lungs)):
        if name is None:
            continue
        path = resolve_bundle(name)
        spec = read_spec(path)
        onnx_path = staging / "models" / f"{spec.name}.onnx"
        onnx_path.write_bytes(verified_graph(path, spec))
        record = spec.graph
        assert record is not None  # verified_graph refuses a bundle without one
        check = {
            "passed": True,
            "max_abs_diff_probabilities": record.max_abs_diff_probabilities,
            "tolerance": record.tolerance,
            "n_images": record.parity_n_images,
            "images": record.parity_images,
            "checked": "when the graph was put into the bundle (chestlens export graph, or training)",
        }
        sidecar_text = json.dumps(sidecar(spec, onnx_path, "fp32", check), indent=2) + "\n"
        write_text_atomic(onnx_path.with_suffix(".json"), sidecar_text)
        graphs[role] = (spec.name, record)
        input_sizes.append(spec.preprocess.input_size)
        models[role] = {
            "onnx": f"models/{onnx_path.name}",
            "sidecar": f"models/{onnx_path.with_suffix('.json').name}",
        }
    write_text_atomic(staging / GATE_FILE, json.dumps(gate_json(gate_rules, input_sizes), indent=1) + "\n")
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (staging / name).read_bytes())
    build_id = digest.hexdigest()[:16]
    index = {
        "build": build_id,
        "chestlens_version": __version__,
        "models": models,
        "gate": GATE_FILE,
        "files": ["./", *files, "models.json"],
        "disclaimer": RESEARCH_USE_DISCLAIMER,
    }
    write_text_atomic(staging / "models.json", json.dumps(index, indent=2) + "\n")
    worker = (WEB_SOURCE / SERVICE_WORKER).read_text().replace(BUILD_PLACEHOLDER, build_id)
    write_text_atomic(staging / SERVICE_WORKER, worker)
    if out.exists():
        shutil.rmtree(out)
    staging.replace(out)
    return WebBuild(out, build_id, graphs)
