"""Exercises, generated: every page of the forward pass, the backward pass and the optimizer ends with questions
whose answers are numbers of this very step, graded against the trace.

Nothing is typed into the pages. After the pages are rendered, `add_exercises` looks at the records each page
shows (`PageContext.shown`), keeps the ones the page is the first to show (its own steps), and asks, by the rule
of each record's op kind (its `exercise` in engine/ops.py, an `engine.ops.Rule`):

- value   the value of one element (an attention weight, a LayerNorm output, a gradient entry, an updated
          weight...), its inputs shown or linked, within a stated tolerance;
- sign    whether one element is positive or negative (graded against the element's value);
- argmax  which entry of a softmax row is largest (which key a query attends to most; which word the model
          thinks comes next): the element is that largest entry, the choice is graded against its index;
- shape   the shape of one record;
- drill   the same arithmetic on small integers, drawn by a seeded generator (the op kind's `drill`, a function
          of engine/drills.py).

A record whose op kind has no entry in engine/ops.py is an error; a kind without a rule or a drill says so in its
entry (`No(why)`), and its records are not asked about.

Markup (tests and the browser rely on it): a trace-graded exercise is `<li class="exercise">` with
`data-record`, `data-index` (comma-separated, empty for a scalar), `data-answer` (the value, Python repr) and
`data-tol` (absolute tolerance), plus `data-kind`; a drill is `<li class="drill">` with `data-answer` and
`data-tol`; a shape question is `<li class="shape-question">` with `data-record` and `data-shape`. Each holds the
question and a `<details class="exercise-answer">` with the answer and its worked arithmetic: the lines of
`engine.explain`, typeset through the page's math slots exactly as `calc()` does. templates/assets/exercise.js
adds the answer box, the Check button, the verdict and the progress (localStorage, marked in the sidebar).
"""

from __future__ import annotations

import hashlib
import html
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from engine import drills, ops
from site_build.format import describe_shape, full_repr, general, html_text, html_words
from site_build.macros import PageContext
from site_build.macros.numbers import calc_html
from site_build.macros.reference import first_block_twin
from site_build.macros.registry import RunContext
from site_build.pages import Page
from site_build.render.markdown import Heading, Rendered
from site_build.render.mathslots import SLOT_RE, MathSlots

SECTIONS = ("Forward pass", "Backward pass", "Optimization")  # the pages that get exercises
MAX_CANDIDATES = 4096  # elements looked at when picking one (a big record is sampled)
MAX_CHOICES = 16  # an argmax question lists every entry of the row, so rows longer than this are not asked
# Page weight: a page should stay under 40 000 bytes gzipped (tests/site/test_interact.py). Before the exercises are
# added, a page is estimated (generously) at BODY_FACTOR × its gzipped HTML + LAYOUT_BYTES + MATH_BYTES per character
# of its LaTeX; the exercises' fixed HTML costs about FIXED_BYTES, and their working gets what is left of PAGE_LIMIT,
# counted in LaTeX characters, between MIN_BUDGET (the cheapest exercise always fits) and MAX_BUDGET.
PAGE_LIMIT, BODY_FACTOR, LAYOUT_BYTES, MATH_BYTES, FIXED_BYTES = 38_500, 1.2, 2_500, 4.8, 1_200
MIN_BUDGET, MAX_BUDGET = 100, 900


AXIS_WORDS = {"batch": "text", "heads": "head", "tokens": "position", "keys": "key", "vocab": "word",
              "positions": "position", "d_model": "dimension", "head_dim": "dimension", "d_ff": "unit",
              "qkv": "column", "step": "step", "kv_heads": "key/value head", "kv_dim": "column"}


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


def add_exercises(run: RunContext, pages: list[Page], results: dict[str, Any], bodies: dict[str, Rendered],
                  shown: dict[str, set[str]], math: MathSlots,
                  kept: Callable[[str, Any, Callable[[], PageExercises]], PageExercises] | None = None) -> None:
    """After the pages are rendered (`results`: render.jinja.PageResult): on every page of the forward pass, the
    backward pass and the optimizer an Exercises section (added to its `bodies`) built from the records it shows
    (`shown`: the pages that show each record; the records an answer's working shows are added, its formulas go
    into `math`).

    `kept(source, inputs, make)` may keep a page's exercises (the build's page cache) under what they depend on
    beside the page: the records it is the first to show, and which pages show each record when its turn comes (the
    exercises of the pages before it included). After an edit of one page's prose, the others' come back."""
    own = own_records(run.names, shown, pages)
    for page in pages:
        if page.section not in SECTIONS or page.source not in bodies:
            continue
        mine = own.get(page.source, [])
        make = partial(page_exercises_of, run, page, pages, results[page.source], bodies[page.source].html, mine,
                       shown)
        if kept is None:
            made = make()
        else:
            where = tuple(sorted((name, tuple(sorted(sources))) for name, sources in shown.items()))
            made = kept(page.source, (tuple(mine), where), make)
        for name in made.marked:
            shown.setdefault(name, set()).add(page.source)
        math.add(made.math)
        if made.items:
            body = bodies[page.source]
            ids = {heading.id for heading in body.headings}
            anchor = "exercises" if "exercises" not in ids else "exercises-section"
            body.html += section_html(anchor, list(made.items))
            body.headings.append(Heading(2, anchor, "Exercises"))


