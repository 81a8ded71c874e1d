"""Is the site already built from exactly these inputs? Answered before anything heavy is imported.

`handstep build` run twice with nothing changed should cost what `make` costs for an up-to-date target.
After each successful build the CLI records, in the cache folder, a stamp for the output folder:

    stamps.json   {output folder: {"inputs": digest, "files": {path: [size, mtime, ctime, inode, link]},
                   "summary": line}}
    hashes.json   the sha256 of each checkpoint file and npm package file, by its path and stat numbers
                  (see checkpoint_digest)

`inputs` is a digest of everything a build reads: the config file (and the content of the files of the
checkpoint folder it may name, found as the engine finds it), the seed and flags, every file of the pages and
templates folders (through links: wherever the build reads them), the verification figures (every file of
configs/verification/ and build/verification.json: a build reads whichever belongs to its config), handstep's own
source, the installed Python packages, every file of the npm packages (by their remembered hashes) and the Python
version. The next build with the same digest, into a folder whose files are exactly those recorded (same names,
sizes, modification and change times: nobody edited, added or removed one), has nothing to do and says so. Anything
else, or any doubt (a missing, damaged or foreign stamp file), means a full build. The check and the record are
made while the build holds the locks of its output and cache folders (site_build.lock), so the files recorded are
the ones this build wrote.

Only the standard library (and site_build.write, which needs no more) is imported here, so the answer costs a
few milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

from site_build import write

ROOT = Path(__file__).resolve().parent.parent
VERSION = b"handstep stamp 1"
STAMPS = "stamps.json"
# Where the PyTorch figures come from (site_build.data.checks): the comparisons shipped with handstep, one file per
# shipped config that has one (`make verify` writes configs/verification/default.json), and the git-ignored file
# `make verify CONFIG=...` writes for any other config.
SHIPPED_VERIFICATION = "configs/verification"
VERIFICATION_FILE = "build/verification.json"
KEEP = 20  # output folders remembered per cache
_SOURCE_SUFFIXES = (".py", ".yaml", ".js")


def source_digest(package: str, root: Path = ROOT) -> str:
    """sha256 over the files of a package of this project (the code a cached result came from)."""
    h = hashlib.sha256(b"handstep cache 1")
    base = root / package
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
            h.update(os.fsencode(path.relative_to(base).as_posix()) + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _tree(h: Any, folder: Path) -> None:
    h.update(b"tree\0" + str(folder.resolve()).encode("utf-8", "surrogateescape") + b"\0")
    if not folder.is_dir():
        return
    for name, path in tree_files(folder):
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
        if not path:
            h.update(b"not a file\0")
            continue
        try:
            with open(path, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        except OSError as err:
            h.update(f"unreadable {err.errno}".encode())
        h.update(b"\0")


def walk(folder: str | Path) -> Any:
    """os.walk through links to folders, but not through one to a folder that holds `folder` (`up -> ..`, a link to
    `/` or to the home folder: the build reads no page or template there, and the walk would never end)."""
    base = os.path.realpath(folder)
    for top, dirs, names in os.walk(folder, followlinks=True):
        for d in [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            real = os.path.realpath(os.path.join(top, d))
            if base == real or base.startswith(real.rstrip(os.sep) + os.sep):
                dirs.remove(d)
        yield top, dirs, names


def tree_files(folder: Path) -> list[tuple[str, str]]:
    """(name under `folder`, path) of every regular file in it, sorted, through symbolic links to files and to
    folders too (the build reads a template, an asset or a page wherever its link points: `templates/assets` may be
    a link), each folder once (a link back up is no loop); not in `__pycache__`. Anything else that is not a folder
    (a link to nothing, a FIFO: the build refuses a page that is one) comes with the path "" (never opened)."""
    found, seen = [], set()
    prefix = os.path.join(str(folder), "")  # every path below starts with it: its name under `folder` follows
    for top, dirs, names in walk(folder):
        try:
            st = os.stat(top)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in names:
            path = os.path.join(top, name)
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)
            except OSError:
                regular = False
            found.append((path[len(prefix):].replace(os.sep, "/"), path if regular else ""))
    return sorted(found)


def _installed(h: Any, folder: Path, cache: Path | None) -> None:
    """Every file of the npm packages (KaTeX's code, CSS and fonts go into the site), by content: each file's hash is
    remembered by its stat numbers (hashes.json), so this is a stat a file (some 240), not 5 MB read each time."""
    h.update(b"installed\0")
    memo = _Hashes(cache)
    for name, path in tree_files(folder) if folder.is_dir() else []:
        digest = memo.digest(Path(path)) if path else "not a file"
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + digest.encode() + b"\0")
    memo.save()


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


def _checkpoint(h: Any, config: Path | None, text: bytes, cache: Path | None) -> None:
    """A config that names a checkpoint folder (`model: {from: ...}`, in any spelling YAML or JSON allows): that
    folder, found where the engine looks, and the content of its files as they are now."""
    if config is None:
        return
    try:
        folder = named_checkpoint(text)
    except Exception:  # noqa: BLE001 - the build reports a broken config; until then this digest matches nothing
        h.update(b"unread\0" + os.urandom(16))
        return
    if not isinstance(folder, str):
        return  # no checkpoint (or one the engine refuses: no stamp is recorded for a failed build)
    path = checkpoint_folder(config, folder)
    h.update(b"checkpoint\0" + str(path.resolve()).encode("utf-8", "surrogateescape") + b"\0"
             + checkpoint_digest(path, cache).encode())


def named_checkpoint(text: bytes) -> Any:
    """The value of `model.from` in the config `text` (None when there is none); raises for a config that does not
    read, or that the engine refuses for its size (found cheaply: never seconds and a gigabyte of parsing)."""
    if not _may_name_checkpoint(text):
        return None
    import yaml  # only for a config that may name one (a few milliseconds)

    if len(text) > MAX_CONFIG_BYTES or _too_many_values(yaml, text):
        raise ValueError("a config the engine refuses")
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    model = data.get("model") if isinstance(data, dict) else None
    return model.get("from") if isinstance(model, dict) else None


# engine.config's limits (not imported here: the engine loads NumPy): a larger config is refused by the build.
MAX_CONFIG_BYTES = 4 * 2**20
MAX_CONFIG_NODES = 250_000


def _too_many_values(yaml: Any, text: bytes) -> bool:
    """More YAML values than engine.config.MAX_CONFIG_NODES, counted from the parser's events (stopping there)."""
    parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    kinds = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)
    n = 0
    try:
        while parser.check_event():
            n += isinstance(parser.get_event(), kinds)
            if n > MAX_CONFIG_NODES:
                return True
    finally:
        parser.dispose()
    return False


