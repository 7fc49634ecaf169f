"""Every ```python block of README.md and docs/user-guide.md runs as written (in a fresh namespace, from an
empty folder), and the README keeps what a newcomer needs first: the two set-up commands, a pointer to
the user guide, no paths of one machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "user-guide.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SET_UP = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/chestlens demo\n"
    'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/python -m pytest\n'
)


def python_blocks(text: str) -> list[str]:
    """The code of every fenced ```python block of ``text``, in order."""
    return PYTHON_BLOCK.findall(text)


BLOCKS = [
    (document, index, code)
    for document in (README, GUIDE)
    for index, code in enumerate(python_blocks(document.read_text(encoding="utf-8")), start=1)
]


def test_the_readme_has_python_examples():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 2


@pytest.mark.parametrize(("document", "index", "code"), BLOCKS, ids=[f"{d.name}-{i}" for d, i, _ in BLOCKS])
def test_python_block_runs(document, index, code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no file of the repository or the data root is at hand
    exec(compile(code, f"{document.name} python block {index}", "exec"), {"__name__": "__readme__"})
    capsys.readouterr()


def test_the_readme_starts_with_the_two_set_up_commands_and_points_to_the_guide():
    text = README.read_text(encoding="utf-8")
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block == SET_UP
    assert text.index("## Set up") < text.index("## Quick start")
    assert "(docs/user-guide.md)" in text
    assert "/work/" not in text and "/work/" not in GUIDE.read_text(encoding="utf-8")


def test_relative_links_point_at_files_of_the_repository():
    for document in (README, GUIDE):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", document.read_text(encoding="utf-8")):
            assert (document.parent / target).exists(), f"{document.name}: broken link {target}"
