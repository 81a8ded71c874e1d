"""The real pages: no typed numbers, 100% coverage on the default config, and clean builds of varied configs."""

import inspect
import re

import pytest
import yaml

import engine
from engine.config import config_from_dict
from site_build.build import ROOT, Paths, build
from site_build.facts import facts_of, topics
from site_build.pages import collect_pages

CONTENT = ROOT / "content"
DECIMAL = re.compile(r"(?<![\w.%{:])[-−]?\d+\.\d+")
WARMUP = re.compile(r"^\s*:::\s*warmup\b")  # a warm-up: made-up numbers worked by hand, typed on purpose
CLOSE = re.compile(r"^\s*:::\s*$")
STORY_SECTIONS = ("forward", "backward", "optimization")


def warmups(text: str) -> list[list[str]]:
    """The lines of each `::: warmup` block of a page."""
    blocks: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        if not inside and WARMUP.match(line):
            inside = True
            blocks.append([])
        elif inside and CLOSE.match(line):
            inside = False
        elif inside:
            blocks[-1].append(line)
    return blocks


def prose_lines(text: str):
    """(line number, text) of every line outside fenced code blocks, warm-up blocks and Jinja tags."""
    fenced = warmup = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced and (WARMUP.match(line) or warmup):
            warmup = not CLOSE.match(line)
            continue
        if not fenced:
            yield n, re.sub(r"{%.*?%}|{{.*?}}|{##.*?##}|`[^`]*`", "", line)


def test_no_decimal_is_typed_into_content():
    found = [f"{p.relative_to(ROOT)}:{n}: {m.group()}" for p in sorted(CONTENT.rglob("*.md"))
             for n, line in prose_lines(p.read_text(encoding="utf-8")) for m in DECIMAL.finditer(line)]
    assert not found, "numbers on pages must come from the trace through macros:\n" + "\n".join(found)


def test_the_decimal_scan_can_fail(tmp_path):
    bad = "The loss is 2.66 here.\n```\nx = 2.66  # fine in code\n```\n"
    assert [m.group() for _, line in prose_lines(bad) for m in DECIMAL.finditer(line)] == ["2.66"]
    toy = "::: warmup A softmax of two numbers\n$e^{2.0}$ gives 0.73.\n:::\nAfter it, 0.41 is typed.\n"
    assert [m.group() for _, line in prose_lines(toy) for m in DECIMAL.finditer(line)] == ["0.41"]


