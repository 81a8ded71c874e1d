"""The reference pages' blocks: the records page's tables, placed with one line, read from the facts."""

from __future__ import annotations

from markupsafe import Markup, escape

from site_build.facts import ref
from site_build.macros.numbers import formula, shape
from site_build.macros.registry import PageContext, macro


@macro
def record_tables(ctx: PageContext) -> Markup:
    """The records page's body: a section per phase of the trace (ref.phases), saying what its records hold
    (ref.about), and a table of its records: name, op, shape and defining formula (a later block's record names the
    block-0 record whose formula it repeats)."""
    out = []
    for phase in ref.phases(ctx.trace):
        rows = ref.records(ctx.trace, phase)
        lines = ["| name | op | shape | formula |", "|---|---|---|---|"]
        for r in rows:
            defined = (f"the formula of `{escape(r.twin)}`, for this block" if r.twin
                       else formula(ctx, r.name, inline=True))
            lines.append(f"| `{escape(r.name)}` | {escape(r.op)} | {shape(ctx, r.name)} | {defined} |")
        out += [f"## {escape(phase.capitalize())} ({len(rows)} records)", f"{escape(ref.about(ctx.trace, phase))}.",
                "\n".join(lines)]
    return Markup("\n\n".join(out))
