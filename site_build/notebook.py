"""The notebook: the site's pages in order, each followed by plain NumPy that recomputes its steps from scratch.

    handstep notebook --out step.ipynb        # step.ipynb and step.trace.json (+ step.trace.bin for a big trace)

One section per page: the page's title and prose (its Jinja rendered with the build's macros, the Markdown and its
$math$ kept, each block of the page (macros.blocks: tables, charts, worked arithmetic) replaced by its one-line note),
then a code cell per step that the page is the first to show (moved later when one of its inputs comes later), each
ending in `check(name)`, an assertion that the result equals the trace's record to 1e-12. The code is
engine.numpy_steps, the same lines the pages show under their formulas; it needs NumPy only (never the engine). The
initial weights and the batch come from the trace file beside the notebook, so it runs offline, top to bottom, in
Jupyter, VS Code or Colab.

The file is written as nbformat 4.5 JSON with the standard library; the tests validate it with nbformat and run
it with nbclient.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from engine.numpy_steps import computed, forward_function, numpy_lines, parameters, updated_weights_function
from site_build.macros.blocks import SLOT_RE, Block, Group, Note
from site_build.macros.registry import RunContext
from site_build.pages import Page
from site_build.render.compile import content_environment
from site_build.render.jinja import PageResult, link_map, render_page
from site_build.render.markdown import CALLOUTS, make_parser

SITE_NOTEBOOK = "notebook.ipynb"  # the site's copy, beside its trace.json
SITE_TRACE = "trace.json"
PROSE_SECTIONS = ("Introduction", "Forward pass", "Backward pass", "Optimization")  # pages the notebook follows
TOLERANCE = 1e-12
NOTEBOOK_MARK = "handstep"  # metadata key: a notebook handstep wrote (and may replace)

SETUP = '''import json
from pathlib import Path

import numpy as np

TRACE = Path({trace!r})  # the trace file written beside this notebook (in Colab: upload it first)


def load_trace(path):
    """Every record of a handstep trace file, by name, as a NumPy array."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    values = data.get("values")  # a big trace keeps its values in a binary file beside it
    blob = np.fromfile(Path(path).with_name(values["file"]), dtype="<f8") if values else None
    special = {{"inf": np.inf, "-inf": -np.inf, "nan": np.nan}}  # JSON has no infinities

    def decode(x):
        return [decode(y) for y in x] if isinstance(x, list) else special.get(x, x) if isinstance(x, str) else x

    records = {{}}
    for r in data["records"]:
        dtype = np.int64 if r["dtype"] == "int64" else np.float64
        if blob is not None:
            flat = blob[r["offset"]:r["offset"] + int(np.prod(r["shape"], dtype=np.int64))]
            records[r["name"]] = flat.astype(dtype).reshape(r["shape"])
        else:
            records[r["name"]] = np.array(decode(r["value"]), dtype=dtype)
    return records


def check(name, tol={tol!r}):
    """Assert that our v[name] equals the trace's record to within tol, and say so."""
    ours, want = np.asarray(v[name]), T[name]
    assert ours.shape == want.shape, f"{{name}}: shape {{ours.shape}}, but the trace has {{want.shape}}"
    with np.errstate(invalid="ignore"):
        diff = np.where(ours == want, 0.0, np.abs(ours - want))  # equal infinities (the causal mask) count as 0
    worst = float(diff.max()) if diff.size else 0.0
    assert worst <= tol, f"{{name}} differs from the trace by {{worst:.3g}} (more than {{tol:g}})"
    print(f"{{name}} = the trace's, to {{worst:.1e}}")


