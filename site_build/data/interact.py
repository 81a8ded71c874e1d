"""Click any number: the per-page data the click panel (`assets/explain.js`) needs to explain a cell.

Typesetting an explanation for each of the site's ~30k cells at build time would cost
seconds and megabytes, so the build writes, per page, one small script
`assets/data/<slug>.js` with the records that page shows plus their inputs (values at
full precision, op, axes, meta, the formula and symbol in LaTeX) and where each record is
shown. On the first click the browser loads it, with the interpreter and the descriptions
that `engine.explain` reads too (`script_files`), and KaTeX to typeset the lines: the panel
and the pages' calc() blocks come from one description of each op kind. Values travel as
base64 float64 (`encoded`), decoded into exactly the doubles the trace holds. A
`<script src>` (not fetch) so it also works from a page opened from disk.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from engine.explain import SCRIPT, ops

DATA_DIR = "assets/data"
INTERPRETER = "assets/explain/interpret.js"  # engine/explain/interpret.js, as it is
DESCRIPTIONS = "assets/explain/ops.js"  # engine/explain/ops.yaml, as `window.HANDSTEP_OPS = {...};`


def script_files() -> dict[str, Any]:
    """The browser's copy of the explanation machinery: the interpreter and the descriptions it reads."""
    return {INTERPRETER: SCRIPT, DESCRIPTIONS: "window.HANDSTEP_OPS=" + _json(ops()) + ";\n"}


def _json(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=True, sort_keys=False)
    # `</script>` or U+2028 in a vocab word must not end or break the script
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# A record past this many values is left out of page data (its cells then explain themselves as
# "too large to ship with this page"); GPT-2-small-shaped tensors hold millions of values.
MAX_DATA_VALUES = 262_144
# One page's data carries at most this many values (~10 MB as base64): the records the page shows first, smallest
# first, then their inputs. A GPT-2-small page shows dozens of records of 50,000 to 200,000 values each.
MAX_PAGE_VALUES = 1_000_000


def data_path(slug: str) -> str:
    """The data script of the page with this slug, relative to the site root."""
    return f"{DATA_DIR}/{slug}.js"


def records_by_page(shown: dict[str, set[str]]) -> dict[str, set[str]]:
    """Invert `PageContext.shown` (record -> pages): page source -> records it shows."""
    out: dict[str, set[str]] = {}
    for name, sources in shown.items():
        for source in sources:
            out.setdefault(source, set()).add(name)
    return out


def needed(trace: Any, names: set[str]) -> list[str]:
    """The records shown plus their inputs (what every explanation reads), in trace order."""
    want = set(names)
    for name in names:
        want.update(n for n in trace.record(name).inputs if n in trace)
    return [r.name for r in trace.records if r.name in want]


def encoded(values: np.ndarray, cache: dict[int, str] | None = None) -> str:
    """Values as base64 of little-endian float64, row-major: exact bits, about half the bytes of
    decimal repr (gzip makes both ~8 bytes a value) and ~10x faster to write; cached per array."""
    key = id(values)
    if cache is not None and key in cache:
        return cache[key]
    text = base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")
    if cache is not None:
        cache[key] = text
    return text


def data_script(
    trace: Any,
    names: list[str],
    pages: dict[str, list[str]],
    titles: dict[str, str],
    cache: dict[int, str] | None = None,
    shown: set[str] | None = None,
    other: Any = None,
) -> str:
    """`window.HANDSTEP_DATA = {...};` for one page (names from `needed`); only the records in `shown`
    (clickable here) carry their formula."""
    records = {}
    carried = _carried(trace, names, shown)
    for name in names:
        rec = trace.record(name)
        clickable = shown is None or name in shown
        records[name] = {
            "op": rec.op,
            "phase": rec.phase,
            "axes": list(rec.axes),
            "shape": list(rec.value.shape),
            "inputs": list(rec.inputs),
            "meta": rec.meta,
            "symbol": rec.symbol,
            "formula": rec.formula if clickable else "",
            "b": encoded(rec.value, cache) if name in carried else None,
        }
        if other is not None and clickable and name in other and other[name].shape == rec.value.shape:
            records[name]["o"] = encoded(other[name], cache)  # the compared run's values (`build --compare`)
    where = {name: pages.get(name, []) for name in names}
    used = sorted({url for urls in where.values() for url in urls})
    data = {
        "records": records,
        "pages": where,
        "titles": {url: titles[url] for url in used},
        "vocab": [str(w) for w in trace.labels["vocab"]],
    }
    return "window.HANDSTEP_DATA=" + _json(data) + ";\n"


def _carried(trace: Any, names: list[str], shown: set[str] | None) -> set[str]:
    """The records whose values the page's data carries: each up to MAX_DATA_VALUES, MAX_PAGE_VALUES in all;
    the records the page shows before their inputs, smaller before larger."""
    def size(name: str) -> int:
        return int(trace.record(name).value.size)

    order = sorted(names, key=lambda n: (shown is not None and n not in shown, size(n)))
    out, total = set(), 0
    for name in order:
        n = size(name)
        if n <= MAX_DATA_VALUES and total + n <= MAX_PAGE_VALUES:
            out.add(name)
            total += n
    return out


def data_files(trace: Any, shown: dict[str, set[str]], pages: list[Any], other: Any = None) -> dict[str, str]:
    """{site path: script} for every page that shows numbers (with `other`'s values when comparing)."""
    url_of = {p.source: p.url for p in pages}
    titles = {p.url: p.title for p in pages}
    where = {name: sorted(url_of[s] for s in sources if s in url_of) for name, sources in shown.items()}
    by_page = records_by_page(shown)
    cache: dict[int, str] = {}  # a record's values are encoded once for all pages
    out = {}
    for page in pages:
        names = by_page.get(page.source)
        if names:
            out[data_path(page.slug)] = data_script(trace, needed(trace, names), where, titles, cache, names, other)
    return out


def pages_with_data(shown: dict[str, set[str]], pages: list[Any]) -> dict[str, str]:
    """{page url: its data script path} for pages that show numbers."""
    by_page = records_by_page(shown)
    return {p.url: data_path(p.slug) for p in pages if by_page.get(p.source)}
