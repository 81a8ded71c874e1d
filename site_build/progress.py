"""Progress of long work on stderr: a bar on a terminal, a line per phase otherwise; silent when work is short.

One object serves both the engine's callback, `progress(phase, done, total)` (the recorded step, the
training run, the finite-difference check), and the build's own phases (`lap("pages")`). Nothing is
shown until the work has run for `after` seconds, so the default site builds as quietly as before.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR = 24  # characters of the bar
LINE_EVERY = 10.0  # seconds between progress lines of one long phase when stderr is not a terminal


class Progress:
    def __init__(self, stream: TextIO | None = None, after: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.after = after
        self.start = self.last_lap = time.perf_counter()
        self._line_at = 0.0
        self._bar = False  # a bar is drawn on the current terminal line

    def restart(self) -> None:
        """A new piece of work begins (each rebuild of the dev server): quiet again for `after` seconds."""
        self.start = self.last_lap = time.perf_counter()
        self._line_at = 0.0

    def _late(self, now: float) -> bool:
        return now - self.start >= self.after

    def __call__(self, phase: str, done: int, total: int) -> None:
        """The engine's callback: `done` of `total` units of `phase`."""
        now = time.perf_counter()
        if not self._late(now):
            return
        if self.tty:
            filled = BAR * done // max(total, 1)
            self.stream.write(f"\r  {phase} [{'#' * filled}{'-' * (BAR - filled)}] {done}/{total}\x1b[K")
            self._bar = done < total
            if done >= total:
                self.stream.write("\n")
        elif done >= total:
            self.stream.write(f"  {phase}: done ({now - self.start:.1f} s)\n")
        elif now - self._line_at >= LINE_EVERY:
            self.stream.write(f"  {phase}: {done}/{total} ({100 * done // max(total, 1)}%)\n")
            self._line_at = now
        self.stream.flush()

    def lap(self, phase: str) -> float:
        """A build phase has ended; returns its seconds, and says so once the build has run a while."""
        now = time.perf_counter()
        seconds, self.last_lap = now - self.last_lap, now
        if self._late(now):
            if self._bar:
                self.stream.write("\n")
                self._bar = False
            self.stream.write(f"  {phase}: {seconds:.1f} s\n")
            self.stream.flush()
        return seconds


def quiet() -> Progress:
    """A Progress that never shows anything (library use, tests)."""
    return Progress(after=float("inf"))
