"""Whole builds of fixture sites: output, errors with file and line, determinism, swap, search."""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jinja2
import pytest
from conftest import HOSTILE, SMALL, digest_tree, make_site, page

from site_build.build import ROOT, Builder, build
from site_build.cli import main
from site_build.errors import BuildError, shown_path
from site_build.mathslots import MathSlots
from site_build.render.markdown import make_parser
from site_build.render.markdown import render_page as render_markdown

pytestmark = pytest.mark.usefixtures("in_tmp")  # fixture pages show as content/x.md


def build_ok(paths, out: Path, config: Path = SMALL):
    return build(config, out, paths=paths)


def build_error(paths, out: Path, config: Path = SMALL) -> list[str]:
    with pytest.raises(BuildError) as err:
        build(config, out, paths=paths)
    return err.value.lines()


def test_build_writes_pages_assets_trace_and_search(site, tmp_path):
    out = tmp_path / "site"
    report = build_ok(site, out)
    assert report.pages == 2 and report.formulas > 0
    for rel in ["index.html", "attention.html", "404.html", "trace.json", "assets/style.css",
                "assets/site.js", "katex/katex.min.css", "katex/fonts/KaTeX_Main-Regular.woff2",
                "pagefind/pagefind.js", "pagefind/pagefind-entry.json"]:
        assert (out / rel).is_file(), rel
    assert not list((out / "katex" / "fonts").glob("*.ttf"))
    css = (out / "katex" / "katex.min.css").read_text()
    assert ".woff2" in css and ".ttf" not in css and '.woff"' not in css and ".woff)" not in css
    home = (out / "index.html").read_text()
    assert 'href="attention.html#scores"' in home  # .md links become page links
    assert '<aside class="callout callout-why"><p class="callout-title">Why a callout?</p>' in home
    assert 'class="katex' in home and "\ue000" not in home
    attention = (out / "attention.html").read_text()
    assert '<a href="attention.html" aria-current="page">Attention</a>' in attention
    assert '<a class="prev" href="index.html" rel="prev">' in attention
    assert '<li class="toc-3"><a href="#one-entry">One entry</a></li>' in attention
    assert '<h2 id="causal-mask">Masked <a class="anchor" href="#causal-mask"' in attention
    assert "Jinja comment" not in attention
    assert attention.count('class="calc-step"') == 1 and attention.count('<table class="matrix"') == 3
    assert "summary" not in report.summary() and "records shown: " in report.summary()


def test_every_page_stays_under_40_kb_gzip(site, tmp_path):
    out = tmp_path / "site"
    build_ok(site, out)
    for html in out.glob("*.html"):
        assert len(gzip.compress(html.read_bytes())) <= 40_000, html.name
    css = sum(p.stat().st_size for p in (out / "assets").glob("*.css"))
    assert css <= 40_000


def test_two_builds_are_byte_identical(site, tmp_path):
    build_ok(site, tmp_path / "a")
    build_ok(site, tmp_path / "b")  # second build: KaTeX from the cache
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")


def rendered_pages(monkeypatch) -> list[str]:
    """The pages render_page is called for, from now on (the others came from the page cache)."""
    from site_build.render import jinja as jinja_module

    made: list[str] = []
    real = jinja_module.render_page
    monkeypatch.setattr(jinja_module, "render_page",
                        lambda page, *a, **k: made.append(page.source) or real(page, *a, **k))
    return made


def test_a_second_build_takes_its_pages_from_the_cache_until_a_page_changes(site, tmp_path, monkeypatch):
    """With the same run and pages, every page comes from the page cache and the site is the same bytes; a changed
    page, and only it, is rendered again."""
    made = rendered_pages(monkeypatch)
    build_ok(site, tmp_path / "a")
    first = len(made)
    assert first > 1
    build_ok(site, tmp_path / "b")
    assert len(made) == first
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    page = site.content / "index.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nA sentence added later.\n", encoding="utf-8")
    build_ok(site, tmp_path / "c")
    assert made[first:] == ["content/index.md"]
    assert "A sentence added later." in (tmp_path / "c" / "index.html").read_text()


WIDE_PAGE = page('{{ matrix("L0.mlp.c_fc.weight") }}\n\n{{ matrix("L0.mlp.fc") }}\n', title="Wide", order=2)
TABLE_PAGES = ["numbers/L0.mlp.c_fc.weight.html", "numbers/L0.mlp.fc~batch0.html"]


def wide_config(folder: Path) -> Path:
    """The small config with a d_ff of 32: its feed-forward matrices are wide (a heatmap and a table page)."""
    config = folder / "wide.yaml"
    config.write_text(SMALL.read_text().replace("d_ff: 16", "d_ff: 32"), encoding="utf-8")
    return config


def table_pages(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "numbers").glob("*.html"))}


def test_the_table_pages_of_wide_matrices_come_back_from_the_caches(tmp_path, monkeypatch):
    """A wide matrix's table page is collected while its page renders: a warm build (every page from the page
    cache) and a build after another page changed write the same table pages as the cold build."""
    made = rendered_pages(monkeypatch)
    paths = make_site(tmp_path, {"wide.md": WIDE_PAGE})
    config = wide_config(tmp_path)
    build_ok(paths, tmp_path / "a", config)
    first = len(made)
    build_ok(paths, tmp_path / "b", config)
    assert len(made) == first, "the second build should take its pages from the cache"
    assert list(table_pages(tmp_path / "a")) == TABLE_PAGES
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    index = paths.content / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + "\nA sentence added later.\n", encoding="utf-8")
    build_ok(paths, tmp_path / "c", config)
    assert made[first:] == ["content/index.md"] and table_pages(tmp_path / "c") == table_pages(tmp_path / "a")


def test_table_pages_are_laid_out_from_their_folder_and_left_out_of_search(tmp_path):
    paths = make_site(tmp_path, {"wide.md": WIDE_PAGE})
    out = tmp_path / "site"
    build_ok(paths, out, wide_config(tmp_path))
    wide = (out / "wide.html").read_text(encoding="utf-8")
    assert wide.count('<p class="numbers"><a href="numbers/') == 2 and '<table class="matrix' not in wide
    table = (out / TABLE_PAGES[1]).read_text(encoding="utf-8")
    assert '<html lang="en" data-root="../">' in table and 'href="../assets/style.css"' in table
    assert 'data-explain="../assets/data/wide.js"' in table  # the click data of the page that shows it
    assert '<a href="../wide.html">Wide</a>' in table and 'href="../assets/csv/L0.mlp.fc.csv"' in table
    assert "<article>" in table and "data-pagefind-body" not in table
    fragments = [gzip.decompress(f.read_bytes()).decode("utf-8") for f in (out / "pagefind" / "fragment").iterdir()]
    assert len(fragments) == 3 and not any("numbers/" in f for f in fragments)


