"""Everything a page can call: the registered macros and filters, grouped by concern.

    registry.py   @macro, @filter, PageContext (what the macros of one build share), MacroError
    numbers.py    matrix, vector, value, calc, formula, shape, jacobian, token, other_blocks, num, sci, ...
    text.py       text, code, word_list, latex_escape (| tex), latex_text, count, span
    charts.py     architecture, attention_heatmaps, gradient_chart, update_chart, update_histogram, ...
    reference.py  default_config, pytorch_snippet, check, verification
    optimizer.py  update_card, optimizer_stats, optimizer_name

A new macro is a decorated function in one of these modules (or a new module imported below); nothing
lists macro names by hand.
"""

from site_build.macros import charts, numbers, optimizer, reference, text  # noqa: F401 - each registers its macros
from site_build.macros.registry import FILTERS, MACROS, MacroError, PageContext, page_globals

__all__ = ["FILTERS", "MACROS", "MacroError", "PageContext", "page_globals"]
