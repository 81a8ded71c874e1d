"""Is the site already built from exactly these inputs? Answered before anything heavy is imported.

`handstep build` run twice with nothing changed should cost what `make` costs for an up-to-date target.
After each successful build the CLI records, in the cache folder, a stamp for the output folder:

    stamps.json   {output folder: {"inputs": digest, "files": {path: [size, mtime_ns]}, "summary": line}}

`inputs` is a digest of everything a build reads: the config file (and the checkpoint files and working
folder it may name), the seed and flags, every file of the pages and templates folders, the verification
figures, handstep's own source, the installed Python packages, the npm lock file and the Python version.
The next build with the same digest, into a folder whose files are exactly those recorded (same names,
sizes and modification times: nobody edited, added or removed one), has nothing to do and says so.
Anything else, or any doubt (a missing, damaged or foreign stamp file), means a full build.

Only the standard library (and site_build.write, which needs no more) is imported here, so the answer costs a
few milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from site_build import write

ROOT = Path(__file__).resolve().parent.parent
VERSION = b"handstep stamp 1"
STAMPS = "stamps.json"
KEEP = 20  # output folders remembered per cache
_SOURCE_SUFFIXES = (".py", ".yaml", ".js")


def source_digest(package: str, root: Path = ROOT) -> str:
    """sha256 over the files of a package of this project (the code a cached result came from)."""
    h = hashlib.sha256(b"handstep cache 1")
    base = root / package
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
            h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _tree(h: Any, folder: Path) -> None:
    h.update(b"tree\0" + str(folder.resolve()).encode() + b"\0")
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")


def _file(h: Any, path: Path) -> None:
    try:
        h.update(b"file\0" + path.read_bytes() + b"\0")
    except OSError:
        h.update(b"no file\0")


def _packages(h: Any) -> None:
    """The installed distributions (name and version, from their metadata folders' names)."""
    for entry in sys.path:
        if entry.endswith("site-packages") and os.path.isdir(entry):
            h.update("\0".join(sorted(n for n in os.listdir(entry) if n.endswith((".dist-info", ".egg-link",
                                                                                      ".pth")))).encode())


def _checkpoint(h: Any, config: Path | None, text: bytes) -> None:
    """A config that names a checkpoint folder (`model: {from: ...}`): the folder's files as they are now, found
    where the engine looks (the working folder, or beside the config)."""
    if config is None or not re.search(rb"(?m)^[^#]*\bfrom\s*:", text):
        return
    h.update(b"cwd\0" + os.getcwd().encode())
    import yaml  # only for such configs

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        folder = data["model"]["from"]
    except Exception:  # not our business here: the build reports a broken config
        return
    if not isinstance(folder, str):
        return
    for base in (Path(folder), config.parent / folder):
        if base.is_dir():
            for path in sorted(base.iterdir()):
                try:
                    st = path.stat()
                except OSError:
                    continue
                h.update(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())


def inputs_digest(config: Path | None, flags: dict[str, Any], content: Path, templates: Path,
                  root: Path = ROOT) -> str:
    """The digest of everything a build reads (see the module docstring)."""
    h = hashlib.sha256(VERSION)
    h.update(json.dumps({"python": sys.version, "flags": flags}, sort_keys=True, default=str).encode())
    text = b""
    if config is not None:
        try:
            text = config.read_bytes()
        except OSError:
            text = b"unreadable"
        h.update(b"config\0" + str(config.resolve()).encode() + b"\0" + text)
    _checkpoint(h, config, text)
    for package in ("engine", "site_build"):
        h.update(source_digest(package, root).encode())
    _tree(h, content)
    _tree(h, templates)
    _file(h, root / "build" / "verification.json")
    _file(h, root / "node_modules" / ".package-lock.json")
    _packages(h)
    return h.hexdigest()


def _files(out: Path) -> dict[str, list[int]]:
    """Every file under `out` with its size and modification time (symlinks and folders as they are named)."""
    found: dict[str, list[int]] = {}
    for folder, dirs, names in os.walk(out):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            found[os.path.relpath(path, out)] = [st.st_size, st.st_mtime_ns, int(os.path.islink(path))]
    return found


def _load(cache: Path) -> dict[str, Any]:
    try:
        data = json.loads((cache / STAMPS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def up_to_date(cache: Path, out: Path, digest: str) -> str | None:
    """The summary of the last build into `out` when it was built from these inputs and is untouched since,
    else None."""
    entry = _load(cache).get(str(out.resolve()))
    if not isinstance(entry, dict) or entry.get("inputs") != digest or not out.is_dir() or out.is_symlink():
        return None
    try:
        files = _files(out)
    except OSError:
        return None
    if files != entry.get("files"):
        return None
    summary = entry.get("summary")
    return summary if isinstance(summary, str) else None


def record(cache: Path, out: Path, digest: str, summary: str) -> None:
    """Remember that `out` now holds the build of these inputs (the newest KEEP folders are remembered)."""
    stamps = _load(cache)
    key = str(out.resolve())
    stamps.pop(key, None)
    stamps[key] = {"inputs": digest, "files": _files(out), "summary": summary}
    for old in list(stamps)[:-KEEP]:
        del stamps[old]
    write.write_file_atomic(cache / STAMPS, lambda tmp: tmp.write_text(json.dumps(stamps), encoding="utf-8"))
