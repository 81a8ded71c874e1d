"""The macro registry and the context every macro shares.

A macro is a function a page calls as `{{ name(...) }}`; it is registered by a decorator, so the registry is
the one list of what a page can call (the page environment, the compile-only environment of the parallel
compile workers and docs/authoring.md all read it):

    @macro                       # {{ value("loss") }}: the function gets the build's PageContext first
    def value(ctx: PageContext, name: str, index: Any = None, digits: int = 4) -> Markup: ...

    @macro(context=False)        # {{ count(n, "position") }}: a plain function of its arguments
    @filter("text")              # {{ word | text }}: also (or only) a filter
    def text(value: object) -> Markup: ...

Every macro validates its arguments and raises MacroError with a message a writer can act on; the page
renderer adds the file and line.
"""

from __future__ import annotations

import bisect
import difflib
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np
from markupsafe import Markup

from engine.explain import explain
from site_build.macros.blocks import PageBlocks
from site_build.mathslots import MathSlots
from site_build.pages import BLOCK, block_number

F = TypeVar("F", bound=Callable[..., Any])
_NONE = object()

MACROS: dict[str, tuple[Callable[..., Any], bool]] = {}  # name -> (function, takes the PageContext first)
FILTERS: dict[str, Callable[..., Any]] = {}  # name -> function of the filtered value (and arguments)
# Functions (ctx, text) -> text run on each page's Jinja output before Markdown, in order (`page_hook`): what a
# macro can only finish once the whole page is known (macros.scale: a matrix's block, once the page's calc() blocks
# are known).
PAGE_HOOKS: list[Callable[[Any, str], str]] = []
# Functions (ctx) -> None that start, in a background thread, figures pages will need (`ahead`): a big run's
# whole-model statistics are mostly NumPy, which runs beside the pages' Python (see PageContext.start).
AHEAD: list[tuple[int, Callable[[Any], None]]] = []  # (stage, starter)


