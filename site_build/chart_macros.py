"""Chart macros for pages: SVG drawn at build time from the trace (site_build.charts), no JS needed.

    {{ architecture() }}                 the model drawn from the config, boxes linking to step pages
    {{ attention_heatmaps() }}           one heatmap per head of L0.attn.weights
    {{ attention_heatmaps("grad.L0.attn.weights") }}
    {{ gradient_chart() }}  {{ update_chart() }}  {{ update_histogram() }}
    {{ loss_chart() }}  {{ before_after_chart() }}
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from site_build import charts

MAX_BINS = 200  # a histogram is 360 units wide: more bins than this would be thinner than a pixel


class ChartMacros:
    def __init__(self, macros: Any) -> None:
        self.m = macros  # for the trace, the record check and the coverage marks
        self.step_links: dict[str, str] = {}

    def globals(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "attention_heatmaps": self.attention_heatmaps,
                "gradient_chart": self.gradient_chart, "update_chart": self.update_chart,
                "update_histogram": self.update_histogram, "loss_chart": self.loss_chart,
                "before_after_chart": self.before_after_chart}

    def _figure(self, svg: str, caption: str = "") -> Markup:
        cap = f"<figcaption>{caption}</figcaption>" if caption else ""
        return Markup(f'<figure class="chart-figure">{svg}{cap}</figure>')

    def architecture(self, current: str | None = None, small: bool = False) -> Markup:
        """The model as configured; every box links to the page that explains it."""
        from site_build.macros import MacroError

        if current is not None and current not in charts.STEP_KEYS:
            raise MacroError(f"bad argument current={current!r} for architecture(): "
                             f"give one of {', '.join(charts.STEP_KEYS)}")
        if not isinstance(small, bool):
            raise MacroError(f"bad argument small={small!r} for architecture(): give true or false")
        return self._figure(charts.architecture(self.m.trace, current=current, links=self.step_links or None,
                                                small=small))

    def small_map(self, step: str) -> str:
        """The compact map shown at the top of every step page, `step` highlighted."""
        svg = charts.architecture(self.m.trace, current=step, links=self.step_links or None, small=True)
        return f'<details class="step-map" open><summary>Where this step sits</summary>{svg}</details>'

    def attention_heatmaps(self, name: str = "L0.attn.weights", batch: int = 0) -> Markup:
        from site_build.macros import MacroError, _check_int

        rec = self.m.record(name)
        if list(rec.axes) != ["batch", "heads", "tokens", "keys"]:
            raise MacroError(f"attention_heatmaps needs a record with axes (batch, heads, tokens, keys), such as "
                             f"'L0.attn.weights'; '{name}' has ({', '.join(rec.axes)})")
        _check_int("batch", batch, rec.value.shape[0], name)
        heads = rec.value.shape[1]
        svgs = "".join(charts.heatmap(self.m.trace, name, h, batch) for h in range(heads))
        return Markup(f'<div class="chart-row">{svgs}</div>')

    def gradient_chart(self) -> Markup:
        items = [(name.removeprefix("grad."), norm, top) for name, norm, top in charts.grad_norms(self.m.trace)]
        return self._figure(charts.bars(items, "Gradient size per parameter tensor", "|∂L/∂θ|"))

    def update_chart(self) -> Markup:
        items = [(name.removeprefix("updated."), norm, top) for name, norm, top in charts.update_sizes(self.m.trace)]
        return self._figure(charts.bars(items, "Update size per parameter tensor", "|θ' − θ|"))

    def update_histogram(self, per_lr: bool = True, bins: int = 30) -> Markup:
        from site_build.macros import MacroError, _check_int

        if not isinstance(per_lr, bool):
            raise MacroError(f"bad argument per_lr={per_lr!r} for update_histogram(): give true or false")
        _check_int("bins", bins, MAX_BINS + 1, "update_histogram", low=1)
        unit = "|θ' − θ| / lr" if per_lr else "θ' − θ"
        values = charts.all_updates(self.m.trace, per_lr=per_lr)
        return self._figure(charts.histogram(values, bins, "Distribution of the updates, all parameters", unit))

    def loss_chart(self) -> Markup:
        return Markup(charts.loss_curves(self.m.trace))

    def before_after_chart(self) -> Markup:
        return self._figure(charts.before_after(self.m.trace))
