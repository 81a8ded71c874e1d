"""What a Builder keeps between builds, so the dev server rebuilds in a fraction of a second.

    run        the trace and its checks, reused while their key is the same (site_build.cache.run_key: the config
               as read, the checkpoint's files, the verification figures and the engine's source); on disk too
    other      the run compared with (`build --compare`), likewise
    katex      the KaTeX node workers and their formula cache (on disk)
    pages      rendered pages (render.jinja.PageResult) by their content key (cache.PageCache; on disk too)
    indexer    the background search index of the last build (`serve`)

A one-off `handstep build` uses a fresh session and closes it; what it finds on disk makes it fast.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engine
from site_build import cache
from site_build.cache import BigRuns, DiskCache, PageCache
from site_build.data.checks import Checks, compute_checks, oracle_model, start_checks, verification_files
from site_build.data.downloads import ships_trace
from site_build.errors import shown_path
from site_build.progress import Progress
from site_build.render.jinja import PageResult
from site_build.render.katex import CACHE_FILE, KatexRenderer
from site_build.write import index_in_background


@dataclass(frozen=True)
class Run:
    """A trace with its check figures (finite differences, and PyTorch's when `make verify` matched)."""

    trace: Any
    checks: Checks
    key: str = ""  # site_build.cache.run_key: what the trace and its checks depend on


class Session:
    def __init__(self, root: Path, cache: Path, progress: Progress, katex_early: Any = None) -> None:
        self.root = root
        self.progress = progress
        self.katex = KatexRenderer(root, cache / CACHE_FILE, early=katex_early)
        self.runs = DiskCache(cache / "runs")
        self.big = BigRuns(cache / "runs")
        self.pages = PageCache(cache / "pages", PageResult.valid)
        self.indexer: threading.Thread | None = None
        self._run: tuple[Any, Run] | None = None
        self._unkept: tuple[Run, Path] | None = None  # a big run not yet on disk, and its values file
        self._other: tuple[Any, Any] | None = None
        self.other_key = ""  # cache.run_key of the run compared with
        self._trace_files: tuple[Any, dict[str, bytes]] | None = None

    def run_key(self, config_path: Path, seed: int | None) -> tuple[Any, str]:
        """The config as the engine reads it, and the run's key (cache.run_key: the config, the checkpoint's files,
        the verification figures, the engine's source), never a file's modification time."""
        cfg = engine.load_config(str(config_path), seed=seed)
        return cfg, self.key(cfg)

    def key(self, cfg: Any) -> str:
        """cache.run_key of a config's run, with the verification files a build of it may read."""
        return cache.run_key(cfg, verification_files(self.root, cfg.to_dict()), self.runs.folder.parent)

    def run(self, cfg: Any, run_key: str) -> Run:
        """The trace with its checks: kept from the last build, from the run cache, or the engine run and the
        gradients checked now."""
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
                    started.append(start_checks(cfg, partial))

                try:
                    trace = engine.run(cfg, progress=self.progress, values_path=values,
                                       on_gradients=check if values is not None else None)
                    # a big run's finite differences go on while the pages render (Builder calls finish_run)
                    checks = compute_checks(cfg, trace, self.root, self.progress,
                                            started=started[0] if started else None)
                except BaseException:
                    if values is not None:
                        values.unlink(missing_ok=True)
                    raise
                if self.key(cfg) != run_key:
                    run_key = ""  # a checkpoint file changed while it was read: this run is kept under no key
                run = Run(trace, checks, run_key)
                if run_key and cache.cacheable(trace):
                    self.runs.put(run_key, run)
                    self.runs.prune(keep=20)
                elif run_key and values is not None and trace.values_file is not None:
                    self._unkept = (run, values)
            run.checks.model = oracle_model(cfg.to_dict())
            self._run = (run_key, run)
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
        key = cache.run_key(cfg, (), self.runs.folder.parent)
        if self._other is None or self._other[0] != key:
            self._other = (key, engine.run(cfg))
            self.other_key = key
        return self._other[1], shown_path(config_path)

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