def test_rebuild_reuses_trace_and_katex(site, tmp_path, monkeypatch):
    import site_build.session as session_module

    runs = []
    real_run = session_module.engine.run
    monkeypatch.setattr(session_module.engine, "run", lambda *a, **k: runs.append(1) or real_run(*a, **k))
    builder = Builder(site)
    try:
        first = builder.build(SMALL, tmp_path / "site")
        (site.content / "index.md").write_text(
            (site.content / "index.md").read_text() + "\nNew math $z^3$.\n", encoding="utf-8"
        )
        second = builder.build(SMALL, tmp_path / "site")
    finally:
        builder.close()
    assert first.rendered > 0 and second.rendered == 1 and second.cached == first.formulas
    assert len(runs) == 1, "the second build must reuse the trace, not run the engine again"


def test_hostile_text_is_escaped_everywhere(tmp_path):
    body = (
        "Tokens: {% for t in trace.labels.inputs[0] %}{{ token(loop.index0) }} {% endfor %}\n\n"
        "{{ matrix('wte') }}\n\n"
        "In LaTeX: $\\text{ {{ trace.labels.inputs[0][1] | tex }} }$ and "
        "{% for w in trace.labels.vocab %}$\\text{ {{ latex_escape(w) }} }$ {% endfor %}\n\n"
        "{{ calc('L0.attn.scores', (0, 0, 2, 1)) }}\n"
    )
    paths = make_site(tmp_path, {"hostile.md": page(body)})
    out = tmp_path / "site"
    build_ok(paths, out, HOSTILE)
    html = (out / "hostile.html").read_text()
    assert "<script>" not in html.replace('<script src="assets/site.js" defer></script>', "").replace(
        "<script>(function(){var d=document.documentElement", "")
    assert "<p>Tokens: &lt;bos&gt; &lt;script&gt; &amp; $ \\ {} x_1^2</p>" in html
    assert '<th scope="row">&#60;script&#62;</th>' in html and '<th scope="row">%&#35;&#126;</th>' in html
    assert "katex-error" not in html
    # KaTeX typeset the escaped words as text: the characters appear in its output
    for shown in ["&lt;script&gt;", "&amp;", "$", "\\", "{}", "x_1^2", "%#~"]:
        assert f">{shown}<" in html or shown in html, shown


