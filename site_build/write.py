"""Write the site into a temporary directory, index it, and swap it in atomically; and decide what may be written.

A build never touches `site/` until everything is written: the new tree goes into a
sibling directory and replaces the old one with a single rename exchange (Linux
`renameat2(RENAME_EXCHANGE)`, else two renames). A killed build leaves only a
stale temporary directory, removed by the next build. While it runs, a build also holds the lock file
`.<name>.handstep-lock` beside the output folder (site_build.lock), deleted when it ends (one a killed build left,
by the next build).

What may be replaced (`check_site_dir`, `check_output_file`): only what handstep itself wrote. A site folder
carries the marker file `.handstep-site`; a folder that does not exist or is empty may be used; anything else
needs `--force`, and some places are refused even then (a file, a symbolic link, `/`, the home folder, a folder
that holds the current folder, a git checkout, a folder that holds any of the build's inputs, or a place where no
file can be made, which is tried). `TraceFiles` applies the same rule to a trace and its values file beside it, and
`writing` turns a failure to write (a full disk) into one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from site_build.errors import BuildError
from site_build.errors import shown_path as shown

if TYPE_CHECKING:
    import engine

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
MARKER = ".handstep-site"  # written into every site handstep builds: the folder may be replaced by the next build
MARKER_TEXT = "This folder was written by `handstep build`, which may replace it whole.\n"
SEARCH_NEXT = "pagefind.next"  # where the dev server builds the next search index, beside the one in use
SEARCH_INPUT = ".search-input"  # the pages as Pagefind reads them, in the build's temporary folder, removed after
CACHE_MARKER = ".handstep-cache"
CACHE_MARKER_TEXT = "handstep's build cache (rendered math, compiled pages); safe to delete.\n"
TRACE_PREFIX = b'{"format":"handstep-trace"'  # how every trace file handstep writes begins


class UnsafePath(BuildError):
    """A path the command must not write: `--out docs: not empty and not a handstep site (pass --force ...)`."""

    def __init__(self, flag: str, path: Path | str, message: str) -> None:
        given = shown(path)
        if len(given) > 300:  # a path of thousands of characters would push the reason out of the one line
            given = f"{given[:150]}…{given[-100:]}"
        super().__init__(f"{flag} {given}", 0, message)


def _real(path: Path) -> Path:
    """`path` resolved; where it cannot be (a link loop, a name too long), as written, made absolute: an input that
    cannot be read is named by the command that reads it, not taken for the output that is being checked."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError for a link loop
        return Path(os.path.abspath(path))


def _contains(outer: Path, inner: Path) -> bool:
    """True when `inner` is `outer` or lies inside it (both resolved)."""
    return inner == outer or outer in inner.parents


HOLDS_OUTPUTS = {"code"}  # the inputs whose folder may hold an output: handstep's own holds site/ and .cache/


def _refuse_always(flag: str, path: Path, real: Path, protected: dict[str, Path]) -> None:
    """The places no command writes, even with --force."""
    own = f"give a folder of its own, e.g. {flag} {'.cache' if flag == '--cache' else 'site'}"
    if path.is_symlink():
        raise UnsafePath(flag, path, "is a symbolic link; give a real folder (handstep never writes through links)")
    if path.exists() and not path.is_dir():
        raise UnsafePath(flag, path, f"is a file, not a folder; {own}")
    if real == Path(real.anchor):
        raise UnsafePath(flag, path, f"is the root of the file system; {own}")
    if real == Path.home().resolve():
        raise UnsafePath(flag, path, f"is your home folder; {own}")
    cwd = Path.cwd().resolve()
    if _contains(real, cwd):
        raise UnsafePath(flag, path, f"holds the current folder; {own}")
    if (real / ".git").exists():
        raise UnsafePath(flag, path, f"is a git checkout; {own}")
    for what, inner in protected.items():
        folder = _real(inner)
        if _contains(real, folder):
            raise UnsafePath(flag, path, f"holds the build's {what} ({shown(inner)}); give a folder of its own")
        if what not in HOLDS_OUTPUTS and folder.is_dir() and _contains(folder, real):
            # a site inside its templates would be copied into the next site, and --force would replace their files
            raise UnsafePath(flag, path, f"lies inside the build's {what} ({shown(inner)}); give a folder outside it")


