"""Shared fixtures for the site builder tests: traces and fixture sites built into tmp_path."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
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


def digest_tree(root: Path) -> str:
    """SHA-256 over every file path and content under root (for determinism checks)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def read_csv(text: str) -> tuple[list[str], np.ndarray]:
    """Read a file written by `record_csv` back into (axes, values); what a reader of the downloads would do."""
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    if header == ["value"]:
        return [], np.array(float(body[0][0]))
    if len(header) == 2 and header[1] == "value":
        return [header[0]], np.array([float(v) for _, v in body])
    lead = [h for h in header if "=" not in h]
    last = header[len(lead)].split("=")[0]
    shape = [max(int(r[k]) for r in body) + 1 for k in range(len(lead))] + [len(header) - len(lead)]
    values = np.empty(shape)
    for r in body:
        values[tuple(int(i) for i in r[: len(lead)])] = [float(v) for v in r[len(lead) :]]
    return [*lead, last], values
