"""A page renders to a value: its body through Jinja (with the macros and facts, reading the run) and Markdown,
as a PageResult (render_page); every page of a site, each from the page cache when its content key is there
(render_pages). Every problem of every page is collected and raised together, each as `file:line: message`.
"""

from __future__ import annotations

import re
import traceback
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jinja2
from mdit_py_plugins.anchors.index import slugify

import site_build.sections  # noqa: F401 - registers the blocks that read the facts
from site_build.data.downloads import FileNeed
from site_build.errors import BuildError
from site_build.facts import FactError, facts_for
from site_build.macros import MacroError, PageContext, page_globals
from site_build.macros.blocks import Block, Group
from site_build.macros.charts import step_map
from site_build.macros.registry import RunContext
from site_build.mathslots import MathSlots
from site_build.pages import Page
from site_build.render.compile import Compiled, compile_page, content_environment
from site_build.render.markdown import Heading, make_parser
from site_build.render.markdown import render_page as render_markdown


@dataclass
class PageResult:
    """A rendered page as a value: its HTML body (formulas as placeholders named by their hash), its outline and
    in-page links, and what later stages read: its formulas, the records whose numbers it shows, what it put on
    generated pages (a wide matrix's table), its blocks (macros.blocks: what its macros put on it, by number, in page
    order) and its text as the notebook reads it (`prose`: its Jinja output, the blocks as placeholders, each HTML
    block its Markdown found one Group). Rendering a page changes nothing else, so a result from the page cache is
    as good as a fresh one."""

    source: str
    html: str
    headings: list[Heading]
    anchors: list[tuple[int, str, str]]  # its links within the site (render.markdown.Rendered.anchors)
    math: MathSlots  # its formulas, each with the line that first used it
    shown: frozenset[str]
    made: dict[str, Any]
    blocks: dict[int, Block]
    prose: list[str | Group]

    @property
    def files(self) -> list[FileNeed]:
        """The files its blocks link to (data.downloads makes them)."""
        return list(dict.fromkeys(need for block in self.blocks.values() for need in block.files))

    @staticmethod
    def valid(value: Any) -> bool:
        """`value` has the shape of a PageResult (what the page cache hands back is checked before it is used)."""
        return (isinstance(value, PageResult) and isinstance(value.source, str) and isinstance(value.html, str)
                and isinstance(value.headings, list)
                and all(isinstance(h, Heading) and isinstance(h.html, str) for h in value.headings)
                and isinstance(value.anchors, list) and isinstance(value.math, MathSlots)
                and isinstance(value.math.formulas, dict) and value.math.formulas.keys() == value.math.where.keys()
                and isinstance(value.shown, frozenset) and all(isinstance(n, str) for n in value.shown)
                and isinstance(value.made, dict) and all(isinstance(url, str) for url in value.made)
                and isinstance(getattr(value, "blocks", None), dict)
                and all(isinstance(b, Block) for b in value.blocks.values())
                and isinstance(getattr(value, "prose", None), list))


def render_page(page: Page, run: RunContext, links: dict[str, str], env: jinja2.Environment | None = None,
                md: Any = None, compiled: Compiled | None = None, on_formula: Any = None) -> PageResult:
    """One page through Jinja (with the macros, reading `run`) and Markdown; raise BuildError with every problem of
    the page. `env` and `md` may be shared between pages (they keep nothing of a page); `compiled` has the page's
    Jinja code when workers compiled it ahead."""
    env = env or content_environment()
    md = md or make_parser()
    ctx = run.page(page.source, page.body_line, MathSlots(on_new=on_formula), page.block)
    blocks = ctx.blocks
    assert blocks is not None
    text = ctx.end_page(render_jinja(env, page, ctx, compiled))  # page hooks: macros.scale
    filled, segments, used = blocks.fill(text)  # the blocks' HTML in place: what Markdown reads
    macro = [(start, end) for start, end, item in segments if isinstance(item, int)]  # its blocks' HTML
    rendered = render_markdown(md, filled, ctx.math, page.source, page.body_line - 1, page.body, links, macro)
    ctx.math.on_new = None  # the result is a value: it holds its formulas, not who was told of them
    if rendered.problems:
        raise BuildError.collect(rendered.problems)
    html = blocks.finish(rendered.html)  # what blocks put in after Markdown: each displayed formula's NumPy line
    if page.step:  # the compact map of the steps on top of every step page, its own step highlighted
        html = step_map(ctx, page.step) + html
    prose = blocks.prose(filled, segments, [(start, end) for start, end, _ in rendered.blocks or []])
    return PageResult(page.source, html, rendered.headings, rendered.anchors, ctx.math, frozenset(ctx.shown),
                      ctx.made, used, prose)


