"""Exercises, generated: every page of the forward pass, the backward pass and the optimizer ends with questions
whose answers are numbers of this very step, graded against the trace.

Nothing is typed into the pages. After the pages are rendered, `add_exercises` looks at the records each page
shows (`PageContext.shown`), keeps the ones the page is the first to show (its own steps), and asks, by the rule
of each record's op kind (its `exercise` in engine/ops.py, an `engine.ops.Rule`):

- value   the value of one element (an attention weight, a LayerNorm output, a gradient entry, an updated
          weight...), within a stated tolerance;
- sign    whether one element is positive or negative (graded against the element's value);
- argmax  which entry of a softmax row is largest (which key a query attends to most; which word the model
          thinks comes next): the element is that largest entry, the choice is graded against its index;
- shape   the shape of one record;
- drill   the same arithmetic on small integers, drawn by a seeded generator (the op kind's `drill`, a function
          of engine/drills.py).

A question can be answered from the site (`vet`). Every number it needs is in front of the reader: its question
lists the few inputs of its element (LIST_MAX, to six significant digits), or points at the tables that show them,
on this page or an earlier one (their typed blocks say which elements each table shows: `blocks.Cells`, a window
of a big matrix included). Its tolerance follows from the precision of those numbers: twice the largest change
that rounding them (to six digits, or to a table's four decimals) makes in the answer, worked out by recomputing
the element with each input moved by half a unit of its last digit (`engine.explain.evaluate`), rounded up to one
significant digit. The usual slips (the rule's `mistakes`: a term left out, no 1/N, W for Wᵀ; and the wrong sign)
must land outside it, and the answer must not be one of its inputs; a sign question is asked only where the parts
of the sum have both signs. An element that fails is not asked: the next one of the record is tried.

A record whose op kind has no entry in engine/ops.py is an error; a kind without a rule or a drill says so in its
entry (`No(why)`), and its records are not asked about.

Markup (tests and the browser rely on it): a trace-graded exercise is `<li class="exercise">` with
`data-record`, `data-index` (comma-separated, empty for a scalar), `data-answer` (the value, Python repr) and
`data-tol` (absolute tolerance), plus `data-kind`; a drill is `<li class="drill">` with `data-answer` and
`data-tol`; a shape question is `<li class="shape-question">` with `data-record` and `data-shape`. Each holds the
question (an input it lists is a `<span class="exercise-num">` with `data-record` and `data-at`, as a page's inline
values) and a `<details class="exercise-answer">` with the answer and its worked arithmetic: the lines of
`engine.explain`, typeset through the page's math slots exactly as `calc()` does. templates/assets/exercise.js
adds the answer box, the Check button, the verdict and the progress (localStorage, marked in the sidebar).
"""

from __future__ import annotations

import hashlib
import html
import itertools
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from engine import drills, ops
from engine.explain import evaluate, operands
from site_build.format import describe_shape, full_repr, general, html_text, html_words, html_words_in
from site_build.macros import PageContext
from site_build.macros.blocks import Cells
from site_build.macros.numbers import calc_html, risky_words
from site_build.macros.reference import block_twin
from site_build.macros.registry import RunContext
from site_build.mathslots import SLOT_RE, MathSlots
from site_build.pages import Page, block_number
from site_build.render.markdown import Heading, Rendered
from site_build.tables import DECIMALS

SECTIONS = ("Forward pass", "Backward pass", "Optimization")  # the pages that get exercises
MAX_CANDIDATES = 4096  # elements looked at when picking one (a big record is sampled)
MAX_CHOICES = 16  # an argmax question lists every entry of the row, so rows longer than this are not asked
TRIES = 24  # elements of one record vetted before it is given up (none can be answered from the pages) ...
UNSHOWN_TRIES = 4  # ... or this many of them needing a number no table shows (a window's hidden rows)
REREADS = 4  # the times an op's working may read the same input numbers (inputs: a bound, not a choice)
LIST_MAX = 12  # an element with at most this many inputs has them in its question ...
LISTED_DIGITS = 6  # ... to this many significant digits; more are read from the pages' tables (DECIMALS)
SAFETY = 2  # a tolerance is this many times the change rounding the shown inputs can make: the reader's own
# rounding of what they work out on the way, at the same precision, and the curvature of the op, fit inside it
# Page weight: a page should stay under 40 000 bytes gzipped (tests/site/test_interact.py). Before the exercises are
# added, a page is estimated at BODY_FACTOR × its gzipped HTML + MATH_BYTES per character of its LaTeX + LAYOUT_BYTES
# (fitted to the real pages of four configs; a real page came out at most 2.6 kB above it, PAGE_LIMIT leaves room for
# that). The exercises' fixed HTML costs about FIXED_BYTES, and their working gets what is left of PAGE_LIMIT, counted
# in LaTeX characters of WORKING_BYTES each (generously), between MIN_BUDGET and MAX_BUDGET. An argmax question, the
# best of a page, is asked whatever it costs; values and a sign question take what is left (at least the cheapest
# value). The earlier guess, 1.2 × HTML + 4.8 bytes a character of LaTeX, overshot a page full of per-head tables by a
# fifth, and its dot product did not fit.
PAGE_LIMIT, BODY_FACTOR, MATH_BYTES, LAYOUT_BYTES, FIXED_BYTES, WORKING_BYTES = 36_000, 1.02, 3.55, 3_130, 1_200, 4.8
MIN_BUDGET, MAX_BUDGET = 100, 900
SQRT_CHARS, SUB_CHARS = 130, 15


