"""Chart macros: SVG drawn at build time from the trace (site_build.charts), no JavaScript needed.

    {{ architecture() }}                 the model drawn from the config, boxes linking to step pages
    {{ attention_heatmaps() }}           one heatmap per head of L0.attn.weights
    {{ attention_heatmaps("grad.L0.attn.weights") }}
    {{ gradient_chart() }}  {{ update_chart() }}  {{ update_histogram() }}
    {{ loss_chart() }}  {{ before_after_chart() }}

`step_map(ctx, step)` is the compact map the build puts at the top of every step page.
"""

from __future__ import annotations

from markupsafe import Markup

from site_build import charts
from site_build.macros.registry import MacroError, PageContext, check_bool, check_int, macro
from site_build.steps import STEP_KEYS

MAX_BINS = 200  # a histogram is 360 units wide: more bins than this would be thinner than a pixel


def _figure(svg: str) -> Markup:
    return Markup(f'<figure class="chart-figure">{svg}</figure>')


@macro
def architecture(ctx: PageContext, current: str | None = None, small: bool = False) -> Markup:
    """The model as configured; every box links to the page that explains it."""
    if current is not None and current not in STEP_KEYS:
        raise MacroError(f"bad argument current={current!r} for architecture(): give one of {', '.join(STEP_KEYS)}")
    check_bool("small", small, "architecture")
    return _figure(charts.architecture(ctx.trace, current=current, links=ctx.step_links or None, small=small))


def step_map(ctx: PageContext, step: str) -> str:
    """The compact map shown at the top of every step page, `step` highlighted."""
    svg = charts.architecture(ctx.trace, current=step, links=ctx.step_links or None, small=True)
    return f'<details class="step-map" open><summary>Where this step sits</summary>{svg}</details>'


@macro
def attention_heatmaps(ctx: PageContext, name: str = "L0.attn.weights", batch: int = 0) -> Markup:
    """One heatmap per head of an attention-shaped record."""
    rec = ctx.record(name)
    if list(rec.axes) != ["batch", "heads", "tokens", "keys"]:
        raise MacroError(f"attention_heatmaps needs a record with axes (batch, heads, tokens, keys), such as "
                         f"'L0.attn.weights'; '{name}' has ({', '.join(rec.axes)})")
    check_int("batch", batch, rec.value.shape[0], name)
    heads = rec.value.shape[1]
    svgs = "".join(charts.heatmap(ctx.trace, name, h, batch) for h in range(heads))
    return Markup(f'<div class="chart-row">{svgs}</div>')


@macro
def gradient_chart(ctx: PageContext) -> Markup:
    items = [(name.removeprefix("grad."), norm, top) for name, norm, top in charts.grad_norms(ctx.trace)]
    return _figure(charts.bars(items, "Gradient size per parameter tensor", "|∂L/∂θ|"))


@macro
def update_chart(ctx: PageContext) -> Markup:
    items = [(name.removeprefix("updated."), norm, top) for name, norm, top in charts.update_sizes(ctx.trace)]
    return _figure(charts.bars(items, "Update size per parameter tensor", "|θ' − θ|"))


@macro
def update_histogram(ctx: PageContext, per_lr: bool = True, bins: int = 30) -> Markup:
    check_bool("per_lr", per_lr, "update_histogram")
    check_int("bins", bins, MAX_BINS + 1, "update_histogram", low=1)
    unit = "|θ' − θ| / lr" if per_lr else "θ' − θ"
    values = charts.all_updates(ctx.trace, per_lr=per_lr)
    return _figure(charts.histogram(values, bins, "Distribution of the updates, all parameters", unit))


@macro
def loss_chart(ctx: PageContext) -> Markup:
    return Markup(charts.loss_curves(ctx.trace))


@macro
def before_after_chart(ctx: PageContext) -> Markup:
    return _figure(charts.before_after(ctx.trace))
