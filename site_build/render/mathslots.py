"""Placeholders for math, so every formula of every page is rendered in one KaTeX batch.

Macros and the Markdown renderer do not call KaTeX; they ask for a slot, get a short
placeholder string, and remember where the formula came from (file and line) so a
KaTeX error can name it. After the batch, `fill()` swaps the HTML in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from site_build.errors import BuildError

OPEN, CLOSE = "\ue000", "\ue001"  # private-use characters: never in real text
SLOT_RE = re.compile(f"{OPEN}(\\d+){CLOSE}")


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

    def strip(self, html: str) -> str:
        """The html without its formulas (what the search index reads: it leaves typeset math out)."""
        return SLOT_RE.sub("", html)

    def fill(self, html: str, rendered: dict[tuple[str, bool], str]) -> str:
        """Replace every placeholder in html with its rendered KaTeX HTML."""
        return SLOT_RE.sub(lambda m: rendered[self.formulas[int(m.group(1))]], html)
