"""Content reads as prose: the numbers and facts a page needs come from site_build/facts/, not from Jinja programs
in the page (issue 24). No page assigns (`{% set %}`) or keeps a namespace, and the share of lines that carry Jinja
stays under a cap that only ever goes down."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CONTENT = Path(__file__).resolve().parents[2] / "content"
PAGES = sorted(CONTENT.rglob("*.md"))
JINJA = re.compile(r"\{\{|\{%|\{##")
SHARE_CAP = 0.302  # lines carrying Jinja / all body lines, over every page: lowered as pages turn to prose (goal 0.15)


def body_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[0] == "---":
        lines = lines[lines.index("---", 1) + 1:]
    return lines


def jinja_share(pages: list[Path]) -> float:
    lines = [line for page in pages for line in body_lines(page)]
    return sum(1 for line in lines if JINJA.search(line)) / len(lines)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(CONTENT)) for p in PAGES])
def test_a_page_computes_nothing(page):
    """A page states facts and places blocks; it does not work them out: no assignments, no namespaces, no loops
    (facts and the blocks that list them live in Python)."""
    text = "\n".join(body_lines(page))
    assert not re.search(r"\{%-?\s*set\b", text), f"{page.name}: a {{% set %}} belongs in site_build/facts/"
    assert "namespace(" not in text, f"{page.name}: a namespace loop computes a statistic: make it a fact"
    loop = re.search(r"\{%-?\s*for\b", text)
    assert not loop, (f"{page.name}: a loop builds a table or a listing in the page: make it a block of "
                      "site_build/sections/ (or a fact, for a clause of a sentence)")


def test_the_pages_are_mostly_prose():
    assert jinja_share(PAGES) <= SHARE_CAP


def test_the_measure_can_fail(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("---\ntitle: x\n---\n{{ a }}\nplain\n{% if b %}c{% endif %}\n", encoding="utf-8")
    assert jinja_share([page]) == 2 / 4
