"""Screening needs no PyTorch: importing chestlens, its readers and the screener never imports torch, and
the default screener screens real images with torch made unimportable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.inference

BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("torch is blocked in this test", name=name)
sys.meta_path.insert(0, NoTorch())
"""


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_imports_do_not_load_torch():
    modules = [
        "chestlens",
        "chestlens.io",
        "chestlens.pipeline.screener",
        "chestlens.pipeline.overlay",
        "chestlens.pipeline.dicom_out",
        "chestlens.serve.app",
        "chestlens.dicomnet.scp",
        "chestlens.cli",
    ]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('torch' in sys.modules)"
    assert run_python(code).strip() == "False"


def test_default_screener_screens_without_torch(pip_dicom):
    paths = [str(pip_dicom(name)) for name in ("RG1_UNCR.dcm", "CT_small.dcm", "RG3_UNCR.dcm")]
    code = BLOCK_TORCH + (
        "import json\nfrom chestlens.pipeline.screener import Screener\n"
        f"results = [Screener().screen(p).result for p in {paths!r}]\n"
        "print(json.dumps([[r.gate.accepted, r.classification is not None, r.runtime] for r in results]))"
    )
    assert json.loads(run_python(code).strip().splitlines()[-1]) == [
        [True, True, "onnx"],
        [True, False, "onnx"],
        [False, False, "onnx"],
    ]


def test_torch_runtime_without_torch_says_which_extra(tmp_path):
    code = BLOCK_TORCH + (
        "import sys\nfrom chestlens.cli import main\n"
        f"sys.argv = ['chestlens', 'predict', '--runtime', 'torch', '{tmp_path}']\nmain()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "pip install 'chestlens[train]'" in done.stderr and "Traceback" not in done.stderr


def test_training_commands_without_torch_name_the_extra(tmp_path):
    code = BLOCK_TORCH + (
        "import sys\nfrom chestlens.cli import main\n"
        f"sys.argv = ['chestlens', 'train', 'classify', '--config', '{tmp_path / 'none.yaml'}']\nmain()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "chestlens: error: chestlens train classify needs PyTorch (torch is not installed): "
        "install it with pip install 'chestlens[train]'"
    )
