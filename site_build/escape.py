"""Escape text from the config (training text, vocab words) for HTML, Markdown and LaTeX.

Config text is data, never markup: a vocab word `<script>`, `$x$`, `{.cls}` or `\\`
must show up as exactly those characters on the page and in formulas.
"""

from __future__ import annotations

from markupsafe import Markup

# Characters that Markdown (with the dollar-math and attrs plugins) or HTML would
# interpret; written as numeric entities they reach the page as plain characters.
_MD_SPECIAL = "&<>\"'\\`*_[]$~|{}#:!"
_MD_TABLE = {ord(c): f"&#{ord(c)};" for c in _MD_SPECIAL}

_LATEX_TABLE = {
    ord("\\"): r"\textbackslash{}",
    ord("{"): r"\{",
    ord("}"): r"\}",
    ord("$"): r"\$",
    ord("&"): r"\&",
    ord("#"): r"\#",
    ord("^"): r"\textasciicircum{}",
    ord("_"): r"\_",
    ord("%"): r"\%",
    ord("~"): r"\textasciitilde{}",
    ord("<"): r"\textless{}",
    ord(">"): r"\textgreater{}",
}


def html_text(text: object) -> Markup:
    """Escape text for HTML in a Markdown page: safe inside tags, paragraphs and tables."""
    return Markup(str(text).translate(_MD_TABLE))


def latex_escape(text: object) -> Markup:
    """Escape text for LaTeX text mode, e.g. inside `\\text{...}`.

    Returns Markup so Jinja's HTML autoescape leaves it alone: the result goes to
    KaTeX (which escapes its own HTML output), and contains none of `< > &` raw.
    """
    return Markup(str(text).translate(_LATEX_TABLE))


def latex_text(text: object) -> str:
    r"""Config text as a complete LaTeX text-mode group: `\text{...}`."""
    return r"\text{" + str(latex_escape(text)) + "}"
