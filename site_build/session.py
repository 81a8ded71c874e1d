"""What a Builder keeps between builds, so the dev server rebuilds in a fraction of a second.

    run        the trace and its checks, reused while the config (and the verification file) is unchanged
    other      the run compared with (`build --compare`), likewise
    katex      the KaTeX node workers and their formula cache
    compiled   the Jinja code of every page body
    pages      rendered pages, replayed when a page, the trace and the links are unchanged
    indexer    the background search index of the last build (`serve`)

A one-off `handstep build` uses a fresh session and closes it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engine
from site_build.data.checks import VERIFICATION_FILE, Checks, compute_checks
from site_build.errors import shown_path
from site_build.progress import Progress
from site_build.render.katex import KatexRenderer
from site_build.write import index_in_background


@dataclass(frozen=True)
class Run:
    """A trace with its check figures (finite differences, and PyTorch's when `make verify` matched)."""

    trace: Any
    checks: Checks


class Session:
    def __init__(self, root: Path, cache: Path, progress: Progress) -> None:
        self.root = root
        self.progress = progress
        self.katex = KatexRenderer(root, cache / "katex.json")
        self.compiled: dict[tuple[str, str], Any] = {}  # (page, body) -> compiled Jinja code
        self.pages: dict[Any, Any] = {}  # page cache of render.jinja.render_bodies
        self.generation = 0  # bumped whenever the trace, its checks or the compared run change
        self.indexer: threading.Thread | None = None
        self._run: tuple[Any, Run] | None = None
        self._other: tuple[Any, Any] | None = None
        self._trace_files: tuple[Any, dict[str, bytes]] | None = None

    def run(self, config_path: Path, seed: int | None) -> Run:
        """Load the config, run the engine and check the gradients, unless the same config was just run."""
        key = (str(config_path), seed, _mtime(config_path), _mtime(self.root / VERIFICATION_FILE))
        if self._run is None or self._run[0] != key:
            cfg = engine.load_config(str(config_path), seed=seed)
            trace = engine.run(cfg, progress=self.progress)
            checks = compute_checks(cfg, trace, self.root, str(config_path), self.progress)
            self._run = (key, Run(trace, checks))
            self._changed()
        return self._run[1]

    def other(self, config_path: Path, seed: int | None) -> tuple[Any, str]:
        """The run to compare with, and where it came from (`configs/x.yaml`)."""
        key = (str(config_path), seed, _mtime(config_path))
        if self._other is None or self._other[0] != key:
            self._other = (key, engine.run(engine.load_config(str(config_path), seed=seed)))
            self._changed()
        return self._other[1], shown_path(config_path)

    def _changed(self) -> None:
        self.generation += 1
        self.pages.clear()

    def trace_files(self, trace: Any) -> dict[str, bytes]:
        """The trace as the engine saves it (`trace.json`, plus `trace.bin` for a big trace), serialised once."""
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
        """Finish any search indexing, stop KaTeX and save its cache."""
        self.finish_search()
        self.katex.close()


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0