class MacroError(Exception):
    """A bad macro call; `line` is the line of the call in the page, when known."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def macro(fn: F | None = None, *, name: str | None = None, context: bool = True) -> Any:
    """Register `fn` as a page macro called `name` (default: the function's name).

    With `context=True` (the default) the page calls it without its first argument, the build's PageContext."""

    def register(f: F) -> F:
        key = name or f.__name__
        if key in MACROS:
            raise ValueError(f"macro {key!r} is registered twice ({MACROS[key][0].__module__} and {f.__module__})")
        MACROS[key] = (f, context)
        return f

    return register(fn) if fn is not None else register


def filter(name: str) -> Callable[[F], F]:  # noqa: A001 - Jinja's word for it
    """Register a function as the page filter `{{ value | name }}`."""

    def register(f: F) -> F:
        if name in FILTERS:
            raise ValueError(f"filter {name!r} is registered twice")
        FILTERS[name] = f
        return f

    return register


def page_hook(fn: F) -> F:
    """Register `fn(ctx, text) -> text`, run on every page's Jinja output (see PageContext.end_page)."""
    PAGE_HOOKS.append(fn)
    return fn


def ahead(fn: F | None = None, *, stage: int = 1) -> Any:
    """Register `fn(ctx)`, called before the pages render when the run is big (RunContext.start_ahead): `@ahead`,
    or `@ahead(stage=n)`. Starters run by stage, in the order the pages need their figures (0: the backward pass's,
    1, the default: the optimizer's, 2: the summaries after it), then in the order they were registered."""
    def register(fn: F) -> F:
        AHEAD.append((stage, fn))
        return fn

    return register(fn) if fn is not None else register


def page_globals(ctx: Any) -> dict[str, Any]:
    """The macros a page sees: every registered macro (bound to `ctx` where it takes one, its record names with the
    page's block in place of `L{block}`: PageContext.named), `trace` and `config`. The page renderer adds the facts
    (site_build.render.jinja.page_namespace)."""
    out: dict[str, Any] = {name: partial(_named, ctx, f) if bound else f for name, (f, bound) in MACROS.items()}
    out.update(trace=ctx.trace, config=ctx.trace.config)
    return out


def _named(ctx: Any, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A macro called from a page: its arguments' `L{block}` filled in with the page's block (PageContext.named)."""
    return f(ctx, *(ctx.named(a) for a in args), **{k: ctx.named(v) for k, v in kwargs.items()})


def template_line() -> int:
    """Line (in the page body) of the Jinja expression currently calling a macro."""
    frame = sys._getframe(1)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return _page_line(template, frame.f_lineno)
        frame = frame.f_back
    return 0


def _page_line(template: Any, code_line: int) -> int:
    """Jinja's `get_corresponding_lineno`, which parses the template's whole line map on every call (a page's
    formulas each ask), with the map parsed once and kept on the template."""
    lines = getattr(template, "_handstep_lines", None)
    if lines is None:
        pairs = template.debug_info  # (page line, code line), the code lines in order as Jinja writes them
        codes = [c for _, c in pairs]
        if any(a > b for a, b in zip(codes, codes[1:])):
            return int(template.get_corresponding_lineno(code_line))
        lines = template._handstep_lines = (codes, [p for p, _ in pairs])
    k = bisect.bisect_right(lines[0], code_line)
    return lines[1][k - 1] if k else 1


class RunContext:
    """What every page of one build reads: the trace, the check figures, the step pages the diagrams link to, the
    other run when comparing (`build --compare`), and the figures macros work out once per build (`figures`, `start`:
    statistics of a record, a big run's histograms). Pages never write here, except those figures (the same numbers
    whichever page asks first)."""

    def __init__(self, trace: Any, checks: Any = None, step_links: dict[str, str] | None = None,
                 other: Any = None, other_label: str = "") -> None:
        self.trace = trace
        self.checks = checks
        self.step_links = dict(step_links or {})
        self.other = other
        self.other_label = other_label
        self.names: list[str] = list(trace.names())
        self.memo: dict[Any, Any] = {}
        self._lanes: dict[str, ThreadPoolExecutor] = {}  # a background thread per lane of figures (`start`)

    def page(self, source: str = "", body_line: int = 1, math: MathSlots | None = None, block: str = ""
             ) -> PageContext:
        """A context for rendering one page: its macros make blocks (macros.blocks); `block` is its front matter's
        (pages.Page.block), the block whose number its record names' `L{block}` stands for."""
        ctx = PageContext(self, math or MathSlots(), source=source, body_line=body_line, block=block)
        ctx.blocks = PageBlocks()
        return ctx

    def record(self, name: str) -> Any:
        """The trace record `name`, or an error suggesting the closest name."""
        if not isinstance(name, str):
            raise MacroError(f"record name must be text, not {name!r}")
        if name not in self.trace:
            close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise MacroError(f"unknown trace record '{name}'{hint}")
        return self.trace.record(name)

    def figures(self, key: Any, make: Callable[[], Any]) -> Any:
        """`make()`, once per build: from `memo`, or the background computation `start` began, or now."""
        value = self.memo.get(key, _NONE)
        if isinstance(value, Future):
            value = self.memo[key] = value.result()  # its exception, if any, is the macro's
        elif value is _NONE:
            value = self.memo[key] = make()
        return value

    def start(self, key: Any, make: Callable[[], Any], lane: str = "figures") -> None:
        """Begin `make()` in the background thread of `lane`; `figures(key, ...)` waits for it. The figures are the
        same as computed in the page (the same function), so a page reads the same whichever ran it. Two lanes:
        "figures" for what the page being rendered asks for next, "ahead" for the whole-model figures started
        with the pages (a page's statistics then never wait behind a histogram of 124M updates)."""
        if key not in self.memo:
            if lane not in self._lanes:
                self._lanes[lane] = ThreadPoolExecutor(1, thread_name_prefix=lane)
            self.memo[key] = self._lanes[lane].submit(make)

    def start_ahead(self) -> None:
        """Start every registered `ahead` computation (the Builder calls it for a big run)."""
        for _, fn in sorted(AHEAD, key=lambda entry: entry[0]):
            fn(self)

    def close(self) -> None:
        """Stop the background threads (what they have not begun is dropped)."""
        for pool in self._lanes.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._lanes.clear()

    def explain(self, name: str, index: tuple[int, ...]) -> Any:
        """engine.explain of one element, worked out once per build (a calc block and an exercise may share it;
        at GPT-2 sizes one element is a sum of 3,072 products)."""
        key = ("explain", name, tuple(int(i) for i in index))
        if key not in self.memo:
            self.memo[key] = explain(self.trace, name, index)
        return self.memo[key]

    def check_line(self, name: str) -> str:
        """The record's check figures as a `<p class="check">` ('' when nothing checks it)."""
        if self.checks is None:
            return ""
        return self.checks.slot(name) if self.checks.pending is not None else self.checks.paragraph(name)


class PageContext:
    """What the macros of one page share: the build's RunContext (`run`: the trace, the figures), and what the page
    collects as it renders: its formulas (`math`), the records whose numbers it shows (`shown`), what it puts on
    generated pages (`made`: a wide matrix's table), its blocks (`blocks`: None outside a page, where a macro
    returns its HTML at once), and the page and line being rendered. A page's context starts empty and is read once
    the page is done (render.jinja.render_page): nothing is shared between pages but the RunContext. A page that
    works through one block (`block: last` in its front matter) has that block's number in `block` (else None)."""

    def __init__(self, run: Any, math: MathSlots | None = None, checks: Any = None,
                 step_links: dict[str, str] | None = None, source: str = "", body_line: int = 1,
                 block: str = "") -> None:
        self.run: RunContext = run if isinstance(run, RunContext) else RunContext(run, checks, step_links)
        self.math = math if math is not None else MathSlots()
        self.source = source  # page being rendered (for math error locations)
        self.line_offset = body_line - 1  # body line 1 is this file line + 1
        self.shown: set[str] = set()  # records whose numbers the page shows
        self.made: dict[str, Any] = {}  # {url: what the page put on a generated page} (macros.scale)
        self.blocks: PageBlocks | None = None
        self.other_block = False  # inside other_blocks(): its matrices show small windows (macros.scale)
        self.block_name = block
        self.block = block_number(block, int(self.trace.config["model"]["n_layers"])) if block else None

    # what the whole build shares
    trace = property(lambda self: self.run.trace)
    checks = property(lambda self: self.run.checks)
    step_links = property(lambda self: self.run.step_links)
    other = property(lambda self: self.run.other)
    other_label = property(lambda self: self.run.other_label)
    names = property(lambda self: self.run.names)
    memo = property(lambda self: self.run.memo)

    def record(self, name: str) -> Any:
        return self.run.record(name)

    def named(self, value: Any) -> Any:
        """A macro argument with the page's block in place of `L{block}` (`"grad.L{block}.mlp.fc"` is
        `"grad.L2.mlp.fc"` on a `block: last` page of a three-block model), in a list or tuple too; anything else as
        it is. `L{block}` on a page without a block is a MacroError."""
        if isinstance(value, str):
            if BLOCK not in value:
                return value
            if self.block is None:
                raise MacroError(f"'{value}' names '{BLOCK}', but this page has no 'block:' in its front matter")
            return value.replace(BLOCK, f"L{self.block}")
        if type(value) in (list, tuple) and any(isinstance(v, (str, list, tuple)) for v in value):
            return type(value)(self.named(v) for v in value)
        return value

    def figures(self, key: Any, make: Callable[[], Any]) -> Any:
        return self.run.figures(key, make)

    def start(self, key: Any, make: Callable[[], Any], lane: str = "figures") -> None:
        self.run.start(key, make, lane)

    def explain(self, name: str, index: tuple[int, ...]) -> Any:
        return self.run.explain(name, index)

    def check_line(self, name: str) -> str:
        return self.run.check_line(name)

    def end_page(self, text: str) -> str:
        """The page's Jinja output, finished by the page hooks (run before Markdown); the page is then over."""
        for hook in PAGE_HOOKS:
            text = hook(self, text)
        self.blocks = None
        return text

    def place(self, block: Any, html: str, after: str = "") -> Markup:
        """A block's placeholder on a page (its HTML goes in before Markdown, `after` after it), or outside a page
        its HTML."""
        return Markup(html if self.blocks is None else self.blocks.add(block, html, after))

    def slot(self, tex: str, display: bool) -> str:
        """A formula's placeholder, located at the line of the macro call."""
        return self.math.slot(tex, display, self.source, self.line_offset + template_line())

    def mark(self, name: str) -> None:
        """The page being rendered shows the numbers of record `name`."""
        self.shown.add(name)

    def make(self, url: str, part: Any) -> None:
        """The page being rendered puts `part` on the generated page `url` (its first `part` for that url stays)."""
        self.made.setdefault(url, part)


# -- arguments: the checks every macro shares --------------------------------------------------------------------
def check_int(what: str, value: Any, size: int, name: str, low: int = 0) -> None:
    """`value` must be a whole number in low..size-1; the message names the argument and the record."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise MacroError(f"bad argument {what}={value!r} for '{name}': must be a whole number")
    if not low <= value < size:
        raise MacroError(f"bad argument {what}={value} for '{name}': must be in {low}..{size - 1}")


def check_bool(what: str, value: Any, macro_name: str) -> None:
    if not isinstance(value, bool):
        raise MacroError(f"bad argument {what}={value!r} for {macro_name}(): give true or false")


def pick_indices(pick: Any, size: int, what: str, rec: str, axis: str, allow_empty: bool = False) -> list[int]:
    """Normalise a rows/cols selection (None, int, list, range) to a list of indices."""
    if pick is None:
        return list(range(size))
    items = [pick] if isinstance(pick, (int, np.integer)) else pick
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple, range)):
        raise MacroError(f"bad argument {what}={pick!r} for '{rec}': give a number, a list or a range")
    out = []
    for i in items:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise MacroError(f"bad argument {what}={pick!r} for '{rec}': indices must be whole numbers")
        if not 0 <= i < size:
            raise MacroError(f"bad index {i} in {what}= for '{rec}': {axis} has 0..{size - 1}")
        out.append(int(i))
    if not out and not allow_empty:
        raise MacroError(f"bad argument {what}={pick!r} for '{rec}': selects nothing")
    return out

