"""Build the site: config → trace → pages → Jinja → Markdown → KaTeX → layout → site/.

Everything is gathered and checked in memory first (every page, every macro call,
every formula); only then is anything written, into a temporary directory that is
swapped in whole. `Builder` keeps the trace and the KaTeX process between builds so
the dev server rebuilds in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

import engine
from engine.diff import diff_traces
from site_build import compare as compare_view
from site_build import downloads, interact, output
from site_build.checks import VERIFICATION_FILE, compute_checks
from site_build.errors import BuildError
from site_build.katex import KatexRenderer, katex_dist
from site_build.macros import MacroError, Macros
from site_build.markdown import Heading, Rendered, make_parser, render_page
from site_build.mathslots import SLOT_RE, MathSlots
from site_build.pages import Page, collect_pages, group_by_section, shown_path
from site_build.progress import Progress, quiet

ROOT = Path(__file__).resolve().parent.parent
SITE_TITLE = "handstep"
SEARCH_NEXT = "pagefind.next"  # where the dev server builds the next search index
# Failures caused by the inputs: reported as one line each, never with a traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (BuildError, engine.ConfigError, engine.RunError, engine.TraceError)


@dataclass
class Paths:
    """Where the inputs live; tests point these at fixture sites."""

    root: Path = ROOT
    content: Path = ROOT / "content"
    templates: Path = ROOT / "templates"
    cache: Path = ROOT / ".cache"


@dataclass(frozen=True)
class Compare:
    """The other run of `build --compare`: another config, another seed, or both."""

    config: Path | None = None  # None: the same config as the site
    seed: int | None = None  # None: the config's own seed


@dataclass
class Report:
    """What a build did, for the summary line and for tests."""

    out_dir: Path
    pages: int = 0
    formulas: int = 0
    rendered: int = 0
    cached: int = 0
    shown: int = 0
    records: int = 0
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """The one line `handstep build` prints."""
        return (
            f"built {self.pages} pages, {self.formulas} formulas "
            f"({self.rendered} rendered, {self.cached} cached), "
            f"records shown: {self.shown}/{self.records}, "
            f"{self.seconds:.2f} s -> {shown_path(self.out_dir)}"
        )


class Builder:
    """Builds the site; reusable, so `serve` keeps the trace and KaTeX warm."""

    def __init__(self, paths: Paths | None = None, progress: Progress | None = None) -> None:
        self.paths = paths or Paths()
        self.progress = progress or quiet()
        self.katex = KatexRenderer(self.paths.root, self.paths.cache / "katex.json")
        self._trace_key: tuple[Any, ...] | None = None
        self._trace: Any = None
        self._checks: Any = None
        self._page_cache: dict[Any, PageResult] = {}  # unchanged pages are not rendered again (serve)
        self._generation = 0  # bumped whenever the trace, its checks or the compared run change
        self._trace_json: tuple[Any, dict[str, bytes]] | None = None
        self._other: tuple[Any, Any] | None = None  # (key, trace) of the run compared with
        self.background_search = False  # the dev server sets this
        self._indexer: threading.Thread | None = None  # the dev server's background search index

    def close(self) -> None:
        """Finish any search indexing, stop KaTeX and save its cache."""
        self.finish_search()
        self.katex.close()

    def trace_for(self, config_path: Path, seed: int | None) -> Any:
        """Load the config and run the engine, unless the same config was just run."""
        key = (str(config_path), seed, _mtime(config_path), _mtime(self.paths.root / VERIFICATION_FILE))
        if key != self._trace_key:
            cfg = engine.load_config(str(config_path), seed=seed)
            self._trace = engine.run(cfg, progress=self.progress)
            self._checks = compute_checks(cfg, self._trace, self.paths.root, str(config_path), self.progress)
            self._trace_key = key
            self._generation += 1
            self._page_cache.clear()
        return self._trace

    def other_trace(self, config_path: Path, compare: Compare) -> tuple[Any, str]:
        """The run to compare with, and where it came from (`configs/x.yaml`)."""
        path = Path(compare.config) if compare.config else Path(config_path)
        key = (str(path), compare.seed, _mtime(path))
        if self._other is None or self._other[0] != key:
            self._other = (key, engine.run(engine.load_config(str(path), seed=compare.seed)))
            self._generation += 1
            self._page_cache.clear()
        return self._other[1], shown_path(path)

    def trace_files(self, trace: Any, scratch: Path) -> dict[str, bytes]:
        """The trace as the engine saves it (`trace.json`, plus `trace.bin` for a big trace), serialised once."""
        if self._trace_json is None or self._trace_json[0] is not trace:
            folder = scratch / ".trace"
            folder.mkdir()
            trace.save(folder / "trace.json")
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
            shutil.rmtree(folder)
            self._trace_json = (trace, files)
        return self._trace_json[1]

    def build(
        self,
        config_path: Path,
        out_dir: Path,
        seed: int | None = None,
        require_coverage: bool = False,
        base_url: str = "",
        compare: Compare | None = None,
        force: bool = False,
    ) -> Report:
        """Build the whole site into out_dir; raise BuildError (old site untouched) on failure.

        out_dir must be new, empty or a site handstep built (or anything but a protected place with `force`);
        see site_build.output.check_site_dir."""
        self.finish_search()
        start = time.perf_counter()
        self.progress.restart()
        out_dir = Path(out_dir)
        self.check_outputs(Path(config_path), out_dir, force)
        report = Report(out_dir)
        clock = _Clock(report.timings, self.progress)
        pages, problems = collect_pages(self.paths.content)
        compiling = start_compiling(pages, self.paths.cache / "jinja")  # forked before any thread starts
        self.katex.start()  # node loads KaTeX while Python computes the trace
        try:
            trace = self.trace_for(Path(config_path), seed)
        finally:
            finish_compiling(compiling)
        clock.lap("trace")
        slots = MathSlots(on_new=self.katex.prefetch)
        macros = Macros(trace, slots, engine.explain, self._checks)
        macros.charts.step_links = {p.step: p.url for p in pages if p.step}
        extra_pages: dict[str, str] = {}
        if compare is not None:
            other, source = self.other_trace(Path(config_path), compare)
            macros.other, macros.other_label = other, compare_view.run_label(other, source)
            extra_pages[compare_view.COMPARE_PAGE] = compare_view.summary_html(
                trace, other, diff_traces(trace, other),
                compare_view.run_label(trace, shown_path(Path(config_path))), macros.other_label)
        context = (self._generation, compare is not None, tuple(sorted(macros.charts.step_links.items())))
        bodies = render_bodies(pages, macros, slots, _link_map(pages), problems, self.paths.cache / "jinja",
                               self._page_cache, context)
        for page in pages:  # the compact architecture map on every step page, current step highlighted
            if page.step and page.source in bodies:
                bodies[page.source].html = macros.charts.small_map(page.step) + bodies[page.source].html
        clock.lap("pages")
        layouts = render_layouts(self.paths.templates, pages, bodies, base_url,
                                 interact.pages_with_data(macros.shown, pages), extra_pages)
        clock.lap("layout")
        result = self.katex.render_all(set(slots.formulas))
        slots.check(result.errors)
        clock.lap("katex")
        report.shown, report.records = macros.coverage()
        report.missing = macros.missing()
        if require_coverage and report.missing:
            raise BuildError(
                "content", 0,
                f"records shown: {report.shown}/{report.records}; no page shows: "
                + ", ".join(report.missing),
            )
        pages_html: dict[str, Any] = {rel: search_ignores(slots.fill(html, result.html)) for rel, html in layouts.items()}
        pages_html.update(interact.data_files(trace, macros.shown, pages, macros.other))
        pages_html.update(downloads.csv_files(trace, macros.shown))
        clock.lap("data")
        self.check_outputs(Path(config_path), out_dir, force)  # nothing changed under us while building
        self.write_site(pages_html, trace, out_dir, clock)
        self.katex.save_cache()
        report.pages = len(pages)
        report.formulas = len(slots.formulas)
        report.rendered, report.cached = result.rendered, result.cached
        report.seconds = time.perf_counter() - start
        return report


    def check_outputs(self, config_path: Path, out_dir: Path, force: bool) -> None:
        """Refuse (one line, nothing written) an output folder or cache handstep must not write."""
        inputs = {"pages": self.paths.content, "templates": self.paths.templates, "config": config_path}
        output.check_site_dir(out_dir, force, {**inputs, "cache": self.paths.cache, "code": self.paths.root})
        output.check_cache_dir(self.paths.cache, {**inputs, "site": out_dir})
        output.mark_cache_dir(self.paths.cache)

    def write_site(self, pages_html: dict[str, str], trace: Any, out_dir: Path, clock: _Clock) -> None:
        """Write everything into a temporary tree, index it, and swap it in as out_dir.

        With `background_search` (the dev server) the previous search index is reused
        and a fresh one is built after the swap, so a rebuild shows up sooner.
        """
        tmp = output.temp_dir_for(out_dir)
        try:
            previous = out_dir if out_dir.is_dir() else None  # unchanged files are linked, not rewritten
            output.write_files(tmp, {output.MARKER: output.MARKER_TEXT, **pages_html}, previous)
            reuse = self.background_search and (out_dir / "pagefind").is_dir()
            indexer = None if reuse else output.start_pagefind(tmp)  # runs while the rest is written
            try:
                output.write_files(tmp, static_files(self.paths.root, self.paths.templates), previous)
                output.write_files(tmp, self.trace_files(trace, tmp), previous)
                if reuse:
                    shutil.copytree(out_dir / "pagefind", tmp / "pagefind", copy_function=os.link)
                clock.lap("write")
            finally:
                if indexer is not None:
                    output.wait_pagefind(indexer, tmp)
            clock.lap("search")
            output.swap_in(tmp, out_dir)
        except BaseException:
            _remove(tmp)
            raise
        if reuse:
            proc = output.start_pagefind(out_dir, subdir=SEARCH_NEXT)
            self._indexer = threading.Thread(target=_finish_index, args=(proc, out_dir), daemon=True)
            self._indexer.start()  # waits for pagefind as soon as it ends: no defunct child between rebuilds

    def finish_search(self) -> None:
        """Wait until the background search index is in place."""
        if self._indexer is not None:
            self._indexer.join()
            self._indexer = None


def build(
    config_path: str | Path,
    out_dir: str | Path,
    seed: int | None = None,
    paths: Paths | None = None,
    require_coverage: bool = False,
) -> Report:
    """Build once and stop the KaTeX process (what `handstep build` does)."""
    builder = Builder(paths)
    try:
        return builder.build(Path(config_path), Path(out_dir), seed, require_coverage)
    finally:
        builder.close()


# -- pages ---------------------------------------------------------------------
def content_environment(macros: Macros | None = None) -> jinja2.Environment:
    """Jinja for page bodies: strict about undefined names, HTML-escaping by default.

    Without macros it can only compile (what the parallel compile workers need)."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        # `{#id}` is a Markdown heading id, so Jinja comments are `{## ... ##}` here
        comment_start_string="{##",
        comment_end_string="##}",
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    if macros is not None:
        env.globals.update(macros.globals())
        env.filters.update(macros.filters())
    else:
        env.filters.update({name: str for name in ("tex", "text", "code")})  # names only: compiling checks them
    return env


