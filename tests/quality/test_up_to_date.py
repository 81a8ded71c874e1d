"""`handstep build` of a site that already holds the build of exactly these inputs does nothing, and anything that
could change the site (a page, a template, the config, the seed, a flag, a file of the site itself) builds again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from quality_helpers import GOOD_CONFIG, handstep_build, hash_tree, make_inputs

UP_TO_DATE = "is up to date: nothing changed since it was built"


def mtimes(site: Path) -> dict[str, int]:
    return {p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    inputs = make_inputs(tmp_path_factory.mktemp("stamp") / "inputs")
    result = handstep_build(inputs, GOOD_CONFIG, inputs / "site", inputs / "cache")
    assert result.returncode == 0 and result.stdout.startswith("built "), result.stderr
    return inputs


def again(inputs: Path, *extra: str, config: str = GOOD_CONFIG) -> str:
    result = handstep_build(inputs, config, inputs / "site", inputs / "cache", *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_nothing_changed_means_nothing_done(built: Path):
    before, times = hash_tree(built / "site"), mtimes(built / "site")
    out = again(built)
    assert UP_TO_DATE in out and "records shown: " in out
    assert hash_tree(built / "site") == before and mtimes(built / "site") == times  # not even rewritten


def test_an_edited_page_is_built(built: Path):
    page = sorted((built / "content").glob("*.md"))[0]
    text = page.read_text()
    page.write_text(text + "\nOne more sentence.\n")
    try:
        assert again(built).startswith("built ")
        assert "One more sentence." in "".join(p.read_text() for p in (built / "site").glob("*.html"))
        assert UP_TO_DATE in again(built)
    finally:
        page.write_text(text)
    assert again(built).startswith("built ")  # the edit undone is a change too


def test_a_touched_site_file_is_built_again(built: Path):
    again(built)
    before = hash_tree(built / "site")
    index = built / "site" / "index.html"
    index.write_text("mine now")
    assert again(built).startswith("built ")
    assert hash_tree(built / "site") == before
    (built / "site" / "extra.txt").write_text("added by hand")
    assert again(built).startswith("built ")
    assert not (built / "site" / "extra.txt").exists() and hash_tree(built / "site") == before
    os.remove(built / "site" / "index.html")
    assert again(built).startswith("built ") and hash_tree(built / "site") == before


@pytest.mark.parametrize("change", ["seed", "flag", "template", "config"])
def test_other_inputs_count(built: Path, change: str):
    assert UP_TO_DATE in again(built)
    if change == "seed":
        assert again(built, "--seed", "5").startswith("built ")
    elif change == "flag":  # the build runs (and passes or fails on coverage); it is not "up to date"
        result = handstep_build(built, GOOD_CONFIG, built / "site", built / "cache", "--require-coverage")
        assert result.returncode == 2 and "records shown: " in result.stderr, result.stderr  # not all shown
        assert UP_TO_DATE in again(built)  # a failed build leaves the site, and so its stamp, as they were
        return
    elif change == "template":
        css = sorted((built / "templates" / "assets").glob("*.css"))[0]
        text = css.read_text()
        css.write_text(text + "\n/* changed */\n")
        try:
            assert again(built).startswith("built ")
            assert "/* changed */" in (built / "site" / "assets" / css.name).read_text()
        finally:
            css.write_text(text)
    else:
        config = built / GOOD_CONFIG
        text = config.read_text()
        config.write_text(text + "\n# a comment is a change too\n")
        try:
            assert again(built).startswith("built ")
        finally:
            config.write_text(text)
    assert again(built).startswith("built ")  # back to the original inputs: the site changed since
    assert UP_TO_DATE in again(built)
