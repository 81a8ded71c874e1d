"""Macros for the reference pages and the checks: the default config, the PyTorch snippet, check figures."""

from __future__ import annotations

import re
from html import escape

import yaml
from markupsafe import Markup

from engine.config import Config
from engine.snippet import pytorch_snippet as engine_snippet
from site_build.data.downloads import ships_trace
from site_build.macros.blocks import Other
from site_build.macros.registry import MacroError, PageContext, macro


@macro
def check(ctx: PageContext, name: str) -> Markup:
    """The check figures of one record as a line of text (finite differences, PyTorch)."""
    ctx.record(name)
    return Markup(ctx.check_line(name))


@macro
def verification(ctx: PageContext) -> Markup:
    """A few sentences: was this build's trace compared with PyTorch, and how closely; if not, what was checked
    and how to compare it (site_build.data.checks.Checks.summary)."""
    if ctx.checks is None:
        return Markup("This trace was not compared with PyTorch.")
    return Markup(ctx.checks.summary_html())


@macro
def trace_download(ctx: PageContext) -> Markup:
    """Where this site's trace is: a download link (`trace.json` at the site root), or, for a trace too big to
    ship (a GPT-2-sized run: gigabytes of values), how to write it locally (site_build.data.downloads.ships_trace).
    """
    total = sum(r.value.size for r in ctx.trace.records)
    if ships_trace(ctx.trace):
        return Markup(f'This site\'s trace is at the site root: <a href="trace.json" download><code>trace.json</code>'
                      f"</a> ({len(ctx.trace.records):,} records, {total:,} numbers).")
    return Markup(f"This site's trace holds {len(ctx.trace.records):,} records and {total:,} numbers "
                  f"({total * 8 / 1e9:.1f} GB as float64): too big to ship with the site, which carries what its "
                  "pages show (each table's CSV, the .npy file of each tensor up to 2 MB). Write the whole trace "
                  "where you want it with <code>handstep trace --config CONFIG --out trace.json</code>, CONFIG being "
                  "the config this site was built from; past two million numbers the values go to a binary file "
                  "beside it, which <code>engine.load_trace</code> reads.")


@macro
def default_config(ctx: PageContext) -> Markup:
    """The built-in defaults (equal to configs/default.yaml) as a YAML block, generated, never typed."""
    text = yaml.safe_dump(Config().to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True,
                          width=120)
    return ctx.place(Other(), f'<pre class="code"><code class="language-yaml">{escape(text)}</code></pre>')


@macro
def pytorch_snippet(ctx: PageContext, trace_file: str = "trace.json") -> Markup:
    """About 20 lines of PyTorch that reproduce this step from the site's trace.json."""
    if not isinstance(trace_file, str) or not trace_file.strip():
        raise MacroError(f"bad argument trace_file={trace_file!r} for pytorch_snippet(): give a file name such as "
                         "'trace.json'")
    code = engine_snippet(ctx.trace.config, trace_file, bos=int(ctx.trace["input_ids"][0, 0]))
    return ctx.place(Other(), f'<pre class="code"><code class="language-python">{escape(code)}</code></pre>')


_BLOCK = re.compile(r"(?:^|\.)L(\d+)\.")


@macro(context=False)
def first_block_twin(name: str) -> str:
    """The block-0 record a record of a later block repeats (`grad.L3.mlp.fc` → `grad.L0.mlp.fc`), or "" for a
    record of block 0 or outside the blocks: the records page writes the formula of a block once."""
    match = _BLOCK.search(str(name))
    if not match or match.group(1) == "0":
        return ""
    return str(name)[:match.start(1)] + "0" + str(name)[match.end(1):]
