"""Chart macros: SVG drawn at build time from the trace (site_build.charts), no JavaScript needed.

    {{ architecture() }}                 the model drawn from the config, boxes linking to step pages
    {{ attention_heatmaps() }}           one heatmap per head of L0.attn.weights
    {{ attention_heatmaps("grad.L0.attn.weights") }}
    {{ gradient_chart() }}  {{ update_chart() }}  {{ update_histogram() }}
    {{ loss_chart() }}  {{ before_after_chart() }}
    {{ gelu_picture() }}  {{ silu_picture() }}  {{ layernorm_picture("L0.ln_1", row=2) }}  {{ backward_graph() }}
    {{ attention_change() }}  {{ generation_picture() }}  {{ update_picture("wte") }}

Each is a Chart block (macros.blocks) with the title of its first drawing. `step_map(ctx, step)` is the compact
map the build puts at the top of every step page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from markupsafe import Markup, escape

from site_build import charts
from site_build.charts.plots import MAX_RECT_TOKENS, blocks
from site_build.charts.svg import Svg
from site_build.data.downloads import FileNeed, heat_file, heat_path, update_file
from site_build.macros.blocks import Chart
from site_build.macros.registry import MacroError, PageContext, ahead, check_bool, check_int, macro
from site_build.macros.scale import display_size
from site_build.steps import STEP_KEYS

HISTOGRAM_BINS = 30
MAX_BINS = 200  # a histogram is 360 units wide: more bins than this would be thinner than a pixel


def _figure(ctx: PageContext, svg: Svg) -> Markup:
    """A chart in a figure, as a block."""
    return _chart(ctx, f'<figure class="chart-figure">{svg}</figure>', svg.title)


def _chart(ctx: PageContext, html: str, title: str, files: tuple[FileNeed, ...] = ()) -> Markup:
    return ctx.place(Chart(title, files), html)


@macro
def architecture(ctx: PageContext, current: str | None = None, small: bool = False) -> Markup:
    """The model as configured; every box links to the page that explains it."""
    if current is not None and current not in STEP_KEYS:
        raise MacroError(f"bad argument current={current!r} for architecture(): give one of {', '.join(STEP_KEYS)}")
    check_bool("small", small, "architecture")
    return _figure(ctx, charts.architecture(ctx.trace, current=current, links=ctx.step_links or None, small=small))


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
    svgs = [charts.heatmap(ctx.trace, name, h, batch, raster=heat_path(name, batch, h)) for h in range(heads)]
    rasters = tuple(heat_file(name, batch, h) for h in range(heads)) if rec.value.shape[2] > MAX_RECT_TOKENS else ()
    return _chart(ctx, f'<div class="chart-row">{"".join(svgs)}</div>', svgs[0].title, rasters)


# Per-tensor sizes, worked out once per build (PageContext.figures) and, for a big run, ahead of their page.
SIZES = {"gradient sizes": charts.grad_norms, "update sizes": charts.update_sizes}


def _sizes(ctx: PageContext, key: str) -> tuple[str, Callable[[], Any]]:
    """(figures key, maker) of one of SIZES, for ctx.figures and ctx.start alike."""
    return key, partial(SIZES[key], ctx.trace)


@macro
def gradient_chart(ctx: PageContext) -> Markup:
    sizes = ctx.figures(*_sizes(ctx, "gradient sizes"))
    items = [(name.removeprefix("grad."), norm, top) for name, norm, top in sizes]
    return _figure(ctx, charts.bars(items, "Gradient size per parameter tensor", "|∂L/∂θ|"))


@macro
def update_chart(ctx: PageContext) -> Markup:
    sizes = ctx.figures(*_sizes(ctx, "update sizes"))
    items = [(name.removeprefix("updated."), norm, top) for name, norm, top in sizes]
    return _figure(ctx, charts.bars(items, "Update size per parameter tensor", "|θ' − θ|"))


@ahead(stage=0)
def _start_gradient_sizes(ctx: PageContext) -> None:
    """A big run's gradient sizes (1 GB read for GPT-2) are worked out while the forward pages render."""
    ctx.start(*_sizes(ctx, "gradient sizes"), lane="ahead")