T = load_trace(TRACE)
PARAMETERS = {parameters!r}
v = {{name: T[name] for name in PARAMETERS + {inputs!r}}}  # the initial weights and the batch
print(f"{{len(T)}} records in {{TRACE}}; {{len(PARAMETERS)}} weight tensors loaded")'''


# -- the prose of each page ---------------------------------------------------------------------------------------
@dataclass
class PageText:
    page: Page
    markdown: str  # the page's prose for a Markdown cell


def render_pages(run: RunContext, pages: list[Page], results: dict[str, PageResult] | None = None,
                 kept: Callable[[str, Callable[[], str]], str] | None = None
                 ) -> tuple[list[PageText], dict[str, set[str]]]:
    """Every page as notebook Markdown, and {record: pages that show it}. A page the site's build has rendered
    (`results`, render.jinja.PageResult) is taken from there; any other is rendered here, as the build renders it
    (the `handstep notebook` command). `kept(source, make)` may keep each page's Markdown (the build's page cache)."""
    env, md, links = content_environment(), make_parser(), link_map(pages)
    md.core.ruler.enableOnly(["normalize", "block"])  # the notebook reads the blocks only: no inline parsing
    out: list[PageText] = []
    shown: dict[str, set[str]] = {}
    for page in pages:
        result = (results or {}).get(page.source) or render_page(page, run, links, env, md)
        for name in result.shown:
            shown.setdefault(name, set()).add(page.source)
        text = kept(page.source, partial(notebook_markdown, result)) if kept else notebook_markdown(result)
        out.append(PageText(page, text))
    return out, shown


def notebook_markdown(result: PageResult) -> str:
    """A rendered page as Markdown a notebook renders: each block its note (each HTML block of the page one note),
    a callout a quote; links to other pages keep only their text."""
    lines = [_line(item, result.blocks) for item in result.prose]
    out: list[str] = []
    fence = ""
    quote = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = "" if fence and stripped.startswith(fence) else (fence or stripped[:3])
        if fence:
            out.append(line)
            continue
        callout = re.match(r"^\s*:::\s*(\w+)?\s*(.*)$", line)
        if callout:
            if quote and not callout.group(1):
                quote = False
                out.append("")
                continue
            kind, title = callout.group(1) or "", callout.group(2).strip()
            quote = True
            out.append(f"> **{title or CALLOUTS.get(kind, kind)}**")
            out.append(">")
            continue
        if re.fullmatch(r"\{[#.][^}]*\}", stripped):  # an attribute line ({#id}, {.class})
            continue
        if line.startswith("#"):
            line = "#" + line  # the page's ## sections sit under its own ## title
        out.append(("> " + line if line else ">") if quote else line)
    body = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", _unlinked(body)).strip()


# A link to another page (or to this one), its text on one line or more (not across a blank line or a bracket)
LINK_RE = re.compile(r"\[((?:[^\[\]\n]|\n(?![ \t>]*\n))+)\]\((?:[^)\s]*\.md)?(?:#[^)\s]*)?\)")
FENCE_RE = re.compile(r"^[ \t>]*(```|~~~).*?^[ \t>]*\1[^\n]*$", re.M | re.S)


def _unlinked(body: str) -> str:
    """The text with each link to a page (its .md file, or #an-id) its text alone, outside fenced code: a link
    whose text runs over two lines too (a per-line pass left it as `[text](page.md)`, a dead link in Jupyter)."""
    out, start = [], 0
    for fence in FENCE_RE.finditer(body):
        out.append(LINK_RE.sub(r"\1", body[start:fence.start()]))
        out.append(fence.group(0))
        start = fence.end()
    out.append(LINK_RE.sub(r"\1", body[start:]))
    return "".join(out)


def group_note(notes: list[Note]) -> str:
    """The one note for the blocks Markdown reads as one HTML block (a Group: a matrix and the one right after it, a
    calculation and a line of text under it): a formula's when the group starts with one; none when it holds a
    NumPy line (the code cell follows); else the first calculation's; else the tables of every record it shows; else
    the first chart's; else the first summary of a <details>; else what a table or code the notebook does not
    reproduce is; nothing for a closing tag alone."""
    notes = [n for n in notes if n.kind != "end"]
    if not notes:
        return ""
    if notes[0].kind == "math":
        return f"\n{notes[0].text}\n"
    if any(n.kind == "code" for n in notes):
        return ""
    for note in notes:
        if note.kind == "calc":
            where = f" at [{note.text}]" if note.text else ""
            return f"*(On the site: the arithmetic of `{note.records[0]}`{where}, worked out with the real numbers.)*"
    names = list(dict.fromkeys(name for n in notes if n.kind == "tables" for name in n.records))
    if len(names) == 1:
        return f'*(On the site: the table of `{names[0]}`; here it is `v["{names[0]}"]`.)*'
    if len(names) > 4:
        return f"*(On the site: a table of {len(names)} records, from `{names[0]}` to `{names[-1]}`.)*"
    if names:
        listed = ", ".join(f"`{n}`" for n in names)
        values = ", ".join(f'`v["{n}"]`' for n in names)
        return f"*(On the site: the tables of {listed}; here they are {values}.)*"
    for kind, words in (("chart", "the chart “{}”"), ("more", "{}"), ("other", "{}")):
        note = next((n for n in notes if n.kind == kind and (n.text or kind != "other")), None)
        if note is not None:
            return f"*(On the site: {words.format(html.escape(note.text, quote=False))}.)*"  # plain text: <bos>
    return "*(On the site: a table or a chart.)*"


def _line(item: str | Group, blocks: dict[int, Block]) -> str:
    """A line of the page's text, each block in it its note; or the one note of an HTML block."""
    if isinstance(item, Group):
        return group_note([blocks[k].note() if isinstance(k, int) else _page_note(k) for k in item.items])
    return SLOT_RE.sub(lambda m: _inline(blocks[int(m.group(1))].note()), item)


def _inline(note: Note) -> str:
    """A block in the text: a formula's math, a value's number, else its note."""
    return note.text if note.kind in ("math", "number") else group_note([note])


def _page_note(text: str) -> Note:
    """The page's own HTML in an HTML block (its text, not a macro's block: `<details class="more">` around tables):
    a <details> says what its summary says."""
    if "<details" not in text:  # a closing tag alone (the end of a fold-out a block of sections/ opened) says nothing
        return Note("other") if re.sub(r"</?[a-zA-Z][^>]*>", "", text).strip() else Note("end")
    summary = re.search(r"<summary>(.*?)</summary>", text, re.S)
    return Note("more", html.unescape(re.sub(r"<[^>]+>", "", summary.group(1))).strip() if summary else "more tables")


# -- where each record's code goes --------------------------------------------------------------------------------
def placement(trace: Any, pages: list[Page], shown: dict[str, set[str]]) -> dict[str, int]:
    """{record: index of the page whose section computes it}: the first page (in site order) that shows it, or a
    later one when one of its inputs is computed later (a record no page shows goes where its last input is, or to the
    first page)."""
    order = {p.source: k for k, p in enumerate(pages)}
    at: dict[str, int] = {}
    updates: list[int] = []
    for rec in trace.records:
        if not computed(rec):
            continue
        first = min((order[s] for s in shown.get(rec.name, ()) if s in order), default=-1)
        after = [at[n] for n in rec.inputs if n in at]
        if rec.op == "forward":  # the forward pass on the updated weights: after every update
            after += updates
        at[rec.name] = max([first, *after, 0])  # shown nowhere and made of loaded values only: the first page
        if rec.name.startswith("updated."):
            updates.append(at[rec.name])
    return at


def step_groups(trace: Any, names: list[str]) -> list[list[str]]:
    """The records of one section as code cells: one cell a step, an optimizer's records one cell per parameter."""
    groups: list[list[str]] = []
    by_param: dict[str, list[str]] = {}
    for name in names:
        rec = trace.record(name)
        if rec.phase == "optimizer":
            param = name.split(".", 2)[-1] if name.startswith("opt.") else name.split(".", 1)[-1]
            if param not in by_param:
                by_param[param] = []
                groups.append(by_param[param])
            by_param[param].append(name)
        else:
            groups.append([name])
    return groups


def code_for(trace: Any, names: list[str]) -> str:
    lines: list[str] = []
    for name in names:
        rec = trace.record(name)
        if rec.op == "forward" and "def forward(v):" not in lines:
            lines += ["# the forward pass as one function, run again on the updated weights",
                      *forward_function(trace), "", "", *updated_weights_function(trace), "", ""]
        lines.append(f"# {name}: {rec.op}" + (f" of {', '.join(rec.inputs)}" if rec.inputs else ""))
        lines += numpy_lines(trace, name)
        lines.append(f"check({json.dumps(name)})")
    return "\n".join(lines)


# -- the notebook -------------------------------------------------------------------------------------------------
def notebook(trace: Any, texts: list[PageText], shown: dict[str, set[str]], trace_file: str) -> dict[str, Any]:
    """The notebook as nbformat 4.5 JSON data."""
    pages = [t.page for t in texts]
    at = placement(trace, pages, shown)
    cells = [_markdown(_intro(trace, trace_file)),
             _code(SETUP.format(trace=trace_file, tol=TOLERANCE, parameters=parameters(trace),
                                inputs=[r.name for r in trace.records if r.op == "input"]))]
    for k, text in enumerate(texts):
        names = [r.name for r in trace.records if at.get(r.name) == k]
        if text.page.section not in PROSE_SECTIONS and not names:
            continue
        cells.append(_markdown(f"## {text.page.title}\n\n{text.markdown}".strip()))
        for group in step_groups(trace, names):
            cells.append(_code(code_for(trace, group)))
    skipped = [r.name for r in trace.records if r.phase in ("train",)]
    cells.append(_markdown(_outro(trace, skipped)))
    for n, cell in enumerate(cells):
        cell["id"] = f"cell-{n:04d}"
    cfg = trace.config
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            NOTEBOOK_MARK: {"trace": trace_file, "seed": cfg.get("seed"), "optimizer": cfg["optimizer"]["name"]},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def _markdown(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(text)}


def _code(text: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": _lines(text)}


def _intro(trace: Any, trace_file: str) -> str:
    cfg = trace.config
    m, o = cfg["model"], cfg["optimizer"]
    texts = "; ".join(f"“{t}”" for t in cfg["data"]["texts"])
    model = "Llama-style model" if m.get("arch") == "llama" else "GPT-2"
    return (f"# One training step of a tiny {model}, recomputed in NumPy\n\n"
            f"This notebook follows the pages of the handstep site. After each page's text comes plain NumPy that "
            f"computes that page's steps from the earlier ones, and `check(name)` asserts that the result equals the "
            f"record of the same name in the trace to {TOLERANCE:g}. Nothing here imports handstep: the initial "
            f"weights and the input ids are read from `{trace_file}`, which must sit beside this notebook (in Colab, "
            f"upload it first). Run all cells, top to bottom.\n\n"
            f"The run: seed {cfg.get('seed')}, {m['n_layers']} block(s), {m['n_heads']} head(s), d_model "
            f"{m['d_model']}, d_ff {m['d_ff']}, vocabulary of {len(m['vocab'])} words, optimizer {o['name']} "
            f"(learning rate {o['lr']}), text(s): {texts}.\n\n"
            "Every value lives in the dict `v`, by its record name; `T` holds the trace's values.")


def _outro(trace: Any, skipped: list[str]) -> str:
    text = ("## Done\n\nEvery step of the forward pass, the loss, every gradient and the optimizer's update were "
            "recomputed from the initial weights and checked against the trace.")
    if skipped:
        text += (" The training-run records (`" + "`, `".join(skipped[:3]) + ("`, …" if len(skipped) > 3 else "`")
                 + f") summarise {trace.config.get('train_steps', 0)} further steps and are not recomputed here.")
    return text


def notebook_json(nb: dict[str, Any]) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def make_notebook(trace: Any, pages: list[Page], trace_file: str, checks: Any = None,
                  results: dict[str, Any] | None = None,
                  kept: Callable[[str, Callable[[], str]], str] | None = None) -> str:
    """The notebook's JSON text for `trace`, following `pages` (as the build rendered them, `results`, where it
    did)."""
    run = RunContext(trace, checks, {p.step: p.url for p in pages if p.step})
    try:
        texts, shown = render_pages(run, pages, results, kept)
    finally:
        run.close()
    return notebook_json(notebook(trace, texts, shown, trace_file))


def is_notebook(path: Path) -> bool:
    """An `is_ours` test for `--out`: a notebook handstep wrote (Jupyter keeps the metadata when it saves)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(64 << 20))
        return isinstance(data, dict) and NOTEBOOK_MARK in data.get("metadata", {})
    except (OSError, ValueError):
        return False


# -- the site's copy ----------------------------------------------------------------------------------------------
def notebook_files(run: RunContext, pages: list[Page], results: dict[str, Any],
                   kept: Callable[[str, Callable[[], str]], str] | None = None) -> dict[str, bytes]:
    """{"notebook.ipynb": ...} for the site (it reads the site's trace.json), made from the pages the build
    rendered (each page's Markdown `kept` by the build's page cache)."""
    text = make_notebook(run.trace, pages, SITE_TRACE, run.checks, results, kept)
    return {SITE_NOTEBOOK: text.encode("utf-8")}
