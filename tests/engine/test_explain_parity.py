"""One description of each op kind (engine/explain/ops.yaml), two interpreters: Python for the pages' calc()
blocks, JavaScript for the click panel. For every op kind, on configs that exercise every branch, both must
give the same LaTeX lines (cut alike where a page wraps them), the same text, the same operands and the same
number."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess

import pytest

from engine import run
from engine.config import config_from_dict
from engine.explain import SCRIPT, Element, exact, num, ops, split_line
from engine.ops import OPS

CONFIGS = {
    "adamw": {},
    "adam-padded-two-layers": {"optimizer": {"name": "adam"}, "model": {"n_layers": 2, "d_model": 12, "n_heads": 3},
                               "data": {"texts": ["the cat sat", "the dog ran on the mat"]}},
    "sgd-momentum": {"optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 0.1}},
    "eps-and-decay": {"optimizer": {"eps": 0.003, "weight_decay": 0.3, "decay": "all"}, "seed": 3},
    "sgd": {"optimizer": {"name": "sgd", "lr": 0.1}, "data": {"texts": ["cat", "the dog"]}},
    "untied": {"model": {"tie_embeddings": False}},  # lm_head.weight, and grad.wte as the scatter-add alone
    # Llama's kinds: the rotary tables and rotations (both halves of a pair), repeat_kv and its sum, RMSNorm, SiLU
    "llama-gqa-padded": {"model": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2, "n_layers": 2},
                         "data": {"texts": ["the cat sat", "the dog ran on the mat"]}},
    "llama-tied-theta": {"model": {"arch": "llama", "tie_embeddings": True, "rope_theta": 100.0, "norm_eps": 1e-3},
                         "optimizer": {"name": "sgd", "momentum": 0.9}},
}


def test_the_configs_make_every_op_kind():
    """Every kind of the registry is explained in both languages below: a new kind needs a config here that makes it."""
    made = set().union(*({r.op for r in run(config_from_dict({**c, "train_steps": 2}, "test")).records}
                         for c in CONFIGS.values()))
    assert set(OPS) - made == set(), "add a config that makes these kinds to CONFIGS"


PER_RECORD = 4  # elements per record (every record of every config, so every op kind and branch)

NODE = r"""
const X = require(process.argv[1]);
const D = JSON.parse(require("fs").readFileSync(0, "utf8"));
for (const r of Object.values(D.records)) {
  r.values = r.values.map(v => v === "inf" ? Infinity : v === "-inf" ? -Infinity : v === "nan" ? NaN : v);
}
const out = D.queries.map(q => {
  const e = X.explain(D.ops, D.records, q[0], q[1], D.vocab);
  const r = e.result;
  return {result: isFinite(r) ? r : r > 0 ? "inf" : r < 0 ? "-inf" : "nan", lines: e.lines, text: e.text,
          operands: e.operands, splits: e.lines.map(X.splitLine)};
});
process.stdout.write(JSON.stringify(out));
"""


def _encode(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")


def _python(trace, name, index):
    rec = trace.record(name)
    el = Element(ops(), rec, [trace.record(n) for n in rec.inputs], index, trace.labels["vocab"])
    result, lines, text = el.explain()
    return {"result": result if math.isfinite(result) else _encode(result), "lines": lines, "text": text,
            "operands": [[n, list(i)] for n, i in el.operands], "splits": [list(split_line(t)) for t in lines]}


@pytest.mark.parametrize("name", CONFIGS)
def test_python_and_javascript_explain_every_element_alike(name):
    trace = run(config_from_dict({**CONFIGS[name], "train_steps": 2}, "test"))
    rng = random.Random(name)
    queries = []
    for rec in trace.records:
        for _ in range(PER_RECORD if rec.value.ndim else 1):
            queries.append((rec.name, [rng.randrange(n) for n in rec.value.shape]))
    records = {r.name: {"name": r.name, "op": r.op, "shape": list(r.value.shape), "axes": list(r.axes),
                        "inputs": list(r.inputs), "meta": r.meta, "symbol": r.symbol, "formula": r.formula,
                        "values": [_encode(float(v)) for v in r.value.ravel()]} for r in trace.records}
    payload = json.dumps({"ops": ops(), "records": records, "vocab": trace.labels["vocab"], "queries": queries})
    node = shutil.which("node")
    assert node, "node is needed (Node 18+): the click panel's interpreter runs in it"
    done = subprocess.run([node, "-e", NODE, str(SCRIPT)], input=payload, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    js = json.loads(done.stdout)
    kinds = set()
    for (rec_name, index), theirs in zip(queries, js):
        ours = _python(trace, rec_name, tuple(index))
        kinds.add(trace.record(rec_name).op)
        where = f"{rec_name} {index}"
        assert ours["lines"] == theirs["lines"], where
        assert ours["text"] == theirs["text"], where
        assert ours["operands"] == theirs["operands"], where
        assert ours["splits"] == theirs["splits"], where  # the panel lays out its lines as the pages do
        if isinstance(ours["result"], str):
            assert ours["result"] == theirs["result"], where
        else:
            assert abs(ours["result"] - theirs["result"]) <= 1e-12 * max(1.0, abs(ours["result"])), where
    assert kinds <= set(ops()["ops"]) and len(kinds) >= 25


@pytest.mark.parametrize("x, shown", [(0.1, "0.1000"), (-2.5, "-2.5000"), (0.03125, "0.0313"), (-0.03125, "-0.0313"),
                                      (5.606e-4, r"5.61\times10^{-4}"), (1e-8, "10^{-8}"), (-1e-8, "-10^{-8}"),
                                      (9.996e-4, "10^{-3}"), (123456.0, r"1.23\times10^{5}"), (0.0, "0"),
                                      (-math.inf, r"-\infty")])
def test_numbers_round_half_away_from_zero_as_javascript_does(x, shown):
    assert num(x) == shown


@pytest.mark.parametrize("x, shown", [(0.01, "0.01"), (1e-8, "10^{-8}"), (0.003, "0.003"), (0.044715, "0.044715"),
                                      (0.999, "0.999"), (2.0, "2"), (1e-5, r"10^{-5}"), (3e-12, r"3\times10^{-12}"),
                                      (123456.0, "123456"),
                                      (1234567.0, r"1.234567\times10^{6}")])
def test_exact_constants_read_as_typed(x, shown):
    assert exact(x) == shown


def test_no_constant_is_a_literal():
    """With eps and weight decay far from the defaults, every explanation shows the configured values."""
    trace = run(config_from_dict({**CONFIGS["eps-and-decay"], "train_steps": 1}, "test"))
    seen = []
    for rec in trace.records:
        if rec.op in ("adamw_update", "normalize", "layernorm_backward", "gelu", "gelu_backward", "scale"):
            index = tuple(0 for _ in rec.value.shape)
            lines = " ".join(_python(trace, rec.name, index)["lines"])
            seen.append(lines)
            assert "10^{-8}" not in lines
    updates = [s for s in seen if r"\sqrt{\hat v}" in s]
    assert updates and all("0.003" in s and "0.3" in s for s in updates)


def test_long_sums_are_typeset_lazily_and_alike(monkeypatch):
    """A sum past max_terms shows 12 terms; the others are not typeset (LazyList), yet the lines, the text, the
    operands and the number are those of the eager evaluation the JS twin does."""
    from engine.explain import interpret

    trace = run(config_from_dict({"model": {"d_ff": 200}}, "test"))
    names = [r.name for r in trace.records if r.op in ("linear", "matmul") and r.value.ndim >= 2]
    queries = [(n, tuple(0 for _ in trace[n].shape)) for n in names]
    made: list[int] = []
    real = interpret.LazyList.__init__

    def counting(self, n, item):
        made.append(n)
        real(self, n, item)

    monkeypatch.setattr(interpret.LazyList, "__init__", counting)
    lazy = [_python(trace, n, i) for n, i in queries]
    assert made and max(made) >= 200  # the 200-term sums went the lazy way
    monkeypatch.setattr(interpret, "_formats_only", lambda node: False)
    assert [_python(trace, n, i) for n, i in queries] == lazy


# A display line cut after its first relation outside any group (split_line / splitLine): the page and the panel
# set the rest beside `lhs =`, wrapping under its own start.
CUTS = [
    (r"{S}_{h=0,t=5} = {Q}_{t=5} \cdot {K}_{s=1} + \cdots",
     (r"{S}_{h=0,t=5} =", r"{Q}_{t=5} \cdot {K}_{s=1} + \cdots")),
    (r"e^{x_j - m}:\ {e^{0.1 - 0.2} = 0.9},\ \allowbreak {e^{0} = 1}",
     (r"e^{x_j - m}:", r"{e^{0.1 - 0.2} = 0.9},\ \allowbreak {e^{0} = 1}")),
    (r"\text{row max } m = 0.4722", (r"\text{row max } m =", "0.4722")),
    (r"\left(a = b\right) = c", (r"\left(a = b\right) =", "c")),  # inside \left..\right is a group
    (r"x \quad (s = 1)", (r"x \quad (s =", "1)")),  # parentheses are not a group
    (r"\{a\} = b", (r"\{a\} =", "b")),  # an escaped brace opens no group
    (r"{a = b} + {c = d}", ("", r"{a = b} + {c = d}")),  # no relation outside a group
    (r"\begin{aligned} a &= 1 \\ b &= 2 \end{aligned}", ("", r"\begin{aligned} a &= 1 \\ b &= 2 \end{aligned}")),
    (r"= 3", ("", "= 3")), (r"a =", ("", "a =")), (r"a = \quad b", (r"a =", "b")),
]


@pytest.mark.parametrize("tex, cut", CUTS)
def test_a_line_is_cut_after_its_first_relation_outside_groups(tex, cut):
    assert split_line(tex) == cut


def test_the_panel_cuts_lines_as_the_pages_do():
    node = shutil.which("node")
    assert node, "node is needed (Node 18+): the click panel's interpreter runs in it"
    code = ('const X = require(process.argv[1]); const t = JSON.parse(require("fs").readFileSync(0, "utf8"));'
            "process.stdout.write(JSON.stringify(t.map(X.splitLine)));")
    done = subprocess.run([node, "-e", code, str(SCRIPT)], input=json.dumps([t for t, _ in CUTS]), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [list(cut) for _, cut in CUTS]


@pytest.mark.parametrize("name", ["adamw", "llama-gqa-padded"])
def test_an_element_evaluated_under_many_patches_gathers_its_terms_once_and_alike(name):
    """engine.explain.evaluate(terms=): the exercises evaluate one element once per rounded input; the einsum terms
    kept from the first evaluation, with each patch put in place, give exactly the value of a fresh evaluation, for
    every op kind, as the input changed in the trace itself does (a patch that missed its term would give the
    unpatched value)."""
    from engine.explain import evaluate, operands

    trace = run(config_from_dict(CONFIGS[name], "test"))
    rng = random.Random(7)
    seen = 0
    for rec in trace:
        if rec.op not in ops()["ops"] or not rec.inputs:
            continue
        index = tuple(rng.randrange(n) for n in rec.value.shape)
        found = operands(trace, rec.name, index, limit=400) or []
        floats = [op for op in found if trace[op[0]].dtype.kind == "f"][:12]
        terms: dict = {}
        base = evaluate(trace, rec.name, index, terms=terms)[0]
        assert base == evaluate(trace, rec.name, index)[0]
        for op in floats:
            value = trace.record(op[0]).value
            if not value.flags.writeable:
                continue
            patch = {op: float(value[op[1]]) + 0.125}
            patched = evaluate(trace, rec.name, index, patch=patch, terms=terms)
            value[op[1]] += 0.125  # the same input changed in the trace itself: what the patch stands for
            try:
                fresh = evaluate(trace, rec.name, index)[0]  # to the last bits: records may share memory
                assert math.isclose(patched[0], fresh, rel_tol=1e-12, abs_tol=1e-14), (rec.name, op)
            finally:
                value[op[1]] -= 0.125
        seen += bool(terms)
    assert seen > 5  # elements with einsum terms were among them
