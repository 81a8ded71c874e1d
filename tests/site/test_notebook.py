"""The notebook (`handstep notebook`, the site's notebook.ipynb): valid nbformat, plain NumPy that recomputes every
record from the initial weights, run by a real Jupyter kernel (nbclient + ipykernel) for several configs, and an
execution that fails when the trace disagrees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import SMALL, make_site
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import engine
import engine.trace
from engine.config import config_from_dict
from engine.numpy_steps import computed, forward_function, numpy_lines, parameters, updated_weights_function
from site_build.build import ROOT, build
from site_build.cli import main
from site_build.notebook import placement
from site_build.pages import collect_pages

CONFIGS = {
    "adamw": "",
    "padded-two-layers-sgd-momentum": ("model:\n  n_layers: 2\ndata:\n  texts: ['the cat sat', 'the dog ran on the "
                                       "mat']\noptimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\n"
                                       "  weight_decay: 0.1\n"),
    "adam-three-heads": "model:\n  d_model: 24\n  n_heads: 3\noptimizer:\n  name: adam\n  weight_decay: 0.1\n",
    "adamw-decay-all-plain-sgd": "optimizer:\n  name: sgd\n  decay: all\nseed: 3\n",
    "untied-output-layer": "model:\n  tie_embeddings: false\n",
}


def write_config(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text + "train_steps: 3\n")
    return cfg


def make(tmp_path: Path, text: str, *extra: str) -> Path:
    out = tmp_path / "step.ipynb"
    assert main(["notebook", "--config", str(write_config(tmp_path, text)), "--out", str(out), *extra]) == 0
    return out


def execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def printed(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("name", CONFIGS)
def test_numpy_lines_recompute_every_record_bit_for_bit(name):
    """Without Jupyter: each record's lines, run in trace order from the initial weights, give the trace's value."""
    trace = engine.run(config_from_dict({"train_steps": 2, **_dict(CONFIGS[name])}, "test"))
    T = {r.name: r.value for r in trace.records}
    ns: dict = {"np": np, "T": T, "v": {}, "PARAMETERS": parameters(trace)}
    exec("\n".join(forward_function(trace) + updated_weights_function(trace)), ns)
    n = 0
    for rec in trace.records:
        if rec.phase == "train":
            continue
        exec("\n".join(numpy_lines(trace, rec.name)), ns)
        ours = np.asarray(ns["v"][rec.name])
        assert ours.shape == rec.value.shape and ours.dtype.kind == rec.value.dtype.kind, rec.name
        assert np.array_equal(ours, rec.value), rec.name  # the engine's own order of operations: equal to the bit
        n += computed(rec)
    assert n > 100


def _dict(text: str) -> dict:
    import yaml

    return yaml.safe_load(text) or {}


@pytest.mark.parametrize("name", ["adamw", "padded-two-layers-sgd-momentum", "adam-three-heads"])
def test_the_notebook_runs_clean_in_a_jupyter_kernel(tmp_path, name):
    path = make(tmp_path, CONFIGS[name])
    nbformat.validate(nbformat.read(str(path), as_version=4))
    assert (tmp_path / "step.trace.json").is_file()
    source = path.read_text(encoding="utf-8")
    assert "import engine" not in source and "from engine" not in source and "site_build" not in source
    nb = execute(path)
    trace = engine.load_trace(tmp_path / "step.trace.json")
    out = printed(nb)
    checked = re.findall(r"^(\S+) = the trace's, to (\S+)$", out, re.M)
    expected = [r.name for r in trace.records if computed(r)]
    assert sorted(n for n, _ in checked) == sorted(expected)  # every computed record, once
    assert all(float(d) <= 1e-12 for _, d in checked)
    assert not [c for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def test_a_wrong_record_in_the_trace_fails_the_notebook(tmp_path):
    path = make(tmp_path, "")
    trace_file = tmp_path / "step.trace.json"
    data = json.loads(trace_file.read_text(encoding="utf-8"))
    rec = next(r for r in data["records"] if r["name"] == "L0.attn.context")
    rec["value"][0][1][2][3] += 1e-9  # one element, far below what any table shows
    trace_file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CellExecutionError, match=r"L0\.attn\.context differs from the trace by 1e-09"):
        execute(path)


def test_a_big_trace_with_its_values_file(tmp_path, monkeypatch):
    """Past INLINE_MAX_VALUES the values go to FILE.trace.bin; the notebook reads them there."""
    monkeypatch.setattr(engine.trace, "INLINE_MAX_VALUES", 100)
    path = make(tmp_path, "")
    assert (tmp_path / "step.trace.bin").is_file()
    assert json.loads((tmp_path / "step.trace.json").read_text())["values"]["file"] == "step.trace.bin"
    execute(path)


def test_the_notebook_follows_the_pages(tmp_path):
    path = make(tmp_path, "")
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["metadata"]["handstep"]["trace"] == "step.trace.json"
    pages, _ = collect_pages(ROOT / "content")
    titles = [c["source"][0].removeprefix("## ").strip() for c in nb["cells"]
              if c["cell_type"] == "markdown" and c["source"][0].startswith("## ")]
    site_titles = [p.title for p in pages if p.section != "Reference"]
    assert titles[: len(site_titles)] == site_titles  # one section per page, in site order
    prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "\ue000" not in prose and "<table" not in prose and "<svg" not in prose and '<div class="' not in prose
    assert "$$" in prose and "*(On the site: the table of `L0.attn.weights`" in prose
    assert ":::" not in prose and "> **Why" in prose  # callouts as quotes
    # each record's code in the section of the first page that shows it, or later (never before an input)
    code_at: dict[str, int] = {}
    section = -1
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and text.startswith("## "):
            section += 1
        for name in re.findall(r'^check\("([^"]+)"\)$', text, re.M):
            code_at[name] = section
    trace = engine.load_trace(tmp_path / "step.trace.json")
    for rec in trace.records:
        if rec.name in code_at:
            assert all(code_at[i] <= code_at[rec.name] for i in rec.inputs if i in code_at), rec.name
    assert code_at["L0.attn.scores"] == titles.index("Attention")
    assert code_at["loss"] == titles.index("Output and loss")  # the introduction shows it first: moved later
    assert code_at["grad.logits"] == titles.index("The loss gradient")


def test_placement_moves_a_record_after_its_inputs(small_trace):
    from site_build.pages import Page

    pages = [Page(source=f"p{k}.md", title=f"P{k}", description="", section="Forward pass", order=k, slug=f"p{k}",
                  body="", body_line=1) for k in range(3)]
    shown = {"L0.attn.weights": {"p0.md"}, "L0.attn.scores": {"p1.md"}, "loss": {"p2.md"}}
    at = placement(small_trace, pages, shown)
    assert at["L0.attn.scores"] == 1 and at["L0.attn.weights"] == 1  # shown first on p0, but needs p1's scores
    assert at["embed.out"] == 0 and at["loss"] == 2
    inputs = [at[i] for i in small_trace.record("updated.wte").inputs if i in at]
    assert at["updated.wte"] == max(inputs) == 1  # shown nowhere: where its last input is
    assert at["after.logits"] >= max(v for k, v in at.items() if k.startswith("updated."))


def test_the_site_ships_a_notebook_that_reads_its_trace_json(tmp_path):
    paths = make_site(tmp_path)
    out = tmp_path / "site"
    build(SMALL, out, paths=paths)
    nb = json.loads((out / "notebook.ipynb").read_text(encoding="utf-8"))
    assert nb["metadata"]["handstep"]["trace"] == "trace.json" and (out / "trace.json").is_file()
    assert 'TRACE = Path(\'trace.json\')' in "".join(nb["cells"][1]["source"])
    assert 'href="notebook.ipynb" download' in (out / "attention.html").read_text(encoding="utf-8")
    execute(out / "notebook.ipynb")


def test_the_dev_server_makes_the_notebook_from_the_site_s_own_pages(tmp_path, monkeypatch):
    """A Builder kept between builds (serve) makes the notebook's prose from the site's own rendering of each page
    (no page is rendered a second time for the notebook), the edited page's new text included; the notebook is the
    one a fresh build makes."""
    from site_build import notebook as notebook_module
    from site_build.build import Builder

    rendered, made_prose = [], []
    real_render, real_prose = notebook_module.render_page, notebook_module.notebook_markdown
    monkeypatch.setattr(notebook_module, "render_page", lambda page, *a: rendered.append(page.source)
                        or real_render(page, *a))
    monkeypatch.setattr(notebook_module, "notebook_markdown", lambda result: made_prose.append(real_prose(result))
                        or made_prose[-1])
    paths = make_site(tmp_path)
    builder = Builder(paths)
    try:
        builder.build(SMALL, tmp_path / "a")
        first = len(made_prose)
        page = paths.content / "index.md"
        page.write_text(page.read_text(encoding="utf-8") + "\nA line for the notebook.\n", encoding="utf-8")
        builder.build(SMALL, tmp_path / "a")
    finally:
        builder.close()
    assert first >= 2 and any("A line for the notebook." in text for text in made_prose[first:])
    assert rendered == []  # every page's Jinja output came from the site's build
    build(SMALL, tmp_path / "b", paths=paths)  # a fresh build (its own memo: another trace object)
    made = (tmp_path / "a" / "notebook.ipynb").read_text(encoding="utf-8")
    assert "A line for the notebook." in made
    assert made == (tmp_path / "b" / "notebook.ipynb").read_text(encoding="utf-8")


def test_cli_refuses_unsafe_outputs_with_one_line(tmp_path, capsys):
    cfg = str(write_config(tmp_path, ""))
    assert main(["notebook", "--config", cfg, "--out", str(tmp_path / "x.txt")]) == 2
    assert capsys.readouterr().err.strip().endswith("give a notebook file name ending in .ipynb, e.g. step.ipynb")
    mine = tmp_path / "mine.ipynb"
    mine.write_text('{"cells": []}')
    assert main(["notebook", "--config", cfg, "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists and is not a notebook handstep wrote (pass --force" in err
    assert mine.read_text() == '{"cells": []}' and not (tmp_path / "mine.trace.json").exists()
    assert main(["notebook", "--config", cfg, "--out", str(mine), "--force"]) == 0
    assert main(["notebook", "--config", cfg, "--out", str(mine), "--seed", "5"]) == 0  # its own: replaced
    assert json.loads(mine.read_text())["metadata"]["handstep"]["seed"] == 5
    (tmp_path / "dir.ipynb").mkdir()
    assert main(["notebook", "--config", cfg, "--out", str(tmp_path / "dir.ipynb")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["notebook", "--config", cfg, "--out", str(tmp_path / "y.ipynb"), "--content",
                 str(tmp_path / "nowhere")]) == 2
    assert "--content" in capsys.readouterr().err and not (tmp_path / "y.ipynb").exists()


def test_the_notebook_is_the_same_when_its_pages_come_from_the_page_cache(tmp_path):
    """The notebook's prose comes from the build's rendering of each page, also when that page comes from the page
    cache: the site's notebook is byte for byte the one a build with an empty cache makes."""
    paths = make_site(tmp_path)
    build(SMALL, tmp_path / "a", paths=paths)
    build(SMALL, tmp_path / "b", paths=paths)  # every page from the page cache
    made = (tmp_path / "a" / "notebook.ipynb").read_bytes()
    assert "On the site: the table of" in made.decode("utf-8")
    assert (tmp_path / "b" / "notebook.ipynb").read_bytes() == made


