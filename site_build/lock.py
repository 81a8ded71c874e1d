"""One build at a time into an output folder, and one at a time with a cache folder.

Two builds into the same `--out` (two terminals, `make site` beside `make serve`) would each swap in their own
site and record a stamp that could name the other's files; two builds sharing a `--cache` would prune each other's
runs. So `handstep build`, and `handstep serve` around each rebuild, hold two locks (`fcntl.flock`, which the
system releases when the process ends, however it ends):

    .<name>.handstep-lock   beside the output folder <name> (not inside it: the folder is swapped whole); it
                            exists only while a build holds it and is deleted when released (one left by a killed
                            build is taken and deleted by the next)
    <cache>/build.lock      in the cache folder, handstep's own, where it stays

A build that finds a lock taken says so in one line on stderr (`handstep: another build is writing site, waiting`)
and waits for it (Ctrl-C stops waiting); the out lock is always taken before the cache lock, so two builds never
wait for each other. The up-to-date check (site_build.stamp), the build and the stamp it records all happen while
both are held. Where a lock cannot be taken (a file system without locks, a folder that cannot be written: the
build's own checks then say why), the build goes on without it.

Only the standard library is imported: `handstep build` of an up-to-date site takes the locks too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

from site_build.errors import shown_path

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system: no locks
    fcntl = None  # type: ignore[assignment]

CACHE_LOCK = "build.lock"
OUT_SUFFIX = ".handstep-lock"


def out_lock_path(out: Path) -> Path | None:
    """Where the lock of output folder `out` lives (beside it); None for a path with no name (`/`)."""
    path = Path(os.path.abspath(out))
    if not path.name:
        return None
    return Path(os.path.realpath(path.parent)) / f".{path.name}{OUT_SUFFIX}"


class Lock:
    """An exclusive lock on the file `path`, created when needed; with `remove`, deleted when released (whoever
    then waits on the deleted file notices and takes a new one)."""

    def __init__(self, path: Path | None, doing: str, remove: bool, make_folders: bool = False) -> None:
        self.path = path
        self.doing = doing  # `writing site`: what the holder is doing, for the waiting line
        self.remove = remove
        self.make_folders = make_folders
        self.fd: int | None = None
        self.made: list[Path] = []  # folders made for the lock file, removed with it when left empty

    def acquire(self) -> None:
        """Take the lock, waiting (and saying so once) while another process holds it."""
        if self.fd is not None or self.path is None or fcntl is None:
            return
        said = False
        while True:
            try:
                if self.make_folders:
                    self._make_folders()
                fd = _open(self.path)
            except OSError:
                self._remove_made()
                return  # cannot lock here: the build's own checks say what is wrong with the folder
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not said:
                        print(f"handstep: another build is {self.doing}, waiting", file=sys.stderr, flush=True)
                        said = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if not self.remove or _same_file(fd, self.path):
                    self.fd = fd
                    return
            except OSError:  # a file system without locks
                self.fd = fd
                return
            except BaseException:  # Ctrl-C while waiting
                os.close(fd)
                raise
            os.close(fd)  # the holder deleted the file we waited on: lock the one there now

    def release(self) -> None:
        if self.fd is None:
            return
        if self.remove and self.path is not None:
            try:
                os.unlink(self.path)  # still holding it: a process waiting on this file will see it is gone
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None
        self._remove_made()

    def _remove_made(self) -> None:
        for folder in reversed(self.made):
            try:
                folder.rmdir()  # only when empty: a build that wrote nothing leaves nothing
            except OSError:
                break
        self.made = []

    def _make_folders(self) -> None:
        assert self.path is not None
        missing = []
        folder = self.path.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            self.made.append(folder)


def _open(path: Path) -> int:
    """The lock file, opened (made when missing), never through a symbolic link: a link in its place (whatever it
    points to, which is left alone) is removed and the file made; a folder in its place is locked itself."""
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(3):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except IsADirectoryError:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | flags)
        except OSError:
            if not os.path.islink(path):
                raise
            os.unlink(path)  # the link only: this name is handstep's
    raise OSError(f"{path}: replaced by a link again and again")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class BuildLocks:
    """The locks of one build: its output folder's, then its cache folder's (see the module docstring).

    `with BuildLocks(out, cache) as locks:` and then `locks.acquire()` once the folders are known to be ones the
    build may write (a lock file goes beside `out` and into `cache`): leaving the block releases them."""

    def __init__(self, out: Path, cache: Path) -> None:
        self.out = Lock(out_lock_path(out), f"writing {shown_path(out)}", remove=True, make_folders=True)
        self.cache = Lock(Path(cache) / CACHE_LOCK, f"using the cache {shown_path(cache)}", remove=False)
        self.taken = False

    def acquire(self) -> None:
        """Take both, the out lock first (once: a lock that could not be taken is not tried again after the cache
        lock, which would reverse the order)."""
        if not self.taken:
            self.taken = True
            self.out.acquire()
            self.cache.acquire()

    def release(self) -> None:
        self.cache.release()
        self.out.release()

    def __enter__(self) -> BuildLocks:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