def page_key(page: Page, key: Any, links: dict[str, str]) -> Any:
    """What a rendered page depends on besides handstep's source (cache.page_key adds it): its text and place, `key`
    (the run and whatever else every page reads) and the links."""
    return (page.source, page.body, page.body_line, page.step, page.block, key, tuple(sorted(links.items())))


def render_pages(pages: list[Page], run: RunContext, links: dict[str, str], cache: Any = None,
                 problems: list[tuple[str, int, str]] | None = None, key: Any = None,
                 compiled: Compiled | None = None, on_formula: Any = None,
                 on_page: Any = None) -> dict[str, PageResult]:
    """Every page rendered (or taken from `cache`, a PageCache, under its content key, `page_key`); raise every
    problem (plus `problems`) at the end."""
    env, md = content_environment(), make_parser()
    out: dict[str, PageResult] = {}
    problems = list(problems or [])
    for page in pages:
        parts = page_key(page, key, links) if cache is not None else None
        result = cache.get(parts) if parts is not None else None
        if result is None:
            try:
                result = render_page(page, run, links, env, md, compiled, on_formula)
            except BuildError as err:
                problems.extend(err.problems)
                continue
            if parts is not None:
                cache.put(parts, result)
        elif on_formula is not None:
            for tex, display in result.math.formulas.values():
                on_formula(tex, display)
        out[page.source] = result
        if on_page is not None:
            on_page(result)
    if problems:
        raise BuildError.collect(problems)
    return out


_ID_AT = re.compile(r'id="([^"]+)"')


def page_ids(html: str) -> list[str]:
    """The ids of a piece of HTML, in order: each `id="..."` after white space (found by the literal, then the
    character before it looked at: faster than a regex that starts with the white space)."""
    return [m.group(1) for m in _ID_AT.finditer(html) if m.start() and html[m.start() - 1].isspace()]


def missing_anchors(pages: list[Page], bodies: dict[str, Any]) -> list[tuple[str, int, str]]:
    """Every `#fragment` a page links to must be an id on the target page (its body, its exercises included)."""
    ids: dict[str, set[str]] = {}
    for p in pages:  # the first page of a URL wins, as links do (a duplicate is reported on its own)
        if p.source in bodies:
            ids.setdefault(p.url, set(page_ids(bodies[p.source].html)))
    problems = []
    for page in pages:
        for line, target, frag in bodies[page.source].anchors if page.source in bodies else ():
            url = target or page.url
            if frag and url in ids and frag not in ids[url]:
                where = f"on {url.removesuffix('.html')}" if target else "on this page"
                problems.append((page.source, line, f"link to unknown anchor '#{frag}' {where}"))
    return problems


def missing_files(bodies: dict[str, Any], files: Collection[str]) -> list[tuple[str, int, str]]:
    """Every file a page links to or shows (`[x](assets/x.png)`, `![](x.svg)`, `[y](page.html)`) must be one the
    site holds (`files`: its paths; the search index is written after them)."""
    return [(source, line, f"link to '{target}': the site has no such file (a picture goes in templates/assets/; "
                           "a page is linked by its .md file)")
            for source, body in bodies.items() for line, target, _ in body.anchors
            if target and target not in files and not target.startswith("pagefind/")]


def duplicate_ids(pages: list[Page], bodies: dict[str, Any], layouts: dict[str, str]) -> list[tuple[str, int, str]]:
    """Every id of a finished page (`layouts`: each page in the site's layout, {url: html}) is one element's: a
    heading whose id the layout uses too (`content`, `toc-title`, `search-input`, ... in templates/), or another
    element of the page has, was built, and every link to it reached the first one only. Named at the page's line
    that sets the id (`_id_line`); a page the build generates, by its path."""
    at_url = {page.url: page for page in pages}
    problems = []
    for url, html in layouts.items():
        ids = page_ids(html)
        if len(ids) == len(set(ids)):
            continue
        page = at_url.get(url)
        body = bodies[page.source].html if page is not None and page.source in bodies else ""
        for dup, n in Counter(ids).items():
            if n < 2:
                continue
            if page is None:
                problems.append((url, 0, f"id '{dup}' is used {n} times on this generated page: links to #{dup} reach "
                                         "the first only"))
                continue
            heading = re.search(rf'<h[1-6]\b[^>]*\sid="{re.escape(dup)}"', body)
            if heading is None:
                problems.append((page.source, _id_line(page, dup), f"id '{dup}' is used {n} times on the finished "
                                 f"page: links to #{dup} reach the first only; give each element its own id"))
                continue
            layout = n - page_ids(body).count(dup)
            where = ("an id of the page's layout (templates/) too" if layout else
                     f"the id of {n - 1} other element{'s' if n > 2 else ''} of the page too")
            problems.append((page.source, _id_line(page, dup), f"heading id '{dup}' is {where}: links to #{dup} reach "
                             "the first only; rename the heading or give it another id with {#...}"))
    return problems


