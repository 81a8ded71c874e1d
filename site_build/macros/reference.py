"""Macros for the reference pages and the checks: the default config, the PyTorch snippet, check figures."""

from __future__ import annotations

import re
from html import escape
from typing import Any

import numpy as np
import yaml
from markupsafe import Markup

from engine.config import Config
from engine.snippet import pytorch_snippet as engine_snippet
from site_build.data.downloads import ships_trace
from site_build.format import format_number
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
    return ctx.place(Other("the default config, as YAML"),
                     f'<pre class="code"><code class="language-yaml">{escape(text)}</code></pre>')


@macro
def pytorch_snippet(ctx: PageContext, trace_file: str = "trace.json") -> Markup:
    """About 20 lines of PyTorch that reproduce this step from the site's trace.json."""
    if not isinstance(trace_file, str) or not trace_file.strip():
        raise MacroError(f"bad argument trace_file={trace_file!r} for pytorch_snippet(): give a file name such as "
                         "'trace.json'")
    code = engine_snippet(ctx.trace.config, trace_file, bos=int(ctx.trace["input_ids"][0, 0]))
    what = "a PyTorch script that repeats this step from `trace.json` and prints how far each tensor is from these"
    return ctx.place(Other(what),
                     f'<pre class="code"><code class="language-python">{escape(code)}</code></pre>')


_BLOCK = re.compile(r"(?:^|\.)L(\d+)\.")


@macro(context=False)
def first_block_twin(name: str) -> str:
    """The block-0 record a record of a later block repeats (`grad.L3.mlp.fc` → `grad.L0.mlp.fc`), or "" for a
    record of block 0 or outside the blocks: the records page writes the formula of a block once."""
    twin = block_twin(name, 0)
    return "" if twin == name else twin


def block_twin(name: str, block: int) -> str:
    """The record of block `block` that a record of any block repeats (`grad.L3.mlp.fc`, 0 → `grad.L0.mlp.fc`;
    itself for a record of that block), or "" for a record outside the blocks."""
    match = _BLOCK.search(str(name))
    if not match:
        return ""
    return str(name)[:match.start(1)] + str(block) + str(name)[match.end(1):]


# -- two architectures side by side (the GPT-2 vs Llama page) --------------------------------------------------------
PARAM_GROUPS = (("token table", ("wte",)), ("position table", ("wpe",)), ("attention", (".attn.",)),
                ("feed-forward", (".mlp.",)), ("normalisations", ("ln_",)), ("output layer", ("lm_head.",)))


def _group_of(name: str) -> str:
    for group, marks in PARAM_GROUPS:
        if any(name == m or (m.endswith((".", "_")) and m in name) for m in marks):
            return group
    return "other"


def run_figures(trace: Any) -> dict[str, Any]:
    """What the comparison table says about one run: its sizes, its parameters by group, its records by phase, its
    kinds of operation and its losses (all read from the trace)."""
    from site_build.macros.optimizer import parameters

    m = trace.config["model"]
    groups: dict[str, int] = {}
    for name in parameters(trace):
        groups[_group_of(name)] = groups.get(_group_of(name), 0) + int(trace[name].size)
    phases: dict[str, int] = {}
    for rec in trace.records:
        phases[rec.phase] = phases.get(rec.phase, 0) + 1
    train = np.asarray(trace["train.loss"]) if "train.loss" in trace else None
    return {"arch": m.get("arch", "gpt2"), "d_model": m["d_model"], "n_heads": m["n_heads"],
            "n_kv_heads": m.get("n_kv_heads") or m["n_heads"], "d_ff": m["d_ff"], "n_layers": m["n_layers"],
            "vocab": len(trace.labels["vocab"]), "tied": bool(m.get("tie_embeddings", True)),
            "params": sum(groups.values()), "groups": groups, "tensors": len(parameters(trace)), "phases": phases,
            "ops": {rec.op for rec in trace.records}, "loss": float(trace["loss"]),
            "after": float(trace["after.loss"]) if "after.loss" in trace else None,
            "trained": float(train[-1]) if train is not None and train.size > 1 else None,
            "steps": int(train.size - 1) if train is not None else 0, "texts": list(trace.config["data"]["texts"])}


@macro
def arch_comparison(ctx: PageContext) -> Markup:
    """This run beside the other run of `build --compare` (a GPT-2 run beside a Llama run, say): sizes, parameters
    by group, records, kinds of operation and losses, one column each; this run alone, with a note, without one."""
    runs = [("this run", run_figures(ctx.trace))]
    if ctx.other is not None:
        runs.append(("the other run", run_figures(ctx.other)))
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cells: list[Any]) -> None:
        rows.append((label, [c if isinstance(c, str) else format_number(c) for c in cells]))

    figs = [f for _, f in runs]
    row("architecture", [f"<code>{escape(f['arch'])}</code>" for f in figs])
    row("width d_model", [f["d_model"] for f in figs])
    row("query heads, key/value heads", [f"{f['n_heads']}, {f['n_kv_heads']}" for f in figs])
    row("feed-forward width d_ff", [f["d_ff"] for f in figs])
    row("blocks", [f["n_layers"] for f in figs])
    row("vocabulary", [f["vocab"] for f in figs])
    row("output layer", ["the token table (tied)" if f["tied"] else "its own matrix" for f in figs])
    row("parameters", [f["params"] for f in figs])
    for group, _ in PARAM_GROUPS:
        if any(group in f["groups"] for f in figs):
            row(f"… {group}", [f["groups"].get(group, 0) for f in figs])
    row("parameter tensors", [f["tensors"] for f in figs])
    for phase in ("forward", "backward", "optimizer"):
        row(f"records, {phase}", [f["phases"].get(phase, 0) for f in figs])
    row("kinds of operation", [len(f["ops"]) for f in figs])
    if len(figs) == 2:
        for k, f in enumerate(figs):
            only = sorted(f["ops"] - figs[1 - k]["ops"])
            cells = ["", ""]
            cells[k] = ", ".join(f"<code>{escape(op)}</code>" for op in only) or "none"
            row(f"operations only in {runs[k][0]}", cells)
    row("loss before the step", [f"{f['loss']:.4f}".replace("-", "\u2212") for f in figs])
    row("loss after the step", ["" if f["after"] is None else f"{f['after']:.4f}".replace("-", "\u2212") for f in figs])
    if any(f["trained"] is not None for f in figs):
        row("loss after the training run", ["" if f["trained"] is None else
                                             f"{f['trained']:.4f} ({f['steps']} steps)".replace("-", "\u2212")
                                             for f in figs])
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label, _ in runs)
    body = "".join(f'<tr><th scope="row">{escape(label)}</th>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                   for label, cells in rows)
    note = ""
    if ctx.other is None:
        note = ('<p class="compare-note">Only this run: build with <code>--compare OTHER.yaml</code> (a config of the '
                "other architecture on the same text) to fill a second column from that run's trace.</p>")
    elif figs[0]["texts"] != figs[1]["texts"]:
        note = ('<p class="compare-note">The two runs read different texts, so their losses are not comparable; '
                "give both configs the same <code>data.texts</code>.</p>")
    return ctx.place(Other("a table of GPT-2 and Llama side by side"),
                     f'<div class="table-wrap"><table class="arch-comparison"><thead><tr>'
                     f'<th scope="col"></th>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}')
