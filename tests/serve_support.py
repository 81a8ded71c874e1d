"""`handstep serve` in a process of its own, for the tests that drive it over HTTP (a plain module: the site and
browser tests import it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


class Server:
    """`handstep serve` in a process of its own (and its own session: its KaTeX and Pagefind children end with it),
    its output lines collected as they come."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "site_build.cli", "serve", "--port", "0", *argv],
                                     cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait_for(r"serving \S+ at http://127\.0\.0\.1:(\d+)/").group(1))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, after: int = 0, timeout: float = 120) -> re.Match:
        """The first output line from line `after` on that matches `pattern`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the last lines
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; the server said:\n" + "\n".join(self.lines))

    def get(self, path: str = "/") -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as reply:
            return reply.read().decode()

    def poll_page(self, text: str, path: str = "/", timeout: float = 120) -> str:
        """The page once it shows `text` (the server rebuilds after an edit)."""
        deadline = time.monotonic() + timeout
        page = ""
        while time.monotonic() < deadline:
            try:
                page = self.get(path)
            except OSError:
                page = ""
            if text in page:
                return page
            assert self.proc.poll() is None, "the server stopped:\n" + "\n".join(self.lines)
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never showed on {path}; the server said:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of its session is left
        except (ProcessLookupError, PermissionError):
            pass
