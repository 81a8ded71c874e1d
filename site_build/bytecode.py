"""handstep's own bytecode is checked against its source's content, never against its modification time.

Python trusts a module's `.pyc` while the source keeps the size and modification time the `.pyc` records: an edit
of the same size whose modification time is set back (a restored backup, an editor or a tool that keeps times)
would leave the old code running, while the build's caches key its results by the new source's digest
(site_build.stamp.source_digest) and keep them. A *checked-hash* `.pyc` (PEP 552) records a hash of the source
instead; Python compares it with the source on every import and, when they differ, compiles the source again and
writes a new checked-hash `.pyc`. So once every `.pyc` of engine/ and site_build/ is checked-hash, the code that runs
is the code that is digested.

`ensure()` makes them so: it reads the 16-byte header of each module's `.pyc` (some seventy files: a millisecond or
two) and compiles, as checked-hash, the modules whose `.pyc` is missing or validated by time (as Python
writes them on a first import, or `compileall` by default). `handstep` calls it before it imports the engine or
the build. `python -m site_build.bytecode` (the Makefile's BYTECODE) also compiles again the modules whose
checked-hash `.pyc` no longer matches the source (reading every source: a few milliseconds more), which Python does
by itself on import unless it may not write bytecode (PYTHONDONTWRITEBYTECODE). `compileall --invalidation-mode
checked-hash` would not do: Python 3.11's compileall compiles every file again on every call (it only takes its
time-based headers for up to date).
"""

from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("engine", "site_build")
_CHECKED_HASH = (0b11).to_bytes(4, "little")  # the header's flags: hash-based, checked against the source
_AGAIN = "HANDSTEP_BYTECODE_RESTARTED"


def stale(root: str = ROOT, hashes: bool = False) -> list[tuple[str, str, bool]]:
    """(source, pyc, whether the pyc exists) of every module of handstep whose pyc is not checked-hash (with
    `hashes`, also those whose recorded hash is not the source's: Python compiles them again on every import when
    it may not write bytecode, PYTHONDONTWRITEBYTECODE)."""
    head = importlib.util.MAGIC_NUMBER + _CHECKED_HASH
    folders = [os.path.join(root, package) for package in PACKAGES]
    found = []
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".py"):
                pyc = importlib.util.cache_from_source(entry.path)
                try:
                    fd = os.open(pyc, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError:
                    found.append((entry.path, pyc, False))
                    continue
                try:
                    header = os.read(fd, 16)
                    ok = header[:8] == head
                    if ok and hashes:
                        with open(entry.path, "rb") as f:
                            ok = header[8:] == importlib.util.source_hash(f.read())
                except OSError:
                    ok = False
                finally:
                    os.close(fd)
                if not ok:
                    found.append((entry.path, pyc, True))
            elif entry.name != "__pycache__" and not entry.name.startswith(".") and entry.is_dir():
                folders.append(entry.path)
    return found


def ensure(root: str = ROOT, restart: bool = False, hashes: bool = False) -> list[str]:
    """Make every pyc of handstep's own modules checked-hash (with `hashes`, and up to date); returns the sources
    compiled.

    With `restart` (the `handstep` command itself), a module that this process already imported from a pyc
    validated by time (the command's own first modules: it could be older than its source) makes the process
    start again, once, so that it runs the current source."""
    again = os.environ.pop(_AGAIN, None) is not None
    todo = stale(root, hashes)
    if not todo:
        return []
    import py_compile

    compiled, loaded_old = [], False
    files = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    running = {os.path.realpath(f) for f in files if isinstance(f, str)}
    for source, pyc, existed in todo:
        try:
            py_compile.compile(source, cfile=pyc, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        except (py_compile.PyCompileError, OSError):
            continue  # a syntax error is reported by the import; a read-only folder keeps Python's own checks
        compiled.append(source)
        loaded_old = loaded_old or (existed and os.path.realpath(source) in running)
    if restart and loaded_old and not again:
        os.environ[_AGAIN] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return compiled


if __name__ == "__main__":  # the Makefile: also the bytecode of edited modules, which Python may not be writing
    ensure(hashes=True)
