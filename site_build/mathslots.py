"""Placeholders for math, so every formula of every page is typeset in one KaTeX batch.

Macros and the Markdown renderer do not call KaTeX; they ask for a slot and get a short placeholder named by a
hash of the formula (so the same formula has the same name on every page and in every build: nothing is
renumbered), and the page remembers the formula with its line, so a KaTeX error can name it. After the batch,
`fill()` swaps the HTML in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from site_build.errors import BuildError

OPEN, CLOSE = "\ue000", "\ue001"  # private-use characters: never in real text
SLOT_RE = re.compile(f"{OPEN}([0-9a-f]{{20}}){CLOSE}")

Formula = tuple[str, bool]  # (tex, display)


def formula_key(tex: str, display: bool) -> str:
    """The name of a formula: a hash of its TeX and whether it is displayed."""
    return hashlib.sha256(f"{int(display)}{tex}".encode()).hexdigest()[:20]


@dataclass
class MathSlots:
    """The formulas of one page (or of the site, once the pages are put together), by name, with the line of the
    page that first used each."""

    formulas: dict[str, Formula] = field(default_factory=dict)
    where: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (page, line)
    on_new: Callable[[str, bool], None] | None = None  # told each formula the first time (KaTeX starts on it)

    def slot(self, tex: str, display: bool, source: str, line: int) -> str:
        """Register a formula and return its placeholder."""
        tex = tex.strip()
        key = formula_key(tex, display)
        if key not in self.formulas:
            self.formulas[key] = (tex, display)
            self.where[key] = (source, line)
            if self.on_new is not None:
                self.on_new(tex, display)
        return f"{OPEN}{key}{CLOSE}"

    def add(self, other: MathSlots) -> None:
        """Take in another page's formulas (the first place a formula was used stays its place)."""
        for key, formula in other.formulas.items():
            if key not in self.formulas:
                self.formulas[key] = formula
                self.where[key] = other.where[key]

    def used(self, texts: Iterable[str]) -> list[Formula]:
        """The formulas the placeholders in `texts` stand for."""
        return [self.formulas[k] for text in texts for k in SLOT_RE.findall(text)]

    def check(self, errors: Mapping[Formula, str]) -> None:
        """Raise one BuildError naming page and line of every formula KaTeX rejected."""
        problems = []
        for (tex, display), message in errors.items():
            source, line = self.where[formula_key(tex, display)]
            # KaTeX underlines the culprit with combining characters; terminals garble them
            message = message.removeprefix("KaTeX parse error: ").replace("\u0332", "")
            problems.append((source, line, f"KaTeX error: {message}"))
        if problems:
            raise BuildError.collect(problems)

    def strip(self, html: str) -> str:
        """The html without its formulas (what the search index reads: it leaves typeset math out)."""
        return SLOT_RE.sub("", html)

    def fill(self, html: str, rendered: Mapping[Formula, str]) -> str:
        """Replace every placeholder in html with its rendered KaTeX HTML."""
        return SLOT_RE.sub(lambda m: rendered[self.formulas[m.group(1)]], html)

    def tex(self, key: str) -> Formula:
        return self.formulas[key]
