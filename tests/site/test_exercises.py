"""The exercises at the end of every step page, and each step's NumPy line beside its formula.

The real pages (content/) are built for two seeds; every exercise's answer must be the trace's value at its record
and index, every shape the record's shape, every argmax the row's largest entry; the reveal must carry the same
arithmetic as calc() (engine.explain), typeset; the NumPy line under a formula must be engine.numpy_steps' line.
"""

from __future__ import annotations

import html
import random
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_macros import macros_for

import engine
from engine import drills
from engine.explain import explain
from engine.numpy_steps import numpy_lines
from engine.ops import OPS
from site_build.build import ROOT, Paths, build
from site_build.exercises import SECTIONS
from site_build.macros import MacroError
from site_build.pages import collect_pages

DEFAULT = ROOT / "configs" / "default.yaml"
SEEDS = (42, 7)
KINDS = ("exercise", "drill", "shape-question")


class Exercises(HTMLParser):
    """Every exercise `<li>` of a page: its class, attributes and HTML (the way exercise.js finds them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict] = []
        self.depth = 0  # <li> nesting inside the current exercise

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "li" and a.get("class") in KINDS and not self.depth:
            self.found.append({"class": a["class"], **{k: v or "" for k, v in a.items()}})
            self.depth = 1
        elif tag == "li" and self.depth:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self.depth:
            self.depth -= 1


def exercises_of(text: str) -> list[dict]:
    parser = Exercises()
    parser.feed(text)
    items = parser.found
    bodies = re.findall(r'<li class="(?:exercise|drill|shape-question)".*?</details></li>', text, re.S)
    assert len(bodies) == len(items)
    for item, body in zip(items, bodies):
        item["html"] = body
    return items


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[int, tuple[engine.Trace, dict[str, str]]]:
    """The real site for each seed: its trace and {page file: html}."""
    root = tmp_path_factory.mktemp("exercises")
    out = {}
    for seed in SEEDS:
        site = root / f"site-{seed}"
        build(DEFAULT, site, seed=seed, paths=Paths(cache=root / "cache"))
        trace = engine.run(engine.load_config(str(DEFAULT), seed=seed))
        out[seed] = (trace, {p.name: p.read_text(encoding="utf-8") for p in sorted(site.glob("*.html"))})
    return out


def step_pages() -> dict[str, str]:
    pages, _ = collect_pages(ROOT / "content")
    return {p.url: p.section for p in pages if p.section in SECTIONS}


def test_every_step_page_has_exercises_and_there_are_enough(sites):
    trace, pages = sites[42]
    graded = {name: [e for e in exercises_of(text) if e["class"] == "exercise"] for name, text in pages.items()}
    wanted = step_pages()
    assert wanted and set(wanted) <= set(pages)
    for url in wanted:
        assert graded[url], f"{url} has no exercise graded against the trace"
        assert '<h2 id="exercises">Exercises' in pages[url] or 'id="exercises-section"' in pages[url]
        assert '<a href="#exercises' in pages[url]  # in "On this page"
    assert sum(len(v) for v in graded.values()) >= 25
    assert sum(1 for v in graded.values() if v) >= 15
    kinds = {e["data-kind"] for text in pages.values() for e in exercises_of(text)}
    assert {"value", "sign", "argmax", "shape", "drill"} <= kinds
    for url, text in pages.items():
        if url not in wanted:
            assert 'class="exercises"' not in text, url


@pytest.mark.parametrize("seed", SEEDS)
def test_every_answer_is_the_trace_value_at_its_record_and_index(sites, seed):
    trace, pages = sites[seed]
    checked = 0
    for url, text in pages.items():
        for e in exercises_of(text):
            if e["class"] == "drill":
                answer, tol = float(e["data-answer"]), float(e["data-tol"])
                assert np.isfinite(answer) and tol >= 0
                continue
            rec = trace.record(e["data-record"])
            if e["class"] == "shape-question":
                assert tuple(int(n) for n in e["data-shape"].split(",")) == rec.value.shape
                continue
            index = tuple(int(i) for i in e["data-index"].split(",")) if e["data-index"] else ()
            value = np.asarray(rec.value)[index]
            assert float(e["data-answer"]) == float(value), (url, e["data-record"], index)  # full precision
            assert e["data-answer"] == repr(float(value))
            assert 0 < float(e["data-tol"]) < abs(float(value))  # the tolerance leaves the answer's sign clear
            if e["data-kind"] == "sign":
                assert value != 0
            if e["data-kind"] == "argmax":
                row = np.asarray(rec.value)[index[:-1]]
                assert index[-1] == int(np.argmax(row))
                assert f'data-choice="{index[-1]}"' in e["html"]
            checked += 1
    assert checked >= 25


def test_answers_change_with_the_seed(sites):
    answers = {seed: sorted(e.get("data-answer", "") for text in sites[seed][1].values() for e in exercises_of(text)
                            if e["class"] != "shape-question") for seed in SEEDS}
    assert answers[42] != answers[7]
    drills_ = {seed: [e["data-answer"] for text in sites[seed][1].values() for e in exercises_of(text)
                      if e["class"] == "drill"] for seed in SEEDS}
    assert drills_[42] != drills_[7]


def test_the_reveal_is_the_arithmetic_of_the_element_typeset(sites):
    trace, pages = sites[42]
    for url, text in pages.items():
        for e in exercises_of(text):
            body = e["html"]
            assert '<details class="exercise-answer"><summary>' in body  # works without JavaScript
            if e["class"] != "exercise":
                continue
            index = tuple(int(i) for i in e["data-index"].split(",")) if e["data-index"] else ()
            lines = explain(trace, e["data-record"], index).latex
            working = body.split('class="calc-step exercise-working"', 1)[1]
            assert working.count('<div class="calc-line">') == len(lines), (url, e["data-record"])
            assert working.count('class="katex-display"') >= len(lines) and "\ue000" not in body
            assert "katex-error" not in body
            # the TeX source rides along in KaTeX's annotation: a line typeset whole, or as its left side and the rest
            last = working.split('<div class="calc-line">')[-1]
            tex = re.findall(r'<annotation encoding="application/x-tex">(.*?)</annotation>', last, re.S)
            assert " ".join(html.unescape(t) for t in tex).split() == lines[-1].split(), (url, e["data-record"])


def test_exercise_markup_for_screen_readers_and_no_stray_calc_blocks(sites):
    trace, pages = sites[42]
    attention = next(t for name, t in pages.items() if name.endswith("attention.html"))
    section = attention.split('<section class="exercises"', 1)[1].split("</section>", 1)[0]
    assert 'aria-labelledby="exercises"' in attention and "<ol class=\"exercise-list\">" in section
    assert section.count("<summary>") == len(exercises_of(attention))
    assert 'class="calc-step"' not in section  # pages are checked for their own calc() blocks
    assert '<li data-page="' in attention and 'assets/exercise.js" defer' in attention
    assert 'href="notebook.ipynb" download' in attention and 'href="trace.json" download' in attention


def test_each_displayed_formula_shows_its_numpy_line(sites):
    trace, pages = sites[42]
    seen = 0
    for url, text in pages.items():
        for name, after in re.findall(r'<div class="formula" data-record="([^"]+)">.*?</div>(.{0,4000})', text, re.S):
            name = html.unescape(name)
            rec = trace.record(name)
            if rec.op in ("param", "input") or rec.phase == "train":
                assert not after.lstrip().startswith('<div class="numpy-line"'), name
                continue
            block = re.match(r'\s*<div class="numpy-line" data-record="([^"]+)"[^>]*>.*?<code[^>]*>(.*?)</code>', after,
                             re.S)
            assert block, f"{url}: no NumPy line under the formula of {name}"
            assert html.unescape(block.group(1)) == name
            assert html.unescape(block.group(2)) == "\n".join(numpy_lines(trace, name))
            seen += 1
    assert seen >= 20


def test_numpy_line_macro(small_trace):
    m = macros_for(small_trace)
    out = str(m.numpy_line("L0.attn.scores"))
    assert out.startswith('<div class="numpy-line" data-record="L0.attn.scores"')
    assert html.escape('v["L0.attn.scores"] = v["L0.attn.q"] @ v["L0.attn.k"].swapaxes(-1, -2)') in out
    with pytest.raises(MacroError, match="'wte' has no NumPy line: the notebook reads it from the trace file"):
        m.numpy_line("wte")
    with pytest.raises(MacroError, match="did you mean 'L0.attn.scores'"):
        m.numpy_line("L0.attn.score")


def test_a_formula_with_its_line_placed_by_the_page_gets_no_second(tmp_path):
    from conftest import make_site
    from conftest import page as make_page

    paths = make_site(tmp_path, {"steps.md": make_page(
        '{{ formula("L0.attn.scores") }}\n\n{{ numpy_line("L0.attn.scores") }}\n\n{{ formula("L0.attn.weights") }}\n',
        section="Forward pass", order=9)})
    out = tmp_path / "site"
    build(ROOT / "tests/site/fixtures/configs/small.yaml", out, paths=paths)
    text = (out / "steps.html").read_text(encoding="utf-8")
    assert text.count('<div class="numpy-line" data-record="L0.attn.scores"') == 1
    assert text.count('<div class="numpy-line" data-record="L0.attn.weights"') == 1


@pytest.mark.parametrize("op", sorted(op for op, kind in OPS.items() if kind.drill))
def test_every_drill_is_pen_and_paper_and_its_working_ends_in_the_answer(op):
    config = {"optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.01, "betas": [0.9, 0.999]}}
    for n in range(20):
        d = drills.draw(OPS[op].drill, random.Random(f"{op}:{n}"), config)
        assert d.lines and d.question
        assert "$" not in d.question and "\\" not in d.question  # plain text: no typeset math on the page
        last = d.lines[-1].rsplit("=", 1)[-1].strip().replace("\u2212", "-")
        assert abs(float(last) - d.answer) <= max(d.tol, 5e-7), (op, d.lines[-1], d.answer)
    a = drills.draw(OPS[op].drill, random.Random("a"), config)
    assert a.question == drills.draw(OPS[op].drill, random.Random("a"), config).question  # seeded


def test_optimizer_drills_follow_the_config():
    for name in ("sgd", "adam", "adamw"):
        d = drills.draw(OPS[f"{name}_update"].drill, random.Random(1), {"optimizer": {"name": name, "lr": 0.1,
                                                                                      "weight_decay": 0.5}})
        assert d.op == f"{name}_update" and "0.1" in d.question


def test_exercises_for_other_configs(tmp_path):
    """A padded batch of two texts, two blocks and SGD with momentum: answers still index the right values."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model:\n  n_layers: 2\ndata:\n  texts: ['the cat sat', 'the dog ran on the mat']\n"
                   "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\n")
    out = tmp_path / "site"
    build(cfg, out, paths=Paths(cache=tmp_path / "cache"))
    trace = engine.run(engine.load_config(str(cfg)))
    targets = np.asarray(trace["targets"])
    n = 0
    for page in out.glob("*.html"):
        for e in exercises_of(page.read_text(encoding="utf-8")):
            if e["class"] != "exercise":
                continue
            rec = trace.record(e["data-record"])
            index = tuple(int(i) for i in e["data-index"].split(",")) if e["data-index"] else ()
            assert float(e["data-answer"]) == float(np.asarray(rec.value)[index])
            if "tokens" in rec.axes and rec.axes[0] == "batch":  # never a padded position
                assert targets[index[0], index[rec.axes.index("tokens")]] >= 0
            n += 1
    assert n >= 25