@macro
def update_histogram(ctx: PageContext, per_lr: bool = True, bins: int = HISTOGRAM_BINS) -> Markup:
    check_bool("per_lr", per_lr, "update_histogram")
    check_int("bins", bins, MAX_BINS + 1, "update_histogram", low=1)
    unit = "|θ' − θ| / lr" if per_lr else "θ' − θ"
    counted = ctx.figures(("update histogram", per_lr, bins), lambda: _count_updates(ctx, per_lr, bins))
    return _figure(ctx, charts.histogram(None, bins, "Distribution of the updates, all parameters", unit, counted))


def _count_updates(ctx: PageContext, per_lr: bool, bins: int) -> charts.Counted:
    return charts.count(charts.update_parts(ctx.trace, per_lr=per_lr), bins)


@ahead(stage=2)
def _start_update_histogram(ctx: PageContext) -> None:
    """A big run's update sizes, and its 124M updates counted, while the pages before the optimizer's render
    (after the optimizer's own figures: its page comes first)."""
    ctx.start(*_sizes(ctx, "update sizes"), lane="ahead")
    ctx.start(("update histogram", True, HISTOGRAM_BINS), lambda: _count_updates(ctx, True, HISTOGRAM_BINS),
              lane="ahead")


@macro
def loss_chart(ctx: PageContext) -> Markup:
    svg = charts.loss_curves(ctx.trace)
    return _chart(ctx, svg, svg.title)


@macro
def before_after_chart(ctx: PageContext) -> Markup:
    return _figure(ctx, charts.before_after(ctx.trace))


# -- pictures for learning (site_build/charts/teaching.py) -----------------------------------------------------------
def _layer(ctx: PageContext, layer: Any, macro_name: str) -> int:
    check_int("layer", layer, ctx.trace.config["model"]["n_layers"], macro_name)
    return int(layer)


@macro
def gelu_picture(ctx: PageContext, layer: int = 0, batch: int = 0) -> Markup:
    """GELU and its slope, with this step's inputs U of one text marked: `{{ gelu_picture() }}`."""
    name = f"L{_layer(ctx, layer, 'gelu_picture')}.mlp.fc"
    check_int("batch", batch, ctx.record(name).value.shape[0], "gelu_picture")
    return _figure(ctx, charts.gelu_chart(ctx.trace, name, batch))


@macro
def silu_picture(ctx: PageContext, layer: int = 0, batch: int = 0) -> Markup:
    """SiLU and its slope, with this step's gate inputs of one text marked (a llama model): `{{ silu_picture() }}`."""
    name = f"L{_layer(ctx, layer, 'silu_picture')}.mlp.gate"
    check_int("batch", batch, ctx.record(name).value.shape[0], "silu_picture")
    return _figure(ctx, charts.silu_chart(ctx.trace, name, batch))


@macro
def gelu_numbers(ctx: PageContext, layer: int = 0, batch: int = 0) -> dict[str, float]:
    """What the pages say about GELU on this step's inputs: `.ratio_min`, `.ratio_max`, `.ratio_median` (GELU(u)/u over
    the positive entries), `.n_pos`, `.n_neg`, `.min_u`, `.min_value` (GELU's minimum), `.series_c`
    (2/(3π) − 1/6, from matching the u³ terms), `.fitted_c` (0.044715), `.err_series`, `.err_fitted` (largest error of
    the tanh formula with either constant against u·Φ(u), |u| ≤ 6), `.err_series_near`, `.err_fitted_near` (|u| ≤ 1),
    `.g_min`, `.u_min`, `.u_max`."""
    name = f"L{_layer(ctx, layer, 'gelu_numbers')}.mlp.fc"
    check_int("batch", batch, ctx.record(name).value.shape[0], "gelu_numbers")
    return charts.gelu_stats(ctx.trace, name, batch)


