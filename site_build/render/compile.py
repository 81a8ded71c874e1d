"""Each page's Jinja compiled to Python code, for one build: ahead of rendering by two forked workers when many pages
must render (a cold build), else on demand.

Generating a page's Python source is most of Jinja's cost, and a cold build has 26 pages to compile while the
engine runs on one core: two workers, forked before any thread starts (a fork copies only the calling thread),
compile the pages in the order they render and write each page's marshalled code into a folder of this build's own,
removed when the build ends. Nothing is kept between builds: a page that has not changed comes whole from the page
cache (site_build.cache.PageCache) and is not compiled at all.

Plain forks, each given its pages up front: nothing is shared between them and the build, so there is no lock a
worker could die holding. A worker takes the default action on SIGTERM and ignores Ctrl-C (the build handles that).
A worker that dies or hangs only costs time: whatever it did not write, the build compiles itself.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import shutil
import signal
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import jinja2

from site_build.macros import FILTERS
from site_build.pages import Page

TIMEOUT_S = 30.0
MIN_PAGES = 4  # fewer than this: compiled on demand, no worker


class Compiled:
    """The pages' code for one build (`code(env, page)`); `close()` ends the workers and removes their folder."""

    def __init__(self, folder: Path | None = None, owners: dict[str, int] | None = None) -> None:
        self.folder = folder
        self.owner = owners or {}  # page source -> pid of the worker compiling it
        self.running = set(self.owner.values())
        self.deadline = time.monotonic() + TIMEOUT_S

    @classmethod
    def start(cls, pages: list[Page]) -> Compiled:
        """Fork two workers for `pages` (none for fewer than MIN_PAGES, or where there is no fork). Call it before
        any thread starts. The pages are dealt out in the order they render, each to the worker with less text so
        far, so that both stay ahead of the rendering."""
        if len(pages) < MIN_PAGES or not hasattr(os, "fork"):
            return cls()
        folder = Path(tempfile.mkdtemp(prefix="handstep-jinja-"))
        shares: list[list[Page]] = [[], []]
        sizes = [0, 0]
        for page in pages:
            k = sizes.index(min(sizes))
            shares[k].append(page)
            sizes[k] += len(page.body)
        sys.stdout.flush()
        sys.stderr.flush()
        owners = {}
        for share in shares:
            pid = _fork_worker(folder, share)
            if pid:
                owners.update({page.source: pid for page in share})
        return cls(folder, owners)

    def code(self, env: jinja2.Environment, page: Page) -> Any:
        """The page's code: from its worker (waited for), else compiled now."""
        code = self._from_worker(page) if page.source in self.owner else None
        return code if code is not None else compile_page(env, page)

    def _from_worker(self, page: Page) -> Any:
        assert self.folder is not None
        path = code_path(self.folder, page)
        pid = self.owner[page.source]
        while pid in self.running and not path.is_file():
            if _reaped(pid, os.WNOHANG):
                self.running.discard(pid)
            elif time.monotonic() > self.deadline:
                self.close()
            else:
                time.sleep(0.002)
        try:
            code = marshal.loads(path.read_bytes())
        except Exception:  # noqa: BLE001 - a worker that failed on this page: it is compiled here, with its error
            return None
        return code if isinstance(code, types.CodeType) else None

    def close(self) -> None:
        """End the workers now, reap them, and remove their folder. Only workers not yet reaped are signalled: a
        reaped worker's pid may belong to another process by now."""
        for pid in sorted(self.running):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _reaped(pid, 0)
        self.running.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def content_environment(compile_only: bool = False) -> jinja2.Environment:
    """Jinja for page bodies: strict about undefined names, HTML-escaping by default. A page's macros, facts, `trace`
    and `config` are given when it renders (`render_jinja`), so one environment serves every page.

    `compile_only` (what the parallel compile workers need) has the filters by name only, since compiling checks
    them."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        # `{#id}` is a Markdown heading id, so Jinja comments are `{## ... ##}` here
        comment_start_string="{##",
        comment_end_string="##}",
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # no constant folding: the pages have little to fold, and generating their code is a cold build's largest
        # cost (folding is about a sixth of it); the output is the same either way
        optimized=False,
    )
    env.filters.update({name: str for name in FILTERS} if compile_only else FILTERS)
    return env


def compile_page(env: jinja2.Environment, page: Page) -> Any:
    """A page body compiled by Jinja, named by its source (errors and macro calls are located by it)."""
    return compile(env.compile(page.body, name=page.source, filename=page.source, raw=True), page.source, "exec")


def code_path(folder: Path, page: Page) -> Path:
    """Named by a hash of the page's source path: any file name maps to one of its own (`a/b.md` and `a~b.md` were
    one, and the second page rendered the first one's code)."""
    return folder / (hashlib.sha256(page.source.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".code")


def _fork_worker(folder: Path, pages: list[Page]) -> int:
    """Fork a process that compiles `pages` into `folder` and exits; the child's pid (0 when fork failed)."""
    try:
        pid = os.fork()
    except OSError:
        return 0  # the build compiles these pages itself
    if pid:
        return pid
    status = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        env = content_environment(compile_only=True)
        for page in pages:
            try:
                data = marshal.dumps(compile_page(env, page))
            except Exception:  # noqa: BLE001 - the build compiles it again and reports the error with its line
                continue
            path = code_path(folder, page)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        status = 0
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the build's buffers: they are the parent's


def _reaped(pid: int, flags: int) -> bool:
    try:
        done, _ = os.waitpid(pid, flags)
    except ChildProcessError:
        return True  # reaped already
    return done == pid