def test_the_exercise_script_is_small_and_works_from_file():
    js = (Path(ROOT) / "templates" / "assets" / "exercise.js").read_text(encoding="utf-8")
    assert len(js) < 12_000 and "fetch(" not in js and "import(" not in js


def test_a_pages_exercise_budget_counts_its_check_lines_whether_or_not_they_are_filled_in_yet():
    """A big run's finite differences finish while the pages render, so a page first holds placeholders for its
    check lines; its exercise budget is measured with the lines themselves, as for a run read from the cache (the
    same config must give the same exercises either way)."""
    import random
    from types import SimpleNamespace

    from site_build.data.checks import Checks
    from site_build.exercises import MAX_BUDGET, MIN_BUDGET, page_budget
    from site_build.mathslots import MathSlots

    names = [f"L{k}.mlp.c_fc.weight" for k in range(40)]
    checks = Checks(fd={n: {"checked": list(range(8)), "max_abs_err": 1.5e-9} for n in names})
    rng = random.Random(3)
    prose = "".join(f"<p>{rng.getrandbits(64):x} {rng.getrandbits(64):x}</p>" for _ in range(1290))
    placeholders = prose + "".join(checks.slot(n) for n in names)
    ctx = SimpleNamespace(checks=checks, math=MathSlots())
    budget = page_budget(ctx, placeholders)
    assert MIN_BUDGET < budget < MAX_BUDGET  # a page whose size moves the budget
    assert budget == page_budget(ctx, checks.fill(placeholders))
    assert page_budget(SimpleNamespace(checks=None, math=MathSlots()), placeholders) != budget
