"""handstep's site builder: renders content/ with numbers from the engine's trace into a static site.

The names below are imported on first use, so `handstep build` can tell that a site is up to date
(site_build.stamp) without loading NumPy, Jinja2 or the engine.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BuildError", "Builder", "Paths", "Report", "build"]


def __getattr__(name: str) -> Any:
    if name == "BuildError":
        from site_build.errors import BuildError

        return BuildError
    if name in ("Builder", "Paths", "Report", "build"):
        import importlib

        return getattr(importlib.import_module("site_build.build"), name)
    raise AttributeError(f"module 'site_build' has no attribute {name!r}")