AXIS_WORDS = {"batch": "text", "heads": "head", "tokens": "position", "keys": "key", "vocab": "word",
              "positions": "position", "d_model": "dimension", "head_dim": "dimension", "d_ff": "unit",
              "qkv": "column", "step": "step", "kv_heads": "key/value head", "kv_dim": "column"}

Op = tuple[str, tuple[int, ...]]  # one input element: (record, index)


# -- the hook ---------------------------------------------------------------------------------------------------
class ExerciseContext(PageContext):
    """A page's context while its exercises are made: it also knows which pages show each record (`everywhere`),
    so a question can say where its inputs are."""

    def __init__(self, run: RunContext, math: MathSlots, source: str, body_line: int,
                 everywhere: dict[str, set[str]]) -> None:
        super().__init__(run, math, source=source, body_line=body_line)
        self.everywhere = everywhere

    def mark(self, name: str) -> None:
        """The working of an answer shows the record: the page's next questions find it "above"."""
        super().mark(name)
        self.everywhere.setdefault(name, set()).add(self.source)


@dataclass
class Item:
    kind: str
    html: str


@dataclass(frozen=True)
class PageExercises:
    """One page's exercises as a value: their HTML, the formulas it uses (the page's own too) and the records the
    answers' working shows."""

    items: tuple[Item, ...]
    math: MathSlots
    marked: tuple[str, ...]

    @staticmethod
    def valid(value: Any) -> bool:
        return (isinstance(value, PageExercises) and isinstance(value.math, MathSlots)
                and all(isinstance(i, Item) and isinstance(i.html, str) for i in value.items)
                and all(isinstance(n, str) for n in value.marked))


@dataclass(frozen=True)
class Place:
    """Where a reader finds numbers: a page (`title`), or the table page of a wide matrix (no title); `here`: on
    or from the page being asked about."""

    url: str
    title: str
    here: bool


# what a question needs (`inputs`): the inputs its question lists, the tables it points at for the rest
# ((record, how many entries, where)), and {input: half a unit of its last shown digit}
Needs = tuple[tuple[Op, ...], tuple[tuple[str, int, "Place"], ...], dict[Op, float]]


class Seen:
    """The elements the tables of the pages up to the one asked about show (their `blocks.Cells`), and where: the
    page itself first, then the pages before it, the nearest first."""

    def __init__(self, places: list[tuple[Place, Cells]]) -> None:
        self.by_record: dict[str, list[tuple[Place, list[Cells]]]] = {}
        sizes: dict[tuple[str, Place], int] = {}
        for place, cells in places:
            count = len(cells.rows or (0,)) * len(cells.cols or (0,))
            sizes[cells.record, place] = sizes.get((cells.record, place), 0) + count
            found = self.by_record.setdefault(cells.record, [])
            group = next((g for p, g in found if p == place), None)
            if group is None:
                found.append((place, [cells]))
            else:
                group.append(cells)
        self.most = max(sizes.values(), default=0)  # the most elements of one record one place shows

    def place(self, record: str, elements: list[tuple[int, ...]]) -> Place | None:
        """The first place whose tables show every one of `elements` of `record`."""
        for place, group in self.by_record.get(record, ()):
            if all(any(e in c for c in group) for e in elements):
                return place
        return None


def add_exercises(run: RunContext, pages: list[Page], results: dict[str, Any], bodies: dict[str, Rendered],
                  shown: dict[str, set[str]], math: MathSlots,
                  kept: Callable[[str, Any, Callable[[], PageExercises]], PageExercises] | None = None) -> None:
    """After the pages are rendered (`results`: render.jinja.PageResult): on every page of the forward pass, the
    backward pass and the optimizer an Exercises section (added to its `bodies`) built from the records it shows
    (`shown`: the pages that show each record; the records an answer's working shows are added, its formulas go
    into `math`), each answerable from the numbers of that page and the pages before it (their blocks' cells).

    `kept(source, inputs, make)` may keep a page's exercises (the build's page cache) under what they depend on
    beside the page: the records it is the first to show, which pages show each record when its turn comes (the
    exercises of the pages before it included) and the cells of the tables up to it. After an edit of one page's
    prose, the others' come back."""
    own = own_records(run.names, shown, pages)
    tables: list[tuple[Page, list[Cells]]] = []
    for page in pages:
        result = results.get(page.source)
        blocks = result.blocks.values() if result is not None else ()
        tables.append((page, [c for block in blocks for c in getattr(block, "cells", ())]))
    for k, page in enumerate(pages):
        if page.section not in SECTIONS or page.source not in bodies:
            continue
        mine = own.get(page.source, [])
        places = [(Place(c.url or p.url, "" if c.url else p.title, p is page), c)
                  for p, cells in [tables[k], *reversed(tables[:k])] for c in cells]
        make = partial(page_exercises_of, run, page, results[page.source], bodies[page.source].html, mine,
                       shown, Seen(places))
        if kept is None:
            made = make()
        else:
            where = tuple(sorted((name, tuple(sorted(sources))) for name, sources in shown.items()))
            made = kept(page.source, (tuple(mine), where, tuple(places)), make)
        for name in made.marked:
            shown.setdefault(name, set()).add(page.source)
        math.add(made.math)
        if made.items:
            body = bodies[page.source]
            names = itertools.chain(("exercises", "exercises-section"), (f"exercises-{k}" for k in itertools.count(2)))
            anchor = next(a for a in names if f' id="{a}"' not in body.html)  # one the page has not (an h4 may)
            body.html += section_html(anchor, list(made.items))
            body.headings.append(Heading(2, anchor, "Exercises"))


