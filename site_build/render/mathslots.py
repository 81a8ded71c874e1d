"""Placeholders for math, so every formula of every page is rendered in one KaTeX batch.

Macros and the Markdown renderer do not call KaTeX; they ask for a slot, get a short
placeholder string, and remember where the formula came from (file and line) so a
KaTeX error can name it. After the batch, `fill()` swaps the HTML in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from site_build.errors import BuildError

OPEN, CLOSE = "\ue000", "\ue001"  # private-use characters: never in real text
SLOT_RE = re.compile(f"{OPEN}(\\d+){CLOSE}")


Kept = tuple[tuple[str, bool], str, int]  # a formula kept for a later build: (tex, display), source, line


@dataclass
class MathSlots:
    """Registry of (tex, display) formulas and where each was used."""

    formulas: list[tuple[str, bool]] = field(default_factory=list)
    ids: dict[tuple[str, bool], int] = field(default_factory=dict)
    where: dict[int, tuple[str, int]] = field(default_factory=dict)
    on_new: Callable[[str, bool], None] | None = None  # e.g. start rendering right away

    def slot(self, tex: str, display: bool, source: str, line: int) -> str:
        """Register a formula and return its placeholder."""
        key = (tex.strip(), display)
        n = self.ids.get(key)
        if n is None:
            n = self.ids[key] = len(self.formulas)
            self.formulas.append(key)
            self.where[n] = (source, line)
            if self.on_new is not None:
                self.on_new(*key)
        return f"{OPEN}{n}{CLOSE}"

    def check(self, errors: dict[tuple[str, bool], str]) -> None:
        """Raise one BuildError naming page and line of every formula KaTeX rejected."""
        problems = []
        for key, message in errors.items():
            source, line = self.where[self.ids[key]]
            # KaTeX underlines the culprit with combining characters; terminals garble them
            message = message.removeprefix("KaTeX parse error: ").replace("\u0332", "")
            problems.append((source, line, f"KaTeX error: {message}"))
        if problems:
            raise BuildError.collect(problems)

    def keep(self, texts: Iterable[str]) -> tuple[list[Kept], dict[int, int]]:
        """What a later build needs to put the formulas of `texts` back (`renew`): each formula they use, with where
        it came from, and each slot number's index among them (slot numbers change between builds)."""
        used = sorted({int(n) for text in texts for n in SLOT_RE.findall(text)})
        return [(self.formulas[n], *self.where[n]) for n in used], {n: k for k, n in enumerate(used)}

    def renew(self, kept: list[Kept], slot_of: dict[int, int]) -> Callable[[str], str]:
        """Register the formulas `keep` found in an earlier build; returns what renumbers that build's texts."""
        new = [self.slot(tex, display, source, line) for (tex, display), source, line in kept]
        return lambda text: SLOT_RE.sub(lambda m: new[slot_of[int(m.group(1))]], text)

    def strip(self, html: str) -> str:
        """The html without its formulas (what the search index reads: it leaves typeset math out)."""
        return SLOT_RE.sub("", html)

    def fill(self, html: str, rendered: dict[tuple[str, bool], str]) -> str:
        """Replace every placeholder in html with its rendered KaTeX HTML."""
        return SLOT_RE.sub(lambda m: rendered[self.formulas[int(m.group(1))]], html)
