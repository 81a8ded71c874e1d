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
from site_build.mathslots import MathSlots
from site_build.notebook import notebook_files
from site_build.pages import ExtraPage, Page, broken_names, collect_pages, slug_fields
from site_build.progress import Progress, quiet
from site_build.render.compile import Compiled
from site_build.render.jinja import (
    PageResult,
    duplicate_ids,
    link_map,
    missing_anchors,
    missing_files,
    page_key,
    render_pages,
)
from site_build.render.layout import missing_layout_files, render_layouts, search_ignores, static_files
from site_build.render.markdown import Rendered
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


@dataclass
class Job:
    """One build as it goes through the stages: what `gather` found, and the workers that speed up rendering (the
    compile forks, the page files' thread), which `close` stops."""

    config_path: Path
    cfg: Any
    run_key: str
    pages: list[Page]
    problems: list[tuple[str, int, str]]
    links: dict[str, str]
    steps: dict[str, str]
    key: Any  # the page cache's key of this run (the run's key, the run compared with, the steps' pages)
    other: tuple[Any, str] | None  # the run of --compare, and where it came from
    compiled: Compiled
    keys: dict[str, Any] | None = None  # each page's page-cache key; None for a run that has no key
    ships: bool = True  # the site carries the trace (downloads.ships_trace): not a big run's
    prefetch: Prefetch | None = None
    extra_pages: dict[str, ExtraPage] = field(default_factory=dict)

    def close(self) -> None:
        if self.prefetch is not None:
            self.prefetch.close()
        self.compiled.close()


