"""Click any number and download the numbers: the data files, the click panel's scripts and the CSV links.

The site's own copy of the interpreter and descriptions is run in node (no browser) on a built page's data
file, for cells of every op kind of the default trace, and must agree with engine.explain(): the same LaTeX
lines, text, operands and result.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import make_site, page, read_csv

import engine
from site_build.build import ROOT, build
from site_build.data.downloads import record_csv
from site_build.format import format_number

DEFAULT = ROOT / "configs" / "default.yaml"
NODE = shutil.which("node")

# Loads a built site's scripts the way the page does (as plain <script>s into one window) and explains cells.
RUNNER = r"""
const fs = require("fs"), vm = require("vm"), path = require("path");
const [site, data] = process.argv.slice(2), w = {};
w.window = w;
vm.createContext(w);
for (const f of ["assets/explain/interpret.js", "assets/explain/ops.js"])
  vm.runInContext(fs.readFileSync(path.join(site, f), "utf8"), w);
vm.runInContext(fs.readFileSync(data, "utf8"), w);
const D = w.HANDSTEP_DATA;
for (const [name, r] of Object.entries(D.records)) {
  r.name = name;
  const b = Buffer.from(r.b, "base64");
  r.values = []; for (let i = 0; i < b.length; i += 8) r.values.push(b.readDoubleLE(i));
}
const queries = JSON.parse(fs.readFileSync(0, "utf8"));
const out = queries.map(([name, index]) => {
  const ex = w.HandstepExplain.explain(w.HANDSTEP_OPS, D.records, name, index, D.vocab);
  const r = ex.result;
  return { result: Number.isFinite(r) ? r : String(r), operands: ex.operands, lines: ex.lines, text: ex.text };
});
process.stdout.write(JSON.stringify(out));
"""


def op_page(trace) -> str:
    """A page with one record of every op kind, shown the way pages show them."""
    lines, seen = [], set()
    for rec in trace.records:
        if rec.op in seen:
            continue
        seen.add(rec.op)
        if rec.value.ndim == 0:
            lines.append(f'The value is {{{{ value("{rec.name}") }}}}.')
        elif "heads" in rec.axes:
            lines.append(f'{{{{ matrix("{rec.name}", head=1) }}}}')
        else:
            lines.append(f'{{{{ matrix("{rec.name}") }}}}')
    lines.append('{{ vector("L0.ln_1.out", row=2) }}')  # one row of a 2-D view
    lines.append('Inline: {{ value("L0.attn.weights", (0, 1, 3, 2)) }} and {{ value("grad.L0.resid_1", (0, 4, 7)) }}.')
    lines.append('{{ matrix("L0.attn.masked", head=0) }}')  # the -inf half of the mask
    return page("\n\n".join(lines) + "\n", title="Every op", section="Reference", order=9)


@pytest.fixture(scope="module")
def default_trace():
    return engine.run(engine.load_config(str(DEFAULT)))


@pytest.fixture(scope="module")
def built(tmp_path_factory, default_trace):
    root = tmp_path_factory.mktemp("interact")
    paths = make_site(root, {"ops.md": op_page(default_trace)})
    out = root / "site"
    build(DEFAULT, out, paths=paths)
    return out


class Cells(HTMLParser):
    """Every clickable number of a page as (record, full index, text shown), the way explain.js finds them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, tuple[int, ...], str]] = []
        self.table: dict | None = None
        self.span: tuple[str, tuple[int, ...]] | None = None
        self.cell: tuple[int, ...] | None = None
        self.text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "table" and "matrix" in cls and a.get("data-record"):
            self.table = {"name": a["data-record"], "at": _ints(a.get("data-at", "")), "cols": [], "i": None, "k": 0,
                          "head": True}
        elif self.table is not None:
            t = self.table
            if tag == "tbody":
                t["head"] = False
            elif tag == "tr" and not t["head"]:
                t["i"], t["k"] = a.get("data-i"), 0
            elif tag == "th":
                if t["head"]:
                    t["cols"].append(a.get("data-j"))
                else:
                    t["k"] += 1
            elif tag == "td":
                j = t["cols"][t["k"]] if t["k"] < len(t["cols"]) else None
                t["k"] += 1
                if "gap" not in cls:
                    idx = t["at"] + ([int(t["i"])] if t["i"] is not None else []) + ([int(j)] if j is not None else [])
                    self.cell, self.text = tuple(idx), ""
        if tag == "span" and "value-highlight" in cls and a.get("data-record"):
            self.span, self.text = (a["data-record"], tuple(_ints(a.get("data-at", "")))), ""

    def handle_data(self, data):
        if self.cell is not None or self.span is not None:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None and self.table is not None:
            self.found.append((self.table["name"], self.cell, self.text))
            self.cell = None
        elif tag == "table" and self.table is not None:
            self.table = None
        elif tag == "span" and self.span is not None:
            self.found.append((*self.span, self.text))
            self.span = None


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")] if text else []


def page_cells(html: str) -> list[tuple[str, tuple[int, ...], str]]:
    parser = Cells()
    parser.feed(html)
    return parser.found


def op_cells(built) -> list[tuple[str, tuple[int, ...], str]]:
    """The clickable numbers of the op page and of the table pages its wide matrices link to (which read its data)."""
    html = (built / "ops.html").read_text(encoding="utf-8")
    cells = page_cells(html)
    for href in re.findall(r'<p class="numbers"><a href="([^"]+)">', html):
        table = (built / href).read_text(encoding="utf-8")
        assert 'data-explain="../assets/data/ops.js"' in table, href
        cells += page_cells(table)
    return cells