def _check_parent(flag: str, path: Path, real: Path) -> None:
    """The nearest existing folder above `path` must be a folder that takes new files: tried by making (and
    removing) an empty file in it, since permissions alone do not say it (a read-only disk, /proc, root)."""
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UnsafePath(flag, path, f"{shown(parent)} is a file, so nothing can be written under it")
    why = _cannot_create_in(parent)
    if why:
        raise UnsafePath(flag, path, f"cannot write in {shown(parent)} ({why}); give a path in a folder you can write")


def _cannot_create_in(folder: Path) -> str | None:
    """Why no file can be made in `folder`, or None when one can (the trial file is removed at once)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".handstep-probe-", dir=folder)
    except OSError as exc:
        return _reason(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_REASONS = {errno.EACCES: "permission denied", errno.EPERM: "not permitted", errno.EROFS: "a read-only file system",
            errno.ENOENT: "it takes no new files", errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "the disk quota is used up", errno.EFBIG: "a file may not grow that large there"}


def _reason(exc: OSError, new_file: bool = True) -> str:
    """`exc` in a few words; ENOENT on making a new file means a folder that takes none (/proc)."""
    if exc.errno in _REASONS and (new_file or exc.errno != errno.ENOENT):
        return _REASONS[exc.errno]
    return (exc.strerror or str(exc)).lower()


@contextlib.contextmanager
def writing(flag: str, path: Path) -> Iterator[None]:
    """Turn a failure while writing the output `path` (a full disk, a folder made read-only meanwhile) into one
    line naming `flag`; the writer has removed its temporary files by then (write_file_atomic, write_site)."""
    try:
        yield
    except OSError as exc:
        advice = "free some space, or give a path on another disk" if exc.errno in _FULL else \
            "give a path in a folder you can write"
        raise UnsafePath(flag, path, f"could not be written ({_reason(exc, new_file=False)}); {advice}") from None


def is_handstep_site(folder: Path) -> bool:
    """A folder handstep built: it has the marker, or (sites built before the marker) index.html and a
    trace.json in handstep's trace format."""
    if (folder / MARKER).is_file():
        return True
    try:
        with open(folder / "trace.json", "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return (folder / "index.html").is_file() and head.startswith(TRACE_PREFIX)


def check_usable(flag: str, path: Path) -> None:
    """Refuse in one line a path no command can use: a name in it too long for the file system, or a symbolic link
    on the way that leads back to itself (every later look at it would fail)."""
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise UnsafePath(flag, path, _unusable(exc)) from None


def check_utf8(flag: str, path: Path, why: str, name_only: bool = False) -> None:
    """Refuse a path (or with `name_only` its last name) whose bytes are not UTF-8 text (a name made elsewhere, e.g.
    in Latin-1): what is written names it (`why`), and a page or a notebook is UTF-8."""
    try:
        os.fsencode(Path(path).name if name_only else os.path.abspath(path)).decode("utf-8")
    except UnicodeDecodeError:
        what = "name" if name_only else "path"
        raise UnsafePath(flag, path, f"its {what} is not UTF-8 text, and {why}; give a name in UTF-8") from None


# A site folder's name, in bytes, leaves room for the folders and the lock file named after it beside it
# (`.NAME.build-PID`, `.NAME.old-PID`, `.NAME.handstep-lock`) within the file system's 255.
MAX_SITE_NAME = 240


def check_site_dir(out: Path, force: bool = False, protected: dict[str, Path] | None = None,
                   flag: str = "--out") -> None:
    """Raise UnsafePath unless `out` may receive a new site (see the module docstring)."""
    out = Path(out)
    check_usable(flag, out)
    check_utf8(flag, out, "the search index is built from it")
    if len(os.fsencode(out.absolute().name)) > MAX_SITE_NAME:
        raise UnsafePath(flag, out, f"its name is {len(os.fsencode(out.absolute().name))} bytes long; handstep "
                         f"names its working folder and lock file after it, so give one of at most {MAX_SITE_NAME}")
    real = out.resolve()
    _refuse_always(flag, out, real, protected or {})
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise UnsafePath(flag, out, "cannot be replaced (permission denied)")
        if any(out.iterdir()) and not is_handstep_site(out) and not force:
            raise UnsafePath(flag, out, "not empty and not a handstep site (pass --force to replace it)")
    _check_parent(flag, out, real)


def check_cache_dir(cache: Path, protected: dict[str, Path] | None = None, flag: str = "--cache") -> None:
    """The cache folder gets files added, never removed: it must be new, empty, or handstep's own cache."""
    cache = Path(cache)
    check_usable(flag, cache)
    real = cache.resolve()
    _refuse_always(flag, cache, real, protected or {})
    if cache.is_dir():
        entries = {p.name for p in cache.iterdir()}
        legacy = entries <= {"katex.json", "jinja"}  # caches from before the marker
        if entries and CACHE_MARKER not in entries and not legacy:
            raise UnsafePath(flag, cache, "not empty and not a handstep cache; give a new or empty folder")
        why = _cannot_create_in(cache)
        if why:
            raise UnsafePath(flag, cache, f"cannot write in it ({why}); give a folder you can write")
    else:
        _check_parent(flag, cache, real)


def mark_cache_dir(cache: Path) -> None:
    """Create the cache folder with its marker (once)."""
    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / CACHE_MARKER
    if not marker.exists():
        marker.write_text(CACHE_MARKER_TEXT, encoding="utf-8")


def check_output_file(path: Path, flag: str, is_ours: Callable[[Path], bool], what: str, force: bool = False,
                      example: str = "out.json", protected: dict[str, Path] | None = None) -> None:
    """Raise UnsafePath unless `path` may be written as a file: new, or a file handstep wrote (`is_ours`), or with
    `force` any plain file; never a symbolic link, a folder, a device, one of the command's inputs (`protected`: a
    file, or a folder and what it holds), or in a folder that takes no new files."""
    path = Path(path)
    try:
        _check_output_file(path, flag, is_ours, what, force, example, protected or {})
    except OSError as exc:  # a name too long for the file system, a link loop above it
        raise UnsafePath(flag, path, _unusable(exc)) from None


def _unusable(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "cannot be used: a name in it is too long for the file system; give a shorter one"
    if exc.errno == errno.ELOOP:
        return "cannot be used: a symbolic link above it leads back to itself; give another path"
    return f"cannot be used ({_reason(exc, new_file=False)}); give another path"


def input_named(path: Path, protected: dict[str, Path]) -> str | None:
    """The input that writing `path` would overwrite or change (`is the command's what (path)`, or `lies in the
    command's what (path)` for a folder it reads, such as the checkpoint folder, whose every file is an input)."""
    real = _real(path)
    for what, inner in protected.items():
        inner_real = _real(inner)
        try:
            folder = inner_real.is_dir()
        except OSError:  # cannot be looked at: it is no folder this command reads
            folder = False
        if real == inner_real:
            return f"is the command's {what} ({shown(inner)})"
        if folder and inner_real in real.parents:
            return f"lies in the command's {what} ({shown(inner)})"
    return None


def _check_output_file(path: Path, flag: str, is_ours: Callable[[Path], bool], what: str, force: bool,
                       example: str, protected: dict[str, Path]) -> None:
    try:
        os.lstat(path)
    except OSError as exc:  # a name too long, or a link loop on the way there: one line, not a traceback below
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise
    if (named := input_named(path, protected)) is not None:
        raise UnsafePath(flag, path, f"{named}; handstep never writes over its inputs, give another name, "
                         f"e.g. {example}")
    if path.is_symlink():
        raise UnsafePath(flag, path, "is a symbolic link; give a plain file name (handstep never writes through links)")
    if path.is_dir():
        raise UnsafePath(flag, path, f"is a folder; give a file name, e.g. {shown(path / example)}")
    if path.exists() and not path.is_file():
        raise UnsafePath(flag, path, f"is not a plain file (a device, a pipe or a socket); give a file name, "
                         f"e.g. {example}")
    if path.exists() and not force and not is_ours(path):
        raise UnsafePath(flag, path, f"exists and is not {what} (pass --force to replace it)")
    real = path.resolve()
    _check_parent(flag, path, real)
    if path.exists() and not os.access(path, os.W_OK):
        raise UnsafePath(flag, path, "cannot be replaced (permission denied)")


def file_starts_with(prefix: bytes) -> Callable[[Path], bool]:
    """An `is_ours` test: the file begins with `prefix` (e.g. a trace's `{"format":"handstep-trace"`)."""

    def test(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                return f.read(len(prefix)) == prefix
        except OSError:
            return False

    return test


class TraceFiles:
    """Where `handstep trace` and `handstep notebook` write a trace: the file `path` (`--out`, or the notebook's
    FILE.trace.json beside `given`) and, for a big trace, its values file `<path>.bin` beside it.

    `check(big)` refuses in one line, before the run, what may not be written; `save(trace)` checks again with the
    run's real size and writes. The values file is handstep's when the trace it replaces names it and has its size
    (engine.trace.own_values_file): it is replaced by a big trace, and removed after a small one (which writes no
    values file) so that no stale pair is left. Any other file of that name is refused unless `force` (only when
    a big trace needs the name: a small one leaves it alone); a link, a folder or a device always."""

    def __init__(self, path: Path, flag: str, given: Path, force: bool,
                 protected: dict[str, Path] | None = None) -> None:
        self.path, self.flag, self.given, self.force = Path(path), flag, Path(given), force
        self.protected = protected or {}  # the command's inputs (its config, the checkpoint folder): never written
        self.values = self.path.with_suffix(".bin")
        self.old: os.stat_result | None = None  # the values file of the trace `path` holds, handstep's
        self.written = False  # the new files are in place (set while Ctrl-C is held: an interrupt knows which)

    def check(self, big: bool) -> None:
        from engine.trace import own_values_file

        self.old = None
        for target in (self.path, self.values) if big else (self.path,):
            if (named := input_named(target, self.protected)) is not None:
                where = "it" if target == self.given else f"the trace file {shown(target)}" \
                    if target == self.path else f"its values file {shown(target)}"
                raise UnsafePath(self.flag, self.given, f"{where} {named}; handstep never writes over its inputs, "
                                 f"give {self.flag} another name")
        if self.values != self.path and own_values_file(self.path) == self.values:
            with contextlib.suppress(OSError):
                self.old = os.lstat(self.values)
        if not big:
            return
        v = shown(self.values)

        def refuse(message: str) -> None:
            raise UnsafePath(self.flag, self.given, f"a big trace's values go to {message}")

        try:
            os.lstat(self.values)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                refuse(f"{v}, a name too long for the file system; give {self.flag} a shorter name")

        if self.values == self.path:
            refuse(f"a file named like the trace with .bin, which this name already ends in; give a name ending in "
                   f".json, e.g. {shown(self.path.with_suffix('.json'))}")
        if self.values.is_symlink():
            refuse(f"{v}, which is a symbolic link; remove it or give {self.flag} another name")
        if self.values.is_dir():
            refuse(f"{v}, which is a folder; give {self.flag} another name")
        if self.values.exists():
            if not self.values.is_file():
                refuse(f"{v}, which is not a plain file; give {self.flag} another name")
            if self.old is None and not self.force:
                refuse(f"{v}, which exists and is not the values file of {shown(self.path)} (pass --force to "
                       "replace it)")
            if not os.access(self.values, os.W_OK):
                refuse(f"{v}, which cannot be replaced (permission denied)")

    def save(self, trace: engine.Trace, also: Callable[[], None] | None = None) -> bool:
        """Write the trace (and its values file, when big), each file moved into place whole; returns whether the
        values file was written. The moves, the removal of a replaced values file and `also()` (the notebook moving
        into place) happen while Ctrl-C is held: an interrupt finds the old files or the new ones, never a mix."""
        from engine import trace as engine_trace

        big = sum(r.value.size for r in trace.records) > engine_trace.INLINE_MAX_VALUES
        self.check(big)  # the run's own size, and nothing changed meanwhile

        def finish() -> None:
            if not big and self.old is not None:  # the replaced trace's values file, unless someone replaced it since
                with contextlib.suppress(OSError):
                    now = os.lstat(self.values)
                    if os.path.samestat(now, self.old) and now.st_size == self.old.st_size \
                            and now.st_mtime_ns == self.old.st_mtime_ns:
                        self.values.unlink()
            if also is not None:
                also()
            self.written = True

        with writing(self.flag, self.given):
            save_trace_beside(trace, self.path, finish)
        return big


def save_trace_beside(trace: engine.Trace, path: Path, finish: Callable[[], None] | None = None) -> None:
    """The trace as `path` (and its values file, named after it, for a big trace), each moved into place whole: saved
    in a temporary folder beside it first, so the values file keeps its own name; the folder goes in any case. The
    moves and `finish()` run while Ctrl-C and SIGTERM are held (they act right after): a new values file is never
    left beside the old trace."""
    with _folders_for(path):
        folder = Path(tempfile.mkdtemp(prefix=f".{_short(path.name)}.tmp-", dir=path.parent))
        try:
            trace.save(folder / path.name)
            release = _hold_signals()
            try:
                for part in sorted(folder.iterdir(), key=lambda p: p.name == path.name):  # the JSON last
                    os.replace(part, path.with_name(part.name))
                if finish is not None:
                    finish()
            finally:
                release()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _folders_for(path: Path) -> Iterator[None]:
    """Make the missing folders above `path`; if the body fails, remove those of them it left empty."""
    made = []
    folder = path.parent
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException:
        for folder in made:  # the deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _short(name: str) -> str:
    """`name` as a temporary file beside it starts: cut, so that the temporary name fits the file system's limit
    (255 bytes) whenever the name itself does."""
    return name if len(os.fsencode(name)) <= 200 else os.fsencode(name)[:100].decode("utf-8", "ignore")


@contextlib.contextmanager
def staged(path: Path, write: Callable[[Path], None]) -> Iterator[Callable[[], None]]:
    """`write(tmp)` for a temporary file beside `path`; the body gets the function that moves it into place (to
    call with other moves, e.g. TraceFiles.save's `also`). The temporary file goes in any case."""
    path = Path(path)
    tmp = path.with_name(f".{_short(path.name)}.tmp-{os.getpid()}")
    with _folders_for(path):
        try:
            write(tmp)
            yield lambda: os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` for a temporary file beside `path`, then move it into place; nothing is left behind
    on failure or Ctrl-C."""
    path = Path(path)
    tmp = path.with_name(f".{_short(path.name)}.tmp-{os.getpid()}")
    with _folders_for(path):
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_site(out_dir: Path, pages: dict[str, Any], search_pages: dict[str, str], lap: Callable[[str], Any],
               reuse_search: bool = False, replaced: Callable[[], None] | None = None) -> bool:
    """Write a whole site (`pages`: every file, by its path in the site) into a temporary folder beside `out_dir`,
    index it for search, and swap it in.

    Pagefind reads `search_pages` (the HTML pages as the index should see them: without the typeset math, which
    the index leaves out and which is most of a page's bytes), written first, so that it indexes them while the
    rest of `pages` (page data, CSV, assets) is written.
    With `reuse_search` (the dev server) the previous index is linked instead of rebuilt; the return value says
    whether it was, so a fresh one follows in the background (`index_in_background`). On any failure or
    Ctrl-C before the swap the temporary folder goes and `out_dir` stays as it was; `replaced()` is called the
    moment `out_dir` holds the new site (swap_in), so whoever reports an interrupt knows which it was.
    """
    tmp = temp_dir_for(out_dir)
    try:
        previous = out_dir if out_dir.is_dir() else None  # unchanged files are linked, not rewritten
        html = {rel: data for rel, data in pages.items() if rel.endswith(".html")}
        write_files(tmp, {MARKER: MARKER_TEXT, **html}, previous)
        # The dev server links the previous index, then indexes again in the background. A build indexes anew: the
        # old index is not known to be what Pagefind wrote (a site whose index was edited is rebuilt, not kept).
        reuse = reuse_search and (out_dir / "pagefind" / "pagefind.js").is_file()
        indexer = None
        if not reuse:  # Pagefind runs while the rest is written
            write_files(tmp / SEARCH_INPUT, search_pages)
            indexer = start_pagefind(tmp / SEARCH_INPUT, output=tmp / "pagefind")
        try:
            write_files(tmp, {rel: data for rel, data in pages.items() if rel not in html}, previous)  # the rest
            if reuse:
                shutil.copytree(out_dir / "pagefind", tmp / "pagefind", copy_function=os.link)
            lap("write")
        finally:
            if indexer is not None:
                wait_pagefind(indexer, tmp / "pagefind")
                shutil.rmtree(tmp / SEARCH_INPUT, ignore_errors=True)
        lap("search")
        swap_in(tmp, out_dir, replaced)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return reuse


def temp_dir_for(out_dir: Path) -> Path:
    """A fresh, empty build directory next to out_dir (same filesystem, so rename works)."""
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.build-{os.getpid()}"
    if tmp.is_dir() and not tmp.is_symlink() and (not any(tmp.iterdir()) or is_handstep_site(tmp)):
        shutil.rmtree(tmp)  # left by an earlier build of this same process id
    tmp.mkdir()  # anything else there is not ours: fail rather than touch it
    return tmp


def remove_stale(out_dir: Path) -> None:
    """Delete temporary trees left by killed builds (their process is gone): only real folders that are
    empty or hold a handstep site, so a user's look-alike folder is never touched."""
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.(build|old)-(\d+)$")
    for entry in out_dir.parent.iterdir():
        match = pattern.match(entry.name)
        if not match or pid_alive(int(match.group(2))) or entry.is_symlink() or not entry.is_dir():
            continue
        if not any(entry.iterdir()) or is_handstep_site(entry):
            shutil.rmtree(entry, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Is process `pid` running (this process counts as gone: what it left is from an earlier build)?"""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_files(root: Path, files: dict[str, bytes | str | Path], reuse: Path | None = None) -> list[str]:
    """Write {relative path: content or file to copy} under root, in sorted order; returns the paths written
    (those not linked).

    With `reuse` (the site being replaced), a file whose bytes are unchanged is hard-linked from
    there instead of written again: the old tree is never modified, and a rebuild writes only what changed.
    """
    written = []
    for rel in sorted(files):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        content = files[rel]
        data = content.encode("utf-8") if isinstance(content, str) else content
        if reuse is not None and _link_if_same(reuse / rel, target, data):
            continue
        written.append(rel)
        if isinstance(data, Path):
            shutil.copyfile(data, target)
        else:
            target.write_bytes(data)
    return written


def _link_if_same(old: Path, target: Path, data: bytes | Path) -> bool:
    try:
        if not old.is_file() or old.is_symlink():
            return False
        if isinstance(data, Path):
            same = old.stat().st_size == data.stat().st_size and old.read_bytes() == data.read_bytes()
        else:
            same = old.stat().st_size == len(data) and old.read_bytes() == data
        if same:
            os.link(old, target)
        return same
    except OSError:
        return False


def pagefind_command(site: Path, output: Path) -> list[str]:
    """Pagefind's binary from the `pagefind[bin]` wheel (skips a Python start-up), else `python -m pagefind`."""
    try:
        from pagefind_bin import get_executable

        exe = [str(get_executable())]
    except (ImportError, FileNotFoundError):
        exe = [sys.executable, "-m", "pagefind"]
    return [*exe, "--site", str(site), "--output-path", str(output), "--silent"]


def start_pagefind(site: Path, output: Path) -> subprocess.Popen[str]:
    """Start indexing the HTML pages under `site` for search into the folder `output` (no network); finish with
    wait_pagefind."""
    return subprocess.Popen(pagefind_command(site, output), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_pagefind(proc: subprocess.Popen[str], output: Path) -> None:
    """Wait for Pagefind; a failure is a build error. Interrupted while waiting (SIGTERM reaches this process
    alone), it stops Pagefind first: left running, it would write into the folder the build is about to remove."""
    try:
        log, _ = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0 or not (output / "pagefind.js").is_file():
        detail = (log or "").strip().splitlines()
        raise BuildError("pagefind", 0, "search index failed: " + (detail[-1] if detail else "no output"))


def index_in_background(out_dir: Path) -> threading.Thread:
    """Build a fresh search index of `out_dir` beside the one in use, then put it in place. The thread waits
    for Pagefind as soon as it ends (no defunct child between rebuilds); a failure is only printed."""
    proc = start_pagefind(out_dir, output=out_dir / SEARCH_NEXT)

    def finish() -> None:
        try:
            wait_pagefind(proc, out_dir / SEARCH_NEXT)
        except BuildError as err:
            print(str(err), file=sys.stderr)
            return
        replace_dir(out_dir / SEARCH_NEXT, out_dir / "pagefind")

    thread = threading.Thread(target=finish, daemon=True)
    thread.start()
    return thread


def replace_dir(new: Path, old: Path) -> None:
    """Put directory `new` where `old` is (exchange, then delete the old one)."""
    if old.exists() and _exchange(new, old):
        shutil.rmtree(new)
        return
    shutil.rmtree(old, ignore_errors=True)
    os.rename(new, old)


def swap_in(tmp: Path, out_dir: Path, replaced: Callable[[], None] | None = None) -> None:
    """Make tmp the new out_dir; at every instant out_dir is either old or new, complete.

    Ctrl-C and SIGTERM are held while the folders move (they act right after), and `replaced()` is called as soon
    as out_dir is the new tree, still under that hold: whenever an interrupt lands, the caller knows which of the
    two trees it left."""
    out_dir = Path(out_dir).absolute()
    release = _hold_signals()
    try:
        if not out_dir.exists():
            os.rename(tmp, out_dir)
            old = None
        elif _exchange(tmp, out_dir):
            old = tmp  # tmp now holds the old site
        else:
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.rename(out_dir, old)
            try:
                os.rename(tmp, out_dir)
            except BaseException:
                os.rename(old, out_dir)  # the old site goes back
                raise
        if replaced is not None:
            replaced()
    finally:
        release()
    if old is not None:  # the new site is in place: a file of the old one that will not go is no failure of the build
        shutil.rmtree(old, ignore_errors=True)


def _hold_signals() -> Callable[[], None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the returned function is called, which then delivers the first that
    came. Python runs its signal handlers in the main thread, whichever thread the kernel gave the signal to, so they
    are held there, by handlers that only take note: a signal mask of this thread alone held nothing once another
    thread ran (KaTeX's reader, the server's), as the kernel then gave the signal to that thread. Outside the main
    thread nothing is held, and an ignored signal stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    came: list[int] = []
    before: dict[int, Any] = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, None):
            before[sig] = signal.signal(sig, lambda signum, _frame: came.append(signum))

    def release() -> None:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if came:
            signal.raise_signal(came[0])

    return release


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0