def render_bodies(
    pages: list[Page],
    macros: Macros,
    slots: MathSlots,
    links: dict[str, str],
    problems: list[tuple[str, int, str]] | None = None,
    cache_dir: Path | None = None,
    page_cache: dict[Any, PageResult] | None = None,
    context: Any = None,
) -> dict[str, Rendered]:
    """Jinja then Markdown for every page; raise every problem (plus `problems`) at the end.

    With `page_cache` (the dev server), a page whose body, trace and links are unchanged since
    the last build is not rendered again: its HTML, shown records and formulas are replayed.
    """
    env = content_environment(macros)
    md = make_parser()
    out: dict[str, Rendered] = {}
    problems = list(problems or [])
    link_key = tuple(sorted(links.items()))
    for page in pages:
        key = (page.source, page.body, page.body_line, context, link_key)
        cached = page_cache.get(key) if page_cache is not None else None
        if cached is not None:
            out[page.source] = cached.replay(macros, slots)
            continue
        macros.begin_page(page.source, page.body_line)
        try:
            text = render_jinja(env, page, cache_dir)
        except BuildError as err:
            problems.extend(err.problems)
            continue
        rendered = render_page(md, text, slots, page.source, page.body_line - 1, page.body, links)
        problems.extend(rendered.problems)
        out[page.source] = rendered
        if page_cache is not None and not rendered.problems:
            page_cache[key] = PageResult.capture(rendered, macros, slots, page.source)
    problems.extend(missing_anchors(pages, out))
    if problems:
        raise BuildError.collect(problems)
    return out


