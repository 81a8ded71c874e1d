"""Macros for the forward pages: the tables and worked listings a page would otherwise build with a loop.

    {{ vocab_table() }}                                  the vocabulary, id and token (embed.vocab_rows)
    {{ position_tables() }}                              each text's inputs and targets, position by position
    {{ norm_rows() }}                                    the worked LayerNorm (RMSNorm) row, element by element
    {{ softmax_rows() }}                                 the worked softmax row of head 0, entry by entry
    {{ strongest_keys() }}                               the key each head weights most, for every query
    {{ kv_groups() }}                                    which query heads read each key/value head (Llama)

The figures come from the facts the pages state (site_build/facts: embed, ln, llama_fwd, attn); the numbers a
table shows inline come through `value`, which marks their record as shown.
"""

from __future__ import annotations

import numpy as np
from markupsafe import Markup, escape

from site_build.facts import attn, embed, llama_fwd, ln
from site_build.facts.run import H
from site_build.format import html_words
from site_build.macros.numbers import num, token, value
from site_build.macros.registry import PageContext, macro
from site_build.macros.text import and_list, text_name

VDOTS = r"&\;\;\vdots"  # the row of an aligned listing where a run of elements is left out


def _aligned(rows: list[str | None]) -> Markup:
    r"""A `$$` block of `aligned` rows, one a line and `\\` between, `\vdots` for None (a run left out)."""
    last = len(rows) - 1
    lines = "".join(f"{VDOTS if r is None else r} {'' if k == last else chr(92) * 2}\n" for k, r in enumerate(rows))
    return Markup(f"$$\n\\begin{{aligned}}\n{lines}\\end{{aligned}}\n$$")


@macro
def vocab_table(ctx: PageContext) -> Markup:
    """The vocabulary as a table of id and token: every entry, or the first and last with a row of ⋮ between."""
    rows = [f"| {escape(i)} | {html_words(entry)} |" for i, entry in embed.vocab_rows(ctx.trace)]
    return Markup("\n".join(["| id | token |", "|---:|:---|", *rows]))


@macro
def position_tables(ctx: PageContext) -> Markup:
    """Each text's table of inputs and targets, one row per position (under the text's name when the batch holds
    several)."""
    texts = int(np.shape(ctx.trace["input_ids"])[0])
    out = []
    for b in range(texts):
        lines = [f"**{text_name(b, capital=True)}:**", ""] if texts > 1 else []
        lines += ["| position $t$ | input token | input id | target token | target id |", "|---:|:---|---:|:---|---:|"]
        lines += [f"| {p.t} | {html_words(p.input)} | {p.input_id} | {html_words(p.target)} | {p.target_id} |"
                  for p in embed.pairs(ctx.trace, b)]
        out.append("\n".join(lines))
    return Markup("\n\n".join(out))


@macro
def norm_rows(ctx: PageContext) -> Markup:
    r"""The worked row of block 0's `ln_1` element by element (those `ln.listing` writes out): LayerNorm's
    $(x - \mu)/\sigma$, or a Llama run's RMSNorm $x/\sqrt{\nu + \epsilon}$."""
    trace, r = ctx.trace, ln.row(ctx.trace)
    rms = "L0.ln_1.ms" in trace
    under = num(llama_fwd.rms(trace)) if rms else num(ln.sd(trace))
    minus = "" if rms else f" - ({num(ln.mu(trace))})"
    return _aligned([None if j is None else
                     f"\\hat x_{{ {r},{j} }} &= \\frac{{ {num(ln.x(trace, j))}{minus} }}{{ {under} }} = "
                     f"{num(ln.xhat(trace, j))}" for j in ln.listing(trace)])


@macro
def softmax_rows(ctx: PageContext) -> Markup:
    """The worked row of head 0's attention weights entry by entry (those `attn.listing` writes out): each
    exponential after subtracting the row's largest score, over the row's sum; a masked entry is 0."""
    trace, t = ctx.trace, attn.row(ctx.trace)
    total, top = num(attn.softmax_sum(trace)), num(attn.row_max(trace))
    rows: list[str | None] = []
    for e in attn.softmax_row(trace):
        if e is None:
            rows.append(None)
        elif e.visible:
            rows.append(f"A_{{ {t},{e.j} }} &= \\frac{{ e^{{ {num(e.score)} - ({top}) }} }}{{ {total} }} = "
                        f"\\frac{{ {num(e.exp)} }}{{ {total} }} = {num(e.weight)}")
        else:
            rows.append(f"A_{{ {t},{e.j} }} &= \\frac{{e^{{-\\infty}}}}{{ {total} }} = 0")
    return _aligned(rows)


@macro
def strongest_keys(ctx: PageContext) -> Markup:
    """A table: for each real position of the first text, the key each head weights most, with its weight."""
    heads = H(ctx.trace)
    lines = ["| query position | " + "".join(f" head {h}: strongest key (weight) |" for h in range(heads)),
             "|:---|" + ":---|" * heads]
    for q, keys in attn.strongest(ctx.trace):
        cells = "".join(f" {k} “{token(ctx, k)}” ({value(ctx, 'L0.attn.weights', (0, h, q, k), digits=2)}) |"
                        for h, k in keys)
        lines.append(f"| {q} “{token(ctx, q)}” | {cells}")
    return Markup("\n".join(lines))


@macro
def kv_groups(ctx: PageContext) -> Markup:
    """A Llama run's table of key/value heads, each with the query heads that read it."""
    rows = [f"| {grp.g} | {and_list(grp.heads)} |" for grp in llama_fwd.groups(ctx.trace)]
    return Markup("\n".join(["| key/value head | query heads that read it |", "|:---|:---|", *rows]))