ERROR_CASES = {
    "unknown record": (
        page('Text\n\n{{ matrix("L0.attn.score", head=0) }}\n'),
        "content/extra.md:9: unknown trace record 'L0.attn.score' (did you mean 'L0.attn.scores'?)",
    ),
    "bad index": (
        page('{{ value("loss") }}\n\nx {{ value("L0.attn.weights", (0, 5, 0, 0)) }}\n'),
        "content/extra.md:9: bad index (0, 5, 0, 0) for 'L0.attn.weights' with shape 1 × 2 × 6 × 6 "
        "(batch × heads × tokens × keys): heads index 5 is outside 0..1",
    ),
    "bad argument": (
        page('\n{{ matrix("wte", colz=3) }}\n'),
        "content/extra.md:8: matrix() got an unexpected keyword argument 'colz'",
    ),
    "undefined name": (
        page("{{ config.model.n_heads }}\n{{ nothing }}\n"),
        "content/extra.md:8: undefined name: 'nothing' is undefined",
    ),
    "template syntax": (
        page("fine\n{% for x in y %}\n"),
        "content/extra.md:8: template error: Unexpected end of template. Jinja was looking for the following "
        "tags: 'endfor' or 'else'. The innermost block that needs to be closed is 'for'.",
    ),
    "katex error in markdown": (
        page("Fine $x$.\n\nBroken $\\frac{a}{$ here.\n"),
        "content/extra.md:9: KaTeX error: Unexpected end of input in a macro argument, expected '}' "
        "at end of input: \\frac{a}{",
    ),
    "katex error in display math": (
        page("$$\n\\begin{matrix} a \\end{pmatrix}\n$$\n"),
        "content/extra.md:8: KaTeX error: Mismatch: \\begin{matrix} matched by \\end{pmatrix} at position 18: "
        "…egin{matrix} a \\end{pmatrix}",
    ),
    "missing front matter": ("# Just a heading\n", "content/extra.md:1: missing front matter: the file must start with "
                             "a '---' line, then title, description, section and order, then '---'"),
    "unclosed front matter": ("---\ntitle: x\n", "content/extra.md:1: front matter is not closed: add a '---' line "
                              "after it"),
    "bad yaml": (
        "---\ntitle: x\ndescription: [unclosed\nsection: Reference\norder: 1\n---\nbody\n",
        "content/extra.md:4: front matter is not valid YAML: expected ',' or ']', but got ':'",
    ),
    "missing title": (
        "---\ndescription: d\nsection: Reference\norder: 1\n---\n",
        "content/extra.md:2: front matter is missing 'title'",
    ),
    "duplicate key": (  # YAML keeps the last one without a word
        "---\ntitle: t\ndescription: d\nsection: Reference\norder: 1\ntitle: u\n---\n",
        "content/extra.md:6: duplicate front matter key 'title' (first given at line 2); keep one",
    ),
    "wrong type": (
        "---\ntitle: t\ndescription: d\nsection: Reference\norder: first\n---\n",
        "content/extra.md:5: front matter 'order' must be a whole number, not 'first'",
    ),
    "unknown section": (
        "---\ntitle: t\ndescription: d\nsection: Appendix\norder: 1\n---\n",
        "content/extra.md:4: unknown section 'Appendix' (one of: Introduction, Forward pass, Backward pass, "
        "Optimization, Reference)",
    ),
    "unknown key": (
        "---\ntitle: t\ndescription: d\nsection: Reference\norder: 1\ntilte: x\n---\n",
        "content/extra.md:6: unknown front matter key 'tilte' (known: title, description, section, order, slug, step, "
        "block)",
    ),
    "duplicate order": (
        page("body", section="Forward pass", order=4),
        "content/extra.md:5: order 4 in section 'Forward pass' is already used by content/attention.md",
    ),
    "broken link": (
        page("See [the page](nowhere.md).\n"),
        "content/extra.md:7: link to unknown page 'nowhere.md'",
    ),
    "not utf-8": (
        page("fine\n").encode() + b"caf\xe9\n",
        "content/extra.md:8: not valid UTF-8 (byte 0xe9); save the file as UTF-8",
    ),
    "unclosed callout": (  # it would swallow the rest of the page
        page("Intro.\n\n::: why Why?\nReason.\n\n## Later heading\n\nMore text.\n"),
        "content/extra.md:9: unclosed callout 'why': add a line ':::' after it",
    ),
    "second callout unclosed": (  # named at its own opening line, not at the first '::: note'
        page("::: note\nClosed.\n:::\n\nText {{ value('loss') }}.\n\n::: note A title\nOpen to the end.\n"),
        "content/extra.md:13: unclosed callout 'note': add a line ':::' after it",
    ),
    "unclosed callout before another callout": (  # the next callout's ':::' closed it, holding that callout too
        page("::: warmup A warm-up\nMade up.\n\n## Run\n\n::: why Why?\nReason.\n:::\n\nAfter.\n"),
        "content/extra.md:7: unclosed callout 'warmup': add a line ':::' after it",
    ),
    "a ':::' that closes nothing": (  # it was 'unknown callout (none)', at the first ':::' of the page
        page("::: note\nClosed.\n:::\n\nText.\n\n:::\n"),
        "content/extra.md:13: ':::' closes no callout (callouts do not nest): remove it, or open a callout above it",
    ),
    "heading id given twice": (  # two elements with one id: a link reaches the first only
        page("{#same}\n## One\n\nText.\n\n{#same}\n## Two\n\nMore.\n"),
        "content/extra.md:12: heading id 'same' is given twice (first at line 7); give this heading another id",
    ),
    "heading id another heading's words give": (  # it took the id, and that heading became 'the-mask-1'
        page("## The mask\n\nText.\n\n{#the-mask}\n## Later\n\nMore.\n"),
        "content/extra.md:11: heading id 'the-mask' is the id the heading at line 7 takes from its words: links to "
        "#the-mask would reach this heading instead; choose another id",
    ),
    "empty heading": (  # an empty id
        page("## One\n\nText.\n\n##\n\nMore.\n"),
        "content/extra.md:11: empty heading: give it words or remove it",
    ),
    "a heading id the layout uses": (  # the page built, and its "On this page" title's id was the heading's too
        page("Text.\n\n{#toc-title}\n## Contents\n\nMore.\n"),
        "content/extra.md:9: heading id 'toc-title' is an id of the page's layout (templates/) too: links to "
        "#toc-title reach the first only; rename the heading or give it another id with {#...}",
    ),
    "a heading whose words make an id the layout uses": (  # <main id="content">, the skip link's target
        page("Text.\n\n## Content\n\nMore.\n"),
        "content/extra.md:9: heading id 'content' is an id of the page's layout (templates/) too: links to "
        "#content reach the first only; rename the heading or give it another id with {#...}",
    ),
    "an id two elements of the page have": (
        page('Text.\n\n<div id="twice">One.</div>\n\n<div id="twice">Two.</div>\n'),
        "content/extra.md:9: id 'twice' is used 2 times on the finished page: links to #twice reach the first only; "
        "give each element its own id",
    ),
    "katex link": (  # KaTeX, trusting nothing, showed '\href' in red and the build passed
        page("See $\\href{https://katex.org}{x}$.\n"),
        "content/extra.md:7: KaTeX error: \\href is not allowed in a formula (no links, images or HTML in math); "
        "write it outside the formula",
    ),
    "a picture the site does not hold": (  # the page showed a broken image, and the build passed
        page("Text.\n\n![a plot](assets/plot.png)\n"),
        "content/extra.md:9: link to 'assets/plot.png': the site has no such file (a picture goes in "
        "templates/assets/; a page is linked by its .md file)",
    ),
    "a link to a file the site does not hold": (
        page("See [the notes](notes.html).\n"),
        "content/extra.md:7: link to 'notes.html': the site has no such file (a picture goes in templates/assets/; a "
        "page is linked by its .md file)",
    ),
    "an unknown anchor of a page linked by its file": (
        page("See [it](attention.html#nope).\n"),
        "content/extra.md:7: link to unknown anchor '#nope' on attention",
    ),
    "a link outside the site": (
        page("See [up](../notes.html).\n"),
        "content/extra.md:7: link to '../notes.html', outside the site",
    ),
    "a link from the server's root": (  # a site served from a folder (GitHub Pages) would lose it
        page("See [it](/attention.html).\n"),
        "content/extra.md:7: link to '/attention.html' from the server's root: write it relative to the page "
        "(without the leading '/'), so the site works in any folder",
    ),
    "a raw HTML link to a file the site does not hold": (  # raw HTML was written as it was, unchecked
        page('Text.\n\nSee <a href="missing.html">the notes</a>.\n'),
        "content/extra.md:9: link to 'missing.html': the site has no such file (a picture goes in templates/assets/; a "
        "page is linked by its .md file)",
    ),
    "a raw HTML picture the site does not hold": (
        page('Text.\n\n<figure>\n<img src="assets/nope.png" alt="a plot">\n</figure>\n'),
        "content/extra.md:10: link to 'assets/nope.png': the site has no such file (a picture goes in "
        "templates/assets/; a page is linked by its .md file)",
    ),
    "a raw HTML link to an anchor the page lacks": (
        page('Text.\n\n<p class="more">See\n<a href="#nowhere">below</a>.</p>\n'),
        "content/extra.md:10: link to unknown anchor '#nowhere' on this page",
    ),
    "a raw HTML link to a page's .md file": (  # the build rewrites Markdown links only: the site would lack the file
        page('Text.\n\nSee <a href="attention.md#scores">the scores</a>.\n'),
        "content/extra.md:9: link to 'attention.md#scores' in raw HTML: the build rewrites Markdown links only, so the "
        "site would link a file it does not have; write it as a Markdown link, [text](attention.md#scores), or link "
        "the page's .html ('attention.html#scores')",
    ),
    "a raw HTML link beside a macro's table": (  # named at its own line, though the table came before it
        page('<div class="pair">\n{{ matrix("L0.attn.scores", head=0) }}\n<a href="nope.html">more</a>\n</div>\n'),
        "content/extra.md:9: link to 'nope.html': the site has no such file (a picture goes in templates/assets/; a "
        "page is linked by its .md file)",
    ),
    "out of memory": (  # it was 'MemoryError: ', and nothing after the colon
        page("Text.\n{{ range(10**15) | list }}\n"),
        "content/extra.md:8: out of memory: the page asks for more than the machine has",
    ),
    "a page too long to read": (  # a page of a billion characters was killed by the kernel, without a word
        page("Text.\n{{ 'x' * 40_000_000 }}\n"),
        "content/extra.md: the page comes to 40,000,007 characters, more than the 33,554,432 a page may have; show "
        "less of it (a table is linked, not written out)",
    ),
    "include": (  # it was "no loader for this environment specified"
        page("Text.\n{% include 'base.html' %}\n"),
        "content/extra.md:8: a page cannot include, import or extend a template: write the text on the page, or make "
        "it a fact (site_build/facts/) or a macro",
    ),
    "slug of the 404 page": (
        page("body").replace("order: 1\n", "order: 1\nslug: 404\n"),
        "content/extra.md:6: slug '404' is reserved for the generated 404 page; choose another",
    ),
    "slug naming a setting it cannot": (
        page("body").replace("order: 1\n", "order: 1\nslug: x-{seed}\n"),
        "content/extra.md:6: slug 'x-{seed}' names 'seed' in braces; a slug may name only {optimizer}",
    ),
    "a block no page can work through": (
        page("body").replace("order: 1\n", "order: 1\nblock: middle\n"),
        "content/extra.md:6: unknown block 'middle' (one of: first, last)",
    ),
    "a block page naming a block by its number": (
        page('Text\n\n{{ matrix("grad.L0.mlp.fc") }}\n').replace("order: 1\n", "order: 1\nblock: last\n"),
        "content/extra.md:10: record name 'grad.L0.mlp.fc' names block 0, but this page works through the last block "
        "(front matter 'block: last'): write 'grad.L{block}.mlp.fc'",
    ),
    "the page's block on a page without one": (
        page('Text\n\n{{ matrix("grad.L{block}.mlp.fc") }}\n'),
        "content/extra.md:9: 'L{block}' on a page without 'block:' in its front matter: add 'block: last' (or "
        "'first') to say which block it stands for",
    ),
    "slug of the comparison page": (
        page("body").replace("order: 1\n", "order: 1\nslug: compare\n"),
        "content/extra.md:6: slug 'compare' is reserved for the comparison page that build --compare generates; "
        "choose another",
    ),
}