@dataclass
class PageResult:
    """A rendered page in a form that can be replayed into a later build's macros and math slots."""

    source: str
    rendered: Rendered
    shown: list[str]  # records whose numbers the page shows
    formulas: list[tuple[tuple[str, bool], str, int]]  # ((tex, display), source, line) of each slot it uses
    slot_of: dict[int, int]  # slot number in the build that rendered it -> index into formulas

    @classmethod
    def capture(cls, rendered: Rendered, macros: Macros, slots: MathSlots, source: str) -> PageResult:
        html = [rendered.html, *(h.html for h in rendered.headings)]
        used = sorted({int(n) for text in html for n in SLOT_RE.findall(text)})
        formulas = [(slots.formulas[n], *slots.where[n]) for n in used]
        shown = [name for name, pages in macros.shown.items() if source in pages]
        kept = Rendered(rendered.html, list(rendered.headings), [], list(rendered.anchors))  # later edits don't leak in
        return cls(source, kept, shown, formulas, {n: i for i, n in enumerate(used)})

    def replay(self, macros: Macros, slots: MathSlots) -> Rendered:
        """The page's HTML with its formulas registered anew (slot numbers change between builds)."""
        new = [slots.slot(tex, display, source, line) for (tex, display), source, line in self.formulas]

        def remap(html: str) -> str:
            return SLOT_RE.sub(lambda m: new[self.slot_of[int(m.group(1))]], html)

        for name in self.shown:
            macros.shown.setdefault(name, set()).add(self.source)
        r = self.rendered
        return Rendered(remap(r.html), [Heading(h.level, h.id, remap(h.html)) for h in r.headings], [], r.anchors)