@macro
def layernorm_picture(ctx: PageContext, ln: str = "L0.ln_1", row: int = 0, batch: int = 0) -> Markup:
    """One row through a LayerNorm (`L0.ln_1`, `L0.ln_2`, `ln_f`): as it comes in, centred, scaled, shifted; through
    an RMSNorm (Llama): as it comes in, scaled, times its gain."""
    rec = ctx.record(f"{ln}.xhat") if isinstance(ln, str) else None
    if rec is None or rec.op not in ("normalize", "rms_normalize"):
        raise MacroError(f"bad argument ln={ln!r} for layernorm_picture(): give a LayerNorm such as 'L0.ln_1'")
    check_int("batch", batch, rec.value.shape[0], "layernorm_picture")
    check_int("row", row, rec.value.shape[1], "layernorm_picture")
    return _figure(ctx, charts.layernorm_chart(ctx.trace, ln, batch, row))


@macro
def rope_picture(ctx: PageContext, batch: int = 0) -> Markup:
    """The rotary angle of every position and pair as a grid of dials (a Llama run): `{{ rope_picture() }}`."""
    if "rope.cos" not in ctx.trace:
        raise MacroError("rope_picture() needs a run with rotary position embeddings (model.arch: llama)")
    check_int("batch", batch, len(ctx.trace.labels["inputs"]), "rope_picture")
    return _figure(ctx, charts.rope_angle_chart(ctx.trace, batch))


@macro
def backward_graph(ctx: PageContext) -> Markup:
    """The step as a graph: where a sum copies the gradient and where a value used twice adds its gradients."""
    return _figure(ctx, charts.backward_graph(ctx.trace))


@macro
def attention_change(ctx: PageContext, layer: int = 0, batch: int = 0) -> Markup:
    """Every head's attention before and after the training run, side by side: `{{ attention_change() }}`."""
    layer = _layer(ctx, layer, "attention_change")
    heads = ctx.trace.config["model"]["n_heads"]
    check_int("batch", batch, ctx.record(f"L{layer}.attn.weights").value.shape[0], "attention_change")
    svgs = [charts.attention_change(ctx.trace, layer, h, batch) for h in range(heads)]
    return _chart(ctx, "".join(f'<figure class="chart-figure">{svg}</figure>' for svg in svgs), svgs[0].title)


@macro
def generation_picture(ctx: PageContext) -> Markup:
    """Greedy text from <bos> with the initial and the trained weights, beside the training text it is closest to."""
    return _figure(ctx, charts.generation(ctx.trace))


@macro
def update_picture(ctx: PageContext, name: str) -> Markup:
    """Δθ/η of one parameter tensor as a heatmap: `{{ update_picture("wte") }}`."""
    rec = ctx.record(name)
    if rec.op != "param":
        raise MacroError(f"update_picture needs a parameter tensor such as 'wte'; '{name}' is a {rec.op} record")
    if rec.value.size > UPDATE_SVG_CELLS:  # GPT-2 sizes: a picture file, one pixel a weight, not thousands of rects
        return _chart(ctx, update_image(ctx, name), f"Change of {name} in units of the learning rate",
                      (update_file(name),))
    return _figure(ctx, charts.update_heatmap(ctx.trace, name))


UPDATE_SVG_CELLS = 96 * 96  # up to this many weights the update picture is an SVG grid on the page


def update_image(ctx: PageContext, name: str) -> str:
    """Δθ/η of a big tensor as a heatmap image (downloads.update_file; the build writes the file), one pixel a
    weight or, past HEAT_ROWS × HEAT_COLS, the value of largest magnitude of each block, saying so."""
    rec = ctx.record(name)
    shape = tuple(rec.value.shape) if rec.value.ndim == 2 else (1, rec.value.size)
    bh, bw = blocks(*shape)
    ph, pw = -(-shape[0] // bh), -(-shape[1] // bw)
    width, height = display_size(ph, pw)
    dims = " × ".join(f"{n:,}" for n in rec.value.shape)
    how = (f"downsampled to {ph} × {pw} pixels, each the change of largest magnitude among {bh} × {bw} weights"
           if bh * bw > 1 else "one pixel a weight")
    return (f'<figure class="chart update-image"><div class="hm"><img src="{escape(update_file(name).path)}" '
            f'width="{width}" height="{height}" alt="Change of every weight of {escape(name)}, in units of the '
            f'learning rate" loading="lazy" decoding="async"></div><figcaption>Δθ/η of <code>{escape(name)}</code>, '
            f"{dims} ({escape(', '.join(rec.axes))}): {how}. Blue up, red down, white unmoved.</figcaption></figure>")