@pytest.mark.parametrize("name", ["404.md", "sub/compare.md"])
def test_a_page_file_named_like_a_generated_page_is_refused(tmp_path, name):
    paths = make_site(tmp_path, {name: page("body")})
    slug = name.rsplit("/", 1)[-1].removesuffix(".md")
    lines = build_error(paths, tmp_path / "site")
    assert len(lines) == 1 and lines[0].startswith(f"content/{name}:1: slug '{slug}' is reserved for the ")
    assert lines[0].endswith("; choose another")


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_page_named_after_the_optimizer_is_written_linked_and_listed_under_its_name(tmp_path, optimizer):
    """`slug: 13-{optimizer}`: one page file, written as 13-adamw.html or 13-sgd.html as the config says; links to
    it (`opt.md`), the sidebar, the previous/next links and the search index follow."""
    paths = make_site(tmp_path, {"opt.md": page("The step.", "The optimizer step", order=2).replace(
        "order: 2\n", "order: 2\nslug: 13-{optimizer}\n"), "extra.md": page("See [the step](opt.md).")})
    config = tmp_path / "opt.yaml"
    config.write_text(SMALL.read_text() + f"optimizer:\n  name: {optimizer}\n  lr: 0.1\n", encoding="utf-8")
    out = tmp_path / "site"
    build_ok(paths, out, config)
    names = sorted(p.name for p in out.glob("13-*.html"))
    assert names == [f"13-{optimizer}.html"]
    extra = (out / "extra.html").read_text()
    assert f'href="13-{optimizer}.html"' in extra and f'<a href="13-{optimizer}.html">The optimizer step</a>' in extra
    assert 'rel="next"' in extra and "13-{" not in extra
    fragments = [gzip.decompress(f.read_bytes()).decode("utf-8", "replace")
                 for f in (out / "pagefind" / "fragment").glob("*.pf_fragment")]
    assert [f'"url":"/13-{optimizer}.html"' in f for f in fragments].count(True) == 1


def test_a_closed_callout_keeps_the_rest_of_the_page_outside(tmp_path):
    paths = make_site(tmp_path, {"extra.md": page("::: why Why?\nReason.\n:::\n\nAfter.\n")})
    build_ok(paths, tmp_path / "site")
    html = (tmp_path / "site" / "extra.html").read_text()
    assert re.search(r"Reason\.</p>\s*</aside>\s*<p>After\.</p>", html)


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_name_file_and_line(tmp_path, case):
    text, expected = ERROR_CASES[case]
    paths = make_site(tmp_path, {"extra.md": text})
    assert build_error(paths, tmp_path / "site") == [expected]
    assert not (tmp_path / "site").exists()


def test_links_to_the_sites_own_files_and_to_its_exercises_build(tmp_path):
    """A page may link to the site's assets, a page's .html, the trace, and to the Exercises section the build adds
    to its page (the anchors are checked once it is there)."""
    paths = make_site(tmp_path, {"extra.md": page(
        "{{ matrix('L0.attn.scores', head=0) }}\n\nSee [the script](assets/site.js), "
        "[attention](attention.html#scores), "
        "[the trace](trace.json?v=1), ![the style](./assets/style.css) and [the exercises](#exercises).\n",
        section="Forward pass", order=9)})
    out = tmp_path / "site"
    build_ok(paths, out)
    html = (out / "extra.html").read_text()
    assert 'id="exercises"' in html and 'href="#exercises"' in html and 'href="attention.html#scores"' in html


def test_a_page_whose_own_heading_is_exercises_keeps_it_and_gets_its_exercises_under_another_id(tmp_path):
    """A page's `#### Exercises` (an h4: not in the page's outline) has the id `exercises`; the section the build adds
    takes another, so the page builds and a link to #exercises reaches the page's own heading."""
    paths = make_site(tmp_path, {"extra.md": page(
        "{{ matrix('L0.attn.scores', head=0) }}\n\n#### Exercises\n\nTry [them](#exercises).\n",
        section="Forward pass", order=9)})
    out = tmp_path / "site"
    build_ok(paths, out)
    html = (out / "extra.html").read_text()
    assert html.count(' id="exercises"') == 1 and ' id="exercises-section"' in html


def test_raw_html_links_are_checked_as_markdown_links_are(tmp_path):
    """Raw HTML's links to the site's files, a page's .html and its anchors, and to other sites, build (and are
    written as they are); a macro's own links and raw HTML shown as code are not the page's; one broken link among
    them is the one problem."""
    body = ('Text {{ value("loss") }}, <a href="https://example.com">a site</a>, <a href="mailto:a@example.com">mail'
            '</a>, <a href="attention.html#scores">the scores</a> and <a href="#mine">mine</a>.\n\n{#mine}\n## Mine\n\n'
            '<div>\n<img src="assets/style.css" alt="">\n{{ matrix("L0.attn.scores", head=0) }}\n'
            '<img src="data:image/png;base64,AAAA" alt="">\n</div>\n\nCode: `<a href="nope.html">`.\n')
    paths = make_site(tmp_path, {"extra.md": page(body)})
    build_ok(paths, tmp_path / "site")
    html = (tmp_path / "site" / "extra.html").read_text()
    assert '<a href="attention.html#scores">the scores</a>' in html and '<img src="assets/style.css" alt="">' in html
    (paths.content / "extra.md").write_text(page(body + '\n<a href="#nowhere">x</a>\n'), encoding="utf-8")
    assert build_error(paths, tmp_path / "broken") == [
        "content/extra.md:20: link to unknown anchor '#nowhere' on this page"]


def test_the_html_a_macro_drew_on_the_page_is_not_checked_as_the_pages_own():
    """Markdown reads a page with its macros' HTML in place: only what the page wrote around it is the page's raw
    HTML (a macro's links are its own, and parsing the tables of every page cost 76 ms a build)."""
    text = ('<div class="drawn">\n<a href="drawn.html">x</a>\n<img src="drawn.png">\n</div>\n\n'
            'See <a href="mine.html">y</a>.\n')
    drawn = [(0, text.index("\n\n"))]
    anchors = render_markdown(make_parser(), text, MathSlots(), "p.md", 0, text, {}, drawn).anchors
    assert [(line, target) for line, target, _ in anchors] == [(6, "mine.html")]
    anchors = render_markdown(make_parser(), text, MathSlots(), "p.md", 0, text, {}).anchors
    assert sorted(target for _, target, _ in anchors) == ["drawn.html", "drawn.png", "mine.html"]


@pytest.mark.parametrize("end", ["\r\n", "\r"])
def test_a_page_whose_lines_end_in_cr_builds_as_one_ending_in_lf(tmp_path, end):
    """Windows' CR LF and old Macs' CR alone (which said "missing front matter": the file was one line)."""
    text = page("Text $x$ and {{ value('loss') }}.\n\n## A heading\n\nMore.\n")
    built = []
    for name, data in (("lf", text), ("cr", text.replace("\n", end))):
        paths = make_site(tmp_path / name, {"extra.md": data.encode()})
        build_ok(paths, tmp_path / name / "site")
        built.append((tmp_path / name / "site" / "extra.html").read_text())
    assert built[0] == built[1] and 'id="a-heading"' in built[0]