_ID_RE = re.compile(r'\sid="([^"]+)"')


def missing_anchors(pages: list[Page], bodies: dict[str, Rendered]) -> list[tuple[str, int, str]]:
    """Every `#fragment` a page links to must be an id on the target page."""
    ids: dict[str, set[str]] = {}
    for p in pages:  # the first page of a URL wins, as links do (a duplicate is reported on its own)
        if p.source in bodies:
            ids.setdefault(p.url, set(_ID_RE.findall(bodies[p.source].html)))
    problems = []
    for page in pages:
        for line, target, frag in bodies[page.source].anchors if page.source in bodies else ():
            url = target or page.url
            if url in ids and frag not in ids[url]:
                where = f"on {url.removesuffix('.html')}" if target else "on this page"
                problems.append((page.source, line, f"link to unknown anchor '#{frag}' {where}"))
    return problems


_COMPILED: dict[tuple[str, str], Any] = {}  # (page, body) -> compiled Jinja code, for fast rebuilds
JINJA_CACHE_VERSION = f"jinja {jinja2.__version__}, handstep 1"  # bump when content_environment() changes


def compiled_page(env: jinja2.Environment, page: Page, cache_dir: Path | None) -> Any:
    """The page body compiled by Jinja: from memory, else from the on-disk cache of generated Python
    source (keyed by the body's hash), else compiled now; generating the source is most of Jinja's cost."""
    key = (page.source, page.body)
    code = _COMPILED.get(key)
    if code is not None:
        return code
    path = _compiled_path(cache_dir, page.source, page.body) if cache_dir is not None else None
    source = None
    if path is not None and path.is_file():
        source = path.read_text(encoding="utf-8")
    if source is None:
        source = env.compile(page.body, name=page.source, filename=page.source, raw=True)
        if path is not None:
            _write_atomic(path, source)
    code = _COMPILED[key] = compile(source, page.source, "exec")
    return code


