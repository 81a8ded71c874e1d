"""Write the site into a temporary directory, index it, and swap it in atomically; and decide what may be written.

A build never touches `site/` until everything is written: the new tree goes into a
sibling directory and replaces the old one with a single rename exchange (Linux
`renameat2(RENAME_EXCHANGE)`, else two renames). A killed build leaves only a
stale temporary directory, removed by the next build.

What may be replaced (`check_site_dir`, `check_output_file`): only what handstep itself wrote. A site folder
carries the marker file `.handstep-site`; a folder that does not exist or is empty may be used; anything else
needs `--force`, and some places are refused even then (a file, a symbolic link, `/`, the home folder, a folder
that holds the current folder, a git checkout, or a folder that holds the build's own inputs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from site_build.errors import BuildError
from site_build.errors import shown_path as shown

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
MARKER = ".handstep-site"  # written into every site handstep builds: the folder may be replaced by the next build
MARKER_TEXT = "This folder was written by `handstep build`, which may replace it whole.\n"
SEARCH_NEXT = "pagefind.next"  # where the dev server builds the next search index, beside the one in use
SEARCH_INPUT = ".search-input"  # the pages as Pagefind reads them, in the build's temporary folder, removed after
CACHE_MARKER = ".handstep-cache"
CACHE_MARKER_TEXT = "handstep's build cache (rendered math, compiled pages); safe to delete.\n"


class UnsafePath(BuildError):
    """A path the command must not write: `--out docs: not empty and not a handstep site (pass --force ...)`."""

    def __init__(self, flag: str, path: Path | str, message: str) -> None:
        super().__init__(f"{flag} {shown(path)}", 0, message)


def _contains(outer: Path, inner: Path) -> bool:
    """True when `inner` is `outer` or lies inside it (both resolved)."""
    return inner == outer or outer in inner.parents


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
        if _contains(real, inner.resolve()):
            raise UnsafePath(flag, path, f"holds the build's {what} ({shown(inner)}); give a folder of its own")


def _check_parent(flag: str, path: Path, real: Path) -> None:
    """The nearest existing folder above `path` must be a writable folder."""
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UnsafePath(flag, path, f"{shown(parent)} is a file, so nothing can be written under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UnsafePath(flag, path, f"cannot write in {shown(parent)} (permission denied)")


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
    return (folder / "index.html").is_file() and head.startswith(b'{"format":"handstep-trace"')


def check_site_dir(out: Path, force: bool = False, protected: dict[str, Path] | None = None,
                   flag: str = "--out") -> None:
    """Raise UnsafePath unless `out` may receive a new site (see the module docstring)."""
    out = Path(out)
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
    real = cache.resolve()
    _refuse_always(flag, cache, real, protected or {})
    if cache.is_dir():
        entries = {p.name for p in cache.iterdir()}
        legacy = entries <= {"katex.json", "jinja"}  # caches from before the marker
        if entries and CACHE_MARKER not in entries and not legacy:
            raise UnsafePath(flag, cache, "not empty and not a handstep cache; give a new or empty folder")
        if not os.access(cache, os.W_OK | os.X_OK):
            raise UnsafePath(flag, cache, "cannot write in it (permission denied)")
    _check_parent(flag, cache, real)


def mark_cache_dir(cache: Path) -> None:
    """Create the cache folder with its marker (once)."""
    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / CACHE_MARKER
    if not marker.exists():
        marker.write_text(CACHE_MARKER_TEXT, encoding="utf-8")


def check_output_file(path: Path, flag: str, is_ours: Callable[[Path], bool], what: str, force: bool = False,
                      example: str = "out.json") -> None:
    """Raise UnsafePath unless `path` may be written as a file: new, or a file handstep wrote (`is_ours`)."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafePath(flag, path, "is a symbolic link; give a plain file name (handstep never writes through links)")
    if path.is_dir():
        raise UnsafePath(flag, path, f"is a folder; give a file name, e.g. {shown(path / example)}")
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


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` for a temporary file beside `path`, then move it into place; nothing is left behind
    on failure or Ctrl-C."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_site(out_dir: Path, pages: dict[str, Any], assets: Callable[[], dict[str, Any]],
               search_pages: Callable[[], dict[str, str]], lap: Callable[[str], Any], reuse_search: bool = False
               ) -> bool:
    """Write a whole site into a temporary folder beside `out_dir`, index it for search, and swap it in.

    Pagefind reads `search_pages()` (the HTML pages as the index should see them: without the typeset math, which
    the index leaves out and which is most of a page's bytes), written first, so that it indexes them while the
    rest of `pages` (page data, CSV) and `assets()` are computed and written.
    With `reuse_search` (the dev server) the previous index is linked instead of rebuilt; the return value says
    whether it was, so a fresh one can follow in the background (`index_in_background`). On any failure or
    Ctrl-C the temporary folder goes and `out_dir` stays as it was.
    """
    tmp = temp_dir_for(out_dir)
    try:
        previous = out_dir if out_dir.is_dir() else None  # unchanged files are linked, not rewritten
        html = {rel: data for rel, data in pages.items() if rel.endswith(".html")}
        changed = write_files(tmp, {MARKER: MARKER_TEXT, **html}, previous)
        has_index = (out_dir / "pagefind" / "pagefind.js").is_file()
        same_pages = previous is not None and not any(rel.endswith(".html") for rel in changed)
        # The same pages give the same search index: link the old one. The dev server also links it when pages
        # changed, then indexes again in the background.
        reuse = has_index and (same_pages or reuse_search)
        indexer = None
        if not reuse:  # Pagefind runs while the rest is written
            write_files(tmp / SEARCH_INPUT, search_pages())
            indexer = start_pagefind(tmp / SEARCH_INPUT, output=tmp / "pagefind")
        try:
            write_files(tmp, {rel: data for rel, data in pages.items() if rel not in html}, previous)  # the rest
            write_files(tmp, assets(), previous)
            if reuse:
                shutil.copytree(out_dir / "pagefind", tmp / "pagefind", copy_function=os.link)
            lap("write")
        finally:
            if indexer is not None:
                wait_pagefind(indexer, tmp / "pagefind")
                shutil.rmtree(tmp / SEARCH_INPUT, ignore_errors=True)
        lap("search")
        swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return reuse and not same_pages


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
    """Wait for Pagefind; a failure is a build error."""
    log, _ = proc.communicate()
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


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Make tmp the new out_dir; at every instant out_dir is either old or new, complete."""
    out_dir = Path(out_dir).absolute()
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if _exchange(tmp, out_dir):
        shutil.rmtree(tmp)  # tmp now holds the old site
        return
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old)


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
