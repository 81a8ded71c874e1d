"""Helpers for the quality suite: run the real `handstep build` on a fixture site, hash trees.

The fixture site (tests/quality/fixtures: a small config and two pages) is copied into a
temporary directory together with the repository's templates, so a test can break any
input (config, page, template) without touching the repository.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOOD_CONFIG = "configs/good.yaml"

def make_inputs(root: Path) -> Path:
    """Copy the fixture content and configs plus the repository's templates under root."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(FIXTURES / "content", root / "content")
    shutil.copytree(FIXTURES / "configs", root / "configs")
    shutil.copytree(ROOT / "templates", root / "templates")
    return root


def build_command(inputs: Path, config: str | Path, out: Path, cache: Path, *extra: str) -> list[str]:
    """The argv of one `handstep build` of the site in `inputs` (run it with cwd=inputs)."""
    return [sys.executable, "-m", "site_build.cli", "build", "--config", str(config), "--out", str(out), *extra,
            "--content", str(inputs / "content"), "--templates", str(inputs / "templates"), "--cache", str(cache)]


def handstep_build(inputs: Path, config: str | Path, out: Path, cache: Path, *extra: str,
                   timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run one build to completion; cwd is `inputs`, so messages show `content/x.md`, `configs/y.yaml`."""
    return subprocess.run(build_command(inputs, config, out, cache, *extra), cwd=inputs,
                          capture_output=True, text=True, timeout=timeout)


def hash_tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} for every file, plus every directory (so an added empty one shows)."""
    root = Path(root)
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "link:" + str(path.readlink())
        elif path.is_dir():
            out[rel + "/"] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def html_pages(site: Path) -> list[Path]:
    """Every HTML page of a built site, without Pagefind's own files."""
    return sorted(p for p in Path(site).rglob("*.html") if "pagefind" not in p.relative_to(site).parts)