def _may_name_checkpoint(text: bytes) -> bool:
    """False only when no reading of `text` as YAML or JSON can have the key `from`: the word appears nowhere but in
    whole-line comments (the default config mentions it in one), and no escape (`\\u0066rom`) or line break other
    than CR and LF (YAML 1.1 also ends a comment at NEL, LS and PS) is present. Anything else is parsed."""
    if b"\\" in text or b"\xc2\x85" in text or b"\xe2\x80\xa8" in text or b"\xe2\x80\xa9" in text:
        return True
    return any(b"from" in line and not line.lstrip(b" \t").startswith(b"#") for line in text.splitlines())


def checkpoint_folder(config: Path, folder: str) -> Path:
    """The checkpoint folder a config names, as engine.config reads it: relative to the current folder when it
    exists there, else beside the config file."""
    path = Path(folder)
    if not path.is_absolute() and not path.exists() and (config.parent / path).exists():
        path = config.parent / path
    return path


def checkpoint_digest(folder: str | Path, cache: Path | None = None) -> str:
    """sha256 over the names and contents of the files of a checkpoint folder (what a run read from it).

    The one helper of both the stamp and the run cache (site_build.cache.run_key). A file is read again only
    when its size, modification time, change time or inode changed (the change time cannot be set back, so an
    edit in place is always seen): each file's hash is remembered in the cache folder (`hashes.json`), so a
    500 MB checkpoint is read once, not on every build."""
    h = hashlib.sha256(b"handstep checkpoint 1\0")
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        h.update(f"no folder {err.errno}".encode())
        return h.hexdigest()
    memo = _Hashes(cache)
    for name in names:
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + memo.digest(Path(folder) / name).encode() + b"\0")
    memo.save()
    return h.hexdigest()


def _valid(entry: Any) -> bool:
    """An entry of hashes.json: five whole numbers (the stat) and a sha256 in hex."""
    return (isinstance(entry, list) and len(entry) == 6 and all(type(n) is int for n in entry[:5])
            and isinstance(entry[5], str) and len(entry[5]) == 64)


