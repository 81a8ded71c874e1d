"""Build errors that name the file and line a reader has to fix, and how those messages show paths."""

from __future__ import annotations

import os
from pathlib import Path


class BuildError(Exception):
    """One or more problems, each `file:line: message` (line 0 means the whole file).

    The builder collects every problem it can find before giving up, so a writer
    fixes a page in one round instead of one error per build.
    """

    def __init__(self, file: str, line: int, message: str) -> None:
        self.problems: list[tuple[str, int, str]] = [(file, line, message)]
        super().__init__(self.lines()[0])

    @classmethod
    def collect(cls, problems: list[tuple[str, int, str]]) -> BuildError:
        """One error carrying several problems, sorted by file and line."""
        err = cls(*problems[0])
        err.problems = sorted(set(problems))
        err.args = (err.lines()[0],)
        return err

    def lines(self) -> list[str]:
        """Each problem as one line, `file:line: message`."""
        return [f"{f}:{n}: {m}" if n else f"{f}: {m}" for f, n, m in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as error messages show it: relative to the current directory when it is under it,
    else exactly as given (a relative path outside stays `../x/y`, an absolute one stays absolute)."""
    given = Path(path)
    try:
        return Path(os.path.abspath(given)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return given.as_posix()
