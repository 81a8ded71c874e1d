"""Exercises a reader can answer from the pages, on several configs: every number an exercise needs is displayed,
the tolerance accepts the right working done from the displayed (rounded) numbers, and it rejects the usual slips.

Everything here is read from the built site, not from the generator: the numbers a page displays are the cells of
its tables (`data-record`, `data-at`, each row's `data-i`, each column's `data-j`) and its inline values (spans
with `data-record` and `data-at`), with the precision their text shows. An exercise may use the numbers of its own
page, of its own question, and of the pages its question links to (an earlier page, or a wide matrix's table page).
What an element needs is engine.explain's list of operands; the right answer from the displayed numbers is the
element recomputed (engine.explain.evaluate) with those numbers in place of the exact ones; the slips are worked
out here from the trace's values.
"""

from __future__ import annotations

import html
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import engine
from engine.explain import evaluate, explain
from site_build.build import ROOT, Builder, Paths
from site_build.pages import collect_pages

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "four heads, two blocks, two texts": {"model": {"n_heads": 4, "n_layers": 2, "d_model": 32},
                                          "data": {"texts": ["the cat sat on the mat", "the dog ran"]}},
    "one head": {"model": {"n_heads": 1}},
    "adam with L2 decay": {"optimizer": {"name": "adam", "weight_decay": 0.05, "decay": "all"}},
    "sgd with momentum": {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    "one token": {"data": {"texts": ["cat"]}},
}
CONTRACTIONS = ("linear", "matmul", "sum")
# kinds whose sign is one input's (or says only whether an index is the target): no sign question
SIGN_GIVEN = ("normalize", "mul", "scale", "cross_entropy_backward", "gelu_backward", "adam_m", "adam_m_hat",
              "causal_mask", "mask_backward", "split_heads", "merge_heads", "merge_qkv", "embedding", "sgd_buf")
LOOKUPS = ("embedding", "split_heads", "merge_heads", "merge_qkv", "causal_mask", "gather", "mask_backward", "sgd_buf")


# -- reading the built site ---------------------------------------------------------------------------------------
def reading(text: str) -> tuple[float, float]:
    """A displayed number as (value, half a unit of its last digit): `−0.0123`, `2.35×10−9`, `1.5e−08`, `−∞`."""
    t = text.strip().replace("\u2212", "-").replace(",", "")
    if t in ("-∞", "∞"):
        return (-math.inf if t.startswith("-") else math.inf), 0.0
    mantissa, exponent = (re.split(r"×10|e", t) + ["0"])[:2]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    scale = 10.0 ** int(exponent)
    return float(mantissa) * scale, 0.5 * 10.0 ** -decimals * scale


