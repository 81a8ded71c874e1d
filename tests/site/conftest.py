"""Shared fixtures for the site builder tests: traces and fixture sites built into tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import engine
from site_build.build import ROOT, Paths

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = FIXTURES / "configs" / "small.yaml"
HOSTILE = FIXTURES / "configs" / "hostile.yaml"


@pytest.fixture(scope="session")
def small_trace():
    return engine.run(engine.load_config(str(SMALL)))


@pytest.fixture(scope="session")
def hostile_trace():
    return engine.run(engine.load_config(str(HOSTILE)))


def make_site(root: Path, pages: dict[str, str] | None = None, base: str = "basic") -> Paths:
    """A fixture site under root: content/ copied from fixtures/<base>, plus extra pages."""
    content = root / "content"
    shutil.copytree(FIXTURES / base / "content", content)
    for name, text in (pages or {}).items():
        target = content / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text, encoding="utf-8")
    return Paths(root=ROOT, content=content, templates=ROOT / "templates", cache=root / "cache")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in tmp_path: paths in messages are relative to the current directory, so the pages
    of a fixture site built there show as `content/x.md`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def site(tmp_path: Path) -> Paths:
    return make_site(tmp_path)


def page(body: str, title: str = "Extra", section: str = "Reference", order: int = 1) -> str:
    """A page with valid front matter (4 lines + delimiters: the body starts on line 7)."""
    return f"---\ntitle: {title}\ndescription: An extra page.\nsection: {section}\norder: {order}\n---\n{body}"