def test_every_kind_of_block_has_a_note():
    """Each kind of block a macro makes (macros.blocks) says what the notebook puts in its place: a kind added
    without a note fails here, not in a notebook."""
    from site_build.macros.blocks import Block

    assert len(Block.KINDS) >= 8
    for kind in Block.KINDS:
        assert kind.note is not Block.note, f"{kind.__name__} has no note for the notebook"


@pytest.mark.parametrize("config", ["default.yaml", "llama.yaml"])
def test_the_notebook_of_the_real_pages_says_what_every_block_is(tmp_path, config):
    """No block of the site's pages falls back to the note that says nothing ("a table or a chart"): a chart macro
    that returns its SVG without placing its block, or a block whose note the notebook cannot word, fails here (the
    PyTorch script and the closing tag of a <details> once did)."""
    out = tmp_path / "step.ipynb"
    assert main(["notebook", "--config", str(ROOT / "configs" / config), "--out", str(out)]) == 0
    text = "".join("".join(cell["source"]) for cell in json.loads(out.read_text(encoding="utf-8"))["cells"])
    assert "(On the site: a table or a chart.)" not in text and "(On the site: .)" not in text
    assert "a PyTorch script that repeats this step" in text


NOTED_PAGE = """{{ formula("L0.attn.scores") }}

The loss is {{ value("loss") }}, and $x$ = {{ formula("loss", inline=true) }}.

{{ matrix("L0.attn.q", head=0) }}
{{ matrix("L0.attn.k", head=0) }}

{{ calc("loss") }}
A line right under the calculation: Markdown reads it as part of the same HTML block.

{{ gelu_picture() }}

{{ formula("L0.attn.weights") }}
{{ numpy_line("L0.attn.weights") }}

{{ numpy_line("L0.mlp.fc") }}

{{ other_blocks(["L{l}.ln_1.mean"], "the means") }}

{{ symbols_table() }}
"""


