"""Charts drawn at build time from a trace, as SVG strings (no plotting library).

Every function is pure: the same trace gives a byte-identical string. Colours come only from CSS
variables (templates/assets/style.css), set through class names in `templates/assets/charts.css`, so the
charts follow the light/dark theme. Every text taken from the config (vocab words, training text) is
HTML-escaped, and wrapped in the Unicode isolates FSI/PDI when it holds right-to-left text or a bidi
control (SVG text has no <bdi>). Each chart has `role="img"` (a diagram with links has `role="group"`, so its
links stay reachable for screen readers), a `<title>` and a `<desc>` that states its key
numbers. The viewBox is 360 units wide: one unit is about one CSS pixel on a 390 px phone.

    svg.py      the primitives (text, rectangles, arrows, ticks, the <svg> wrapper)
    diagram.py  the architecture and the map of the steps (site_build.steps)
    plots.py    heatmaps, bars, histogram, line and loss curves, before/after
    rope.py     the rotary angle of every position and pair (Llama)
    teaching.py pictures for learning: GELU and its slope, LayerNorm's centring and scaling, the backward graph,
                attention and greedy text before and after training, the update of one tensor

Class names used inside the SVGs (styled in charts.css):
  tt chart title, tx muted small text, sm small value label, ax axis line, gr grid line,
  bx diagram box, fr frame or tie line, ed edge line, ah arrow head, cu current step,
  cells the heatmap grid (one rect per query and key, row by row), po/ne positive/negative
  cell, bg empty cell, ms masked cell, ht hatch lines, va value in a cell (xs smaller,
  hi on a strong fill), b1/b2 first/second bar series, ln curve, pt marked point; mk/mn a marked value
  (positive/negative), ref a reference tick, tie a faint line between stages, sum a + node, fork a value used
  twice, wd a word box, gm/gx a generated word that matches/differs from the text; sw the sector a rotary angle sweeps.
"""

from site_build.charts.diagram import architecture
from site_build.charts.plots import (
    Counted,
    all_updates,
    bars,
    before_after,
    count,
    grad_norms,
    heatmap,
    histogram,
    line,
    loss_curves,
    update_parts,
    update_sizes,
)
from site_build.charts.rope import rope_angle_chart, rope_angles
from site_build.charts.teaching import (
    attention_change,
    backward_graph,
    gelu_chart,
    gelu_stats,
    generation,
    generation_reference,
    layernorm_chart,
    silu_chart,
    update_heatmap,
)

__all__ = [
    "Counted",
    "rope_angle_chart",
    "rope_angles",
    "all_updates",
    "architecture",
    "attention_change",
    "backward_graph",
    "bars",
    "before_after",
    "count",
    "gelu_chart",
    "gelu_stats",
    "generation",
    "generation_reference",
    "grad_norms",
    "heatmap",
    "histogram",
    "layernorm_chart",
    "line",
    "loss_curves",
    "silu_chart",
    "update_heatmap",
    "update_parts",
    "update_sizes",
]
