"""Build the site: gather → run or reuse → render pages → derive → check → write, index, swap.

Everything is made and checked in memory first (every page, every macro call, every formula); only then is
anything written, into a temporary folder that is swapped in whole (site_build.write). `Builder.build` is that
recipe, step by step. What a Builder keeps between builds is its Session's three caches (the run, the rendered
pages, KaTeX's formulas), so the dev server rebuilds in a fraction of a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import engine
from engine.diff import diff_traces
from site_build import write
from site_build.data import compare as compare_view
from site_build.data.checks import SHIPPED_VERIFICATION, VERIFICATION_FILE
from site_build.data.downloads import Prefetch, csv_files, page_files, ships_trace
from site_build.data.interact import data_files, pages_with_data
from site_build.errors import BuildError, shown_path
from site_build.exercises import PageExercises, add_exercises
from site_build.macros.registry import RunContext
from site_build.macros.scale import table_pages
from site_build.notebook import notebook_files
from site_build.pages import ExtraPage, Page, collect_pages, slug_fields
from site_build.progress import Progress, quiet
from site_build.render.compile import Compiled
from site_build.render.jinja import PageResult, link_map, page_key, render_pages
from site_build.render.layout import render_layouts, search_ignores, static_files
from site_build.render.markdown import Rendered
from site_build.render.mathslots import MathSlots
from site_build.session import Session

ROOT = Path(__file__).resolve().parent.parent
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

    def brief(self) -> str:
        """What the site holds, for `handstep build` of a site that is up to date."""
        return f"{self.pages} pages, {self.formulas} formulas, records shown: {self.shown}/{self.records}"

    def summary(self) -> str:
        """The one line `handstep build` prints."""
        return (
            f"built {self.pages} pages, {self.formulas} formulas "
            f"({self.rendered} rendered, {self.cached} cached), "
            f"records shown: {self.shown}/{self.records}, "
            f"{self.seconds:.2f} s -> {shown_path(self.out_dir)}"
        )


class Builder:
    """Builds the site; reusable, so `serve` keeps the trace and KaTeX warm (see Session)."""

    def __init__(self, paths: Paths | None = None, progress: Progress | None = None, katex_early: Any = None) -> None:
        self.paths = paths or Paths()
        self.progress = progress or quiet()
        # katex_early: a KaTeX worker the command started before it loaded the build (render.katex.start_early)
        self.session = Session(self.paths.root, self.paths.cache, self.progress, katex_early)
        self.background_search = False  # the dev server sets this: search is indexed after the swap
        self.replaced = False  # the last build has swapped its site in (set at that moment: write.swap_in)

    def build(self, config_path: Path, out_dir: Path, seed: int | None = None, require_coverage: bool = False,
              base_url: str = "", compare: Compare | None = None, force: bool = False) -> Report:
        """Build the whole site into out_dir; raise BuildError (old site untouched) on failure.

        gather → run or reuse → render pages → derive → check → write, index, swap. out_dir must be new, empty
        or a site handstep built (or anything but a protected place with `force`); see write.check_site_dir."""
        config_path, out_dir, session = Path(config_path), Path(out_dir), self.session
        session.finish_search()
        self.replaced = False
        clock = Clock(self.progress)
        self.check_outputs(config_path, out_dir, force, compare)
        # 1. gather: the run's key and the pages (named after the run's settings where a slug says so, and those of
        # its architecture); the pages the cache lacks start compiling (forks: before threads)
        cfg, run_key = session.run_key(config_path, seed)
        pages, problems = collect_pages(self.paths.content, slug_fields(cfg))
        other = session.other(Path(compare.config or config_path), compare.seed) if compare is not None else None
        links, steps = link_map(pages), {p.step: p.url for p in pages if p.step}
        key = (run_key, session.other_key if compare is not None else "", sorted(steps.items()))
        compiled = Compiled.start([p for p in pages if not (run_key and session.pages.has(page_key(p, key, links)))])
        try:
            # 2. run or reuse: the trace and its checks
            session.katex.warm_up()  # with no formula cached yet, node loads KaTeX while the engine runs
            run = session.run(config_path, cfg, run_key)
            clock.lap("trace")
            site = RunContext(run.trace, run.checks, steps)
            prefetch = Prefetch(run.trace)  # the files each page needs are made while the next ones render
            try:
                extra_pages = self.compare_with(site, config_path, other) if other is not None else {}
                # 3. render pages: each through Jinja and Markdown, or from the page cache
                results = self.render_pages(pages, site, links, problems, key if run.key else None, compiled,
                                            prefetch)
                # 4. derive, from the pages: exercises, coverage, the tables of wide matrices, the layout
                math = MathSlots()
                shown: dict[str, set[str]] = {}
                for result in results.values():
                    math.add(result.math)
                    for name in result.shown:
                        shown.setdefault(name, set()).add(result.source)
                bodies = {source: Rendered(r.html, list(r.headings), [], r.anchors) for source, r in results.items()}
                keys = {p.source: page_key(p, key, links) for p in pages} if run.key else None
                add_exercises(site, pages, results, bodies, shown, math, lambda source, inputs, make: self.per_page(
                    "exercises", keys, source, inputs, PageExercises.valid, make))
                extra_pages.update(table_pages([(p, results[p.source].made) for p in pages if p.source in results]))
                clock.lap("pages")
                ships = ships_trace(run.trace)  # a big run's trace (and so its notebook) stays local
                layouts = render_layouts(self.paths.templates, pages, bodies, base_url, pages_with_data(shown, pages),
                                         extra_pages, notebook=ships)
                clock.lap("layout")
                # 5. check: the gradients (a big run's finite differences ran while the pages rendered), every
                # formula typesets, every record is shown (if required)
                session.finish_run(run)
                clock.lap("checks")
                typeset = session.katex.render_all(set(math.formulas.values()))
                math.check(typeset.errors)
                clock.lap("katex")
                report = Report(out_dir, pages=len(pages), formulas=len(math.formulas), rendered=typeset.rendered,
                                cached=typeset.cached, timings=clock.timings)
                report.missing = [n for n in site.names if n not in shown]
                report.shown, report.records = len(site.names) - len(report.missing), len(site.names)
                if require_coverage and report.missing:
                    raise BuildError("content", 0, f"records shown: {report.shown}/{report.records}; no page shows: "
                                     + ", ".join(report.missing))
                # 6. everything the site holds, in memory: pages with their math, click data, downloads
                layouts = {rel: run.checks.fill(html) for rel, html in layouts.items()}
                files: dict[str, Any] = {rel: search_ignores(math.fill(html, typeset.html))
                                         for rel, html in layouts.items()}
                files.update(data_files(run.trace, shown, pages, site.other))
                for page in pages:  # each page's records as CSV, kept with the page
                    names = sorted(n for n, where in shown.items() if page.source in where)
                    files.update(self.per_page("csv", keys, page.source, tuple(names), _text_files,
                                               lambda names=names: csv_files(site, names)))
                files.update(page_files(run.trace, results.values(), prefetch))  # the blocks' CSVs, .npy, heatmaps
                files.update(static_files(self.paths.root, self.paths.templates))
                if ships:  # it reads trace.json
                    files.update(notebook_files(site, pages, results, lambda source, make: self.per_page(
                        "notebook", keys, source, (), lambda text: isinstance(text, str), make)))
                run.trace.release()
                clock.lap("data")
            finally:
                prefetch.close()  # a failed build too: its workers stop
                site.close()
        finally:
            compiled.close()
        # 7. write into a temporary folder, index it for search, swap it in
        self.check_outputs(config_path, out_dir, force, compare)  # nothing changed under us while building
        search = {rel: search_ignores(math.strip(html)) for rel, html in layouts.items() if rel.endswith(".html")}
        with write.writing("--out", out_dir):  # a disk that fills up: one line, and the old site stays
            files.update(session.trace_files(run.trace))  # trace.json as the engine saves it (through a file)
            indexed = write.write_site(out_dir, files, search, clock.lap, reuse_search=self.background_search,
                                       replaced=self._replaced)
        session.pages.end_build()
        if indexed:
            session.index_in_background(out_dir)
        session.katex.save_cache()
        report.seconds = clock.total()
        return report

    def render_pages(self, pages: list[Page], site: RunContext, links: dict[str, str],
                     problems: list[tuple[str, int, str]], key: Any, compiled: Compiled,
                     prefetch: Prefetch) -> dict[str, PageResult]:
        """Every page rendered, or from the page cache (under `key`; none for a run that has no key). As each page
        is done, KaTeX gets its formulas and `prefetch` its files to make; a big run's whole-model figures are worked
        out beside the pages."""
        katex = self.session.katex

        def page_done(result: PageResult) -> None:
            katex.flush()
            prefetch.page(result)

        if not ships_trace(site.trace):
            site.start_ahead()
        return render_pages(pages, site, links, self.session.pages if key is not None else None, problems, key,
                            compiled, on_formula=katex.prefetch, on_page=page_done)

    def per_page(self, kind: str, keys: dict[str, Any] | None, source: str, inputs: Any, valid: Any,
                 make: Any) -> Any:
        """What is made of one page alone (its exercises, CSV, notebook text): kept in the page cache under the page's
        content key and `inputs`, or `make()` (always, for a run without a key)."""
        parts = (kind, keys[source], inputs) if keys is not None and source in keys else None
        value = self.session.pages.get(parts, valid) if parts is not None else None
        if value is None:
            value = make()
            if parts is not None:
                self.session.pages.put(parts, value)
        return value

    def _replaced(self) -> None:
        self.replaced = True

    def compare_with(self, ctx: RunContext, config_path: Path, other: tuple[Any, str]) -> dict[str, ExtraPage]:
        """The other run (a config or seed, and where it came from); every matrix then shows it (through `ctx`);
        returns the summary page."""
        other, source = other
        ctx.other, ctx.other_label = other, compare_view.run_label(other, source)
        label = compare_view.run_label(ctx.trace, shown_path(config_path))
        html = compare_view.summary_html(ctx.trace, other, diff_traces(ctx.trace, other), label, ctx.other_label)
        return {compare_view.COMPARE_PAGE: ExtraPage("Comparing two runs", "How the numbers of two runs differ.", html)}

    def check_outputs(self, config_path: Path, out_dir: Path, force: bool, compare: Compare | None = None) -> None:
        """Refuse (one line, nothing written) an output folder or cache handstep must not write: among others, one
        that holds anything the build reads (site_build.write.check_site_dir)."""
        inputs = {"pages": self.paths.content, "templates": self.paths.templates, "config": config_path,
                  **self.read_inputs(config_path, compare)}
        write.check_site_dir(out_dir, force, {**inputs, "cache": self.paths.cache, "code": self.paths.root})
        write.check_cache_dir(self.paths.cache, {**inputs, "site": out_dir})
        write.mark_cache_dir(self.paths.cache)

    def read_inputs(self, config_path: Path, compare: Compare | None = None) -> dict[str, Path]:
        """What else the build reads, beside its pages, templates and config: the checkpoint folder the config names
        (`model.from`), the config of `--compare` and its checkpoint folder, and the verification files (the shipped
        ones and build/verification.json)."""
        found: dict[str, Path] = {}
        shipped = self.paths.root / SHIPPED_VERIFICATION
        if shipped.exists():
            found["shipped PyTorch comparisons"] = shipped
        verification = self.paths.root / VERIFICATION_FILE
        if verification.exists():
            found["verification file"] = verification
        if (folder := checkpoint_folder(config_path)) is not None:
            found["checkpoint folder"] = folder
        if compare is not None and compare.config is not None:
            found["--compare config"] = Path(compare.config)
            if (folder := checkpoint_folder(Path(compare.config))) is not None:
                found["--compare config's checkpoint folder"] = folder
        return found

    def finish_search(self) -> None:
        """Wait until the background search index is in place."""
        self.session.finish_search()

    def close(self) -> None:
        """Finish any search indexing, stop KaTeX and save its cache."""
        self.session.close()


def build(config_path: str | Path, out_dir: str | Path, seed: int | None = None, paths: Paths | None = None,
          require_coverage: bool = False) -> Report:
    """Build once and stop the KaTeX process (what `handstep build` does)."""
    builder = Builder(paths)
    try:
        return builder.build(Path(config_path), Path(out_dir), seed, require_coverage)
    finally:
        builder.close()


def _text_files(files: Any) -> bool:
    """{site path: text}, as a page's CSV files are kept."""
    return isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())


def checkpoint_folder(config: Path) -> Path | None:
    """The checkpoint folder a config's `model.from` names, found as the engine finds it (it reads the config); None
    when there is none, or when the config cannot be read: the build then stops on that, with its own message."""
    try:
        cfg = engine.load_config(str(config))
    except engine.ConfigError:
        return None
    return Path(cfg.model.checkpoint_dir) if cfg.model.checkpoint_dir else None


class Clock:
    """Times each step of a build (Report.timings); long builds say what is done through `progress`."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.progress.restart()
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str) -> None:
        self.timings[name] = self.progress.lap(name)

    def total(self) -> float:
        return time.perf_counter() - self.start