def sample(cells: list, per_record: int = 12) -> list:
    """Evenly spaced cells of each record (first and last included)."""
    by: dict[str, list] = {}
    for c in cells:
        by.setdefault(c[0], []).append(c)
    out = []
    for items in by.values():
        step = max(1, math.ceil(len(items) / per_record))
        out += items[::step] + ([items[-1]] if (len(items) - 1) % step else [])
    return out


def test_every_cell_maps_to_its_trace_element(built, default_trace):
    """data-at + data-i + data-j name the element whose value the cell shows."""
    cells = op_cells(built)
    assert len({c[0] for c in cells}) >= 30
    for name, idx, text in cells:
        value = np.asarray(default_trace[name])
        assert len(idx) == value.ndim, (name, idx)
        x = value[idx]
        shown = format_number(x.item() if value.dtype.kind in "iu" else float(x), 4 if text.count(".") else 0)
        assert text == shown or text == format_number(float(x)), (name, idx, text)


def test_the_sites_click_panel_explains_every_op_as_engine_explain_does(built, default_trace, tmp_path):
    html = (built / "ops.html").read_text(encoding="utf-8")
    assert 'data-explain="assets/data/ops.js"' in html and "assets/explain.js" in html
    data = built / "assets" / "data" / "ops.js"
    cells = sample(op_cells(built))
    ops = {default_trace.record(name).op for name, _, _ in cells}
    assert ops == {r.op for r in default_trace.records}, "the sample must cover every op kind"
    runner = tmp_path / "run.js"
    runner.write_text(RUNNER, encoding="utf-8")
    queries = [[name, list(idx)] for name, idx, _ in cells]
    proc = subprocess.run([NODE, str(runner), str(built), str(data)], input=json.dumps(queries), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for (name, idx, _), js in zip(cells, results, strict=True):
        py = engine.explain(default_trace, name, idx)
        got = js["result"] if not isinstance(js["result"], str) else float(js["result"].replace("Infinity", "inf"))
        if math.isinf(py.result):
            assert got == py.result, (name, idx)
        else:
            assert abs(got - py.result) <= 1e-12 * max(1.0, abs(py.result)), (name, idx, got, py.result)
        assert [(n, tuple(i)) for n, i in js["operands"]] == [(n, tuple(i)) for n, i in py.operands], (name, idx)
        assert js["lines"] == py.latex and js["text"] == py.text, (name, idx)


def test_data_file_holds_shown_records_and_their_inputs(built, default_trace):
    text = (built / "assets" / "data" / "ops.js").read_text(encoding="utf-8")
    assert text.startswith("window.HANDSTEP_DATA={") and text.endswith("};\n")
    data = json.loads(text[len("window.HANDSTEP_DATA="):-2])
    shown = {c[0] for c in page_cells((built / "ops.html").read_text(encoding="utf-8"))}
    for name in shown:
        assert name in data["records"]
        for inp in default_trace.record(name).inputs:
            assert inp in data["records"], (name, inp)
        assert "ops.html" in data["pages"][name]
    rec = data["records"]["L0.attn.scores"]
    assert rec["op"] == "matmul" and rec["shape"] == list(default_trace["L0.attn.scores"].shape)
    assert rec["formula"] == default_trace.record("L0.attn.scores").formula
    # values are exact: base64 of little-endian float64
    import base64
    values = np.frombuffer(base64.b64decode(rec["b"]), dtype="<f8").reshape(rec["shape"])
    assert np.array_equal(values, default_trace["L0.attn.scores"])


def test_pages_stay_light_and_explain_js_small(built):
    for html in built.glob("*.html"):
        assert len(gzip.compress(html.read_bytes())) <= 40_000, html.name
    js = (built / "assets" / "explain.js").read_bytes()
    assert len(gzip.compress(js)) <= 10_000
    assert b"fetch(" not in js and b"import(" not in js  # a <script src> works from file://


def test_pages_without_numbers_load_no_script(built):
    assert "explain.js" not in (built / "404.html").read_text(encoding="utf-8")


def test_every_csv_link_resolves_and_equals_the_trace(built, default_trace):
    links = set()
    for html in built.glob("*.html"):
        found = re.findall(r'<a class="csv" href="([^"]+)" download', html.read_text(encoding="utf-8"))
        links.update(found)
    assert len(links) >= 30
    for link in sorted(links):
        path = built / link
        assert path.is_file(), link
        name = link.removeprefix("assets/csv/").removesuffix(".csv")
        rec = default_trace.record(name)
        axes, values = read_csv(path.read_text(encoding="utf-8"))
        assert axes == list(rec.axes), name
        assert np.array_equal(values, rec.value), name  # exact, including -inf


def test_csv_layout():
    x = np.arange(12, dtype=float).reshape(2, 3, 2) - 5.5
    x[0, 0, 1] = -np.inf
    text = record_csv(x, ("batch", "tokens", "d_model"))
    assert text.splitlines()[:2] == ["batch,tokens,d_model=0,d_model=1", "0,0,-5.5,-inf"]
    assert np.array_equal(read_csv(text)[1], x)
    assert record_csv(np.array(0.1), ()) == "value\n0.1\n"
    assert record_csv(np.array([3, 4]), ("tokens",)) == "tokens,value\n0,3\n1,4\n"