def test_a_name_chosen_twice_is_blamed_on_the_page_that_chose_it(tmp_path):
    """`slug: index` on another page: the line to fix is that `slug:`, not index.md, whose name is its file's (it was
    blamed, without a line, for the page listed second)."""
    paths = make_site(tmp_path, {"a/early.md": page("body", order=2).replace("order: 2\n", "order: 2\nslug: index\n")})
    assert build_error(paths, tmp_path / "site") == [
        "content/a/early.md:6: page name 'index' is already used by content/index.md"]


def test_a_stylesheet_the_layout_links_and_the_site_lacks_fails_the_build(tmp_path):
    """templates/assets/style.css removed: every page was written bare, and the build said nothing."""
    paths = make_site(tmp_path)
    templates = tmp_path / "templates"
    shutil.copytree(paths.templates, templates)
    (templates / "assets" / "style.css").unlink()
    lines = build_error(dataclasses.replace(paths, templates=templates), tmp_path / "site")
    assert lines == [f"{shown_path(templates)}: the layout links 'assets/style.css', which the site does not have: "
                     "put the file back in templates/assets/, or remove the link"]
    assert not (tmp_path / "site").exists()


def test_all_problems_are_reported_together(tmp_path):
    paths = make_site(tmp_path, {
        "a.md": page('{{ matrix("nope") }}', order=1),
        "b.md": "---\ntitle: b\n---\n",
    })
    lines = build_error(paths, tmp_path / "site")
    assert lines == [
        "content/a.md:7: unknown trace record 'nope'",
        "content/b.md:2: front matter is missing 'description'",
        "content/b.md:2: front matter is missing 'order'",
        "content/b.md:2: front matter is missing 'section'",
    ]


def test_a_link_to_a_page_the_build_refused_is_not_a_second_problem(tmp_path):
    """The refused page's own line says what to fix; "link to unknown page" beside it, from every page that links
    to it, sent the writer after links that are fine."""
    paths = make_site(tmp_path, {
        "a.md": page("See [b](sub/b.md), [again](b.md#top) and [c](c.md).", order=1),
        "sub/b.md": page("body", order=2).replace("order: 2\n", "order: 2\ntilte: x\n"),
    })
    assert build_error(paths, tmp_path / "site") == [
        "content/a.md:7: link to unknown page 'c.md'",
        "content/sub/b.md:6: unknown front matter key 'tilte' (known: title, description, section, order, slug, "
        "step, block)",
    ]


def test_hidden_files_are_not_pages(tmp_path):
    """An editor's lock file (Emacs: `.#x.md`, a link to nothing while the page has unsaved changes), macOS's `._x.md`
    beside a copied page, a hidden folder: none is a page, and none stops the build."""
    paths = make_site(tmp_path, {"._extra.md": b"\x00\x05\x16\x07\x00\x02Mac OS X\xff",
                                 ".old/extra.md": page("old", order=2)})
    (paths.content / ".#extra.md").symlink_to("someone@host.1234:1700000000")
    out = tmp_path / "site"
    build_ok(paths, out)
    assert sorted(p.name for p in out.glob("*.html")) == ["404.html", "attention.html", "index.html"]


def test_coverage_can_be_required(site, tmp_path):
    with pytest.raises(BuildError) as err:
        build(SMALL, tmp_path / "site", paths=site, require_coverage=True)
    assert str(err.value).startswith("content: records shown: ")
    assert "no page shows: wte, wpe" in str(err.value)


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys, monkeypatch):
    paths = make_site(tmp_path, {"extra.md": page('{{ value("los") }}\n')})
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--config", str(SMALL), "--out", str(tmp_path / "site"), "--content", str(paths.content),
                 "--templates", str(paths.templates), "--cache", str(paths.cache)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == "content/extra.md:7: unknown trace record 'los' (did you mean 'loss'?)\n"
    assert "Traceback" not in captured.out + captured.err