class Numbers(HTMLParser):
    """The numbers a piece of HTML displays, {(record, element): text}: table cells and spans with data-record."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[tuple[str, tuple[int, ...]], str] = {}
        self.table: dict | None = None  # record, at, columns, row, column index, in head
        self.span: list | None = None  # [key, text, depth]
        self.cell: list | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self.span is not None and tag == "span":
            self.span[2] += 1
        if tag == "table" and "matrix" in a.get("class", "").split() and a.get("data-record"):
            at = tuple(int(i) for i in a["data-at"].split(",") if i != "")
            self.table = {"record": a["data-record"], "at": at, "cols": [], "row": None, "k": 0, "head": False}
        elif self.table is not None:
            if tag == "thead":
                self.table["head"] = True
            elif tag == "th" and self.table["head"] and a.get("class") != "axes":
                self.table["cols"].append(("j", int(a["data-j"])) if "data-j" in a else
                                          ("gap", None) if a.get("class") == "gap" else ("unit", None))
            elif tag == "tr" and not self.table["head"]:
                self.table["row"] = ("gap", None) if a.get("class") == "gap" else \
                    ("i", int(a["data-i"])) if "data-i" in a else ("unit", None)
                self.table["k"] = 0
            elif tag == "td":
                col = self.table["cols"][self.table["k"]]
                self.table["k"] += 1
                row = self.table["row"]
                if "gap" not in (row[0], col[0]) and a.get("class") != "gap":
                    index = self.table["at"] + tuple(x for kind, x in (row, col) if kind != "unit")
                    self.cell = [(self.table["record"], index), ""]
        if tag == "span" and a.get("data-record") and "data-at" in a and self.span is None:
            at = tuple(int(i) for i in a["data-at"].split(",") if i != "")
            self.span = [(a["data-record"], at), "", 1]

    def handle_endtag(self, tag: str) -> None:
        if self.table is not None:
            if tag == "thead":
                self.table["head"] = False
            elif tag == "td" and self.cell is not None:
                self.found.setdefault(self.cell[0], self.cell[1])
                self.cell = None
            elif tag == "table":
                self.table = None
        if tag == "span" and self.span is not None:
            self.span[2] -= 1
            if self.span[2] == 0:
                self.found.setdefault(self.span[0], self.span[1])
                self.span = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[1] += data
        if self.span is not None:
            self.span[1] += data


def numbers_of(text: str) -> dict[tuple[str, tuple[int, ...]], str]:
    parser = Numbers()
    parser.feed(text)
    return parser.found


def exercises_of(text: str) -> list[dict]:
    """Each exercise of a page: its attributes, its question's HTML (what a reader sees before the answer)."""
    section = text.split('<section class="exercises"', 1)[1].split("</section>", 1)[0] \
        if '<section class="exercises"' in text else ""
    out = []
    for m in re.finditer(r'<li class="(exercise|shape-question|drill)"([^>]*)><div class="exercise-question">'
                         r"(.*?)</div>", section, re.S):
        attrs = {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', m.group(2))}
        out.append({"class": m.group(1), **attrs, "question": m.group(3)})
    return out


class Site:
    """A built site: its pages in reading order, the numbers each displays outside its exercises, its exercises."""

    def __init__(self, trace: engine.Trace, folder: Path) -> None:
        self.trace, self.folder = trace, folder
        order = [p.url for p in collect_pages(ROOT / "content")[0]]
        self.order = [u for u in order if (folder / u).exists()]
        self.text = {u: (folder / u).read_text(encoding="utf-8") for u in self.order}
        self.shown = {u: numbers_of(t.split('<section class="exercises"', 1)[0]) for u, t in self.text.items()}
        self.exercises = {u: exercises_of(t) for u, t in self.text.items()}
        self.tables: dict[str, dict] = {}

    def numbers_on(self, url: str) -> dict:
        """The numbers of a page a question links to (a table page is read when first asked for)."""
        if url in self.shown:
            return self.shown[url]
        if url not in self.tables:
            path = self.folder / url
            self.tables[url] = numbers_of(path.read_text(encoding="utf-8")) if path.exists() else {}
        return self.tables[url]

    def sources(self, url: str, e: dict) -> list[dict]:
        """Where exercise `e` of page `url` may take its numbers from, its own question first: the question, the
        page, the earlier pages and table pages its question links to."""
        links = [html.unescape(h).split("#")[0] for h in re.findall(r'href="([^"]+)"', e["question"])]
        earlier = self.order[: self.order.index(url)]
        linked = [h for h in links if h in earlier or h.startswith("numbers/")]
        return [numbers_of(e["question"]), self.shown[url], *(self.numbers_on(h) for h in linked)]


def index_of(e: dict) -> tuple[int, ...]:
    return tuple(int(i) for i in e["data-index"].split(",")) if e.get("data-index") else ()


def needed(trace: engine.Trace, e: dict) -> list[tuple[str, tuple[int, ...]]]:
    """The displayed numbers an exercise needs: the float inputs of its element (of every entry it offers, for an
    argmax: the row it compares); word ids and targets are words on the page."""
    index = index_of(e)
    elements = [index]
    if e["data-kind"] == "argmax":
        elements = [(*index[:-1], int(k)) for k in re.findall(r'data-choice="(\d+)"', e["question"])]
    ops = dict.fromkeys(op for el in elements for op in explain(trace, e["data-record"], el).operands)
    return [op for op in ops if np.asarray(trace[op[0]]).dtype.kind == "f"]


def hidden(site: Site, url: str, e: dict) -> list[tuple[str, tuple[int, ...]]]:
    sources = site.sources(url, e)
    return [op for op in needed(site.trace, e) if not any(op in s for s in sources)]


# -- the slips, worked out here ----------------------------------------------------------------------------------
def slips(trace: engine.Trace, name: str, index: tuple[int, ...]) -> dict[str, float]:
    """The usual wrong answers for element `index` of record `name`, from the trace's values."""
    rec = trace.record(name)
    x = [np.asarray(trace[n]) for n in rec.inputs]
    answer = float(rec.value[index])
    out = {"the wrong sign": -answer}
    op, meta = rec.op, rec.meta
    if op == "linear":
        b = float(x[2][index[-1]])
        if b != 0:
            out["the bias left out"] = answer - b
        w = x[1]
        if w.shape[0] == w.shape[1]:
            out["W for its transpose"] = float(x[0][index[:-1]] @ w[index[-1], :] + b)
    elif op == "mean":
        out["not divided by the count"] = float(x[0][index].sum())
    elif op == "var":
        row = x[0][index]
        out["divided by n - 1"] = float(((row - row.mean()) ** 2).sum() / (row.size - 1))
    elif op == "affine":
        xh, g, b = float(x[0][index]), float(x[1][index[-1]]), float(x[2][index[-1]])
        out["γ left out"], out["β left out"] = xh + b, g * xh
    elif op == "mul":
        out["γ left out"] = float(x[0][index])
    elif op == "scale":
        out["not scaled"] = float(x[0][index])
    elif op == "softmax" and np.isinf(x[0][index[:-1]]).any():
        row = x[0][index[:-1]]
        out["−∞ read as 0"] = float(np.exp(row[index[-1]]) / np.exp(np.where(np.isinf(row), 0.0, row)).sum())
    elif op == "gelu":
        out["ReLU"] = max(float(x[0][index]), 0.0)
    elif op == "loss_mean":
        losses = x[0][x[1] >= 0]
        if losses.size > 1:
            out["the sum"] = float(losses.sum())
    elif op == "cross_entropy_backward":
        n = int((x[1] >= 0).sum())
        if n > 1:
            out["no 1/N"] = answer * n
    elif op == "l2_grad":
        out["the decay left out"] = float(x[0][index])
    elif op == "adam_m":
        out["(1 − β₁) left out"] = float(x[0][index])
    elif op == "adamw_update" and meta.get("wd"):
        out["the decoupled decay left out"] = answer + meta["lr"] * meta["wd"] * float(x[0][index])
    elif op in ("adam_update", "adamw_update", "sgd_update"):
        out["a step along the gradient"] = 2 * float(x[0][index]) - answer
    return out


def terms(trace: engine.Trace, name: str, index: tuple[int, ...]) -> list[float]:
    """The products a contraction adds up (engine.explain lists their factors in order, a bias last)."""
    rec = trace.record(name)
    n = len(rec.meta["einsum"].split("->")[0].split(","))
    values = [float(np.asarray(trace[r])[i]) for r, i in explain(trace, name, index).operands]
    if rec.op == "linear":
        values = values[:-1]
    return [math.prod(values[k:k + n]) for k in range(0, len(values), n)]


# -- the sites ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("answerable")
    builder = Builder(Paths(cache=root / "cache"))
    made: dict[str, Site] = {}

    def site(name: str) -> Site:
        if name not in made:
            path = root / f"config-{len(made)}.yaml"
            path.write_text(yaml.safe_dump({**CONFIGS[name], "train_steps": 2}), encoding="utf-8")
            builder.build(path, root / f"site-{len(made)}")
            made[name] = Site(engine.run(engine.load_config(str(path))), root / f"site-{len(made)}")
        return made[name]

    yield site
    builder.close()


def graded(site: Site) -> list[tuple[str, dict]]:
    return [(url, e) for url, items in site.exercises.items() for e in items if e["class"] == "exercise"]


@pytest.mark.parametrize("config", CONFIGS)
def test_every_input_of_every_exercise_is_displayed_where_it_says(sites, config):
    site = sites(config)
    missing = {(url, e["data-record"], e["data-index"]): hidden(site, url, e)[:3] for url, e in graded(site)}
    missing = {k: v for k, v in missing.items() if v}
    assert graded(site) and not missing, f"{len(missing)} of {len(graded(site))} exercises: {missing}"


@pytest.mark.parametrize("config", CONFIGS)
def test_the_right_working_from_the_displayed_numbers_is_graded_right(sites, config):
    site = sites(config)
    checked = 0
    for url, e in graded(site):
        if e["data-kind"] != "value":
            continue
        sources = site.sources(url, e)
        patch = {}
        for op in needed(site.trace, e):
            text = next((s[op] for s in sources if op in s), None)
            assert text is not None, (url, e["data-record"], op)
            patch[op] = reading(text)[0]
        answer, tol = float(e["data-answer"]), float(e["data-tol"])
        from_page = evaluate(site.trace, e["data-record"], index_of(e), patch=patch)[0]
        assert abs(from_page - answer) <= tol, (url, e["data-record"], e["data-index"], from_page, answer, tol)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("config", CONFIGS)
def test_the_usual_slips_are_graded_wrong_and_no_answer_is_given_away(sites, config):
    site = sites(config)
    for url, e in graded(site):
        name, index = e["data-record"], index_of(e)
        rec = site.trace.record(name)
        answer, tol = float(e["data-answer"]), float(e["data-tol"])
        where = (url, name, e["data-index"])
        if e["data-kind"] == "value":
            for slip, wrong in slips(site.trace, name, index).items():
                assert abs(wrong - answer) > tol, (*where, slip, wrong, answer, tol)
            if rec.op not in LOOKUPS:  # the answer is not one of the numbers it is worked out from
                for op in needed(site.trace, e):
                    assert abs(float(np.asarray(site.trace[op[0]])[op[1]]) - answer) > tol, (*where, op)
        if e["data-kind"] == "sign":
            assert rec.op not in SIGN_GIVEN, where
            assert abs(answer) > tol, where  # the displayed numbers decide the sign
            if rec.op in CONTRACTIONS:
                products = terms(site.trace, name, index)
                assert min(products) < 0 < max(products), (*where, "every product has the same sign")
            if rec.op == "l2_grad":
                g, theta = (float(np.asarray(site.trace[n])[index]) for n in rec.inputs)
                assert g * theta < 0, where


@pytest.mark.parametrize("config", CONFIGS)
def test_one_shape_question_a_page_and_its_answer_is_not_printed_on_the_page(sites, config):
    site = sites(config)
    for url, items in site.exercises.items():
        shapes = [e for e in items if e["class"] == "shape-question"]
        assert len(shapes) <= 1, url
        page = re.sub(r"<[^>]+>", "", site.text[url].split('<section class="exercises"', 1)[0])
        for e in shapes:
            assert " × ".join(e["data-shape"].split(",")) not in page, (url, e["data-record"])


@pytest.mark.parametrize("config", [c for c in CONFIGS if c != "one token"])
def test_every_config_asks_for_a_dot_product_and_the_key_attended_most(sites, config):
    """The attention page asks which key a query attends to most and for a dot product of a query and a key, however
    many heads share the page (a heavier page must not squeeze them out)."""
    site = sites(config)
    page = next(u for u in site.order if re.match(r"^(\d+[a-z]?-)?attention\.html$", u))
    asked = {(e["data-kind"], site.trace.record(e["data-record"]).op) for e in site.exercises[page]
             if e["class"] == "exercise"}
    assert ("argmax", "softmax") in asked, asked
    assert {("value", "matmul"), ("sign", "matmul")} & asked, asked


def test_the_figures_before_and_after(sites, capsys):
    """How many exercises needed a number no page shows them (printed; the assertions are above)."""
    counts = {}
    for config in CONFIGS:
        site = sites(config)
        items = graded(site)
        counts[config] = (sum(1 for url, e in items if hidden(site, url, e)), len(items))
    with capsys.disabled():
        print("\nexercises with hidden inputs:", counts)
    assert all(n == 0 for n, _ in counts.values())


@pytest.mark.parametrize("text, value, half", [("0.1234", 0.1234, 5e-5), ("\u22120.0012", -0.0012, 5e-5),
                                              ("2.35×10\u22129", 2.35e-9, 5e-12), ("1.5e\u221208", 1.5e-8, 5e-10),
                                              ("12", 12.0, 0.5)])
def test_reading_a_displayed_number(text, value, half):
    got = reading(text)
    assert got[0] == pytest.approx(value) and got[1] == pytest.approx(half)


def test_the_parser_finds_table_cells_by_their_element():
    table = ('<table class="matrix" data-record="x" data-at="0"><caption>c</caption><thead><tr><th class="axes">t</th>'
             '<th data-j="0">a</th><th class="gap">⋯</th><th data-j="9">b</th></tr></thead><tbody>'
             '<tr data-i="2"><th>r</th><td class="p1">0.1000</td><td class="gap">⋯</td><td class="n2">\u22120.2000</td>'
             '</tr></tbody></table><span class="value-highlight" data-record="y" data-at="1,2">3.0000</span>')
    assert numbers_of(table) == {("x", (0, 2, 0)): "0.1000", ("x", (0, 2, 9)): "\u22120.2000", ("y", (1, 2)): "3.0000"}



@pytest.mark.parametrize("config", ["default", "four heads, two blocks, two texts", "adam with L2 decay",
                                    "sgd with momentum"])
def test_every_rules_slips_and_parts_work_out(config, tmp_path):
    """Every op kind's usual slips evaluate to a number on its records, and a sign question's parts add up to the
    element (engine/ops.py `Rule.mistakes`, `Rule.parts`)."""
    from engine.ops import kind

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIGS[config], "train_steps": 2}), encoding="utf-8")
    trace = engine.run(engine.load_config(str(path)))
    rng = np.random.default_rng(0)
    seen = set()
    for rec in trace.records:
        rule = kind(rec.op).exercise
        if not rule or rec.value.dtype.kind != "f" or not rec.value.size or not (rule.mistakes or rule.parts):
            continue
        seen.add(rec.op)
        for _ in range(3):
            index = tuple(int(rng.integers(n)) for n in rec.value.shape)
            if not np.isfinite(rec.value[index]):
                continue
            whens = evaluate(trace, rec.name, index, tuple(f"1 if ({m.when or 1}) else 0" for m in rule.mistakes))
            live = [m.value for m, w in zip(rule.mistakes, whens[1:]) if w]
            values = evaluate(trace, rec.name, index, (*live, *([rule.parts] if rule.parts else [])))
            assert all(math.isfinite(v) for v in values[1:len(live) + 1]), (rec.name, index)
            if rule.parts:
                assert math.fsum(values[-1]) == pytest.approx(float(rec.value[index]), abs=1e-12), (rec.name, index)
    assert {"linear", "matmul", "layernorm_backward", "softmax_backward"} <= seen