def page_exercises_of(run: RunContext, page: Page, pages: list[Page], result: Any, html: str, own: list[str],
                      shown: dict[str, set[str]]) -> PageExercises:
    """One page's exercises, worked out (`shown` gains the records their working shows)."""
    math = MathSlots()
    math.add(result.math)  # the page's own formulas: its budget weighs them
    ctx = ExerciseContext(run, math, page.source, page.body_line, shown)
    budget = page_budget(ctx, html)
    named = [name for block in result.blocks.values() for name in block.records]
    items = page_exercises(ctx, page, pages, own, budget, named)
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
def page_exercises(ctx: PageContext, page: Page, pages: list[Page], own: list[str], budget: int = 900,
                   named: list[str] | None = None) -> list[Item]:
    """The exercises of one page: up to two values (the most instructive op kinds first), a sign or argmax
    choice, a shape and a drill.

    Each revealed answer carries its typeset arithmetic, which weighs: the trace exercises of a page share a
    `budget` of LaTeX characters of working (a long sum costs more than a LayerNorm entry), and a page always gets
    at least its cheapest one."""
    trace = ctx.trace

    def first_block(names: list[str]) -> list[str]:
        """The askable records, those of later blocks left out where block 0 has the same (same arithmetic: twelve
        blocks of GPT-2 would only make the choice twelve times slower)."""
        ok = [n for n in names if _askable(trace.record(n))]
        return [n for n in ok if first_block_twin(n) not in trace] or ok

    askable = first_block(own)
    if not askable:  # the page shows only records an earlier page owns: ask about those
        askable = first_block(shown_on(ctx, page))
    if not askable:  # a page of formulas and pictures: the records it names (a formula, a chart's record)
        askable = first_block([n for n in dict.fromkeys(named or []) if n in trace])
    ranked = sorted(askable, key=lambda n: (-_rule(trace, n).rank, ctx.names.index(n)))
    seed = int(trace.config.get("seed", 0))

    values: list[tuple[str, tuple[int, ...]]] = []  # (record, index); costs are worked out when looked at
    for name in ranked:
        if not _rule(trace, name).value:
            continue
        at = _rule(trace, name).at
        index = at(trace.record(name)) if at else pick_element(trace, name, _rng(seed, page.slug, name, "value"))
        if index is not None:
            values.append((name, index))
    choices: list[tuple[str, str, tuple[int, ...]]] = []
    for name in ranked:
        kind = _rule(trace, name).choice
        index = None
        if kind == "argmax":
            index = pick_argmax(trace, name, _rng(seed, page.slug, name, "argmax"))
        elif kind == "sign":
            index = pick_element(trace, name, _rng(seed, page.slug, name, "sign"), avoid={v[1] for v in values})
        if index is not None:
            choices.append((kind, name, index))
    picked: list[tuple[str, str, tuple[int, ...]]] = []  # (kind, record, index)
    left = budget
    argmax = next((c for c in choices if c[0] == "argmax" and _cost(ctx, *c[1:]) <= left), None)
    if argmax is not None:  # which key a query attends to most, which word comes next: the best question of a page
        picked.append(argmax)
        left -= _cost(ctx, *argmax[1:])
    ops_used: set[str] = set()
    for name, index in values:
        op = trace.record(name).op
        if len(ops_used) < 2 and op not in ops_used and (argmax is None or name != argmax[1]) \
                and _cost(ctx, name, index) <= left:
            picked.insert(len(ops_used), ("value", name, index))
            ops_used.add(op)
            left -= _cost(ctx, name, index)
    if argmax is None:
        asked = {name for _, name, _ in picked}
        for kind, name, index in sorted(choices, key=lambda c: c[1] in asked):  # another record first
            if _cost(ctx, name, index) <= left:
                picked.append((kind, name, index))
                break
    if not any(kind == "value" for kind, _, _ in picked) and values:  # over the budget: the cheapest value
        name, index = min(values, key=lambda v: _cost(ctx, *v))
        picked.insert(0, ("value", name, index))
    items: list[Item] = []
    titles = {p.source: p for p in pages}
    makers = {"value": value_exercise, "sign": sign_exercise, "argmax": argmax_exercise}
    for kind, name, index in picked:
        items.append(Item(kind, makers[kind](ctx, page, titles, name, index)))
    asked = {name for _, name, _ in picked}
    shape_name = next((n for n in own + askable if np.ndim(trace[n]) >= 2 and n not in asked), None)
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


