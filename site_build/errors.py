"""Build errors that name the file and line a reader has to fix, and how those messages show paths."""

from __future__ import annotations

import os
import re
from pathlib import Path

# What must not reach a terminal as it is: control characters (an escape sequence recolours the terminal, moves the
# cursor or retitles the window; a newline would split one problem into two lines), bidi controls (they reorder
# what the reader sees) and lone surrogates. An error line may quote a config value, a key or a path that holds them.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
MAX_LINE = 1000  # characters of one error line; the messages cut what they quote far below this


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


def terminal_line(text: object) -> str:
    """One line of an error as it is printed: control and bidi characters escaped as Python writes them (`\\x1b`,
    `\\n`, `\\u202e`), and cut after MAX_LINE characters. The last net under every message, whatever it quotes."""
    text = str(text)
    if len(text) > MAX_LINE:
        text = f"{text[:MAX_LINE]}… ({len(text):,} characters)"
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as error messages show it: relative to the current directory when it is under it,
    else exactly as given (a relative path outside stays `../x/y`, an absolute one stays absolute)."""
    given = Path(path)
    try:
        return Path(os.path.abspath(given)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return given.as_posix()