def page_exercises_of(run: RunContext, page: Page, result: Any, html: str, own: list[str],
                      shown: dict[str, set[str]], seen: Seen) -> PageExercises:
    """One page's exercises, worked out (`shown` gains the records their working shows)."""
    math = MathSlots()
    math.add(result.math)  # the page's own formulas: its budget weighs them
    ctx = ExerciseContext(run, math, page.source, page.body_line, shown)
    budget = page_budget(ctx, html)
    named = [name for block in result.blocks.values() for name in block.records]
    items = page_exercises(ctx, page, own, seen, budget, named, html)
    return PageExercises(tuple(items), math, tuple(sorted(ctx.shown)))


def own_records(names: list[str], shown: dict[str, set[str]], pages: list[Page]) -> dict[str, list[str]]:
    """{page source: the records it is the first page (in site order) to show}, each list in trace order."""
    order = {p.source: k for k, p in enumerate(pages)}
    out: dict[str, list[str]] = {}
    for name in names:
        where = [s for s in shown.get(name, ()) if s in order]
        if where:
            out.setdefault(min(where, key=order.__getitem__), []).append(name)
    return out


def shown_on(ctx: ExerciseContext, page: Page) -> list[str]:
    return [n for n in ctx.names if page.source in ctx.everywhere.get(n, ())]


# -- one page's exercises --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Asked:
    """One question, vetted (`vet`): its element, its tolerance, the inputs its question lists, the tables it points
    at for the others ((record, how many entries, where)) and the usual slips it grades wrong."""

    kind: str
    name: str
    index: tuple[int, ...]
    tol: float
    listed: tuple[Op, ...] = ()
    places: tuple[tuple[str, int, Place], ...] = ()
    slips: tuple[tuple[str, float], ...] = ()


def page_exercises(ctx: PageContext, page: Page, own: list[str], seen: Seen | None = None,
                   budget: int = 900, named: list[str] | None = None, html: str = "") -> list[Item]:
    """The exercises of one page: a choice (which entry is largest, or a sign), up to two values (the most
    instructive op kinds first), a shape and a drill, each answerable from what the pages show (`seen`).

    Each revealed answer carries its typeset arithmetic, which weighs: an argmax question is asked whatever it
    costs, the values and a sign question only if their working fits the `budget` of LaTeX characters left (but a
    page always gets its cheapest value)."""
    trace = ctx.trace
    seen = seen if seen is not None else Seen([])

    walked = block_number(page.block, int(trace.config["model"]["n_layers"])) or 0  # the page's block

    def first_block(names: list[str]) -> list[str]:
        """The askable records, those of other blocks left out where the page's block (block 0 unless its front
        matter says `block: last`) has the same (same arithmetic: twelve blocks of GPT-2 would only make the choice
        twelve times slower)."""
        ok = [n for n in names if _askable(trace.record(n))]
        return [n for n in ok if (twin := block_twin(n, walked)) in ("", n) or twin not in trace] or ok

    askable = first_block(own)
    if not askable:  # the page shows only records an earlier page owns: ask about those
        askable = first_block(shown_on(ctx, page))
    if not askable:  # a page of formulas and pictures: the records it names (a formula, a chart's record)
        askable = first_block([n for n in dict.fromkeys(named or []) if n in trace])
    ranked = sorted(askable, key=lambda n: (-_rule(trace, n).rank, ctx.names.index(n)))
    seed = int(trace.config.get("seed", 0))

    def first(kind: str, name: str, avoid: frozenset = frozenset()) -> Asked | None:
        """The first element of `name` (in a seeded order) a `kind` question can be asked about."""
        rule = _rule(trace, name)
        if kind == "argmax":
            order = argmax_rows(trace, name, _rng(seed, page.slug, name, "argmax"))
        else:
            order = [rule.at(trace.record(name))] if rule.at else \
                elements(trace, name, _rng(seed, page.slug, name, kind))
        unshown = 0
        for index in order[:TRIES]:
            if index is None or index in avoid:
                continue
            found = needs(ctx, seen, kind, name, index)
            if found is None:  # an input no table shows: the next elements of the record most likely the same
                unshown += 1
                if unshown == UNSHOWN_TRIES:
                    return None
                continue
            asked = vet(ctx, kind, name, index, found)
            if asked is not None:
                return asked
        return None

    # an argmax (the best question of a page) whatever it costs; values of two op kinds, the most instructive first,
    # if their working fits what is left (else the cheapest); a sign question where there is no argmax
    argmax = next((a for n in ranked if _rule(trace, n).choice == "argmax" for a in [first("argmax", n)] if a), None)
    picked: list[Asked] = [argmax] if argmax else []
    left = budget - sum(_cost(ctx, a.name, a.index) for a in picked)
    values: list[Asked] = []  # every value question looked at
    ops_used: set[str] = set()
    for name in ranked:
        op = trace.record(name).op
        if not _rule(trace, name).value or op in ops_used or (argmax and name == argmax.name):
            continue
        asked = first("value", name)
        if asked is None:
            continue
        values.append(asked)
        if _cost(ctx, asked.name, asked.index) <= left:
            picked.append(asked)
            ops_used.add(op)
            left -= _cost(ctx, asked.name, asked.index)
            if len(ops_used) == 2:
                break
    if values and not ops_used:  # over the budget: the cheapest value
        picked.append(min(values, key=lambda v: _cost(ctx, v.name, v.index)))
    if argmax is None:
        asked_names = {a.name for a in picked}
        signs = sorted((n for n in ranked if _rule(trace, n).choice == "sign"), key=lambda n: n in asked_names)
        for name in signs:  # another record than the values' first
            sign = first("sign", name, frozenset(a.index for a in picked if a.name == name))
            if sign is not None and _cost(ctx, sign.name, sign.index) <= left:
                picked.append(sign)
                break
    makers = {"value": value_exercise, "sign": sign_exercise, "argmax": argmax_exercise}
    items = [Item(asked.kind, makers[asked.kind](ctx, asked)) for asked in picked]
    done = {a.name for a in picked}
    shape_name = next((n for n in own + askable if np.ndim(trace[n]) >= 2 and n not in done
                       and not _shape_shown(trace[n].shape, html)), None)
    if shape_name is not None:
        items.append(Item("shape", shape_question(ctx, shape_name)))
    drill_ops = [trace.record(n).op for n in ranked] + [f"{trace.config['optimizer']['name']}_update"]
    for op in drill_ops:
        make = ops.kind(op).drill
        if make:
            d = drills.draw(make, random.Random(f"{seed}:{page.slug}:{op}:drill"), trace.config)
            items.append(Item("drill", drill_html(ctx, d)))
            break
    return items