class _Hashes:
    """The sha256 of files by (absolute path, size, mtime_ns, ctime_ns, inode, device), remembered in the cache
    folder:

        hashes.json   {"format": FORMAT, "files": {absolute path: [size, mtime, ctime, inode, device, sha256]}}

    A damaged or foreign file, or an entry of another shape, is a miss (the file is read again). A hash is only
    remembered once the file has been unchanged for RACY_NS: a file's times advance in ticks (of a few
    milliseconds), so an edit within the tick of the one hashed could otherwise keep all the stat numbers."""

    FILE = "hashes.json"
    FORMAT = "handstep file hashes 1"
    KEEP = 1000  # the npm packages' files (some 240) and a checkpoint's
    RACY_NS = 2_000_000_000

    def __init__(self, cache: Path | None) -> None:
        self.path = cache / self.FILE if cache is not None and (cache / write.CACHE_MARKER).is_file() else None
        self.files: dict[str, list[Any]] = {}
        self.changed = False
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("format") == self.FORMAT and isinstance(data.get("files"), dict):
                    self.files = {path: entry for path, entry in data["files"].items() if _valid(entry)}
            except Exception:  # noqa: BLE001 - a damaged memo is a miss
                self.files = {}

    @staticmethod
    def _key(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]

    def digest(self, path: Path) -> str:
        """The sha256 of the file `path` (following links), or what it is when it is not a readable file."""
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                return "folder" if stat.S_ISDIR(st.st_mode) else "not a file"
            real = os.path.abspath(path)  # not resolved (a stat a path component): the inode and device identify it
            key = self._key(st)
            known = self.files.get(real)
            if known is not None and known[:5] == key:
                return known[5]
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
                during = self._key(os.fstat(f.fileno()))
            after = path.stat()
        except OSError as err:
            return f"unreadable {err.errno}"
        if key == during == self._key(after) and time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) > \
                self.RACY_NS:
            self._remember(real, [*key, digest])
        return digest

    def _remember(self, real: str, entry: list[Any]) -> None:
        self.files.pop(real, None)  # the newest last: the oldest go first
        self.files[real] = entry
        self.changed = True

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        files = dict(list(self.files.items())[-self.KEEP:])
        text = json.dumps({"format": self.FORMAT, "files": files})
        try:
            write.write_file_atomic(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        except OSError:
            pass  # only a slower next build: the files are read again


# The environment variables that choose how NumPy and OpenBLAS do arithmetic (the thread counts are pinned by the
# command): another kernel rounds the last bits of a sum its own way, so the same config gives other numbers.
ARITHMETIC_ENV = ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES", "MKL_CBWR",
                  "MKL_ENABLE_INSTRUCTIONS")


def arithmetic_env() -> dict[str, str]:
    """Those of ARITHMETIC_ENV that are set: part of the up-to-date digest and of a run's key."""
    return {name: os.environ[name] for name in ARITHMETIC_ENV if name in os.environ}


def inputs_digest(config: Path | None, flags: dict[str, Any], content: Path, templates: Path,
                  root: Path = ROOT, cache: Path | None = None) -> str:
    """The digest of everything a build reads (see the module docstring); `cache` remembers the hashes of a
    checkpoint's files."""
    h = hashlib.sha256(VERSION)
    h.update(json.dumps({"python": sys.version, "flags": flags, "arithmetic": arithmetic_env()}, sort_keys=True,
                        default=str).encode())
    text = b""
    if config is not None:
        try:
            text = config.read_bytes()
        except OSError:
            text = b"unreadable"
        h.update(b"config\0" + os.fsencode(config.resolve()) + b"\0" + text)
    _checkpoint(h, config, text, cache)
    for package in ("engine", "site_build"):
        h.update(source_digest(package, root).encode())
    _tree(h, content)
    _tree(h, templates)
    _tree(h, root / SHIPPED_VERIFICATION)
    _file(h, root / VERIFICATION_FILE)
    _installed(h, root / "node_modules", cache)
    _packages(h)
    return h.hexdigest()


def _files(out: Path) -> dict[str, list[int]]:
    """Every file under `out` with its stat numbers (symlinks and folders as they are named), and every folder by
    its name (`name/`: an empty folder added by hand is a change too)."""
    found: dict[str, list[int]] = {}
    for folder, dirs, names in os.walk(out):
        if folder != str(out):
            found[os.path.relpath(folder, out) + "/"] = []
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            # the change time and inode too: an edit of the same size whose modification time is set back shows
            found[os.path.relpath(path, out)] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                                                 int(os.path.islink(path))]
    return found


def _load(cache: Path) -> dict[str, Any]:
    try:
        data = json.loads((cache / STAMPS).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a damaged stamp file (deep nesting raises RecursionError) means a full build
        return {}
    return data if isinstance(data, dict) else {}


def recorded(cache: Path, out: Path) -> bool:
    """Is there a stamp for `out` in `cache`, a cache folder of handstep's (then both folders were written by a
    build before, and may get their lock files before the next one is checked)?"""
    if os.path.islink(cache):  # refused by the build (never written through a link): so is its stamp
        return False
    try:
        text = (cache / STAMPS).read_bytes() if (cache / write.CACHE_MARKER).is_file() else b""
    except OSError:
        return False
    return json.dumps(str(out.resolve())).encode() in text  # as record() writes the key (up_to_date reads it all)


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
    try:
        write.write_file_atomic(cache / STAMPS, lambda tmp: tmp.write_text(json.dumps(stamps), encoding="utf-8"))
    except OSError:
        pass  # a stamp that cannot be written (a folder in its place): the next build builds again