def test_cli_config_error_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: -3}\n")
    assert main(["build", "--config", str(bad), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml" in err and "d_model" in err


def test_failed_build_leaves_old_site(site, tmp_path):
    out = tmp_path / "site"
    build_ok(site, out)
    before = digest_tree(out)
    (site.content / "broken.md").write_text(page('{{ matrix("wte", head=0) }}'), encoding="utf-8")
    build_error(site, out)
    assert digest_tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "content", "site"]


KILL_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import SMALL, make_site
from site_build import write
from site_build.build import build
paths = make_site(Path({root!r}) / "inputs")
def stall(site, *rest):
    Path({marker!r}).write_text("writing")
    time.sleep(60)
write.swap_in = stall  # the new tree is complete; the old one is still in place
build(SMALL, Path({root!r}) / "site", paths=paths)
"""


def test_killed_build_leaves_old_site(site, tmp_path):
    out = tmp_path / "site"
    build_ok(site, out)
    before = digest_tree(out)
    marker = tmp_path / "marker"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), root=str(tmp_path), marker=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, "build ended before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert digest_tree(out) == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".site.build-")]
    assert leftovers, "the killed build should have been writing a temporary tree"
    build_ok(site, out)  # the next build succeeds and clears the leftover
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]


def test_search_index_lists_the_pages(site, tmp_path):
    out = tmp_path / "site"
    build_ok(site, out)
    fragments = list((out / "pagefind" / "fragment").glob("*.pf_fragment"))
    assert len(fragments) == 2
    words = set()
    for frag in fragments:
        words.add(gzip.decompress(frag.read_bytes()[:]).decode("utf-8", "replace"))
    assert any("Scores, the mask" in w or "Attention" in w for w in words)


def test_rebuild_reuses_unchanged_pages_and_matches_a_fresh_build(tmp_path, monkeypatch):
    """The dev server's page cache: an edit re-renders that page; the output equals a clean build."""
    import importlib
    import shutil

    jinja_module = importlib.import_module("site_build.render.jinja")

    paths = make_site(tmp_path, {"extra.md": page('{{ matrix("L0.attn.weights", head=0) }}\n\n$x^2$\n')})
    builder = Builder(paths)
    try:
        builder.build(SMALL, tmp_path / "a")
        extra = paths.content / "extra.md"
        extra.write_text(extra.read_text().replace("$x^2$", "$y^3$ and {{ value('loss') }}"))
        rendered = []
        real = jinja_module.render_jinja
        monkeypatch.setattr(jinja_module, "render_jinja",
                            lambda env, pg, *a: rendered.append(pg.source) or real(env, pg, *a))
        report = builder.build(SMALL, tmp_path / "a")
        assert rendered == ["content/extra.md"]  # the untouched pages came from the cache
    finally:
        builder.close()
    fresh = make_site(tmp_path / "fresh")
    (fresh.content / "extra.md").write_text(extra.read_text())
    build(SMALL, tmp_path / "b", paths=fresh)
    for d in ("a", "b"):
        shutil.rmtree(tmp_path / d / "pagefind")
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    assert "y^3" in (tmp_path / "a" / "extra.html").read_text() and report.shown >= 2


def test_the_compile_workers_give_the_code_jinja_would_generate(tmp_path):
    import marshal

    from site_build.pages import collect_pages
    from site_build.render.compile import Compiled, code_path, compile_page, content_environment

    paths = make_site(tmp_path, {f"p{i}.md": page(f"Page {i}: {{{{ value('loss') }}}}\n", order=i + 1)
                                 for i in range(5)})
    pages, problems = collect_pages(paths.content)
    assert not problems
    compiled = Compiled.start(pages)
    try:
        assert len(set(compiled.owner.values())) == 2
        env = content_environment()
        for p in pages:
            code = compiled.code(env, p)
            assert code_path(compiled.folder, p).is_file()  # it came from a worker
            assert marshal.dumps(code) == marshal.dumps(compile_page(env, p))
    finally:
        folder = compiled.folder
        compiled.close()
    assert not folder.exists()  # nothing is kept between builds


def test_pages_whose_paths_differ_only_by_a_slash_get_their_own_code(tmp_path):
    """`a/b.md` and `a~b.md`: each page's compiled code is its own (the worker's file was once named by the path with
    `/` made `~`, and the second page was built with the first one's body)."""
    pages_ = {f"p{i}.md": page(f"Page {i}\n", order=i + 1) for i in range(4)}
    pages_["a/b.md"] = page("SLASH-BODY\n", order=10).replace("order:", "slug: slash\norder:")
    pages_["a~b.md"] = page("TILDE-BODY\n", order=11).replace("order:", "slug: tilde\norder:")
    paths = make_site(tmp_path, pages_)
    build(SMALL, tmp_path / "site", paths=paths)
    slash, tilde = ((tmp_path / "site" / f"{slug}.html").read_text() for slug in ("slash", "tilde"))
    assert "SLASH-BODY" in slash and "TILDE-BODY" not in slash
    assert "TILDE-BODY" in tilde and "SLASH-BODY" not in tilde


def test_a_page_is_rendered_once_its_worker_wrote_it_or_ended_without_it(tmp_path):
    """A page waits until its code is written; a page its worker cannot compile (a syntax error) does not hold the
    build for ever: once that worker has ended, the build compiles the page itself and reports it."""
    from site_build.pages import collect_pages
    from site_build.render.compile import Compiled, code_path, content_environment

    bodies = {f"p{i}.md": page("{{ value('loss') }}\n" * 2000 + f"{i}\n", order=i + 1) for i in range(5)}
    bodies["p0.md"] = page("{% for %}\n", order=1)
    paths = make_site(tmp_path, bodies)
    pages, _ = collect_pages(paths.content)
    compiled = Compiled.start(pages)
    env = content_environment()
    try:
        for p in reversed(pages):  # the last page first: its worker still has the others to do
            broken = p.source.endswith("p0.md")
            if broken:
                with pytest.raises(jinja2.TemplateSyntaxError):  # compiled here, with Jinja's own error
                    compiled.code(env, p)
                assert compiled.owner[p.source] not in compiled.running  # waited until its worker ended
            else:
                compiled.code(env, p)
            assert code_path(compiled.folder, p).is_file() == (not broken)
    finally:
        compiled.close()
    assert any("p0.md:" in line and "template error" in line for line in build_error(paths, tmp_path / "site"))


def test_compile_workers_die_on_sigterm_even_under_the_builds_handler(tmp_path):
    """The CLI turns SIGTERM into KeyboardInterrupt; a worker must not inherit that (a Python handler races with
    a blocking call: the pool this replaced hung about one cold build in twelve), so it dies of the signal."""
    from site_build.pages import collect_pages
    from site_build.render.compile import Compiled

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    long_body = "{% for i in range(2) %}{{ value('loss') }} {{ i }}{% endfor %}\n" * 3000
    paths = make_site(tmp_path, {f"p{i}.md": page(long_body + f"{i}\n", order=i + 1) for i in range(8)})
    pages, _ = collect_pages(paths.content)
    compiled = Compiled.start(pages)
    workers = sorted(set(compiled.owner.values()))
    try:
        assert len(workers) == 2
        time.sleep(0.3)  # past the fork: each worker has set its own signal handling
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        for pid in workers:
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
            compiled.running.discard(pid)  # reaped here
    finally:
        signal.signal(signal.SIGTERM, previous)
        compiled.close()


def test_stopping_the_compile_workers_leaves_none_behind(tmp_path):
    from site_build.pages import collect_pages
    from site_build.render.compile import Compiled

    long_body = "{{ value('loss') }}\n" * 5000
    paths = make_site(tmp_path, {f"p{i}.md": page(long_body, order=i + 1) for i in range(6)})
    pages, _ = collect_pages(paths.content)
    compiled = Compiled.start(pages)
    workers = sorted(set(compiled.owner.values()))
    assert workers
    compiled.close()
    for pid in workers:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # killed and reaped: no zombie, no process


# -- paths in messages: as typed, or relative to the current directory --------------------------------
def test_content_outside_the_current_directory_is_named_as_typed(tmp_path, monkeypatch, capsys):
    make_site(tmp_path / "other", {"extra.md": page('{{ value("los") }}\n')})
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    out = tmp_path / "work" / "site"
    code = main(["build", "--config", str(SMALL), "--out", str(out), "--cache", str(tmp_path / "cache"),
                 "--content", "../other/content"])
    assert code == 2
    assert capsys.readouterr().err == "../other/content/extra.md:7: unknown trace record 'los' (did you mean 'loss'?)\n"


def test_content_under_the_current_directory_is_named_relative_to_it(tmp_path, monkeypatch, capsys):
    make_site(tmp_path / "deep" / "er", {"extra.md": page('{{ value("los") }}\n')})
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--config", str(SMALL), "--out", str(tmp_path / "site"), "--cache", str(tmp_path / "cache"),
                 "--content", str(tmp_path / "deep" / "er" / "content")])  # given absolute, shown relative
    assert code == 2
    assert capsys.readouterr().err.startswith("deep/er/content/extra.md:7: unknown trace record 'los'")


def test_shown_path_rule(tmp_path, monkeypatch):
    from site_build.errors import shown_path

    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    assert shown_path(tmp_path / "a" / "b" / "x.md") == "b/x.md"  # under the current directory: relative to it
    assert shown_path("b/../b/x.md") == "b/x.md"
    assert shown_path("../c/x.md") == "../c/x.md"  # outside: as typed
    assert shown_path(tmp_path / "c" / "x.md") == (tmp_path / "c" / "x.md").as_posix()  # absolute stays absolute
    assert shown_path(tmp_path / "a") == "."