def _shape_shown(shape: tuple[int, ...], html: str) -> bool:
    """The page prints this shape (a table's caption says `16 × 48`): asking for it would give the answer away."""
    return " × ".join(map(str, shape)) in html


def _cost(ctx: PageContext, name: str, index: tuple[int, ...]) -> int:
    """What the working of one element weighs on the page, in characters of LaTeX: the length of its lines, a
    square root counted as SQRT_CHARS more and a subscript as SUB_CHARS more (what KaTeX makes of them: a fit of the
    typeset size of 1,300 formulas of the site to these counts)."""
    lines = ctx.explain(name, index).latex
    return sum(len(t) + SQRT_CHARS * t.count("\\sqrt") + SUB_CHARS * t.count("_{") for t in lines)


def page_budget(ctx: PageContext, html: str) -> int:
    """The LaTeX characters of working a page's exercises can take (see PAGE_LIMIT). The page is measured with
    its check lines in place (a big run's are filled in once its finite differences are done), so the exercises
    are the same whether the run was made by this build or read from the cache."""
    if ctx.checks is not None:
        html = ctx.checks.fill(html)
    texs = {ctx.math.formulas[n][0] for n in SLOT_RE.findall(html)}
    body = len(zlib.compress(ctx.math.strip(html).encode(), 6))
    estimate = BODY_FACTOR * body + LAYOUT_BYTES + MATH_BYTES * sum(map(len, texs)) + FIXED_BYTES
    return int(min(MAX_BUDGET, max(MIN_BUDGET, (PAGE_LIMIT - estimate) / WORKING_BYTES)))


def _rule(trace: Any, name: str) -> ops.Rule:
    """The exercise rule of a record's op kind (asked only of a record whose kind has one: `_askable`)."""
    rule = ops.kind(trace.record(name).op).exercise
    if not rule:
        raise ValueError(f"{name} is not asked about: {rule.why}")
    return rule


def _askable(rec: Any) -> bool:
    return bool(ops.kind(rec.op).exercise) and rec.value.dtype.kind == "f" and rec.value.size > 0


