"""handstep's site builder: renders content/ with numbers from the engine's trace into a static site."""

from site_build.build import Builder, Paths, Report, build
from site_build.errors import BuildError

__all__ = ["BuildError", "Builder", "Paths", "Report", "build"]
