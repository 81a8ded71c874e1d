"""handstep's site builder: renders content/ with numbers from the engine's trace into a static site.

The names below are imported on first use, so `handstep build` can tell that a site is up to date
(site_build.stamp) without loading NumPy, Jinja2 or the engine.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BuildError", "Builder", "Paths", "Report", "build", "main"]


def main() -> int:
    """The `handstep` command (site_build.cli.main), loaded from here so that Ctrl-C while it loads ends it with one
    line, not a traceback (the command's own handler is not in place before site_build.cli has loaded)."""
    import sys

    try:
        from site_build import cli
    except KeyboardInterrupt:
        print("handstep: interrupted; nothing was done", file=sys.stderr)
        return 130
    return cli.main()


def __getattr__(name: str) -> Any:
    if name == "BuildError":
        from site_build.errors import BuildError

        return BuildError
    if name in ("Builder", "Paths", "Report", "build"):
        import importlib

        return getattr(importlib.import_module("site_build.build"), name)
    raise AttributeError(f"module 'site_build' has no attribute {name!r}")