def _compiled_path(cache_dir: Path, source: str, body: str) -> Path:
    digest = hashlib.sha256(f"{JINJA_CACHE_VERSION}\0{source}\0{body}".encode()).hexdigest()
    return cache_dir / f"{digest}.py"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def start_compiling(pages: list[Page], cache_dir: Path) -> Any:
    """Compile the pages missing from the cache in two forked workers while the engine runs.

    On a cold build Jinja's code generation for the pages is the largest single cost (~0.75 s);
    the workers write the generated source into the cache, where `compiled_page` then finds it.
    Returns the pool (join it with `finish_compiling`), or None when there is little to do.
    """
    todo = [(p.source, p.body, str(_compiled_path(cache_dir, p.source, p.body))) for p in pages
            if (p.source, p.body) not in _COMPILED and not _compiled_path(cache_dir, p.source, p.body).is_file()]
    if len(todo) < 4 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    pool = multiprocessing.get_context("fork").Pool(2)
    todo.sort(key=lambda item: -len(item[1]))  # longest first, so the two workers finish together
    done = pool.map_async(_compile_one, todo, chunksize=1)
    pool.close()
    return pool, done


def finish_compiling(compiling: Any, timeout: float = 30.0) -> None:
    """Wait for the workers, but never hang on them: whatever they did not write, the build compiles itself."""
    if compiling is None:
        return
    pool, done = compiling
    done.wait(timeout)
    pool.terminate()
    pool.join()


def _compile_one(item: tuple[str, str, str]) -> None:
    source, body, path = item
    try:
        _write_atomic(Path(path), content_environment().compile(body, name=source, filename=source, raw=True))
    except Exception:  # noqa: BLE001 - the main process compiles it again and reports the error with its line
        pass


def render_jinja(env: jinja2.Environment, page: Page, cache_dir: Path | None = None) -> str:
    """Render a page body; any error becomes `file:line: message` with the source line."""
    offset = page.body_line - 1
    try:
        code = compiled_page(env, page, cache_dir)
        template = env.template_class.from_code(env, code, env.globals, None)
        return template.render()
    except jinja2.TemplateSyntaxError as err:
        raise BuildError(page.source, offset + (err.lineno or 1), f"template error: {err.message}") from None
    except Exception as err:  # noqa: BLE001 - every page error is reported, never a traceback
        line = _template_line(err, page.source)
        message = str(err) if isinstance(err, MacroError) else _describe(err)
        raise BuildError(page.source, offset + line if line else 0, message) from None


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
    text = str(err).replace("Macros.", "")
    return f"{text}" if isinstance(err, TypeError) else f"{type(err).__name__}: {text}"


def _link_map(pages: list[Page]) -> dict[str, str]:
    """`attention.md` and `forward/attention.md` both link to `attention.html`."""
    links = {}
    for page in pages:
        links[page.rel] = page.url
        links.setdefault(page.rel.rsplit("/", 1)[-1], page.url)
    return links


