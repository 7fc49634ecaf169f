"""Jinja2 rendering of every report chestlens writes, from the templates in ``chestlens/templates``.

HTML pages (``*.html``: evaluation reports, the results page) are autoescaped; Markdown (``*.md``: model
cards, the shortcut audit, cross-validation reports) is not. Python computes every number; the templates
only lay them out, with the shared macros of ``_macros.html`` and ``_macros.md``. One formatter writes an
estimate everywhere: the ``estimate`` filter is :func:`chestlens.evaluate.bootstrap.estimate_text`.

Blocks swallow their own line (``trim_blocks``, ``lstrip_blocks``) and a template's last newline is kept,
so a Markdown template reads line for line like its output.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    nodes,
    pass_eval_context,
    select_autoescape,
)
from markupsafe import Markup


@pass_eval_context
def _escape_html(eval_ctx: nodes.EvalContext, value: Any) -> Any:
    """Autoescape as :func:`html.escape` does (``&quot;``, ``&#x27;``), so pages keep their bytes."""
    if eval_ctx.autoescape and not hasattr(value, "__html__"):
        return Markup(html.escape(str(value)))
    return value


@cache
def environment() -> Environment:
    """The one template environment (strict: an undefined name is an error, never an empty string)."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate import tables
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.evaluate.results import POOLED_AUC_SCOPE

    env = Environment(
        loader=PackageLoader("chestlens", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_escape_html,
    )
    env.filters["estimate"] = estimate_text
    env.filters["json"] = json.dumps
    env.globals.update(
        research_use_disclaimer=RESEARCH_USE_DISCLAIMER,
        within_source_intro=tables.WITHIN_SOURCE_INTRO,
        within_source_head=tables.WITHIN_SOURCE_HEAD,
        strata_head=tables.STRATA_HEAD,
        not_measured=tables.NOT_MEASURED,
        within_source_rows=tables.within_source_rows,
        strata_rows=tables.strata_rows,
        recipe_head=tables.RECIPE_HEAD,
        pooled_auc_scope=POOLED_AUC_SCOPE,
        zip=zip,
    )
    return env


def render(template: str, **context: Any) -> str:
    """The text of ``template`` (a name under ``chestlens/templates``) with ``context``."""
    return environment().get_template(template).render(**context)


def macro(template: str, name: str) -> Callable[..., str]:
    """Macro ``name`` of ``template``, callable from Python (its output as text)."""
    return getattr(environment().get_template(template).module, name)


def macro_lines(template: str, name: str, *args: Any, **kwargs: Any) -> list[str]:
    """The output of macro ``name`` of ``template`` as lines (``"\\n".join`` gives it back)."""
    return str(macro(template, name)(*args, **kwargs)).split("\n")
