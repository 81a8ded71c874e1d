"""Escape text from the config (training text, vocab words) for HTML, Markdown and LaTeX.

Config text is data, never markup: a vocab word `<script>`, `$x$`, `{.cls}` or `\\`
must show up as exactly those characters on the page and in formulas.
"""

from __future__ import annotations

import unicodedata

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


def latex_escape(text: object) -> Markup:
    """Escape text for LaTeX text mode, e.g. inside `\\text{...}`.

    Returns Markup so Jinja's HTML autoescape leaves it alone: the result goes to
    KaTeX (which escapes its own HTML output), and contains none of `< > &` raw.
    """
    return Markup(str(text).translate(_LATEX_TABLE))


def latex_text(text: object) -> str:
    r"""Config text as a complete LaTeX text-mode group: `\text{...}`."""
    return r"\text{" + str(latex_escape(text)) + "}"
