"""Macros and filters for text from the config (words, training texts) and for plain counting words.

Config text is data, never markup: these escape it for the page (`text`, `code`, `word_list`) or for LaTeX
text mode (`latex_escape`, `| tex`, `latex_text`), with engine.notation's escaper, the one of the project.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from site_build import format as fmt
from site_build.macros.registry import filter, macro


@macro(context=False)
@filter("text")
def text(value: object) -> Markup:
    """`{{ s | text }}`: config text escaped for the page (right-to-left text isolated)."""
    return fmt.html_words(value)


@macro(context=False)
@filter("code")
def code(value: object) -> Markup:
    """`{{ word | code }}`: config text as a code span."""
    return fmt.html_code(value)


@macro(context=False)
def word_list(words: object, sep: str = " ") -> Markup:
    """Several config words, each isolated on its own, joined by `sep`."""
    return fmt.html_word_list(words, sep)


@macro(context=False)
@filter("tex")
def latex_escape(value: object) -> Markup:
    """`$\\text{ {{ word | tex }} }$`: config text escaped for LaTeX text mode (`<pad>`, `$`, `{}` as themselves).

    Markup, so Jinja's HTML autoescape leaves it alone: it goes to KaTeX and holds none of `< > &` raw."""
    return Markup(fmt.latex_escape(value))


@macro(context=False)
def latex_text(value: object) -> Markup:
    """Config text as a complete LaTeX text-mode group: `\\text{...}`."""
    return Markup(fmt.latex_text(value))


@macro(name="count", context=False)
def count_words(n: Any, noun: str, plural: str | None = None) -> str:
    """`1 position`, `3 positions`: a number with its noun, singular for exactly one (`count(T, "position")`)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


@macro(name="span", context=False)
def span_words(first: Any, last: Any, sep: str = " to ") -> str:
    """`3 to 7`, or just `3` when the range holds one number (`columns {{ span(a, b) }}`)."""
    return str(first) if first == last else f"{first}{sep}{last}"