def test_a_warm_up_works_made_up_numbers_only():
    """A warm-up's numbers are typed because they are examples, not the run's: so no Jinja inside one (nothing of
    the trace can hide there from the decimal scan), and each page of the forward, backward and optimization
    sections opens with exactly one, before its first section heading."""
    for page in sorted(CONTENT.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        blocks = warmups(text)
        for block in blocks:
            assert not any(re.search(r"{{|{%|{##", line) for line in block), f"{page.name}: Jinja in a warm-up"
            long = [m.group() for line in block for m in re.finditer(r"\d\.\d{3,}", line)]
            assert not long, f"{page.name}: a warm-up's made-up numbers keep two decimals at most, not {long}"
        if page.parent.name in STORY_SECTIONS:
            assert len(blocks) == 1, f"{page.name}: {len(blocks)} warm-ups"
            body = text.split("\n---\n", 1)[1]
            assert not re.search(r"^## ", body[:body.index("::: warmup")], re.M), f"{page.name}: warm-up too late"
    assert warmups("x\n::: warmup Toy\n1.5 + 2\n:::\ny\n") == [["1.5 + 2"]]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("sites")


@pytest.fixture(scope="module")
def default_site(out):
    report = build(ROOT / "configs/default.yaml", out / "default", require_coverage=True,
                   paths=Paths(cache=out / "cache"))
    return report


def test_default_site_shows_every_record(out, default_site):
    report = default_site
    assert report.shown == report.records and report.missing == []
    assert report.pages >= 20
    html = "".join(p.read_text() for p in (out / "default").glob("*.html"))
    calc_ops = set(re.findall(r'<div [^>]*class="calc-step" data-record="([^"]+)"', html))
    assert calc_ops, "no calc() blocks on the site"
    import engine

    trace = engine.run(engine.load_config(str(ROOT / "configs/default.yaml")))
    ops = {r.op for r in trace}
    with_calc = {trace.record(name).op for name in calc_ops}
    assert ops - with_calc == set(), f"op kinds with no calc() expansion anywhere: {sorted(ops - with_calc)}"


def test_the_default_site_shows_the_shipped_pytorch_figures(out, default_site):
    """From its first build, without torch: configs/verification/default.json holds PyTorch's numbers for this trace
    (a test in tests/engine/test_shipped_verification.py fails when they are not), so every checked tensor carries its
    figure."""
    import json

    shipped = json.loads((ROOT / "configs" / "verification" / "default.json").read_text(encoding="utf-8"))
    pages = {p.name: p.read_text(encoding="utf-8") for p in site_pages(out / "default")}
    figures = [m for html in pages.values() for m in re.findall(r"✓ PyTorch&#58; max &#124;Δ&#124; ([0-9.e+-]+)", html)]
    assert len(figures) >= 20 and max(float(f) for f in figures) <= 1e-9
    assert not [name for name, html in pages.items() if "not compared" in html or "✗ PyTorch" in html]
    summary = re.sub(r"<[^>]+>", "", pages["index.html"])
    assert (f"{len(shipped['reference'])} tensors of this trace" in summary
            and "make verify wrote PyTorch's numbers for them to configs/verification/default.json, which ships with "
            "handstep, and this build worked out each figure from those numbers and its own trace" in summary), summary


def test_a_page_shows_its_first_table_and_folds_the_rest(out, default_site):
    """Issue 25: a page reads as its story, one worked table, and the rest one click away. On every page of the
    walkthrough, the first table stands open and every later one (outside the other blocks' fold-outs) sits in a
    closed <details class="fold"> whose summary names its record."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.found: list[tuple[str, str]] = []  # (record, the nearest <details> around it: its class or "")

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "details":
                self.stack.append(a.get("class") or "details")
            table = tag == "table" and "matrix" in (a.get("class") or "") and a.get("data-record")
            if table or (tag == "figure" and "big" in (a.get("class") or "").split()):  # a heatmap stands for one
                around = [c for c in self.stack if c in ("fold", "other-block")]
                self.found.append((a.get("data-record") or "a heatmap", around[0] if around else ""))

        def handle_endtag(self, tag):
            if tag == "details" and self.stack:
                self.stack.pop()

    folded_pages = 0
    for page in (out / "default").glob("*.html"):
        reader = Tables()
        reader.feed(page.read_text(encoding="utf-8"))
        tables = [(rec, where) for rec, where in reader.found if where != "other-block"]
        if not tables:
            continue
        assert tables[0][1] == "", f"{page.name}: its first table {tables[0][0]} is folded"
        assert all(where == "fold" for _, where in tables[1:]), f"{page.name}: a table after the first is not folded"
        folded_pages += len(tables) > 1
    assert folded_pages >= 10


def site_pages(site):
    """Every HTML page of a built site (the table pages in numbers/ too), without Pagefind's own files."""
    return sorted(p for p in site.rglob("*.html") if "pagefind" not in p.relative_to(site).parts)


def table_links(site) -> set[tuple[str, str]]:
    """(page, href) of every wide matrix's link to its table page."""
    return {(page.name, href) for page in site.glob("*.html")
            for href in re.findall(r'<p class="numbers"><a href="([^"]+)">', page.read_text(encoding="utf-8"))}


def test_every_page_of_the_default_site_stays_under_40_kb_gzip(out, default_site):
    import gzip

    pages = site_pages(out / "default")
    assert any(p.parent.name == "numbers" for p in pages), "the wide matrices' table pages are missing"
    sizes = {p.relative_to(out / "default").as_posix(): len(gzip.compress(p.read_bytes(), compresslevel=9))
             for p in pages}
    assert not {rel: n for rel, n in sizes.items() if n > 40_000}


def test_a_wide_matrix_links_a_table_page_whose_links_resolve(out, default_site):
    site = out / "default"
    links = table_links(site)
    assert ("06-feedforward.html", "numbers/L0.mlp.c_fc.weight.html") in links
    assert {href for _, href in links} == {p.relative_to(site).as_posix() for p in (site / "numbers").glob("*.html")}
    for page, href in sorted(links):
        table = site / href
        text = table.read_text(encoding="utf-8")
        assert f'<a href="../{page}">' in text, f"{href} does not link back to {page}"
        targets = re.findall(r'\s(?:href|src|data-explain)="([^"#]+)', text)
        assert "../assets/style.css" in targets and f"../assets/data/{page[:-5]}.js" in targets
        broken = [t for t in targets if not t.startswith("data:") and not (table.parent / t).is_file()]
        assert not broken, f"{href}: {broken}"


def matrix_cells(text: str) -> tuple[str, tuple[int, ...], dict[tuple[int, ...], str]]:
    """The record, the fixed indices and {index in the view: shown text} of the one matrix table of a page."""
    import html as html_lib

    name, at, inner = re.search(r'<table class="matrix[^"]*" data-record="([^"]+)" data-at="([^"]*)">(.*?)</table>',
                                text, re.S).groups()
    head, body = inner.split("</thead>")
    cols = re.findall(r'<th scope="col"(?: data-j="(\d+)")?>', head)  # the unit axis of a vertical vector: no j
    cells = {}
    for i, row in re.findall(r'<tr(?: data-i="(\d+)")?[^>]*>(.*?)</tr>', body):
        for j, cell in zip(cols, re.findall(r"<td[^>]*>([^<]*)</td>", row), strict=True):
            cells[tuple(int(k) for k in (i, j) if k)] = html_lib.unescape(cell)
    return html_lib.unescape(name), tuple(int(k) for k in at.split(",") if k), cells


def test_a_table_page_shows_every_value_of_its_tensor(out, default_site):
    import numpy as np

    from engine import load_trace
    from site_build.format import format_number
    from site_build.macros.scale import WIDE_COLS

    trace = load_trace(out / "default" / "trace.json")
    tables = sorted((out / "default" / "numbers").glob("*.html"))
    assert len(tables) >= 3
    for path in tables:
        name, at, cells = matrix_cells(path.read_text(encoding="utf-8"))
        values = np.asarray(trace[name])[at]
        assert values.size > WIDE_COLS and path.name.startswith(name + ("~" if at else ".html"))
        assert cells == {idx: format_number(values[idx]) for idx in np.ndindex(values.shape)}, path.name


VARIED = {
    "other-seed-and-text": "seed: 3\ndata:\n  texts: ['a dog ran on a mat']\n",
    "three-heads-two-layers": "model:\n  d_model: 24\n  n_heads: 3\n  n_layers: 2\n",
    "batch-of-two": "data:\n  texts: ['the cat sat', 'the dog ran on the mat']\n",
    "adam": "optimizer:\n  name: adam\n  weight_decay: 0.1\n",
    "sgd-momentum": "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\n",
}


@pytest.mark.parametrize("name", VARIED)
def test_varied_configs_build_and_the_words_follow(out, name):
    cfg = out / f"{name}.yaml"
    cfg.write_text(VARIED[name])
    build(cfg, out / name, paths=Paths(cache=out / "cache"))
    pages = {p.name: p.read_text() for p in (out / name).glob("*.html")}
    text = " ".join(pages.values())
    if name == "three-heads-two-layers":
        assert "both heads" not in text.lower()
    if name in ("adam", "sgd-momentum"):
        optimizer = "adam" if name == "adam" else "sgd"
        page = pages[f"13-{optimizer}.html"]  # the optimizer page is named after the optimizer, and linked so
        assert "13-adamw.html" not in pages and "13-adamw.html" not in text
        assert f'href="13-{optimizer}.html"' in pages["14-summary.html"]
        assert ("torch.optim.Adam" if name == "adam" else "torch.optim.SGD") in text
        assert ("SGD" if name == "sgd-momentum" else "Adam") in page


def test_the_python_snippets_on_the_reference_page_run(out, default_site):
    """The loader and the PyTorch check shown to readers run against the site's own trace.json."""
    import html as html_lib
    import subprocess
    import sys

    page = (out / "default" / "trace-format.html").read_text()
    blocks = [html_lib.unescape(b) for b in re.findall(r'<code class="language-python">(.*?)</code>', page, re.S)]
    runnable = [b for b in blocks if "trace.bin" not in b]  # the big-trace reader needs a trace past 2M values
    assert len(runnable) >= 2 and any("torch.optim" in b for b in runnable)
    for code in runnable:
        p = subprocess.run([sys.executable, "-c", code], cwd=out / "default", capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
    assert "max |torch - handstep| = " in p.stdout
    diffs = [float(x) for x in re.findall(r"= (\S+)$", p.stdout, re.M)]
    assert diffs and max(diffs) < 1e-9


def test_the_defaults_shown_on_the_config_page_are_the_default_file(out, default_site):
    import html as html_lib

    import yaml

    page = (out / "default" / "config.html").read_text()
    blocks = [yaml.safe_load(html_lib.unescape(b))
              for b in re.findall(r'<code class="language-yaml">(.*?)</code>', page, re.S)]
    assert yaml.safe_load((ROOT / "configs/default.yaml").read_text()) in blocks


def test_the_search_index_is_the_one_pagefind_makes_of_the_finished_pages(out, default_site, tmp_path):
    """The build gives Pagefind its pages without the typeset math (the index leaves math out, and it is most of a
    page's bytes); the index must be exactly the one Pagefind makes of the pages as shipped."""
    from site_build.write import start_pagefind, wait_pagefind

    site = out / "default"
    shipped = tmp_path / "shipped"
    for page in site_pages(site):
        target = shipped / page.relative_to(site)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(page.read_bytes())
    assert 'class="katex"' in (shipped / "04-attention.html").read_text(encoding="utf-8")
    wait_pagefind(start_pagefind(shipped, output=tmp_path / "index"), tmp_path / "index")
    built = {p.relative_to(site / "pagefind"): p.read_bytes() for p in (site / "pagefind").rglob("*") if p.is_file()}
    made = {p.relative_to(tmp_path / "index"): p.read_bytes() for p in (tmp_path / "index").rglob("*") if p.is_file()}
    assert sorted(built) == sorted(made) and built == made
    assert not (site / ".search-input").exists()


def test_the_notebook_reads_the_same_blocks_the_sites_markdown_found(out, default_site, tmp_path):
    """The notebook's prose takes each page's HTML blocks from the site's own Markdown pass, kept in its PageResult:
    a build whose pages all come from the page cache makes the same notebook, byte for byte."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(out / "cache", cache)
    build(ROOT / "configs/default.yaml", tmp_path / "again", paths=Paths(cache=cache))
    made = (out / "default" / "notebook.ipynb").read_bytes()
    assert "On the site: the table of" in made.decode("utf-8")
    assert (tmp_path / "again" / "notebook.ipynb").read_bytes() == made


def test_a_rebuild_after_one_edit_renders_only_that_page_and_matches_a_fresh_build(tmp_path, monkeypatch):
    """The dev server keeps the rendered pages between builds, and what is made of each page alone: after an edit to
    one page's prose only that page is rendered again and only its exercises worked out again (the others come back
    from the page cache, their inputs unchanged), and the site is byte for byte the one a fresh build makes."""
    import shutil

    from site_build import exercises
    from site_build.build import Builder
    from site_build.render import jinja

    content = tmp_path / "content"
    shutil.copytree(CONTENT, content)
    config = ROOT / "configs/default.yaml"
    builder = Builder(Paths(content=content, cache=tmp_path / "cache"))
    made = []
    real = jinja.render_page
    monkeypatch.setattr(jinja, "render_page", lambda page, *a, **k: made.append(page.source) or real(page, *a, **k))
    asked = []
    real_exercises = exercises.page_exercises_of
    monkeypatch.setattr(exercises, "page_exercises_of",
                        lambda run, page, *a: asked.append(page.source) or real_exercises(run, page, *a))
    try:
        builder.build(config, tmp_path / "served")
        first, asked_first = len(made), len(asked)
        page = content / "forward" / "02-layernorm.md"
        page.write_text(page.read_text(encoding="utf-8") + "\nOne more sentence of prose.\n", encoding="utf-8")
        builder.build(config, tmp_path / "served")
    finally:
        builder.close()
    assert first >= 15 and made[first:] == [s for s in made[:first] if s.endswith("02-layernorm.md")]
    assert asked_first >= 15 and asked[asked_first:] == made[first:]
    build(config, tmp_path / "fresh", paths=Paths(content=content, cache=tmp_path / "fresh-cache"))

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    served, fresh = files(tmp_path / "served"), files(tmp_path / "fresh")
    assert sorted(served) == sorted(fresh)
    assert [name for name in served if served[name] != fresh[name]] == []
    assert "One more sentence of prose." in served["02-layernorm.html"].decode("utf-8")


class _Reads:
    """A trace that notes the records a fact reads (everything else is the trace's own)."""

    def __init__(self, trace) -> None:
        self._trace, self.read = trace, set()

    def __getitem__(self, name):
        self.read.add(name)
        return self._trace[name]

    def __contains__(self, name) -> bool:
        return name in self._trace

    def record(self, name):
        self.read.add(name)
        return self._trace.record(name)

    def __getattr__(self, name):
        return getattr(self._trace, name)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_pages_that_work_through_the_last_block_state_facts_of_that_block(arch):
    """A page that says `block: last` shows the last block's records (its `L{block}`); every fact it states reads no
    other block's records, and every fact that reads the last block's (the backward facts: grads.walked) is stated
    only on such a page. With three blocks a fact left on block 0 would show here."""
    base = yaml.safe_load((ROOT / "configs" / "llama.yaml").read_text(encoding="utf-8")) if arch == "llama" else {}
    trace = engine.run(config_from_dict({**base, "model": {**base.get("model", {}), "n_layers": 3},
                                         "train_steps": 0}))
    block = re.compile(r"(?:^|\.)L(\d+)\.")
    reads: dict[str, set[int]] = {}  # fact -> the blocks whose records it reads
    inside: set[str] = set()  # the facts that read inside the last block (not only the gradient ln_f hands it)
    for topic, module in topics().items():
        for name, fn in facts_of(module).items():
            if len(inspect.signature(fn).parameters) > 1:
                continue
            probe = _Reads(trace)
            try:
                fn(probe)
            except Exception:  # noqa: BLE001 - a fact for the other architecture
                continue
            reads[f"{topic}.{name}"] = {int(m.group(1)) for r in probe.read if (m := block.search(r))}
            if probe.read - {"grad.L2.resid_2"} & {r for r in probe.read if ".L2." in f".{r}"}:
                inside.add(f"{topic}.{name}")
    walked = {fact for fact in inside if reads[fact] == {2}}  # the backward facts: grads.walked
    assert {"dffn.unit", "dattn.above"} <= walked or {"llama_ffn.back_unit", "llama_bwd.path_norms"} <= walked
    pages, problems = collect_pages(CONTENT, {"arch": arch})
    assert not problems
    wrong = []
    for page in pages:
        used = {f"{t}.{n}" for t, n in re.findall(r"\b([a-z_]+)\.([a-z_]+)\b", page.body) if f"{t}.{n}" in reads}
        if page.block:
            wrong += [f"{page.source}: {fact} reads block {sorted(reads[fact] - {2})}" for fact in sorted(used)
                      if reads[fact] - {2}]
        else:
            wrong += [f"{page.source}: {fact} reads the last block, but the page has no 'block: last'"
                      for fact in sorted(used & walked)]
    assert not wrong, "\n".join(wrong)
    assert {p.source.rsplit("/", 1)[-1] for p in pages if p.block == "last"} >= {
        f"{name}{'.llama' if arch == 'llama' else ''}.md" for name in (
            "10-feedforward-backward", "10b-feedforward-backward-input", "11-attention-backward",
            "11b-attention-backward-qkv", "13-backward-recap", "14-backward-rules")}
