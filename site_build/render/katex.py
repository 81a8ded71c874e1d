"""Render TeX to HTML with KaTeX at build time, through one long-lived node process.

Why one process: starting node and loading KaTeX costs ~0.1 s, rendering one small
formula well under a millisecond. A second worker would start and warm up V8's JIT
again (about 0.25 CPU-s for the default site), and a cold build is bound by the CPU
of two cores; one worker typesets the formulas while Python renders the pages and
still finishes first. The builder collects every formula of every page
first and renders the ones it has not seen before in one pipelined batch. Results
are cached in memory (for `serve` rebuilds) and on disk, keyed by the KaTeX version
and the output mode, so an unchanged formula is never rendered twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from site_build.errors import BuildError

SERVER_JS = Path(__file__).with_name("katex_server.js")
CACHE_FILE = "katex.json"  # in the build's cache folder: CACHE_HEAD, the sha256 of the rest in hex, a newline, JSON
CACHE_HEAD = b"handstep katex 1 "
# Formulas written to node's pipe before it is flushed: a write (and a wake-up of node) for every formula cost the
# default site's cold build about 0.2 CPU-s.
FLUSH_EVERY = 16
OUTPUT_MODE = "htmlAndMathml"


@dataclass
class RenderResult:
    """Outcome of rendering one batch: HTML per formula, errors per formula, counts."""

    html: dict[tuple[str, bool], str] = field(default_factory=dict)
    errors: dict[tuple[str, bool], str] = field(default_factory=dict)
    rendered: int = 0
    cached: int = 0


class KatexRenderer:
    """KaTeX node workers plus a persistent (formula, display) -> HTML cache.

    `prefetch()` sends a formula to a worker as soon as a page produces it, so node
    typesets while Python renders the next pages; `render_all()` waits for the rest.
    """

    def __init__(self, root: Path, cache_file: Path | None = None, workers: int | None = None,
                 early: _Worker | None = None) -> None:
        self.root = Path(root)
        self._early = early  # a worker started before the build loaded (start_early), taken over by `start`
        self.cache_file = cache_file
        self.renderer = renderer_digest(self.root)  # the cache holds formulas of this renderer alone
        self.n_workers = workers or 1
        self._workers: list[_Worker] = []
        self._requested: set[tuple[str, bool]] = set()
        self._cache: dict[str, str] = {}
        self._dirty = False
        self._unflushed = 0  # formulas sent since the last flush
        self._load_cache()

    # -- cache -------------------------------------------------------------
    def _key(self, tex: str, display: bool) -> str:
        return ("D" if display else "I") + tex

    def _load_cache(self) -> None:
        """Read the formula cache; a file that cannot be read or is not what save_cache writes is a miss (only a
        slower build), and is written anew at the end of the build."""
        if not self.cache_file or not self.cache_file.exists():
            return
        self._dirty = True  # unless it reads back whole, below
        try:
            head, _, body = self.cache_file.read_bytes().partition(b"\n")
            if head != CACHE_HEAD + hashlib.sha256(body).hexdigest().encode():
                return  # damaged (or written by an older handstep)
            data = json.loads(body)
        except Exception:  # noqa: BLE001 - whatever a damaged file raises (deep nesting: RecursionError), a miss
            return
        if not isinstance(data, dict) or data.get("katex") != self.renderer or data.get("output") != OUTPUT_MODE:
            return
        formulas = data.get("formulas")
        if not isinstance(formulas, dict):
            return
        self._cache = {k: v for k, v in formulas.items() if k.startswith(("D", "I")) and isinstance(v, str)}
        self._dirty = len(self._cache) != len(formulas)  # an entry was dropped: write the file without it

    def save_cache(self) -> None:
        """Write the cache atomically (a killed build must not leave half a file)."""
        if not self.cache_file or not self._dirty:
            return
        tmp = self.cache_file.with_suffix(f".tmp{os.getpid()}")
        payload = {"katex": self.renderer, "output": OUTPUT_MODE, "formulas": self._cache}
        head = CACHE_HEAD + b"0" * 64 + b"\n"
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as out:  # written as it is encoded: no second copy of it in memory
                out.write(head.decode())
                json.dump(payload, out, sort_keys=True, ensure_ascii=False)
            with open(tmp, "r+b") as f:  # then its digest, read back from the disk
                f.seek(len(head))
                digest = hashlib.sha256()
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                f.seek(len(CACHE_HEAD))
                f.write(digest.hexdigest().encode())
            os.replace(tmp, self.cache_file)
        except OSError:  # a cache that cannot be written (its place taken by a folder, a full disk): a slower build
            _unlink(tmp)
            return
        except BaseException:
            _unlink(tmp)
            raise
        self._dirty = False

    # -- rendering ---------------------------------------------------------
    def start(self) -> None:
        """Spawn the node workers now (without waiting) so KaTeX loads in parallel."""
        alive = [w for w in self._workers if w.alive()]
        if len(alive) != len(self._workers):
            self._requested.clear()  # a dead worker lost its queue: ask again
        self._workers = alive
        while len(self._workers) < self.n_workers:
            early, self._early = self._early, None
            if early is not None and not early.alive():
                early.close()  # node could not start (no KaTeX, say): a worker of its own says why
                early = None
            self._workers.append(early.adopt() if early is not None else _Worker(self.root))

    def warm_up(self) -> None:
        """Start the workers now when nothing is cached (a cold build); otherwise only a formula the cache lacks
        starts them, and a warm build runs no node at all."""
        if not self._cache:
            self.start()

    def prefetch(self, tex: str, display: bool) -> None:
        """Queue a formula for rendering unless it is cached or already queued (node sees it at the next `flush`)."""
        item = (tex, display)
        if item in self._requested or self._key(tex, display) in self._cache:
            return
        if not self._workers or any(w.dead for w in self._workers):  # not a process poll (a system call) a formula
            self.start()
        worker = min(self._workers, key=lambda w: len(w.pending))
        self._requested.add(item)
        worker.send(item)
        self._unflushed += 1
        if self._unflushed >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Hand the queued formulas to node (the build also does at the end of each page)."""
        self._unflushed = 0
        for worker in self._workers:
            worker.flush()

    def render_all(self, formulas: set[tuple[str, bool]]) -> RenderResult:
        """Render every (tex, display) pair, from the cache where possible.

        Every reply that arrives is cached, whichever build asked for it, so a build that failed after
        sending formulas leaves nothing half-known for the next one."""
        result = RenderResult()
        replies: dict[tuple[str, bool], dict[str, str]] = {}
        for _ in range(2):  # a formula asked for but lost (a worker restarted) is asked for once more
            for tex, display in sorted(formulas):
                if (tex, display) not in replies:
                    self.prefetch(tex, display)
            self.flush()
            for worker in self._workers:
                replies.update(worker.wait())
            for item, reply in replies.items():
                self._requested.discard(item)
                if "error" not in reply and self._key(*item) not in self._cache:
                    self._cache[self._key(*item)] = reply["html"]
                    self._dirty = True
            if all(item in replies or self._key(*item) in self._cache for item in formulas):
                break
        for item in sorted(formulas):
            reply = replies.get(item)
            if reply is None:
                result.html[item] = self._cache[self._key(*item)]
                result.cached += 1
            elif "error" in reply:
                result.errors[item] = reply["error"]
            else:
                result.html[item] = reply["html"]
                result.rendered += 1
        return result

    def close(self) -> None:
        """Stop the node workers and persist the cache."""
        self.save_cache()
        if self._early is not None:  # started early, never taken over
            self._early.close()
            self._early = None
        for worker in self._workers:
            worker.close()
        self._workers = []
        self._requested.clear()

    def __enter__(self) -> KatexRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a worker started before the build has loaded ----------------------------------------------------------------