def _cost(ctx: PageContext, name: str, index: tuple[int, ...]) -> int:
    """What the working of one element weighs on the page: the length of its LaTeX lines."""
    return sum(len(line) for line in ctx.explain(name, index).latex)


def page_budget(ctx: PageContext, html: str) -> int:
    """The LaTeX characters of working a page's exercises can take (see PAGE_LIMIT). The page is measured with
    its check lines in place (a big run's are filled in once its finite differences are done), so the exercises
    are the same whether the run was made by this build or read from the cache."""
    if ctx.checks is not None:
        html = ctx.checks.fill(html)
    texs = {ctx.math.formulas[n][0] for n in SLOT_RE.findall(html)}
    body = len(zlib.compress(ctx.math.strip(html).encode(), 6))
    estimate = BODY_FACTOR * body + LAYOUT_BYTES + MATH_BYTES * sum(map(len, texs)) + FIXED_BYTES
    return int(min(MAX_BUDGET, max(MIN_BUDGET, (PAGE_LIMIT - estimate) / MATH_BYTES)))


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


def pick_element(trace: Any, name: str, rng: np.random.Generator, avoid: set | None = None) -> tuple[int, ...] | None:
    """A seeded choice of one element worth asking about: finite, not zero, in the larger half of the record's
    magnitudes (so that the stated tolerance is a fair share of it), not one already asked."""
    rec = trace.record(name)
    value = np.asarray(rec.value)
    if value.ndim == 0:
        return () if math.isfinite(float(value)) and float(value) != 0 else None
    cands = [i for i in _candidates(trace, rec, rng) if i not in (avoid or set())]
    vals = np.asarray(value[tuple(np.array(cands).T)], dtype=float) if cands else np.zeros(0)
    ok = np.isfinite(vals) & (np.abs(vals) > 1e-12 * max(1.0, float(np.abs(vals[np.isfinite(vals)]).max(initial=0))))
    if not ok.any():
        return None
    big = np.abs(vals) >= np.median(np.abs(vals[ok]))
    pool = [c for c, keep in zip(cands, ok & big) if keep]
    return pool[int(rng.integers(len(pool)))]


def pick_argmax(trace: Any, name: str, rng: np.random.Generator) -> tuple[int, ...] | None:
    """The largest entry of a softmax row with a clear winner (its lead over the runner-up ≥ 0.02)."""
    rec = trace.record(name)
    value = np.asarray(rec.value)
    if value.ndim < 2 or value.shape[-1] > MAX_CHOICES:
        return None
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
    return good[int(rng.integers(len(good)))] if good else None


def tolerance(answer: float) -> float:
    """About three significant digits: 0.001 for an answer of 0.4567, 1e-9 for 3.2e-7."""
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


def _inputs(ctx: PageContext, page: Page, titles: dict[str, Page], name: str, index: tuple[int, ...]) -> str:
    """What the question needs: each input element's value when there are a few, else the records and the pages
    that show them."""
    expl = ctx.explain(name, index)
    distinct = list(dict.fromkeys(expl.operands))  # in order, once each (a softmax over 50,257 words has as many)
    if not distinct:
        return ""
    if len(distinct) <= 6 and not _rule(ctx.trace, name).lookup:
        parts = [f"<code>{html_text(n)}</code>[{', '.join(map(str, i))}] = "
                 f'<span class="exercise-num">{_show(ctx.trace[n][i])}</span>' for n, i in distinct]
        return '<p class="exercise-inputs">You need: ' + "; ".join(parts) + ".</p>"
    by_record: dict[str, int] = {}
    for n, _ in distinct:
        by_record[n] = by_record.get(n, 0) + 1
    parts = []
    for n, count in by_record.items():
        what = "the right entry" if count == 1 else f"{count} entries"
        parts.append(f"{what} of <code>{html_text(n)}</code>{_where_shown(ctx, page, titles, n)}")
    return '<p class="exercise-inputs">You need: ' + "; ".join(parts) + ".</p>"