def test_templates_outside_the_current_directory_are_named_as_typed(tmp_path, monkeypatch, capsys):
    import shutil

    make_site(tmp_path / "site-src")
    shutil.copytree(ROOT / "templates", tmp_path / "elsewhere")
    page_html = tmp_path / "elsewhere" / "page.html"
    page_html.write_text(page_html.read_text().replace("<h1>{{ page.title }}</h1>", "<h1>{{ no_such_name }}</h1>"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    code = main(["build", "--config", str(SMALL), "--out", str(tmp_path / "work" / "site"),
                 "--cache", str(tmp_path / "cache"), "--content", str(tmp_path / "site-src" / "content"),
                 "--templates", "../elsewhere"])
    assert code == 2
    assert capsys.readouterr().err == "../elsewhere/page.html:7: undefined name: 'no_such_name' is undefined\n"


def test_a_big_run_is_kept_with_its_values_and_read_back(site, tmp_path, monkeypatch):
    """A run big enough to write its values to a file writes them into the cache (runs/<key>.bin, never copied):
    the next build of the same config, even in a fresh builder, reads it instead of running the engine, and makes
    the same site; a run of another config replaces it (one big run is kept)."""
    import engine.budget
    import engine.trace
    import site_build.session as session_module

    for module in (engine.budget, engine.trace):
        monkeypatch.setattr(module, "INLINE_MAX_VALUES", 1000)  # the small fixture run counts as big
    runs = []
    real_run = session_module.engine.run
    monkeypatch.setattr(session_module.engine, "run", lambda *a, **k: runs.append(1) or real_run(*a, **k))
    build_ok(site, tmp_path / "a")
    folder = site.cache / "runs"
    kept = sorted(p.name.split(".", 1)[1] for p in folder.iterdir())
    assert kept == ["bin", "checks.pickle", "json"], kept
    values = next(folder.glob("*.bin"))
    assert values.stat().st_size == 8 * sum(r.value.size for r in engine.load_trace(values.with_suffix(".json")))
    build_ok(site, tmp_path / "b")  # a fresh Builder: only the disk cache is shared
    assert len(runs) == 1, "the second build must read the kept run"
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    build = Builder(site)
    try:
        build.build(SMALL, tmp_path / "c", seed=11)
    finally:
        build.close()
    assert len(runs) == 2
    for _ in range(100):  # the old run is deleted in the background
        if len(list(folder.glob("*.bin"))) == 1:
            break
        time.sleep(0.05)
    assert [p.stem for p in folder.glob("*.bin")] == [p.stem for p in folder.glob("*.json")] and \
        len(list(folder.glob("*.bin"))) == 1 and values.stem not in [p.stem for p in folder.glob("*.bin")]


def test_a_failed_build_leaves_no_half_kept_big_run(tmp_path, monkeypatch):
    """A build that fails after its big run was made (here: a page names a record that does not exist) keeps the
    run whole if its checks had passed, or removes its values; never a values file without its records."""
    import engine.budget
    import engine.trace

    for module in (engine.budget, engine.trace):
        monkeypatch.setattr(module, "INLINE_MAX_VALUES", 1000)
    paths = make_site(tmp_path, {"extra.md": page('{{ value("no_such_record") }}\n')})
    build_error(paths, tmp_path / "site")
    folder = paths.cache / "runs"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert not [n for n in names if ".tmp" in n], names
    assert {n.split(".", 1)[0] for n in names if n.endswith(".bin")} == \
        {n.split(".", 1)[0] for n in names if n.endswith(".json")}, names


# -- the KaTeX worker of a cold build starts before the build has loaded ------------------------------------------
def test_a_cold_cli_build_takes_over_the_worker_it_started_early(tmp_path, monkeypatch):
    """`handstep build` with no formula cache starts node before it imports the build (on a core that is idle
    then); the build's renderer takes that worker over and starts no other; with a formula cache, none starts early."""
    from site_build.render import katex

    started = []
    real = katex._Worker.__init__

    def spy(self, root, read=True):
        started.append(read)
        real(self, root, read)

    monkeypatch.setattr(katex._Worker, "__init__", spy)
    paths = make_site(tmp_path)
    args = ["build", "--config", str(SMALL), "--content", str(paths.content), "--cache", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert started == [False]  # one worker: the early one, taken over
    (paths.content / "index.md").write_text((paths.content / "index.md").read_text() + "\nMore: $y^4$.\n")
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # the cache has formulas: a worker only for $y^4$
    assert started == [False, True]


def test_a_worker_started_early_starts_no_thread_and_ends_when_no_build_takes_it(tmp_path, capsys, monkeypatch):
    """The build forks its compile workers after the early start, and a fork copies only the calling thread: the
    early worker reads nothing until it is taken over. A build that fails first (a bad config) leaves no node."""
    import threading

    from site_build.render import katex

    before = threading.active_count()
    worker = katex.start_early(ROOT, tmp_path / "no-cache" / katex.CACHE_FILE)
    try:
        assert worker is not None and threading.active_count() == before and worker.alive()
    finally:
        worker.close()
    assert worker.proc.poll() is not None

    procs = []
    real = katex.start_early

    def start_early(root, cache_file):
        worker = real(root, cache_file)
        procs.append(worker.proc)
        return worker

    monkeypatch.setattr(katex, "start_early", start_early)
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: many\n")
    assert main(["build", "--config", str(bad), "--out", str(tmp_path / "s"), "--cache", str(tmp_path / "c")]) == 2
    assert "seed" in capsys.readouterr().err
    assert procs and all(p.poll() is not None for p in procs)


def test_formulas_reach_node_in_batches_without_waiting_for_the_end(tmp_path):
    """Formulas are written to node's pipe unflushed; every FLUSH_EVERY of them, and at the end of each page, they
    are handed over, so node typesets while the build goes on; render_all hands over the rest."""
    from site_build.render.katex import FLUSH_EVERY, KatexRenderer

    with KatexRenderer(ROOT) as katex:
        for i in range(FLUSH_EVERY):
            katex.prefetch(f"x^{{{i}}}", False)
        (worker,) = katex._workers
        deadline = time.monotonic() + 20
        while len(worker.replies) < FLUSH_EVERY and time.monotonic() < deadline:  # nobody asked for them yet
            time.sleep(0.01)
        assert len(worker.replies) == FLUSH_EVERY
        katex.prefetch("y^2", True)  # one more: it waits in the pipe's buffer ...
        time.sleep(0.3)
        assert len(worker.replies) == FLUSH_EVERY
        result = katex.render_all({("y^2", True), ("x^{0}", False)})  # ... until render_all hands it over
        assert result.rendered == 2 and not result.errors


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_swap_holds_an_interrupt_while_another_thread_runs(sig):
    """The site is swapped in under a hold of Ctrl-C and SIGTERM, which come once it is done. A signal mask of the
    main thread held nothing once another thread ran (KaTeX's reader, the server's): the kernel gave the signal to
    that thread, and Python raised it in the main thread all the same, in the middle of the swap."""
    from site_build import write
    from site_build.cli import _terminate

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    previous = signal.signal(signal.SIGTERM, _terminate)  # as the command sets it
    try:
        release = write._hold_signals()
        try:
            os.kill(os.getpid(), sig)
            time.sleep(0.3)  # Python would have run the handler by now
        except KeyboardInterrupt:
            release()
            pytest.fail("the signal came through the hold")
        with pytest.raises(KeyboardInterrupt):
            release()
            time.sleep(0.3)
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        other.join()


def test_an_interrupt_while_pagefind_runs_leaves_no_folder_behind(tmp_path, monkeypatch):
    """SIGTERM (sent to the build alone, so Pagefind goes on) while the build waits for the search index: the
    temporary folder goes, and Pagefind does not write it back afterwards (it is stopped first)."""
    import signal

    from site_build import write

    slow = ("import os, sys, time; time.sleep(1.0); os.makedirs(sys.argv[1], exist_ok=True); "
            "open(os.path.join(sys.argv[1], 'pagefind.js'), 'w').close()")
    monkeypatch.setattr(write, "pagefind_command", lambda site, output: [sys.executable, "-c", slow, str(output)])
    out = tmp_path / "site"

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)  # while the build waits for the indexer
    try:
        with pytest.raises(KeyboardInterrupt):
            write.write_site(out, {"index.html": "<p>x</p>"}, {"index.html": "<p>x</p>"}, lambda name: None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    time.sleep(1.5)  # past the moment the indexer would have written
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_formula_cache_is_a_miss_once_the_code_that_typesets_changed(tmp_path, monkeypatch):
    """katex.json is keyed by the code that typesets, not KaTeX's version alone: an edit of handstep's
    katex_server.js (or of the KaTeX file node loads) types every formula again."""
    from site_build.render import katex as katex_module

    cache = tmp_path / "katex.json"

    def typeset() -> int:
        with katex_module.KatexRenderer(ROOT, cache) as katex:
            result = katex.render_all({("a^2", False)})
            katex.save_cache()
        assert not result.errors
        return result.rendered

    assert typeset() == 1 and typeset() == 0  # kept, then read back
    edited = tmp_path / "katex_server.js"
    edited.write_text(katex_module.SERVER_JS.read_text() + "// an edit\n")
    monkeypatch.setattr(katex_module, "SERVER_JS", edited)
    assert typeset() == 1


def test_a_katex_worker_that_died_between_builds_is_replaced(tmp_path):
    """The dev server keeps its node worker between builds; if node has died meanwhile, the next formula starts
    another rather than being lost."""
    from site_build.render.katex import KatexRenderer

    with KatexRenderer(ROOT) as katex:
        assert katex.render_all({("a^2", False)}).rendered == 1
        (first,) = katex._workers
        first.proc.kill()
        first.proc.wait()
        deadline = time.monotonic() + 20
        while not first.dead and time.monotonic() < deadline:  # its reader sees the pipe close
            time.sleep(0.01)
        result = katex.render_all({("b^2", False)})
        assert result.rendered == 1 and not result.errors and katex._workers[0] is not first


@pytest.mark.parametrize("flag, example", [("--out", "--out site"), ("--cache", "--cache .cache")])
def test_a_file_given_as_a_folder_is_refused_with_an_example_of_its_own_flag(tmp_path, capsys, flag, example):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    folders = {"--out": str(tmp_path / "site"), "--cache": str(tmp_path / "cache"), flag: str(a_file)}
    assert main(["build", "--config", str(SMALL), *(x for f, d in folders.items() for x in (f, d))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{flag} ") and f"is a file, not a folder; give a folder of its own, e.g. {example}" in err
    assert a_file.read_text() == "mine\n"


def test_a_page_named_for_an_architecture_is_in_that_site_only_and_takes_its_namesakes_place(tmp_path):
    """`NAME.llama.md` replaces `NAME.md` in a llama site (same file name, so links reach it) and is left out of a
    GPT-2 site; `NAME.gpt2.md` the other way round; a page named for no architecture is in both."""
    from site_build.pages import collect_pages

    paths = make_site(tmp_path, {
        "norm.md": page("LayerNorm, see [both](both.md)\n", title="LayerNorm", order=1),
        "norm.llama.md": page("RMSNorm, see [both](both.md)\n", title="RMSNorm", order=1),
        "rope.llama.md": page("Rotary\n", title="Rotary", order=2),
        "positions.gpt2.md": page("A table\n", title="Positions", order=2),
        "both.md": page("See [the norm](norm.md)\n", title="Both", order=3),
    })
    for arch, titles in (("gpt2", {"LayerNorm", "Positions", "Both"}), ("llama", {"RMSNorm", "Rotary", "Both"})):
        pages, problems = collect_pages(paths.content, {"arch": arch})
        assert not problems
        mine = {p.title: p for p in pages if p.title in {"LayerNorm", "RMSNorm", "Rotary", "Positions", "Both"}}
        assert set(mine) == titles
        norm = mine["RMSNorm" if arch == "llama" else "LayerNorm"]
        assert (norm.rel, norm.url) == ("norm.md", "norm.html")  # the page a link to norm.md reaches
    assert {p.url for p in collect_pages(paths.content, {"arch": "llama"})[0]} >= {"rope.html"}


# -- no module-level mutable state ----------------------------------------------------------------------------------
def _module_state() -> dict[str, tuple]:
    """Every dict, list, set or bytearray held by a module of site_build, by its contents' shape (its length and,
    for a dict or set, its keys)."""
    import importlib
    import pkgutil

    import site_build

    for info in pkgutil.walk_packages(site_build.__path__, "site_build."):
        importlib.import_module(info.name)  # what a build would import fills the registries now, not during it
    state = {}
    for name, module in sorted(sys.modules.items()):
        if name == "site_build" or name.startswith("site_build."):
            for attr, value in sorted(vars(module).items()):
                if isinstance(value, dict | set | list | bytearray):
                    keys = tuple(sorted(map(repr, value))) if isinstance(value, dict | set) else ()
                    state[f"{name}.{attr}"] = (id(value), len(value), keys)
    return state


def test_a_build_changes_no_module_level_state_of_the_builder(tmp_path):
    """A page renders to a value: a whole build through the command (every real page, the exercises, notebook and
    downloads) leaves every container of every site_build module as it found it, so nothing is carried from one
    build to the next but the caches on disk."""
    before = _module_state()
    assert any(name.endswith(".MACROS") for name in before)  # the measure sees the registries
    assert main(["build", "--config", str(SMALL), "--out", str(tmp_path / "site"), "--cache", str(tmp_path / "c")]) == 0
    after = _module_state()
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}


def test_a_katex_reply_cut_short_ends_the_reader_without_a_traceback(capfd):
    """node killed mid-reply (a SIGTERM to the whole process group, as `serve` gets one): the reader thread finds a
    line that is not JSON, or a reply nothing waits for, and marks the worker dead; it prints no traceback."""
    import io
    import threading
    from collections import deque
    from types import SimpleNamespace

    from site_build.render import katex

    for out in ('{"version": 1}\n{"html": "<span', '{"version": 1}\n{"html": "x"}\n'):
        worker = katex._Worker.__new__(katex._Worker)
        worker.proc = SimpleNamespace(stdout=io.StringIO(out))
        worker.pending, worker.replies, worker.cond, worker.dead = deque(), {}, threading.Condition(), False
        reader = threading.Thread(target=worker._read)
        reader.start()
        reader.join(timeout=10)
        assert worker.dead and not reader.is_alive()
    assert "Traceback" not in capfd.readouterr().err
