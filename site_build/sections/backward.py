"""Macros for the backward pages: what a page there would otherwise build with a loop.

    {{ gradient_table() }}   every parameter's gradient, one row each: its shape, its norm, its largest entry in size
"""

from __future__ import annotations

from markupsafe import Markup, escape

from site_build.facts import dembed
from site_build.macros.numbers import norm, num, shape
from site_build.macros.registry import PageContext, macro


@macro
def gradient_table(ctx: PageContext) -> Markup:
    """Every parameter's gradient record, in the trace's order (`dembed.parameters`), as a Markdown table: its name,
    its shape with axis names, its norm (`norm`: the square root of the sum of its squares) and its largest entry
    in size, each number as `num` writes it. No record is marked shown: the table states norms, not entries."""
    rows = ["| parameter | shape | norm of the gradient | largest entry in size |", "|:---|:---|---:|---:|"]
    for p in dembed.parameters(ctx.trace):
        name = p["name"]
        rows.append(f"| `{escape(name)}` | {shape(ctx, name)} | {escape(num(norm(ctx, name)))} | "
                    f"{escape(num(p['largest']))} |")
    return Markup("\n".join(rows))
