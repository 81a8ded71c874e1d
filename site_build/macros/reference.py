"""Macros for the reference pages and the checks: the default config, the PyTorch snippet, check figures."""

from __future__ import annotations

from html import escape

import yaml
from markupsafe import Markup

from engine.config import Config
from engine.snippet import pytorch_snippet as engine_snippet
from site_build.format import html_text
from site_build.macros.registry import MacroError, PageContext, macro


@macro
def check(ctx: PageContext, name: str) -> Markup:
    """The check figures of one record as a line of text (finite differences, PyTorch)."""
    ctx.record(name)
    return Markup(ctx.check_line(name))


@macro
def verification(ctx: PageContext) -> Markup:
    """One sentence: was this build's trace compared with PyTorch, and how closely."""
    text = ctx.checks.summary() if ctx.checks is not None else "not checked against PyTorch in this build"
    return html_text(text)


@macro(context=False)
def default_config() -> Markup:
    """The built-in defaults (equal to configs/default.yaml) as a YAML block, generated, never typed."""
    text = yaml.safe_dump(Config().to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True,
                          width=120)
    return Markup(f'<pre class="code"><code class="language-yaml">{escape(text)}</code></pre>')


@macro
def pytorch_snippet(ctx: PageContext, trace_file: str = "trace.json") -> Markup:
    """About 20 lines of PyTorch that reproduce this step from the site's trace.json."""
    if not isinstance(trace_file, str) or not trace_file.strip():
        raise MacroError(f"bad argument trace_file={trace_file!r} for pytorch_snippet(): give a file name such as "
                         "'trace.json'")
    code = engine_snippet(ctx.trace.config, trace_file)
    return Markup(f'<pre class="code"><code class="language-python">{escape(code)}</code></pre>')
