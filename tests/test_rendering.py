"""The one template environment: HTML escaped as html.escape does, Markdown raw, missing values refused."""

from __future__ import annotations

import html

import pytest
from jinja2 import UndefinedError

from chestlens.evaluate.bootstrap import Estimate
from chestlens.rendering import macro, render

NASTY = "<script>alert('x')</script> & \"quoted\""


def test_html_is_escaped_like_html_escape():
    cell = str(macro("_macros.html", "label_cell")(NASTY))
    assert cell == f'<td class="l">{html.escape(NASTY)}</td>'
    undefined = str(macro("_macros.html", "estimate_cell")(Estimate(value=None, reason=NASTY)))
    assert undefined == f'<td class="undef">n/a ({html.escape(NASTY)})</td>'


def test_markdown_is_not_escaped():
    table = macro("_macros.md", "md_table")(["a & b"], [[NASTY]])
    assert table == f"| a & b |\n|---|\n| {NASTY} |\n"


def test_a_missing_value_is_an_error_not_an_empty_string():
    with pytest.raises(UndefinedError):
        render("slice_report.md")
