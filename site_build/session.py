"""What a Builder keeps between builds, so the dev server rebuilds in a fraction of a second.

    run        the trace and its checks, reused while their key is the same (site_build.cache.run_key: the config
               as read, the checkpoint's files, the verification figures and the engine's source); on disk too
    other      the run compared with (`build --compare`), likewise
    katex      the KaTeX node workers and their formula cache (on disk)
    compiled   the Jinja code of every page body (on disk)
    pages      rendered pages, replayed when a page, the trace and the links are unchanged (on disk)
    bodies     every page after the whole-site steps (step maps, NumPy lines, exercises) and the site's notebook,
               replayed when the run and all pages are unchanged (on disk)
    exercises  each page's exercises of the last build, replayed when their inputs are unchanged (in memory)
    indexer    the background search index of the last build (`serve`)

A one-off `handstep build` uses a fresh session and closes it; what it finds on disk makes it fast.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engine
from site_build import cache
from site_build.cache import BigRuns, DiskCache, PageStore
from site_build.data.checks import VERIFICATION_FILE, Checks, compute_checks, start_checks
from site_build.data.downloads import csv_files, ships_trace
from site_build.data.interact import data_files
from site_build.errors import shown_path
from site_build.progress import Progress
from site_build.render.jinja import PageResult
from site_build.render.katex import CACHE_FILE, KatexRenderer
from site_build.render.markdown import Rendered
from site_build.write import index_in_background


@dataclass(frozen=True)
class Run:
    """A trace with its check figures (finite differences, and PyTorch's when `make verify` matched)."""

    trace: Any
    checks: Checks
    key: str = ""  # site_build.cache.run_key: what the trace and its checks depend on


class Session:
    def __init__(self, root: Path, cache: Path, progress: Progress) -> None:
        self.root = root
        self.progress = progress
        self.katex = KatexRenderer(root, cache / CACHE_FILE)
        self.compiled: dict[tuple[str, str], Any] = {}  # (page, body) -> compiled Jinja code
        self.runs = DiskCache(cache / "runs")
        self.big = BigRuns(cache / "runs")
        self.data = DiskCache(cache / "data")
        self.pages = PageStore({}, DiskCache(cache / "pages"), PageResult.valid)  # render.jinja.render_bodies' cache
        self.bodies = DiskCache(cache / "bodies")
        self.exercises: dict[Any, Any] = {}  # each page's exercises of the last build (exercises.add_exercises)
        self.notebooks = DiskCache(cache / "notebook")
        self.generation = 0  # bumped whenever the trace, its checks or the compared run change
        self.indexer: threading.Thread | None = None
        self._run: tuple[Any, Run] | None = None
        self._unkept: tuple[Run, Path] | None = None  # a big run not yet on disk, and its values file
        self._other: tuple[Any, Any] | None = None
        self.other_key = ""  # cache.run_key of the run compared with
        self._trace_files: tuple[Any, dict[str, bytes]] | None = None

    def run(self, config_path: Path, seed: int | None) -> Run:
        """Load the config, run the engine and check the gradients, unless the same run was just made: runs are
        told apart by their content (cache.run_key: the config as read, the checkpoint's files, the verification
        figures), never by a file's modification time."""
        cfg = engine.load_config(str(config_path), seed=seed)
        run_key = cache.run_key(cfg, self.root / VERIFICATION_FILE, self.runs.folder.parent)
        if self._run is None or self._run[0] != run_key:
            run = self.runs.get(run_key)
            big = self.big.get(run_key) if not _valid_run(run, run_key) else None
            if big is not None:
                run = Run(*big, run_key)
            if not _valid_run(run, run_key):
                # A run big enough to write its values to a file writes them where the cache keeps them.
                values = self.big.start(run_key) if engine.estimate(cfg).spills else None
                started: list[Checks] = []

                def check(partial: Any) -> None:  # a big run's gradients, checked while its optimizer step goes on
                    started.append(start_checks(cfg, partial, str(config_path)))

                try:
                    trace = engine.run(cfg, progress=self.progress, values_path=values,
                                       on_gradients=check if values is not None else None)
                    # a big run's finite differences go on while the pages render (Builder calls finish_run)
                    checks = compute_checks(cfg, trace, self.root, str(config_path), self.progress,
                                            started=started[0] if started else None)
                except BaseException:
                    if values is not None:
                        values.unlink(missing_ok=True)
                    raise
                if cache.run_key(cfg, self.root / VERIFICATION_FILE, self.runs.folder.parent) != run_key:
                    run_key = ""  # a checkpoint file changed while it was read: this run is kept under no key
                run = Run(trace, checks, run_key)
                if run_key and cache.cacheable(trace):
                    self.runs.put(run_key, run)
                    self.runs.prune(keep=20)
                elif run_key and values is not None and trace.values_file is not None:
                    self._unkept = (run, values)
            self._run = (run_key, run)
            self._changed()
        return self._run[1]

    def finish_run(self, run: Run) -> None:
        """Wait for the run's background checks (raising their BuildError), then keep a big run on disk."""
        try:
            run.checks.finish()
        except BaseException:
            if self._unkept is not None and self._unkept[0] is run:
                self._unkept[1].unlink(missing_ok=True)  # the run failed its check: not worth keeping
                self._unkept = None
            raise
        if self._unkept is not None and self._unkept[0] is run:
            self.big.put(run.key, run.trace, run.checks, self._unkept[1])
            self._unkept = None

    def other(self, config_path: Path, seed: int | None) -> tuple[Any, str]:
        """The run to compare with, and where it came from (`configs/x.yaml`)."""
        cfg = engine.load_config(str(config_path), seed=seed)
        key = cache.run_key(cfg, None, self.runs.folder.parent)
        if self._other is None or self._other[0] != key:
            self._other = (key, engine.run(cfg))
            self.other_key = key
            self._changed()
        return self._other[1], shown_path(config_path)

    def _changed(self) -> None:
        self.generation += 1
        self.pages.memory.clear()
        self.exercises.clear()

    def data_files(self, run: Run, ctx: Any, pages: list[Any], other_key: str) -> dict[str, str]:
        """Every page's click data and every shown record's CSV (from disk when the same run shows the same
        records on the same pages)."""
        shown = sorted((name, sorted(where)) for name, where in ctx.shown.items())
        key = _key(run, "data", other_key, shown, [(p.source, p.url, p.slug, p.title) for p in pages])
        return self.data.get_or_make(key, lambda: {**data_files(run.trace, ctx.shown, pages, ctx.other),
                                                   **csv_files(run.trace, ctx.shown)}, dict, valid=_files)

    def finished_bodies(self, run: Run, ctx: Any, pages: list[Any], parts: Any,
                        make: Callable[[], dict[str, Rendered]]) -> dict[str, Rendered]:
        """Every page's finished body: `make()`, or, when the same run (and `parts`) renders the same pages, the
        bodies it made last time replayed into `ctx` (their formulas and shown records registered anew)."""
        key = _key(run, "bodies", parts, [repr(p) for p in pages])
        stored = self.bodies.get(key) if key else None
        if isinstance(stored, list) and all(PageResult.valid(r) for r in stored):
            return {r.source: r.replay(ctx) for r in stored}
        bodies = make()
        if key:
            self.bodies.put(key, [PageResult.capture(body, ctx, source) for source, body in bodies.items()])
            self.bodies.prune(keep=20)
        return bodies

    def notebook_files(self, run: Run, ctx: Any, pages: list[Any], make: Callable[[], dict[str, bytes]]
                       ) -> dict[str, bytes]:
        """The site's notebook: `make()`, or the one made last time for the same run and pages."""
        return self.notebooks.get_or_make(_key(run, "notebook", [repr(p) for p in pages]), make, dict, keep=10,
                                          valid=_files)

    def trace_files(self, trace: Any) -> dict[str, bytes]:
        """The trace as the engine saves it (`trace.json`, with its values file for a trace past INLINE_MAX_VALUES),
        serialised once; nothing for a trace the site does not carry (downloads.ships_trace: a big run's values
        are gigabytes; `handstep trace` writes them where the reader wants them)."""
        if not ships_trace(trace):
            return {}
        if self._trace_files is None or self._trace_files[0] is not trace:
            with tempfile.TemporaryDirectory(prefix="handstep-trace-") as folder:
                trace.save(Path(folder) / "trace.json")
                files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}
            self._trace_files = (trace, files)
        return self._trace_files[1]

    def index_in_background(self, out_dir: Path) -> None:
        """Index the site just written for search, after the swap (the dev server's rebuilds show sooner)."""
        self.indexer = index_in_background(out_dir)

    def finish_search(self) -> None:
        """Wait until the background search index is in place."""
        if self.indexer is not None:
            self.indexer.join()
            self.indexer = None

    def close(self) -> None:
        """Finish any search indexing, stop KaTeX and save its cache; keep a big run whose build failed after its
        checks passed, and delete the values of one whose checks had not (a failed build leaves no 8 GB file)."""
        self.finish_search()
        self.katex.close()
        self.pages.disk.prune()
        if self._unkept is not None:
            run, values = self._unkept
            pending = run.checks.pending
            if (pending is None or not pending.is_alive()) and run.checks.error is None:
                self.finish_run(run)
            else:
                values.unlink(missing_ok=True)
                self._unkept = None


def _valid_run(run: Any, key: str) -> bool:
    """A run read from the cache is what its key names (anything else read there is a miss)."""
    return (isinstance(run, Run) and run.key == key and isinstance(run.trace, engine.Trace)
            and isinstance(run.checks, Checks))


def _files(files: Any) -> bool:
    """Site files read from the cache: {site path: text or bytes}."""
    return all(isinstance(k, str) and isinstance(v, (str, bytes)) for k, v in files.items())


def _key(run: Run, *parts: Any) -> str:
    """The disk-cache key of something made from `run` and `parts`; "" for a run that cannot be cached."""
    return cache.page_key((parts[0], run.key, *parts[1:])) if run.key else ""