def _rng(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# -- can it be answered from the pages? ----------------------------------------------------------------------------
def needs(ctx: PageContext, seen: Seen, kind: str, name: str, index: tuple[int, ...]) -> Needs | None:
    """The inputs a `kind` question about element `index` of `name` needs (an argmax: the row it compares), if a
    reader has them all (`inputs`)."""
    if kind == "argmax":
        return inputs(ctx, seen, name, [(*index[:-1], k) for k in argmax_entries(ctx.trace, name, index)], False)
    return inputs(ctx, seen, name, [index], listable=not _rule(ctx.trace, name).lookup)


def vet(ctx: PageContext, kind: str, name: str, index: tuple[int, ...], found: Needs) -> Asked | None:
    """A `kind` question about element `index` of `name`, whose inputs a reader has (`found`: `needs`), if it tells
    the right working from the usual slips (see the module's docstring); else None."""
    trace, rule = ctx.trace, _rule(ctx.trace, name)
    answer = float(np.asarray(trace[name])[index])
    listed, places, halves = found
    if kind == "argmax":
        return Asked(kind, name, index, tolerance(answer), listed, places)
    # the gaps the tolerance must stay under, worked out first: an element that cannot be asked is given up before
    # its tolerance is (an exact tie, as where γ = 1, at once)
    if kind == "sign":
        parts = [p for p in evaluate(trace, name, index, (rule.parts,))[1] if p != 0] if rule.parts else []
        if not min(parts, default=0) < 0 < max(parts, default=0):
            return None
        slips: list[tuple[str, float]] = []
        gaps = [abs(answer)]  # the displayed numbers must decide the sign
    else:
        slips = slips_of(trace, rule, name, index)
        gaps = [abs(wrong - answer) for _, wrong in slips]  # the wrong sign among them
        if not rule.lookup:  # the answer must not be one of the numbers it is worked out from: given away
            gaps += [abs(answer - float(np.asarray(trace[n])[i])) for n, i in halves]
    gap = min(gaps, default=math.inf)
    if not gap > 1e-12 * max(1.0, abs(answer)):
        return None
    # a value is written down at the precision of its inputs too (six digits, or a table's four decimals)
    own = 0.0 if kind == "sign" or not halves else _half_digit(answer) if listed else 0.5 * 10.0 ** -DECIMALS
    moved = own + rounding_change(trace, name, index, halves, gap / SAFETY - own)
    tol = round_up(SAFETY * moved) if moved > 0 else tolerance(answer)  # no rounded input: 3 significant digits
    if not tol < gap:
        return None
    return Asked(kind, name, index, tol, listed, places, tuple(slips))


def inputs(ctx: PageContext, seen: Seen, name: str, elements_: list[tuple[int, ...]], listable: bool) -> Needs | None:
    """What the question on `elements_` of `name` needs, and how precisely a reader has it: (the inputs its
    question lists, the tables it points at for the rest, {input: half a unit of its last shown digit}); None if
    some input is on no table of this page or the ones before it. Word ids and targets are words on the page."""
    trace = ctx.trace
    # an element needing more numbers than the tables could show is given up before they are read (a working may
    # read one row more than once: a mean, then a variance)
    limit = REREADS * max(LIST_MAX if listable else 0, seen.most * len(trace.record(name).inputs))
    found = [_operands(ctx, name, e, limit) for e in elements_]
    if any(f is None for f in found):
        return None
    ops_ = list(dict.fromkeys(op for f in found for op in f))
    real = {n: np.asarray(trace[n]).dtype.kind == "f" for n in dict.fromkeys(n for n, _ in ops_)}
    floats = [op for op in ops_ if real[op[0]]]
    if listable and len(floats) <= LIST_MAX:
        return tuple(floats), (), {op: _half_digit(float(np.asarray(trace[op[0]])[op[1]])) for op in floats}
    by_record: dict[str, list[tuple[int, ...]]] = {}
    for n, i in floats:
        by_record.setdefault(n, []).append(i)
    places = []
    for n, wanted in by_record.items():
        place = seen.place(n, wanted)
        if place is None:
            return None
        places.append((n, len(wanted), place))
    return (), tuple(places), {op: 0.5 * 10.0 ** -DECIMALS for op in floats}


def _operands(ctx: PageContext, name: str, index: tuple[int, ...], limit: int) -> list[Op] | None:
    """The element's operands (engine.explain.operands), or None when it reads more than `limit` numbers; kept
    for the pages after, whose tables may show more (a larger limit)."""
    key = ("operands", name, index)
    found = ctx.memo.get(key)
    if found is None or (found[1] is None and found[0] < limit):
        found = ctx.memo[key] = (limit, operands(ctx.trace, name, index, limit))
    return found[1]


def _half_digit(x: float) -> float:
    """Half a unit of the last of LISTED_DIGITS significant digits of x (0 for 0: it is shown exactly)."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(x))) - LISTED_DIGITS + 1)


def rounding_change(trace: Any, name: str, index: tuple[int, ...], halves: dict[Op, float],
                    limit: float = math.inf) -> float:
    """How far the element can move when each input is moved by half a unit of its last shown digit, one at a
    time, the moves added up: the error of the answer worked out from the rounded numbers, to first order (the
    sum so far once it reaches `limit`: too much already)."""
    terms: dict = {}  # the element's einsum terms, gathered once for all the patches
    base = evaluate(trace, name, index, terms=terms)[0]
    total = 0.0
    for op, h in halves.items():
        x = float(np.asarray(trace[op[0]])[op[1]])
        if h > 0 and math.isfinite(x):
            total += abs(evaluate(trace, name, index, patch={op: x + h}, terms=terms)[0] - base)
            if total >= limit:
                break
    return total


def round_up(x: float) -> float:
    """x rounded up to one significant digit: 0.00231 → 0.003."""
    e = math.floor(math.log10(x))
    m = math.ceil(round(x / 10.0 ** e, 9))
    return float(f"{m}e{e}") if m < 10 else float(f"1e{e + 1}")


def slips_of(trace: Any, rule: ops.Rule, name: str, index: tuple[int, ...]) -> list[tuple[str, float]]:
    """The usual wrong answers for one element: the wrong sign, the rule's mistakes where they apply, W for Wᵀ."""
    out = [("the wrong sign", -float(np.asarray(trace[name])[index]))]
    whens = evaluate(trace, name, index, tuple(f"1 if ({m.when or 1}) else 0" for m in rule.mistakes))[1:]
    live = [m for m, w in zip(rule.mistakes, whens) if w]
    out.extend(zip((m.what for m in live), evaluate(trace, name, index, tuple(m.value for m in live))[1:]))
    if rule.transposed:
        wrong = transposed(trace, name, index)
        if wrong is not None:
            out.append(("W for Wᵀ (a square matrix read the wrong way round)", wrong))
    return out


def transposed(trace: Any, name: str, index: tuple[int, ...]) -> float | None:
    """The element of a product with a square matrix, the matrix read the wrong way round (None without one)."""
    rec = trace.record(name)
    lhs, out = str(rec.meta.get("einsum", "->")).split("->")
    specs = lhs.split(",")
    arrays = [np.asarray(trace[n]) for n in rec.inputs[:len(specs)]]
    square = [k for k, a in enumerate(arrays) if a.ndim == 2 and a.shape[0] == a.shape[1]]
    if len(specs) != 2 or not square:
        return None
    specs[square[0]] = specs[square[0]][::-1]
    fixed = dict(zip(out, index))
    parts = [(a[tuple(fixed.get(ch, slice(None)) for ch in sp)], "".join(ch for ch in sp if ch not in fixed))
             for sp, a in zip(specs, arrays)]
    total = float(np.einsum(",".join(sub for _, sub in parts) + "->", *(a for a, _ in parts)))
    if rec.op == "linear":
        total += float(np.asarray(trace[rec.inputs[2]])[index[-1]])
    return total


# -- which element ----------------------------------------------------------------------------------------------
def _region(trace: Any, rec: Any) -> list[range]:
    """The index ranges a question may pick from: text 0, the positions that have a target, keys up to the query."""
    shape, axes = rec.value.shape, list(rec.axes)
    targets = np.asarray(trace["targets"]) if "targets" in trace else None
    valid = [int(t) for t in np.flatnonzero(targets[0] >= 0)] if targets is not None and targets.ndim == 2 else []
    out = []
    for axis, n in zip(axes, shape):
        if axis == "batch":
            out.append(range(1))
        elif axis in ("tokens", "keys") and valid and max(valid) < n:
            out.append(range(max(valid) + 1))
        else:
            out.append(range(n))
    return out


def _candidates(trace: Any, rec: Any, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """The elements a question may ask about, in index order: all of the region (_region), or MAX_CANDIDATES drawn
    from it; never a masked key (after its query) nor a position without a target."""
    region = _region(trace, rec)
    axes = list(rec.axes)
    sizes = [len(r) for r in region]
    if not sizes:
        return [()]
    if math.prod(sizes) <= MAX_CANDIDATES:
        found = np.indices(sizes).reshape(len(sizes), -1).T  # row-major, as np.ndindex
    else:
        draws = np.stack([rng.integers(n, size=MAX_CANDIDATES) for n in sizes])  # one draw per axis
        found = np.stack(np.unravel_index(np.unique(np.ravel_multi_index(draws, sizes)), sizes), axis=1)  # sorted
    idx = np.stack([np.asarray(r)[found[:, k]] for k, r in enumerate(region)], axis=1).reshape(-1, len(sizes))
    keep = np.ones(len(idx), dtype=bool)
    if "tokens" in axes and "keys" in axes:
        keep &= idx[:, axes.index("keys")] <= idx[:, axes.index("tokens")]
    targets = np.asarray(trace["targets"]) if "targets" in trace else None
    if "tokens" in axes and targets is not None and targets.ndim == 2:
        rows = idx[:, axes.index("batch")] if "batch" in axes else np.zeros(len(idx), dtype=int)
        keep &= targets[rows, idx[:, axes.index("tokens")]] >= 0
    return list(map(tuple, idx[keep].tolist()))


def elements(trace: Any, name: str, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """The elements worth asking about, in the seeded order they are tried: finite and not zero, the larger half
    of the record's magnitudes first (so that a tolerance is a fair share of the answer), then the rest."""
    value = np.asarray(trace[name])
    if value.ndim == 0:
        return [()] if math.isfinite(float(value)) and float(value) != 0 else []
    cands = _candidates(trace, trace.record(name), rng)
    vals = np.asarray(value[tuple(np.array(cands).T)], dtype=float) if cands else np.zeros(0)
    ok = np.isfinite(vals) & (np.abs(vals) > 1e-12 * max(1.0, float(np.abs(vals[np.isfinite(vals)]).max(initial=0))))
    if not ok.any():
        return []
    big = np.abs(vals) >= np.median(np.abs(vals[ok]))
    order = []
    for keep in (ok & big, ok & ~big):
        pool = [c for c, k in zip(cands, keep) if k]
        order.extend(pool[k] for k in rng.permutation(len(pool)))
    return order


def argmax_rows(trace: Any, name: str, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """The largest entry of each softmax row with a clear winner (its lead over the runner-up ≥ 0.02), in a seeded
    order."""
    rec = trace.record(name)
    value = np.asarray(rec.value)
    if value.ndim < 2 or value.shape[-1] > MAX_CHOICES:
        return []
    rows = sorted({i[:-1] for i in _candidates(trace, rec, rng)})
    good = []
    for row in rows:
        r = value[row]
        visible = r[np.isfinite(r) & (r > 0)] if rec.axes[-1] == "keys" else r
        if visible.size < 2:
            continue
        top = np.sort(visible)[-2:]
        if top[1] - top[0] >= 0.02:
            good.append((*row, int(np.argmax(r))))
    return [good[k] for k in rng.permutation(len(good))]


def argmax_entries(trace: Any, name: str, index: tuple[int, ...]) -> list[int]:
    """The entries an argmax question offers: the row's finite ones, not a masked key nor a position without a
    target."""
    rec = trace.record(name)
    row = np.asarray(rec.value)[index[:-1]]
    last = rec.axes[-1]
    allowed = {i[-1] for i in _candidates(trace, rec, np.random.default_rng(0)) if i[:-1] == index[:-1]}
    return [k for k in range(row.shape[0]) if np.isfinite(row[k]) and not (last == "keys" and row[k] == 0)
            and (last != "tokens" or k in allowed)]


def tolerance(answer: float) -> float:
    """About three significant digits: 0.001 for an answer of 0.4567, 1e-9 for 3.2e-7 (a choice question's, and a
    value read off the pages with no input to round)."""
    if answer == 0 or not math.isfinite(answer):
        return 1e-6
    return float(10.0 ** (math.floor(math.log10(abs(answer))) - 2))


# -- the HTML of each kind --------------------------------------------------------------------------------------
def section_html(anchor: str, items: list[Item]) -> str:
    lis = "".join(item.html for item in items)
    return (f'<section class="exercises" aria-labelledby="{anchor}" data-pagefind-ignore>'
            f'<h2 id="{anchor}">Exercises <a class="anchor" href="#{anchor}" aria-label="Link to this section">#</a>'
            "</h2>"
            '<p class="exercises-intro">Work them out before you look: the answers are numbers of this very step.'
            "</p>"
            f'<ol class="exercise-list">{lis}</ol></section>')


def _where(ctx: PageContext, rec: Any, index: tuple[int, ...]) -> str:
    """`head 1, position 3 (“on”), key 2 (“sat”)` in HTML (as many axes as `index` has)."""
    labels = ctx.trace.labels
    b = index[list(rec.axes).index("batch")] if "batch" in rec.axes else 0
    words = labels["inputs"][min(b, len(labels["inputs"]) - 1)]
    parts = []
    for ax, k, n in zip(rec.axes, index, rec.value.shape):
        if ax == "batch" and n == 1:
            continue
        # texts are counted from 1 for readers (as the pages' text_name does); positions, heads, keys from 0
        part = f"text {k + 1}" if ax == "batch" else f"{AXIS_WORDS.get(ax, html_text(ax))} {k}"
        if ax in ("tokens", "keys") and k < len(words):
            part += f" (“{html_words(words[k])}”)"
        elif ax == "vocab" and k < len(labels["vocab"]):
            part += f" (“{html_words(labels['vocab'][k])}”)"
        parts.append(part)
    return ", ".join(parts)


def _element(ctx: PageContext, rec: Any, index: tuple[int, ...]) -> str:
    """`<code>L0.attn.scores</code> at head 1, position 3 (“on”), key 2 (“sat”)` (no typeset symbol: the working
    below names the element in math, and every formula weighs on the page)."""
    where = _where(ctx, rec, index)
    return f"<code>{html_text(rec.name)}</code>" + (f" at {where}" if where else "")


def _inputs(ctx: PageContext, asked: Asked) -> str:
    """What the question needs: each input's value when it lists them, else the records and where to find them."""
    parts = [f"<code>{html_text(n)}</code>{'[' + ', '.join(map(str, i)) + ']' if i else ''} = "
             f'<span class="exercise-num" data-record="{html.escape(n)}" data-at="{",".join(map(str, i))}">'
             f"{_show(np.asarray(ctx.trace[n])[i])}</span>" for n, i in asked.listed]
    for n, count, place in asked.places:
        what = "the right entry" if count == 1 else f"{count} entries"
        parts.append(f"{what} of <code>{html_text(n)}</code>{_place_words(place)}")
    return '<p class="exercise-inputs">You need: ' + "; ".join(parts) + ".</p>" if parts else ""


def _place_words(place: Place) -> str:
    """` (above)`, ` (on Layer normalisation)`, ` (in the table of all its numbers)`, links included."""
    url = html.escape(place.url)
    if not place.title:
        return f' (in <a href="{url}">the table of all its numbers</a>)'
    return " (above)" if place.here else f' (on <a href="{url}">{html_text(place.title)}</a>)'


def _show(x: Any) -> str:
    x = x.item() if hasattr(x, "item") else x
    if isinstance(x, float) and math.isinf(x):
        return "−∞" if x < 0 else "∞"
    return general(x, LISTED_DIGITS).replace("-", "−") if isinstance(x, float) else str(x).replace("-", "−")


def _attrs(kind: str, name: str, index: tuple[int, ...], answer: float, tol: float) -> str:
    return (f' data-kind="{kind}" data-record="{html.escape(name)}" data-index="{",".join(map(str, index))}" '
            f'data-answer="{full_repr(answer)}" data-tol="{full_repr(tol)}"')


def _reveal(ctx: PageContext, name: str, index: tuple[int, ...], lead: str) -> str:
    # calc()'s block, with a class of its own: pages are checked for calc() blocks, and these are not the page's
    working = calc_html(ctx, name, index, "calc-step exercise-working")
    return (f'<details class="exercise-answer"><summary>Answer and working</summary>'
            f'<p class="exercise-solution">{lead}</p>{working}</details>')


def _value_text(x: float) -> str:
    return f'<strong>{_show(float(x))}</strong> (exactly <code>{full_repr(float(x))}</code>)'


def _slips_text(asked: Asked) -> str:
    """The usual slips the tolerance grades wrong, and what each gives (the wrong sign goes without saying)."""
    shown = [(what, x) for what, x in asked.slips if what != "the wrong sign"][:3]
    if not shown:
        return ""
    return " Slips give other numbers: " + "; ".join(f"{html_text(what)}, {_show(float(x))}" for what, x in shown) + "."


def value_exercise(ctx: PageContext, asked: Asked) -> str:
    name, index, tol = asked.name, asked.index, asked.tol
    rec = ctx.trace.record(name)
    answer = float(np.asarray(rec.value)[index])
    expl = ctx.explain(name, index)
    # the explanation may quote a config word: isolated, as in calc()
    how = f" {html_words_in(expl.text[0].upper() + expl.text[1:], risky_words(ctx))}." if expl.text else ""
    question = (f'<p class="exercise-q">What is {_rule(ctx.trace, name).what}, {_element(ctx, rec, index)}?{how}</p>'
                + _inputs(ctx, asked)
                + f'<p class="exercise-tol">Answer within ±{general(tol, 1)}.</p>')
    return (f'<li class="exercise"{_attrs("value", name, index, answer, tol)}>'
            f'<div class="exercise-question">{question}</div>'
            + _reveal(ctx, name, index, f"The answer is {_value_text(answer)}.{_slips_text(asked)}") + "</li>")


def sign_exercise(ctx: PageContext, asked: Asked) -> str:
    name, index = asked.name, asked.index
    rec = ctx.trace.record(name)
    answer = float(np.asarray(rec.value)[index])
    word = "positive" if answer > 0 else "negative"
    question = (f'<p class="exercise-q">Positive or negative: {_rule(ctx.trace, name).what}, '
                f'{_element(ctx, rec, index)}?</p>'
                + _inputs(ctx, asked))
    choices = _choices([("positive", "positive"), ("negative", "negative")])
    return (f'<li class="exercise"{_attrs("sign", name, index, answer, asked.tol)}>'
            f'<div class="exercise-question">{question}{choices}</div>'
            + _reveal(ctx, name, index, f"It is {word}: {_value_text(answer)}.") + "</li>")


def argmax_exercise(ctx: PageContext, asked: Asked) -> str:
    name, index = asked.name, asked.index
    rec = ctx.trace.record(name)
    rule = _rule(ctx.trace, name)
    answer = float(np.asarray(rec.value)[index])
    last = rec.axes[-1]
    labels = ctx.trace.labels
    b = index[0] if rec.axes[0] == "batch" else 0
    words = labels["inputs"][b] if last in ("keys", "tokens") else labels["vocab"]
    entries = argmax_entries(ctx.trace, name, index)

    def label(k: int) -> str:
        return f"{k} “{html_words(words[k])}”" if k < len(words) else str(k)

    row_where = _where(ctx, rec, index[:-1])
    shown = "".join(_place_words(p) for _, _, p in asked.places[:1])
    source = asked.places[0][0] if asked.places else name
    if last == "keys":
        ask = f"Which key does the query at {row_where} attend to most (the largest weight of its row)?"
    elif last == "vocab":
        ask = f"Which word does the model give the highest probability at {row_where}?"
    elif last == "tokens":
        ask = (f"At which position is {rule.what} largest: <code>{html_text(name)}</code>"
               f"{' at ' + row_where if row_where else ''}? Compare <code>{html_text(source)}</code>{shown}.")
    else:
        ask = f"Which entry of the row at {row_where} is largest?"
    hint = ""
    if rule.keeps_order and rec.inputs:
        hint = (f" Predict it before you look at the row: the softmax keeps the order of its input, "
                f"<code>{html_text(rec.inputs[0])}</code>{shown}.")
    question = (f'<p class="exercise-q">{ask}{hint}</p>'
                + _choices([(str(k), label(k)) for k in entries]))
    noun = "weight" if last == "keys" else rule.noun
    lead = f"{label(index[-1])}, with {noun} {_value_text(answer)}."
    return (f'<li class="exercise"{_attrs("argmax", name, index, answer, asked.tol)}>'
            f'<div class="exercise-question">{question}</div>' + _reveal(ctx, name, index, lead) + "</li>")


def _choices(choices: list[tuple[str, str]]) -> str:
    """The answers to pick from, each `<span data-choice="value">label</span>` (exercise.js makes them radio
    buttons, keeping each label's markup: a config word stays isolated)."""
    spans = "; ".join(f'<span data-choice="{html.escape(value)}">{label}</span>' for value, label in choices)
    return f'<p class="exercise-choices">Choices: {spans}.</p>'


def shape_question(ctx: PageContext, name: str) -> str:
    rec = ctx.trace.record(name)
    shape = tuple(int(n) for n in rec.value.shape)
    why = ""
    if name.startswith("grad."):
        why = " A gradient has the shape of what it is the gradient of."
    elif name.startswith(("opt.", "updated.")):
        why = " The optimizer keeps one number per weight, so its records have the parameter's shape."
    question = (f'<p class="exercise-q">What is the shape of <code>{html_text(name)}</code>? Give the size of every '
                "axis, e.g. <code>2 × 3</code>.</p>")
    return (f'<li class="shape-question" data-kind="shape" data-record="{html.escape(name)}" '
            f'data-shape="{",".join(map(str, shape))}"><div class="exercise-question">{question}</div>'
            f'<details class="exercise-answer"><summary>Answer</summary><p class="exercise-solution">'
            f"<strong>{html_text(describe_shape(shape, rec.axes))}</strong>.{why}</p></details></li>")


def drill_html(ctx: PageContext, d: drills.Drill) -> str:
    lines = "".join(f'<div class="drill-line">{html_text(line)}</div>' for line in d.lines)
    tol = f"Answer within ±{general(d.tol, 1)}." if d.tol >= 1e-4 else "The answer is exact (a short decimal)."
    return (f'<li class="drill" data-kind="drill" data-op="{html.escape(d.op)}" data-answer="{full_repr(d.answer)}" '
            f'data-tol="{full_repr(d.tol)}"><div class="exercise-question"><p class="exercise-q">'
            f'<span class="drill-tag">Pen and paper.</span> {html_text(d.question)}</p>'
            f'<p class="exercise-tol">{tol}</p></div>'
            f'<details class="exercise-answer"><summary>Answer and working</summary><p class="exercise-solution">'
            f"The answer is <strong>{_show(float(d.answer))}</strong>.</p>"
            f'<div class="drill-working">{lines}</div></details></li>')
