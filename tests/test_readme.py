"""Every ```python block of README.md runs as written (in a fresh namespace, from an empty folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[str]:
    """The code of every fenced ```python block of ``text``, in order."""
    return PYTHON_BLOCK.findall(text)


def test_the_readme_has_python_examples():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text(encoding="utf-8")))))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    code = python_blocks(README.read_text(encoding="utf-8"))[index]
    monkeypatch.chdir(tmp_path)  # no file of the repository or the data root is at hand
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    capsys.readouterr()