@dataclass
class Made:
    """What the later stages derive from the pages' results."""

    math: MathSlots
    extra_pages: dict[str, ExtraPage]
    shown: dict[str, set[str]] = field(default_factory=dict)  # record name -> the pages that show it
    bodies: dict[str, Rendered] = field(default_factory=dict)
    layouts: dict[str, str] = field(default_factory=dict)
    typeset: Any = None


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
        config_path, out_dir = Path(config_path), Path(out_dir)
        self.session.finish_search()
        self.replaced = False
        clock = Clock(self.progress)
        self.check_outputs(config_path, out_dir, force, compare)
        job = self.gather(config_path, seed, compare)  # 1. gather
        try:
            run = self.run_or_reuse(job)  # 2. run or reuse
            clock.lap("trace")
            site = RunContext(run.trace, run.checks, job.steps)
            try:
                results = self.render_pages(job, site)  # 3. render pages
                made = self.derive(job, site, results)  # 4. derive
                clock.lap("pages")
                self.lay_out(job, run, made, base_url)  # every page in the site's layout
                clock.lap("layout")
                report = self.check(job, run, site, made, out_dir, require_coverage, clock)  # 5. check
                files = self.site_files(job, run, site, results, made)  # 6. the site, in memory
                clock.lap("data")
            finally:
                site.close()
        finally:
            job.close()  # a failed build too: its workers stop
        self.check_outputs(config_path, out_dir, force, compare)  # nothing changed under us while building
        self.write(job, out_dir, run, made, files, clock)  # 7. write, index, swap
        report.seconds = clock.total()
        return report

    def gather(self, config_path: Path, seed: int | None, compare: Compare | None) -> Job:
        """The run's key and the pages (named after the run's settings where a slug says so, and those of its
        architecture). The pages the page cache lacks start compiling in two forks now (before any thread), while
        the engine runs."""
        session = self.session
        cfg, run_key = session.run_key(config_path, seed)
        pages, problems = collect_pages(self.paths.content, slug_fields(cfg))
        other = session.other(Path(compare.config or config_path), compare.seed) if compare is not None else None
        links = link_map(pages, broken_names(self.paths.content, pages, problems))
        steps = {p.step: p.url for p in pages if p.step}
        key = (run_key, session.other_key if compare is not None else "", sorted(steps.items()))
        compiled = Compiled.start([p for p in pages if not (run_key and session.pages.has(page_key(p, key, links)))])
        return Job(config_path, cfg, run_key, pages, problems, links, steps, key, other, compiled)

    def run_or_reuse(self, job: Job) -> Any:
        """The trace and its checks (session.Run); with no formula cached yet, node loads KaTeX meanwhile. A run
        with no key (a checkpoint changed while it was read) keeps nothing in the page cache."""
        self.session.katex.warm_up()
        run = self.session.run(job.cfg, job.run_key)
        job.ships = ships_trace(run.trace)
        if run.key:
            job.keys = {p.source: page_key(p, job.key, job.links) for p in job.pages}
        return run

    def render_pages(self, job: Job, site: RunContext) -> dict[str, PageResult]:
        """Every page rendered, or from the page cache (under the job's key; none for a run that has no key). As each
        page is done, KaTeX gets its formulas and the job's `prefetch` its files to make; a big run's whole-model
        figures are worked out beside the pages."""
        katex = self.session.katex
        job.prefetch = prefetch = Prefetch(site.trace)  # the files each page needs are made while the next render
        job.extra_pages = self.compare_with(site, job.config_path, job.other) if job.other is not None else {}

        def page_done(result: PageResult) -> None:
            katex.flush()
            prefetch.page(result)

        if not job.ships:
            site.start_ahead()
        keyed = job.keys is not None
        return render_pages(job.pages, site, job.links, self.session.pages if keyed else None, job.problems,
                            job.key if keyed else None, job.compiled, on_formula=katex.prefetch, on_page=page_done)

    def derive(self, job: Job, site: RunContext, results: dict[str, PageResult]) -> Made:
        """From the pages' results: their math and the records they show, the exercises, the tables of wide
        matrices (the layout follows)."""
        made = Made(math=MathSlots(), extra_pages=job.extra_pages)
        for result in results.values():
            made.math.add(result.math)
            for name in result.shown:
                made.shown.setdefault(name, set()).add(result.source)
        made.bodies = {source: Rendered(r.html, list(r.headings), [], r.anchors) for source, r in results.items()}
        add_exercises(site, job.pages, results, made.bodies, made.shown, made.math,
                      lambda source, inputs, make: self.per_page("exercises", job, source, inputs,
                                                                 PageExercises.valid, make))
        made.extra_pages.update(table_pages([(p, results[p.source].made) for p in job.pages
                                             if p.source in results]))
        return made

    def lay_out(self, job: Job, run: Any, made: Made, base_url: str) -> None:
        """Each page's body, and each generated page, in the site's layout (templates/)."""
        made.layouts = render_layouts(self.paths.templates, job.pages, made.bodies, base_url,
                                      pages_with_data(made.shown, job.pages), made.extra_pages,
                                      notebook=job.ships)

    def check(self, job: Job, run: Any, site: RunContext, made: Made, out_dir: Path, require_coverage: bool,
              clock: Clock) -> Report:
        """The gradients (a big run's finite differences ran while the pages rendered), every formula typesets,
        every record is shown (if required)."""
        session = self.session
        session.finish_run(run)
        clock.lap("checks")
        made.typeset = typeset = session.katex.render_all(set(made.math.formulas.values()))
        made.math.check(typeset.errors)
        clock.lap("katex")
        report = Report(out_dir, pages=len(job.pages), formulas=len(made.math.formulas), rendered=typeset.rendered,
                        cached=typeset.cached, timings=clock.timings)
        report.missing = [n for n in site.names if n not in made.shown]
        report.shown, report.records = len(site.names) - len(report.missing), len(site.names)
        if require_coverage and report.missing:
            raise BuildError("content", 0, f"records shown: {report.shown}/{report.records}; no page shows: "
                             + ", ".join(report.missing))
        return report

    def site_files(self, job: Job, run: Any, site: RunContext, results: dict[str, PageResult],
                   made: Made) -> dict[str, Any]:
        """Everything the site holds, in memory: pages with their math, click data, downloads, the notebook."""
        math, typeset = made.math, made.typeset
        made.layouts = {rel: run.checks.fill(html) for rel, html in made.layouts.items()}
        files: dict[str, Any] = {rel: search_ignores(math.fill(html, typeset.html))
                                 for rel, html in made.layouts.items()}
        files.update(data_files(run.trace, made.shown, job.pages, site.other))
        for page in job.pages:  # each page's records as CSV, kept with the page
            names = sorted(n for n, where in made.shown.items() if page.source in where)
            files.update(self.per_page("csv", job, page.source, tuple(names), _text_files,
                                       lambda names=names: csv_files(site, names)))
        files.update(page_files(run.trace, results.values(), job.prefetch))  # the blocks' CSVs, .npy, heatmaps
        files.update(static_files(self.paths.root, self.paths.templates))
        if job.ships:  # it reads trace.json
            files.update(notebook_files(site, job.pages, results, lambda source, make: self.per_page(
                "notebook", job, source, (), lambda text: isinstance(text, str), make)))
        run.trace.release()
        return files

    def write(self, job: Job, out_dir: Path, run: Any, made: Made, files: dict[str, Any], clock: Clock) -> None:
        """Every link of the pages checked against the site's files and their anchors, and every id of a finished
        page for a second one; then into a temporary folder, indexed for search, swapped in whole."""
        session = self.session
        search = {rel: search_ignores(made.math.strip(html)) for rel, html in made.layouts.items()
                  if rel.endswith(".html")}
        with write.writing("--out", out_dir):  # a disk that fills up: one line, and the old site stays
            files.update(session.trace_files(run.trace))  # trace.json as the engine saves it (through a file)
        problems = (missing_anchors(job.pages, made.bodies) + missing_files(made.bodies, files)
                    + missing_layout_files(self.paths.templates, made.layouts["404.html"], files)
                    + duplicate_ids(job.pages, made.bodies, made.layouts))
        if problems:
            raise BuildError.collect(problems)
        with write.writing("--out", out_dir):
            indexed = write.write_site(out_dir, files, search, clock.lap, reuse_search=self.background_search,
                                       replaced=self._replaced)
        session.pages.end_build()
        if indexed:
            session.index_in_background(out_dir)
        session.katex.save_cache()

    def per_page(self, kind: str, job: Job, source: str, inputs: Any, valid: Any, make: Any) -> Any:
        """What is made of one page alone (its exercises, CSV, notebook text): kept in the page cache under the page's
        content key and `inputs`, or `make()` (always, for a run without a key)."""
        parts = (kind, job.keys[source], inputs) if job.keys is not None and source in job.keys else None
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