# -- layout --------------------------------------------------------------------
def layout_environment(templates: Path) -> jinja2.Environment:
    """Jinja for the page layout (templates/)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_layouts(
    templates: Path,
    pages: list[Page],
    bodies: dict[str, Rendered],
    base_url: str,
    data_files: dict[str, str] | None = None,
    extra_pages: dict[str, str] | None = None,
) -> dict[str, str]:
    """Every page and the 404 page inside the layout; {output path: html}.

    `data_files` maps a page to its click-any-number data script; `extra_pages` are
    generated pages ({url: body html}, e.g. the comparison summary), outside prev/next.
    """
    env = layout_environment(templates)
    nav = group_by_section(pages)
    data_files = data_files or {}
    extra_pages = extra_pages or {}
    compare_url = compare_view.COMPARE_PAGE if compare_view.COMPARE_PAGE in extra_pages else ""
    common = {"site_title": SITE_TITLE, "nav": nav, "root": base_url, "compare_url": compare_url}
    out = {}
    try:
        page_tpl = env.get_template("page.html")
        for url, html in extra_pages.items():
            page = Page(source=url, title="Comparing two runs", description="How the numbers of two runs differ.",
                        section="Reference", order=0, slug=url.removesuffix(".html"), body="", body_line=1)
            out[url] = page_tpl.render(**common, page=page, current=url, body=Markup(html), toc=[],
                                       prev=None, next=None, data_file="")
        for i, page in enumerate(pages):
            body = bodies[page.source]
            out[page.url] = page_tpl.render(
                **common,
                page=page,
                current=page.url,
                data_file=data_files.get(page.url, ""),
                body=Markup(body.html),
                toc=[{"level": h.level, "id": h.id, "html": Markup(h.html)} for h in body.headings],
                prev=pages[i - 1] if i > 0 else None,
                next=pages[i + 1] if i + 1 < len(pages) else None,
            )
        out["404.html"] = env.get_template("404.html").render(**common, page=None, current="")
    except jinja2.TemplateNotFound as err:
        raise BuildError(shown_path(templates / str(err.name)), 0, "template not found") from None
    except jinja2.TemplateError as err:
        where = getattr(err, "filename", None) or getattr(err, "name", None)
        line = getattr(err, "lineno", 0) or 0
        if not where:  # a runtime error (undefined name): the innermost template frame says where
            for frame, lineno in traceback.walk_tb(err.__traceback__):
                if frame.f_code.co_filename.startswith(str(templates)):
                    where, line = frame.f_code.co_filename, lineno
        message = f"undefined name: {err.message}" if isinstance(err, jinja2.UndefinedError) else str(err)
        raise BuildError(shown_path(where or templates), line, message) from None
    return out


def static_files(root: Path, templates: Path) -> dict[str, Any]:
    """CSS/JS from templates/assets; the click panel's interpreter and the descriptions it reads (the same
    that engine.explain reads); KaTeX's CSS, woff2 fonts and script (the script loads on the first click)."""
    files: dict[str, Any] = {}
    assets = templates / "assets"
    if assets.is_dir():
        for path in sorted(assets.rglob("*")):
            if path.is_file():
                files["assets/" + path.relative_to(assets).as_posix()] = path
    files.update(interact.script_files())
    dist = katex_dist(root)
    files["katex/katex.min.css"] = woff2_only((dist / "katex.min.css").read_text(encoding="utf-8"))
    files["katex/katex.min.js"] = dist / "katex.min.js"
    for font in sorted((dist / "fonts").glob("*.woff2")):
        files[f"katex/fonts/{font.name}"] = font
    return files


SEARCH_IGNORED = ('<div class="matrix-wrap"', '<div class="calc-step"', '<span class="katex"', "<svg")


def search_ignores(html: str) -> str:
    """Keep numbers, typeset math and charts out of the search index: people search for words
    ("softmax", "Jacobian"), and indexing thousands of table cells doubled Pagefind's time."""
    for start in SEARCH_IGNORED:
        tag, _, rest = start.partition(" ")
        html = html.replace(start, f'{tag} data-pagefind-ignore="all"' + (f" {rest}" if rest else ""))
    return html


def woff2_only(css: str) -> str:
    """Drop KaTeX's woff/ttf fallbacks: every browser that runs KaTeX's CSS reads woff2."""
    return re.sub(r',url\(fonts/[^)]+\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)', "", css)


def _finish_index(proc: Any, out_dir: Path) -> None:
    """Wait for a background Pagefind run and move its index into place (a failure is only printed)."""
    try:
        output.wait_pagefind(proc, out_dir, subdir=SEARCH_NEXT)
    except BuildError as err:
        print(str(err), file=sys.stderr)
        return
    output.replace_dir(out_dir / SEARCH_NEXT, out_dir / "pagefind")


# -- helpers -------------------------------------------------------------------
class _Clock:
    """Times each step of a build (Report.timings); long builds say what is done through `progress`."""

    def __init__(self, into: dict[str, float], progress: Progress) -> None:
        self.into = into
        self.progress = progress

    def lap(self, name: str) -> None:
        self.into[name] = self.progress.lap(name)


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def digest_tree(root: Path) -> str:
    """SHA-256 over every file path and content under root (for determinism checks)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()

