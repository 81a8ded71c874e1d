"""Numbers and config text as the site shows them: every number formatter and every escaper, in one place.

Numbers
    format_number   a table cell or inline value: fixed decimals, a real minus sign, −∞ for masked entries
    full_repr       the exact value (shortest round trip), for hover titles
    fixed, general  a page's number in prose or math: fixed decimals or significant digits, ASCII minus
                    (the `num` macro and filter)
    sci             a small number in prose as `$m \\times 10^{e}$`, or "exactly $0$" (the `sci` macro)
    tex_number      a config constant in LaTeX (the `tex_number` macro): 6 significant digits, then
                    engine.explain.exact, which (with engine.explain.num) writes the numbers of calc() blocks
    chart_fixed, sig, coord, opacity   SVG text and attributes of the charts
    signed, short   differences between two runs (build --compare, diff --html)
    describe_shape  `6 × 16 (tokens × d_model)`
    counted, plural_of   `1 head`, `4 heads`: a count and its noun, singular for exactly one (pages and charts)

Text from the config (training text, vocab words) is data, never markup: a vocab word `<script>`, `$x$`,
`{.cls}` or `\\` must show up as exactly those characters on the page and in formulas.
    html_text, html_words, html_word_list, html_code, html_words_in   HTML in a Markdown page
    isolate_plain   places without markup (SVG text, titles)
    latex_escape, latex_text   LaTeX text mode: engine.notation's, the one LaTeX escaper of the project
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
from markupsafe import Markup

from engine.explain import exact
from engine.notation import latex_escape, latex_text

__all__ = [
    "MINUS", "chart_fixed", "coord", "counted", "describe_shape", "fixed", "format_number", "general", "full_repr",
    "html_code", "html_text", "html_word_list", "html_words", "html_words_in", "isolate_plain", "latex_escape",
    "latex_text", "needs_isolation", "opacity", "plural_of", "sci", "short", "sig", "signed", "tex_number",
]

MINUS = "\u2212"


# -- counts --------------------------------------------------------------------------------------------------------
def plural_of(noun: str, plural: str | None = None) -> str:
    """The plural of an English noun: `heads`, `entries`, `boxes`, or `plural` when given."""
    if plural:
        return plural
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def counted(n: Any, noun: str, plural: str | None = None) -> str:
    """`1 head`, `4 heads`: a count with its noun, singular for exactly one."""
    return f"{n} {noun if n == 1 else plural_of(noun, plural)}"


# -- numbers in HTML ---------------------------------------------------------------------------------------------
def format_number(x: float | int, digits: int = 4) -> str:
    """What a reader sees in a table or inline value: fixed decimals, a real minus sign, −∞ for masked entries."""
    if isinstance(x, (int, np.integer)):
        return str(int(x)).replace("-", MINUS)
    x = float(x)
    if math.isinf(x):
        return MINUS + "∞" if x < 0 else "∞"
    if math.isnan(x):
        return "NaN"
    return f"{x:.{digits}f}".replace("-", MINUS)


def full_repr(x: float | int) -> str:
    """The exact value, as Python would read it back (shortest round-trip repr)."""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


def describe_shape(shape: Iterable[int], axes: Iterable[str]) -> str:
    """`6 × 16 (tokens × d_model)`; `scalar` for a 0-D record."""
    shape, axes = list(shape), list(axes)
    if not shape:
        return "scalar"
    return f"{' × '.join(map(str, shape))} ({' × '.join(axes)})"


# -- numbers in a page's prose and math --------------------------------------------------------------------------
def fixed(x: Any, decimals: int = 4, sign: bool = False) -> str:
    """`0.1234`, `-0.5000` (`+0.5000` with `sign`): fixed decimals, ASCII minus, right in prose and `$...$`."""
    return f"{float(x):{'+' if sign else ''}.{decimals}f}"


def general(x: Any, digits: int = 6, sign: bool = False) -> str:
    """`0.000123`, `1.5e-08`, `1000`: `digits` significant digits, trailing zeros dropped (printf's %g)."""
    return f"{float(x):{'+' if sign else ''}.{digits}g}"


def sci(x: Any, digits: int = 1) -> str:
    r"""A number far from 1 in prose: `$1.2 \times 10^{-17}$` (`digits` after the point), or `exactly $0$`."""
    if x == 0:
        return "exactly $0$"
    mantissa, exponent = f"{float(x):.{digits}e}".split("e")
    return f"${mantissa} \\times 10^{{{int(exponent)}}}$"


def tex_number(x: Any) -> str:
    """A config constant in LaTeX, e.g. `0.01`, `0.999`, `10^{-8}`: rounded to 6 significant digits (so that
    1 - 0.9 shows as 0.1), then written by engine.explain.exact, as the calc() blocks write constants."""
    return exact(float(f"{float(x):g}"))


# -- numbers in charts (SVG) ---------------------------------------------------------------------------------------
def coord(x: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros, never '-0'."""
    s = f"{x:.1f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def chart_fixed(v: float, decimals: int) -> str:
    """A value with a fixed number of decimals and a real minus sign, never '−0.00'."""
    s = f"{v:.{decimals}f}"
    if float(s) == 0:
        s = s.lstrip("-")
    return s.replace("-", MINUS)


def sig(v: float, digits: int = 3) -> str:
    """A value to a fixed number of significant digits (plain decimals where short)."""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    exp = math.floor(math.log10(abs(v)))
    if -5 <= exp < 6:
        return chart_fixed(v, max(0, digits - 1 - exp))
    return f"{v:.{digits - 1}e}".replace("-", MINUS)


def opacity(strength: float) -> str:
    """A fill opacity in [0, 1] with two decimals, written short ('.47', '1')."""
    s = f"{strength:.2f}".rstrip("0").rstrip(".")
    return s.removeprefix("0") or "0"


# -- differences between two runs ------------------------------------------------------------------------------------
def signed(x: float) -> str:
    """A difference for display: sign always shown, 3 significant digits."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else format_number(x)
    return f"{x:+.3g}".replace("-", MINUS)


def short(x: float) -> str:
    """3 significant digits where a number is tiny or huge, else like format_number."""
    if not math.isfinite(x):
        return format_number(x)
    return f"{x:.3g}".replace("-", MINUS) if x and (abs(x) < 1e-3 or abs(x) >= 1e5) else format_number(x)


# -- config text in HTML ------------------------------------------------------------------------------------------
# Characters that Markdown (with the dollar-math and attrs plugins) or HTML would
# interpret; written as numeric entities they reach the page as plain characters.
_MD_SPECIAL = "&<>\"'\\`*_[]$~|{}#:!"
_MD_TABLE = {ord(c): f"&#{ord(c)};" for c in _MD_SPECIAL}

# Bidirectional classes that can reorder the text around a word: right-to-left letters and digits,
# and the explicit embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069).
_BIDI_ACTIVE = {"R", "AL", "AN", "LRE", "LRO", "RLE", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
FSI, PDI = "\u2068", "\u2069"  # first-strong isolate and pop directional isolate: <bdi> for plain text


def needs_isolation(text: object) -> bool:
    """True when the text could reorder what is around it (a right-to-left letter or a bidi control).

    Left-to-right and neutral text cannot, so it is left as it is (no extra bytes on ordinary pages).
    """
    return any(unicodedata.bidirectional(c) in _BIDI_ACTIVE for c in str(text))


def html_text(text: object) -> Markup:
    """Escape text for HTML in a Markdown page: safe inside tags, attribute values, paragraphs and tables.

    No markup is added, so the result can go anywhere; for element content use `html_words`, which
    also isolates right-to-left text and bidi controls.
    """
    return Markup(str(text).translate(_MD_TABLE))


def html_words(text: object) -> Markup:
    """Config text as element content: escaped like `html_text`, and wrapped in `<bdi>` when it holds
    right-to-left text or a bidi control, so that (say) a U+202E in a vocab word cannot reverse the
    rest of the sentence, table row or page. Not for attribute values: use `html_text` there."""
    escaped = html_text(text)
    return Markup(f"<bdi>{escaped}</bdi>") if needs_isolation(text) else escaped


def html_word_list(words: object, sep: str = " ") -> Markup:
    """Several config words as element content, joined by `sep`, each isolated on its own (see
    `html_words`): a U+202E in one word cannot reverse the words after it."""
    if isinstance(words, (str, bytes)):
        return html_words(words)
    return Markup(html_text(sep).join(html_words(w) for w in words))  # type: ignore[attr-defined]


def html_code(text: object) -> Markup:
    """Config text as a code span (`<code>`), for Markdown pages: a backtick span would show the
    entities of `html_text` literally, so write `{{ word | code }}` instead of `` `{{ word | text }}` ``."""
    return Markup(f"<code>{html_words(text)}</code>")


def html_words_in(sentence: object, words: list[str]) -> Markup:
    """A sentence that quotes config words (e.g. an explanation from the engine), escaped, with each
    quoted word that needs isolation wrapped in `<bdi>`: isolating the whole sentence would not stop a
    U+202E in one word from reversing the words after it."""
    text = str(sentence)
    risky = sorted({w for w in words if w and needs_isolation(w)}, key=len, reverse=True)
    if not risky:
        return html_text(text)
    out, i = [], 0
    while i < len(text):
        hit = next((w for w in risky if text.startswith(w, i)), None)
        if hit is None:
            j = min((k for k in (text.find(w, i) for w in risky) if k >= 0), default=len(text))
            out.append(str(html_text(text[i:j])))
            i = j
        else:
            out.append(f"<bdi>{html_text(hit)}</bdi>")
            i += len(hit)
    return Markup("".join(out))


def isolate_plain(text: object) -> str:
    """Config text for places without markup (SVG text, titles, attribute values): wrapped in the
    Unicode isolate characters FSI ... PDI when it needs isolation, unchanged otherwise."""
    s = str(text)
    return f"{FSI}{s}{PDI}" if needs_isolation(s) else s