def test_each_block_is_its_note_in_the_notebook():
    """The notebook puts each block's note where the block stands, reading the blocks the page's PageResult keeps
    (no HTML): a formula its TeX, a value its number, tables the records they show, a calculation, a chart its
    title; a NumPy line nothing (the code cell follows). Blocks Markdown reads as one HTML block (a table right
    after another, a formula with its NumPy line, a line of text under a calculation) get one note."""
    from site_build.macros.registry import RunContext
    from site_build.notebook import notebook_markdown
    from site_build.pages import Page
    from site_build.render.jinja import render_page

    trace = engine.run(config_from_dict({"model": {"n_layers": 2}, "train_steps": 0}))
    page = Page(source="p.md", title="P", description="", section="Forward pass", order=1, slug="p",
                body=NOTED_PAGE, body_line=1)
    result = render_page(page, RunContext(trace), {})
    loss = trace.record("loss")
    assert notebook_markdown(result) == "\n\n".join([
        f"$${trace.record('L0.attn.scores').formula}$$",
        f"The loss is {float(loss.value):.4f}, and $x$ = ${loss.formula}$.",
        '*(On the site: the tables of `L0.attn.q`, `L0.attn.k`; here they are `v["L0.attn.q"]`, `v["L0.attn.k"]`.)*',
        "*(On the site: the arithmetic of `loss`, worked out with the real numbers.)*",
        "*(On the site: the chart “GELU and its slope, with this step’s inputs”.)*",
        f"$${trace.record('L0.attn.weights').formula}$$",
        '*(On the site: the table of `L1.ln_1.mean`; here it is `v["L1.ln_1.mean"]`.)*',
        "*(On the site: the table of records and their symbols.)*",
    ])
    # the NumPy line the build puts under a displayed formula is its block's, after Markdown: not under the one
    # the page gave its own
    assert result.html.count('<div class="numpy-line" data-record="L0.attn.scores"') == 1
    assert result.html.count('<div class="numpy-line" data-record="L0.attn.weights"') == 1
    names = [name for block in result.blocks.values() for name in block.records]
    assert {"L0.attn.scores", "loss", "L0.attn.q", "L0.mlp.fc", "L1.ln_1.mean"} <= set(names)


