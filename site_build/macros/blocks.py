"""Typed blocks: what a macro puts on a page, kept as a value that the later stages read instead of its HTML.

A macro that makes a block (a formula, a matrix, a calculation, a chart, ...) records a small frozen value of one
of the kinds below in the context of the page being rendered and returns a placeholder naming it, `\\ue004N\\ue005`
(N: the block's number on the page; private-use characters, as render.mathslots does for formulas). The page's
Jinja output holds placeholders; render.jinja.render_page puts each block's HTML in its place before Markdown
(`PageBlocks.fill`: Markdown reads the text the macros drew, so the HTML is theirs) and keeps the blocks in the
PageResult, where

    the notebook   puts each block's note (`Block.note`) where the block is: one note for each run of blocks that
                   Markdown reads as one HTML block (a `Group`, in `PageBlocks.prose`)
    the downloads  make the files the blocks link to (`files`: data.downloads.FileNeed)
    the exercises  ask about the records the blocks name (`records`), with inputs among the numbers the page's
                   tables show (`Table.cells`)

Outside a page (a test calling a macro, the working of an exercise) a macro returns its HTML at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from site_build.data.downloads import FileNeed

OPEN, CLOSE = "\ue004", "\ue005"  # private-use characters (math slots are \ue000..\ue001, check lines \ue002..\ue003)
SLOT_RE = re.compile(f"{OPEN}([0-9]+){CLOSE}")
_NEWLINE = re.compile("\n")


def slot(n: int) -> str:
    return f"{OPEN}{n}{CLOSE}"


@dataclass(frozen=True)
class Note:
    """What the notebook says where a block stands (notebook.group_note words it).

    kind: "math" (a formula: `text`, in $...$ or $$...$$), "number" (an inline value: `text`), "code" (a NumPy
    line: nothing, the notebook's code cell follows), "calc" (the arithmetic of `records[0]` at `text`), "tables"
    (the tables of `records`), "chart" (the chart titled `text`), "more" (a <details> summed up by `text`),
    "other" (a table or code the notebook does not reproduce, said in a few words: `text`), "end" (a closing tag:
    nothing to say)."""

    kind: str
    text: str = ""
    records: tuple[str, ...] = ()


class Block:
    """A kind of block: a frozen dataclass with its note (`note`), the records it names (`records`) and the files
    it links to (`files`). Every kind is listed in KINDS."""

    KINDS: ClassVar[list[type[Block]]] = []
    records: tuple[str, ...] = ()
    files: tuple[FileNeed, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Block.KINDS.append(cls)

    def note(self) -> Note:
        raise NotImplementedError(f"{type(self).__name__} has no note for the notebook")


@dataclass(frozen=True)
class Formula(Block):
    """A record's formula (`formula`), displayed or in the text; a displayed one gets its record's NumPy line
    under it after Markdown (unless the page put a NumpyLine right after it)."""

    record: str
    tex: str
    display: bool = True

    @property
    def records(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.record,)

    def note(self) -> Note:
        return Note("math", f"$${self.tex}$$" if self.display else f"${self.tex}$")


@dataclass(frozen=True)
class Value(Block):
    """One number in the text (`value`), as the page writes it."""

    record: str
    at: tuple[int, ...]
    text: str

    @property
    def records(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.record,)

    def note(self) -> Note:
        return Note("number", self.text)


@dataclass(frozen=True)
class Parts(Block):
    """A sentence that splits a total into parts (`split`): on the page a span whose `data-total` and `data-parts`
    a check adds up; in the notebook, the sentence."""

    total: int
    parts: tuple[int, ...]
    text: str

    def note(self) -> Note:
        return Note("number", self.text)


@dataclass(frozen=True)
class Cells:
    """The elements of one record that one table shows, each `at` + (row, column) for a row in `rows` and a column in
    `cols` (None for the unit axis of a vector, which is not in the record), on the page itself or, for a wide
    matrix, on its table page `url` (a click away)."""

    record: str
    at: tuple[int, ...]
    rows: tuple[int, ...] | None
    cols: tuple[int, ...] | None
    url: str = ""

    def __contains__(self, element: tuple[int, ...]) -> bool:
        n = len(self.at)
        rest = element[n:]
        if tuple(element[:n]) != self.at or len(rest) != (self.rows is not None) + (self.cols is not None):
            return False
        if self.rows is not None and rest[0] not in self.rows:
            return False
        return self.cols is None or rest[-1] in self.cols


@dataclass(frozen=True)
class Table(Block):
    """Numbers of records in a table: a matrix or vector however macros.scale shows it (every number, a heatmap
    with the table a click away, a window), a record's heads behind a selector, a Jacobian, every head's statistics,
    the update table. `cells`: the elements its tables show with four decimals (macros.scale's matrices)."""

    records: tuple[str, ...]
    files: tuple[FileNeed, ...] = ()
    cells: tuple[Cells, ...] = ()

    def note(self) -> Note:
        return Note("tables", records=self.records)


@dataclass(frozen=True)
class Calc(Block):
    """The arithmetic of one element (`calc`)."""

    record: str
    at: tuple[int, ...]

    @property
    def records(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.record,)

    def note(self) -> Note:
        return Note("calc", ", ".join(map(str, self.at)), (self.record,))


@dataclass(frozen=True)
class NumpyLine(Block):
    """A record's NumPy line (`numpy_line`)."""

    record: str

    @property
    def records(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.record,)

    def note(self) -> Note:
        return Note("code")


@dataclass(frozen=True)
class Chart(Block):
    """A chart or picture, with the title of its first drawing."""

    title: str
    files: tuple[FileNeed, ...] = ()

    def note(self) -> Note:
        return Note("chart", self.title)


@dataclass(frozen=True)
class Wrapper(Block):
    """HTML a macro puts around other blocks: a `<details>` with its summary (other_blocks), or the closing tag."""

    summary: str = ""

    def note(self) -> Note:
        return Note("more", self.summary) if self.summary else Note("end")


@dataclass(frozen=True)
class Other(Block):
    """A table or code the notebook does not reproduce (the symbols, the config, the trace format, PyTorch code),
    and what it is in a few words (`what`), which the notebook says in its place."""

    what: str = ""

    def note(self) -> Note:
        return Note("other", self.what)


@dataclass(frozen=True)
class Group:
    """The blocks (by number) and the page's own text that Markdown reads as one HTML block: one note in the
    notebook."""

    items: tuple[int | str, ...]


Segment = tuple[int, int, "int | str"]  # (start, end) in the filled text: a block's HTML (its number) or page text


class PageBlocks:
    """The blocks of the page being rendered, by number, with the HTML each puts on the page before Markdown and
    the HTML it adds after Markdown (a formula's NumPy line). A page hook may hold something else under a number
    until the page is over (macros.scale: a matrix is drawn once the page's calculations are known)."""

    def __init__(self) -> None:
        self.blocks: list[Any] = []
        self.html: list[str] = []
        self.after: dict[int, str] = {}

    def add(self, block: Any, html: str = "", after: str = "") -> str:
        """Keep a block and return its placeholder."""
        self.blocks.append(block)
        self.html.append(html)
        if after:
            self.after[len(self.blocks) - 1] = after
        return slot(len(self.blocks) - 1)

    def set(self, n: int, block: Block, html: str) -> None:
        """Block `n`, finished (a page hook)."""
        self.blocks[n], self.html[n] = block, html

    def fill(self, text: str) -> tuple[str, list[Segment], dict[int, Block]]:
        """The page's Jinja output with each block's HTML in place of its placeholder, as Markdown reads it; the
        segments of that text (the page's own text and each block's HTML); the blocks used, in page order. A
        block that adds HTML after Markdown keeps its placeholder after its HTML (`finish`)."""
        out: list[str] = []
        segments: list[Segment] = []
        used: dict[int, Block] = {}
        at = 0  # the length of `out`

        def add(piece: str, item: int | str | None) -> None:
            nonlocal at
            if piece and item is not None:
                segments.append((at, at + len(piece), item))
            out.append(piece)
            at += len(piece)

        pos = 0
        matches = list(SLOT_RE.finditer(text))
        for k, m in enumerate(matches):
            n = int(m.group(1))
            add(text[pos:m.start()], text[pos:m.start()])
            add(self.html[n], n)
            used[n] = self.blocks[n]
            if n in self.after and not self._numpy_next(text, matches, k):
                add(m.group(0), None)  # not a segment: the notebook does not see what comes after Markdown
            pos = m.end()
        add(text[pos:], text[pos:])
        return "".join(out), segments, used

    def _numpy_next(self, text: str, matches: list[re.Match], k: int) -> bool:
        """The placeholder after matches[k], with only white space between, is a NumPy line."""
        if k + 1 == len(matches) or text[matches[k].end():matches[k + 1].start()].strip():
            return False
        return isinstance(self.blocks[int(matches[k + 1].group(1))], NumpyLine)

    def finish(self, html: str) -> str:
        """The page's HTML after Markdown, with what blocks add after it in place."""
        return SLOT_RE.sub(lambda m: self.after[int(m.group(1))], html)

    @staticmethod
    def prose(filled: str, segments: list[Segment], ranges: list[tuple[int, int]]) -> list[str | Group]:
        """The page as the notebook reads it: each line of the filled text, its blocks as placeholders, and each
        HTML block Markdown found (`ranges`: first and end line) as one Group."""
        starts = [0] + [m.end() for m in _NEWLINE.finditer(filled)]
        ends = [s - 1 for s in starts[1:]] + [len(filled)]
        html_blocks = dict(ranges)
        out: list[str | Group] = []
        placed: set[int] = set()
        first = 0  # the first segment that does not end before the line

        def overlapping(a: int, b: int) -> list[tuple[int | str, int, int]]:
            nonlocal first
            while first < len(segments) and segments[first][1] <= a:
                first += 1
            found, k = [], first
            while k < len(segments) and segments[k][0] < b:
                start, end, item = segments[k]
                found.append((item, max(a, start) - start, min(b, end) - start))
                k += 1
            return found

        line = 0
        while line < len(starts):
            if line in html_blocks:
                end = max(html_blocks[line], line + 1)
                items: dict[Any, None] = {}
                for item, a, b in overlapping(starts[line], ends[end - 1]):
                    if isinstance(item, int):
                        items[item] = None
                    elif item[a:b].strip():
                        items[item[a:b]] = None
                out.append(Group(tuple(items)))
                line = end
                continue
            parts = []
            for item, a, b in overlapping(starts[line], ends[line]):
                if isinstance(item, str):
                    parts.append(item[a:b])
                elif item not in placed:
                    placed.add(item)
                    parts.append(slot(item))
            out.append("".join(parts))
            line += 1
        return out