def _where_shown(ctx: PageContext, page: Page, titles: dict[str, Page], name: str) -> str:
    sources = sorted(ctx.everywhere.get(name, ()), key=lambda s: list(titles).index(s) if s in titles else 0)
    if page.source in sources:
        return " (above)"
    links = [f'<a href="{html.escape(titles[s].url)}">{html_text(titles[s].title)}</a>' for s in sources if s in titles]
    return f" (on {', '.join(links[:2])})" if links else ""


def _show(x: Any) -> str:
    x = x.item() if hasattr(x, "item") else x
    return general(x, 6).replace("-", "−") if isinstance(x, float) else str(x).replace("-", "−")


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


def value_exercise(ctx: PageContext, page: Page, titles: dict[str, Page], name: str, index: tuple[int, ...]) -> str:
    rec = ctx.trace.record(name)
    answer = float(np.asarray(rec.value)[index])
    tol = tolerance(answer)
    expl = ctx.explain(name, index)
    how = f" {html_text(expl.text[0].upper() + expl.text[1:])}." if expl.text else ""
    question = (f'<p class="exercise-q">What is {_rule(ctx.trace, name).what}, {_element(ctx, rec, index)}?{how}</p>'
                + _inputs(ctx, page, titles, name, index)
                + f'<p class="exercise-tol">Answer within ±{general(tol, 1)}.</p>')
    return (f'<li class="exercise"{_attrs("value", name, index, answer, tol)}>'
            f'<div class="exercise-question">{question}</div>'
            + _reveal(ctx, name, index, f"The answer is {_value_text(answer)}.") + "</li>")


def sign_exercise(ctx: PageContext, page: Page, titles: dict[str, Page], name: str, index: tuple[int, ...]) -> str:
    rec = ctx.trace.record(name)
    answer = float(np.asarray(rec.value)[index])
    word = "positive" if answer > 0 else "negative"
    question = (f'<p class="exercise-q">Positive or negative: {_rule(ctx.trace, name).what}, '
                f'{_element(ctx, rec, index)}?</p>'
                + _inputs(ctx, page, titles, name, index))
    choices = _choices([("positive", "positive"), ("negative", "negative")])
    return (f'<li class="exercise"{_attrs("sign", name, index, answer, tolerance(answer))}>'
            f'<div class="exercise-question">{question}{choices}</div>'
            + _reveal(ctx, name, index, f"It is {word}: {_value_text(answer)}.") + "</li>")


def argmax_exercise(ctx: PageContext, page: Page, titles: dict[str, Page], name: str, index: tuple[int, ...]) -> str:
    rec = ctx.trace.record(name)
    rule = _rule(ctx.trace, name)
    value = np.asarray(rec.value)
    answer = float(value[index])
    row = value[index[:-1]]
    last = rec.axes[-1]
    labels = ctx.trace.labels
    b = index[0] if rec.axes[0] == "batch" else 0
    words = labels["inputs"][b] if last in ("keys", "tokens") else labels["vocab"]
    allowed = {i[-1] for i in _candidates(ctx.trace, rec, np.random.default_rng(0)) if i[:-1] == index[:-1]}
    entries = [k for k in range(row.shape[0]) if np.isfinite(row[k]) and not (last == "keys" and row[k] == 0)
               and (last != "tokens" or k in allowed)]

    def label(k: int) -> str:
        return f"{k} “{html_words(words[k])}”" if k < len(words) else str(k)

    row_where = _where(ctx, rec, index[:-1])
    if last == "keys":
        ask = f"Which key does the query at {row_where} attend to most (the largest weight of its row)?"
    elif last == "vocab":
        ask = f"Which word does the model give the highest probability at {row_where}?"
    elif last == "tokens":
        ask = (f"At which position is {rule.what} largest: <code>{html_text(name)}</code>"
               f"{' at ' + row_where if row_where else ''}{_where_shown(ctx, page, titles, name)}?")
    else:
        ask = f"Which entry of the row at {row_where} is largest?"
    hint = ""
    if rule.keeps_order and rec.inputs:
        hint = (f" Predict it before you look at the row: the softmax keeps the order of its input, "
                f"<code>{html_text(rec.inputs[0])}</code>{_where_shown(ctx, page, titles, rec.inputs[0])}.")
    question = (f'<p class="exercise-q">{ask}{hint}</p>'
                + _choices([(str(k), label(k)) for k in entries]))
    noun = "weight" if last == "keys" else rule.noun
    lead = f"{label(index[-1])}, with {noun} {_value_text(answer)}."
    return (f'<li class="exercise"{_attrs("argmax", name, index, answer, tolerance(answer))}>'
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