def _notebook_text(body: str, config: dict) -> str:
    from site_build.macros.registry import RunContext
    from site_build.notebook import notebook_markdown
    from site_build.pages import Page
    from site_build.render.jinja import render_page

    trace = engine.run(config_from_dict(config))
    page = Page(source="p.md", title="P", description="", section="Forward pass", order=1, slug="p", body=body,
                body_line=1)
    return notebook_markdown(render_page(page, RunContext(trace), {"b.md": "b.html"}))


def test_a_link_whose_text_runs_over_two_lines_keeps_only_its_text():
    """The notebook has no pages to link to: a link to one keeps its text. The pass went line by line, and a link
    whose text runs over a line break stayed `[text](page.md)`, a dead link in Jupyter (the real pages have four)."""
    body = ("See [the second half of the\nfeed-forward pass](b.md), [the down\nprojection](b.md#down-projection) "
            "and [one line](b.md).\n\n> **Note** a [quoted\n> link](b.md#x) too.\n\n"
            "```python\nv = [a](b.md)\n```\n")
    assert _notebook_text(body, {"train_steps": 0}) == (
        "See the second half of the\nfeed-forward pass, the down\nprojection and one line.\n\n"
        "> **Note** a quoted\n> link too.\n\n```python\nv = [a](b.md)\n```")


def test_a_chart_title_with_a_token_reads_as_text_in_the_notebook():
    """The note of a chart is its title, plain text: "Greedy text from <bos>, ..." went into the Markdown as it is,
    and Jupyter reads <bos> as an HTML tag and drops it."""
    text = _notebook_text("{{ generation_picture() }}\n", {"train_steps": 2})
    assert text == "*(On the site: the chart “Greedy text from &lt;bos&gt;, before and after training”.)*"