def _id_line(page: Page, id_: str) -> int:
    """The line of the page that gives an element the id `id_`: a `{#id_}` (a heading's, or an element's), else a
    heading whose words make it, else an `id="id_"` of raw HTML; 0 when the page's text has none (a macro's)."""
    lines = page.body.split("\n")
    given = re.compile(r"\{#" + re.escape(id_) + r"[\s}]")
    heading = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
    for found in (lambda line: given.search(line),
                  lambda line: (m := heading.match(line)) is not None and slugify(m.group(1)) == id_,
                  lambda line: f' id="{id_}"' in line):
        for k, line in enumerate(lines):
            if found(line):
                return page.body_line + k
    return 0


def link_map(pages: list[Page], broken: list[str] = ()) -> dict[str, str]:
    """`attention.md` and `forward/attention.md` both link to `attention.html`; the name of a `broken` page file
    (one the build refused, with its own problem) to "": a link to it is not reported again."""
    links = {}
    for page in pages:
        links[page.rel] = page.url
        links.setdefault(page.rel.rsplit("/", 1)[-1], page.url)
    for rel in broken:
        links.setdefault(rel, "")
        links.setdefault(rel.rsplit("/", 1)[-1], "")
    return links


def page_namespace(ctx: PageContext) -> dict[str, Any]:
    """What a page sees: the macros (site_build.macros.page_globals) and the facts of every topic bound to the run
    (site_build.facts: `{{ ln.sd }}`)."""
    macros, facts = page_globals(ctx), facts_for(ctx.trace)
    if clash := sorted(facts.keys() & macros.keys()):
        raise ValueError(f"facts topic and macro share a name: {', '.join(clash)}")
    return {**macros, **facts}


MAX_PAGE_TEXT = 32 * 2**20  # characters of a page's text after Jinja (its blocks are placeholders): hundreds of times
# the longest page's


def render_jinja(env: jinja2.Environment, page: Page, ctx: PageContext, compiled: Compiled | None = None,
                 extra: dict[str, Any] | None = None) -> str:
    """Render a page body with the macros bound to `ctx` (and `extra` names over them); any error becomes
    `file:line: message` with the source line."""
    offset = page.body_line - 1
    try:
        code = compiled.code(env, page) if compiled is not None else compile_page(env, page)
        template = env.template_class.from_code(env, code, env.globals, None)
        text = template.render({**page_namespace(ctx), **(extra or {})})
    except jinja2.TemplateSyntaxError as err:
        raise BuildError(page.source, offset + (err.lineno or 1), f"template error: {err.message}") from None
    except Exception as err:  # noqa: BLE001 - every page error is reported, never a traceback
        line = _template_line(err, page.source)
        message = str(err) if isinstance(err, (MacroError, FactError)) else _describe(err)
        raise BuildError(page.source, offset + line if line else 0, message) from None
    if len(text) > MAX_PAGE_TEXT:  # Markdown would take many times its size in memory (1 GB: killed, no word)
        raise BuildError(page.source, 0, f"the page comes to {len(text):,} characters, more than the "
                         f"{MAX_PAGE_TEXT:,} a page may have; show less of it (a table is linked, not written out)")
    return text


def _template_line(err: BaseException, source: str) -> int:
    """The page line of the innermost template frame in the traceback (Jinja rewrites it)."""
    line = 0
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_filename == source:
            line = lineno
    return line


def _describe(err: BaseException) -> str:
    if isinstance(err, jinja2.UndefinedError):
        return f"undefined name: {err.message}"
    if isinstance(err, TypeError) and str(err) == "no loader for this environment specified":  # a page has none
        return ("a page cannot include, import or extend a template: write the text on the page, or make it a "
                "fact (site_build/facts/) or a macro")
    if isinstance(err, MemoryError):  # it says nothing of itself
        return "out of memory: the page asks for more than the machine has"
    return f"{err}" if isinstance(err, TypeError) else f"{type(err).__name__}: {err}"