def start_early(root: Path, cache_file: Path) -> _Worker | None:
    """The KaTeX worker of a cold build (no formula cache yet), started at once, before the build has imported the
    rest of itself: node starts and loads KaTeX (about 0.1 CPU-s) on a core that is otherwise idle while Python
    starts (about 0.2 s). The build's renderer takes it over (`KatexRenderer(early=)`); whoever started it closes it
    if none did (`close()` of a worker taken over does nothing).

    No thread is started yet: the build forks its compile workers after this, and a fork copies only the calling
    thread (the worker's reader thread starts when it is taken over)."""
    if cache_file.is_file():
        return None
    try:
        return _Worker(Path(root), read=False)
    except (BuildError, OSError):
        return None  # the build starts a worker itself, and says what is wrong


class _Worker:
    """One `node katex_server.js` process; a reader thread matches replies to requests."""

    def __init__(self, root: Path, read: bool = True) -> None:
        node = shutil.which("node")
        if node is None:
            raise BuildError("katex", 0, "node is not installed (Node 18+ is needed to render math)")
        self.proc = subprocess.Popen(
            [node, str(SERVER_JS), str(root), OUTPUT_MODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.pending: deque[tuple[str, bool]] = deque()
        self.replies: dict[tuple[str, bool], dict[str, str]] = {}
        self.cond = threading.Condition()
        self.dead = False
        if read:
            self.adopt()

    def adopt(self) -> _Worker:
        """Start reading the worker's replies."""
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def send(self, item: tuple[str, bool]) -> None:
        """Queue a formula; node sees it once the pipe's buffer fills or is flushed (`flush`)."""
        assert self.proc.stdin is not None
        with self.cond:
            self.pending.append(item)
        self._io(lambda: self.proc.stdin.write(json.dumps({"tex": item[0], "display": item[1]}) + "\n"))

    def flush(self) -> None:
        self._io(lambda: self.proc.stdin.flush())

    def _io(self, write: Callable[[], object]) -> None:
        try:
            write()
        except (BrokenPipeError, OSError):
            with self.cond:
                self.dead = True
                self.cond.notify_all()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            self.proc.stdout.readline()  # {"version": ...}: KaTeX has loaded
            for line in self.proc.stdout:
                reply = json.loads(line)
                with self.cond:
                    self.replies[self.pending.popleft()] = reply
                    self.cond.notify_all()
        except (OSError, ValueError, IndexError):
            pass  # node stopped mid-reply (a SIGTERM to the whole group), or its pipe closed: it is dead, as below
        with self.cond:
            self.dead = True
            self.cond.notify_all()

    def wait(self) -> dict[tuple[str, bool], dict[str, str]]:
        """Block until every sent formula has its reply; hand the replies over."""
        with self.cond:
            self.cond.wait_for(lambda: not self.pending or self.dead)
            if self.pending:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                last = err.strip().splitlines()[-1:] or ["no output"]
                raise BuildError("katex", 0, f"the KaTeX node process stopped: {last[0]}")
            replies, self.replies = self.replies, {}
            return replies

    def close(self) -> None:
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def katex_dist(root: Path) -> Path:
    """The installed KaTeX `dist/` folder (from `npm ci`), or a clear error."""
    dist = Path(root) / "node_modules" / "katex" / "dist"
    if not (dist / "katex.min.css").is_file():
        raise BuildError(
            "package.json", 0, "KaTeX is not installed: run `npm ci` (or `make site`)"
        )
    return dist


def renderer_digest(root: Path) -> str:
    """What the formula cache is keyed by: KaTeX's version, and the sha256 of the code that typesets (the KaTeX file
    node loads, package.json's `main`, and handstep's katex_server.js), so that an edit of either is a miss."""
    package = katex_dist(root).parent
    meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
    h = hashlib.sha256()
    for path in (package / str(meta.get("main", "dist/katex.js")), SERVER_JS):
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"unreadable")  # node says why, when it starts
        h.update(b"\0")
    return f"{meta['version']} {h.hexdigest()}"
