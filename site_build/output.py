"""Write the site into a temporary directory, index it, and swap it in atomically.

A build never touches `site/` until everything is written: the new tree goes into a
sibling directory and replaces the old one with a single rename exchange (Linux
`renameat2(RENAME_EXCHANGE)`, else two renames). A killed build leaves only a
stale temporary directory, removed by the next build.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from site_build.errors import BuildError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def temp_dir_for(out_dir: Path) -> Path:
    """A fresh, empty build directory next to out_dir (same filesystem, so rename works)."""
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.build-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def remove_stale(out_dir: Path) -> None:
    """Delete temporary trees left by killed builds (their process is gone)."""
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.(build|old)-(\d+)$")
    for entry in out_dir.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not _alive(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_files(root: Path, files: dict[str, bytes | str | Path], reuse: Path | None = None) -> None:
    """Write {relative path: content or file to copy} under root, in sorted order.

    With `reuse` (the site being replaced), a file whose bytes are unchanged is hard-linked from
    there instead of written again: the old tree is never modified, and a rebuild writes only what changed.
    """
    for rel in sorted(files):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        content = files[rel]
        data = content.encode("utf-8") if isinstance(content, str) else content
        if reuse is not None and _link_if_same(reuse / rel, target, data):
            continue
        if isinstance(data, Path):
            shutil.copyfile(data, target)
        else:
            target.write_bytes(data)


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


def pagefind_command(site: Path, subdir: str = "pagefind") -> list[str]:
    """Pagefind's binary from the `pagefind[bin]` wheel (skips a Python start-up), else `python -m pagefind`."""
    try:
        from pagefind_bin import get_executable

        exe = [str(get_executable())]
    except (ImportError, FileNotFoundError):
        exe = [sys.executable, "-m", "pagefind"]
    return [*exe, "--site", str(site), "--output-subdir", subdir, "--silent"]


def start_pagefind(site: Path, subdir: str = "pagefind") -> subprocess.Popen[str]:
    """Start indexing the site's HTML for search (no network); finish with wait_pagefind."""
    return subprocess.Popen(
        pagefind_command(site, subdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_pagefind(proc: subprocess.Popen[str], site: Path, subdir: str = "pagefind") -> None:
    """Wait for Pagefind; a failure is a build error."""
    log, _ = proc.communicate()
    if proc.returncode != 0 or not (site / subdir / "pagefind.js").is_file():
        detail = (log or "").strip().splitlines()
        raise BuildError("pagefind", 0, "search index failed: " + (detail[-1] if detail else "no output"))


def run_pagefind(site: Path) -> None:
    """Index the site for search and wait for it."""
    wait_pagefind(start_pagefind(site), site)


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
