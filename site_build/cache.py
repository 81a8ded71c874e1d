"""The build's caches on disk, keyed by everything their contents depend on, so an unchanged input is not
recomputed by the next `handstep build`:

    runs/<key>.pickle    a trace with its check figures; the key: the config (as the engine reads it), the
                         environment variables that choose NumPy's arithmetic (stamp.ARITHMETIC_ENV), the
                         engine's source, the content of the checkpoint files a config names (their hashes are
                         remembered in hashes.json: site_build.stamp.checkpoint_digest) and the verification files
    pages/<key>.pickle   a rendered page (render.jinja.PageResult); the key: the page's text, the run, the
                         links and the site builder's source
    runs/<key>.json/.bin a big run (GPT-2 sizes) with its values file, the newest one only (BigRuns)
    build.lock           held by the build that uses the cache (site_build.lock)

A DiskCache entry is VERSION, the sha256 of the pickle, then the pickle. An entry that cannot be read, whose digest
does not match (a truncated or damaged file), that does not unpickle (a pickle can raise nearly anything) or that
holds the wrong kind of value is a miss: the work is done again and the entry written anew. So deleting the cache
folder, or any file in it, is always safe. Each folder keeps its newest KEEP entries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import engine
from site_build import stamp, write

ROOT = Path(__file__).resolve().parent.parent
KEEP = 400
VERSION = b"handstep cache 2"  # then the sha256 of the pickle, then the pickle
_DIGEST = 32


@cache
def source_digest(package: str) -> str:
    """sha256 over the files of a package of this project (the code a cached result came from)."""
    return stamp.source_digest(package, ROOT)


def run_key(cfg: Any, verification: Sequence[Path], cache: Path | None = None) -> str:
    """The key of a run: what the trace and its checks depend on (a checkpoint by the content of its files, whose
    hashes `cache`, the cache folder, remembers; the files PyTorch figures may come from, `verification`, by their
    names and content: site_build.data.checks.verification_files)."""
    h = hashlib.sha256(source_digest("engine").encode())
    h.update(json.dumps(cfg.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    h.update(json.dumps(stamp.arithmetic_env(), sort_keys=True).encode())  # how NumPy's sums round
    folder = cfg.model.checkpoint_dir
    if folder:
        h.update(b"checkpoint\0" + stamp.checkpoint_digest(Path(folder), cache).encode())
    for path in verification:
        h.update(b"verification\0" + os.fsencode(path) + b"\0")
        try:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            h.update(b"no file")
    return h.hexdigest()


def page_key(parts: Any) -> str:
    """The key of a rendered page: its inputs (any picklable value) and the site builder's source. Pickled without
    the memo, so that equal inputs give the same key whether or not some of them are one object (a build that
    replays its pages from the cache shares fewer strings than one that rendered them)."""
    h = hashlib.sha256(source_digest("site_build").encode())
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True  # no memo
    pickler.dump(parts)
    h.update(buffer.getbuffer())
    return h.hexdigest()


class DiskCache:
    """A folder of pickled values by key; reading never fails (a bad entry is a miss)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written = 0

    def get(self, key: str) -> Any:
        path = self.folder / f"{key}.pickle"
        if _linked(self.folder):
            return None
        try:
            with open(path, "rb") as f:
                if f.read(len(VERSION)) != VERSION or f.read(_DIGEST) != _digest(f, len(VERSION) + _DIGEST):
                    return None
                f.seek(len(VERSION) + _DIGEST)
                return pickle.load(f)  # noqa: S301 - our own cache folder, written by put() below
        except Exception:  # noqa: BLE001 - whatever a damaged entry raises, it is a miss
            return None

    def put(self, key: str, value: Any) -> None:
        tmp = self.folder / f".{key}.{os.getpid()}.tmp"
        if _linked(self.folder):
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w+b") as f:
                f.write(VERSION + bytes(_DIGEST))
                pickle.dump(value, f, protocol=5)
                f.flush()
                digest = _digest(f, len(VERSION) + _DIGEST)
                f.seek(len(VERSION))
                f.write(digest)
            tmp.replace(self.folder / f"{key}.pickle")
        except Exception:  # noqa: BLE001 - a cache that cannot be written is only a slower next build
            _unlink(tmp)
            return
        except BaseException:
            _unlink(tmp)
            raise
        self.written += 1

    def prune(self, keep: int = KEEP) -> None:
        """Keep the newest `keep` entries."""
        if not self.written or _linked(self.folder):
            return
        try:
            entries = sorted(self.folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        except OSError:
            return
        for path in entries[keep:]:
            path.unlink(missing_ok=True)


class PageCache:
    """Rendered pages (render.jinja.PageResult), and what is made of each page alone (its exercises), by their
    content key (`page_key` of their inputs): on disk, and in memory for the dev server, which keeps the entries of
    its last build."""

    def __init__(self, folder: Path, valid: Callable[[Any], bool]) -> None:
        self.disk = DiskCache(folder)
        self.valid = valid  # what a page read from disk must pass (anything else is a miss)
        self.memory: dict[str, Any] = {}
        self._used: set[str] = set()

    def get(self, parts: Any, valid: Callable[[Any], bool] | None = None) -> Any:
        """The value kept under `parts` that passes `valid` (by default the cache's own test), else None."""
        key = page_key(parts)
        self._used.add(key)
        valid = valid or self.valid
        hit = self.memory.get(key)
        if hit is not None and not valid(hit):
            hit = None
        if hit is None:
            hit = self.disk.get(key)
            if hit is not None and not valid(hit):
                hit = None
            if hit is not None:
                self.memory[key] = hit
        return hit

    def has(self, parts: Any) -> bool:
        """An entry is there (it may still turn out unreadable: then the page renders, only later)."""
        key = page_key(parts)
        return key in self.memory or (self.disk.folder / f"{key}.pickle").is_file()

    def put(self, parts: Any, value: Any) -> None:
        key = page_key(parts)
        self._used.add(key)
        self.memory[key] = value
        self.disk.put(key, value)

    def end_build(self) -> None:
        """Keep in memory only the pages of the build just made."""
        self.memory = {k: v for k, v in self.memory.items() if k in self._used}
        self._used = set()


class BigRuns:
    """Runs whose values live in a file (GPT-2 sizes: gigabytes), kept whole so that the next build of the same
    config reads them instead of running again: `<key>.json` (the trace's records, as `handstep trace` writes
    them), `<key>.bin` (its values: the very file the engine wrote as it ran, never copied) and the check figures
    (`<key>.checks.pickle`, a DiskCache entry). Only the newest KEEP_BIG runs are kept, older ones are deleted
    (in the background: freeing gigabytes takes seconds) when a new one starts."""

    KEEP_BIG = 1

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.checks = DiskCache(folder)

    def get(self, key: str) -> tuple[Any, Any] | None:
        """(trace, checks) of the run `key`, or None."""
        index = self.folder / f"{key}.json"
        checks = self.checks.get(f"{key}.checks") if index.is_file() else None
        if checks is None:
            return None
        try:
            return engine.load_trace(index), checks
        except Exception:  # noqa: BLE001 - a damaged run is a miss: it runs again
            return None

    def start(self, key: str) -> Path:
        """Where the engine writes the values of a new run `key` (made room for first: older runs go)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if _linked(self.folder):  # never delete in a folder a link leads to: it is not the cache's
            return self.folder / f".{key}.bin.tmp-{os.getpid()}"
        runs = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        doomed = [p.with_suffix(ext) for p in runs[self.KEEP_BIG - 1:] for ext in (".json", ".bin")]
        doomed += [p.with_name(p.stem + ".checks.pickle") for p in runs[self.KEEP_BIG - 1:]]
        doomed += [p for p in self.folder.glob(".*.bin.tmp-*") if not _alive(p.name.rpartition("-")[2])]
        doomed += [p for p in self.folder.glob("*.bin") if not p.with_suffix(".json").exists()]  # a put cut short
        if doomed:
            threading.Thread(target=_delete, args=(doomed,), daemon=True).start()
        return self.folder / f".{key}.bin.tmp-{os.getpid()}"

    def put(self, key: str, trace: Any, checks: Any, values: Path) -> None:
        """Keep the finished run: its checks, its values file renamed into place, its records beside it."""
        if _linked(self.folder):
            _unlink(values)  # not kept in a folder that is not the cache's
            return
        self.checks.put(f"{key}.checks", checks)
        try:
            os.replace(values, self.folder / f"{key}.bin")
            trace.save(self.folder / f"{key}.json")  # the values are in place: only the records are written
        except OSError:
            return  # a cache that cannot be written is only a slower next build


def _digest(f: Any, start: int) -> bytes:
    """The sha256 of the open file `f` from byte `start` to its end."""
    f.seek(start)
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return h.digest()


def _linked(folder: Path) -> bool:
    """A cache folder that is a symbolic link (to a folder of the user's, maybe): never read, written or pruned."""
    return folder.is_symlink()


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _delete(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    return pid.isdigit() and write.pid_alive(int(pid))


def cacheable(trace: Any) -> bool:
    return getattr(trace, "values_file", None) is None and isinstance(trace, engine.Trace)
