"""The trace: names, completeness, JSON round trip, determinism, the sidecar, `diff`, and explain()."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import explain, load_trace, run
from engine.config import config_from_dict
from engine.diff import diff_traces
from engine.docs import render
from engine.trace import TraceError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trace():
    return run(config_from_dict({}, "test"))


def test_names_unique_and_documented(trace):
    names = trace.names()
    assert len(names) == len(set(names))
    documented = (ROOT / "docs/records.md").read_text()
    assert all(f"`{n}`" in documented for n in names)
    assert documented == render(), "docs/records.md is stale: run `make docs`"


def test_names_do_not_depend_on_seed_or_optimizer_values(trace):
    other = run(config_from_dict({"seed": 7, "optimizer": {"lr": 0.02}}, "test"))
    assert other.names() == trace.names()


def test_every_parameter_has_initial_grad_state_and_updated_record(trace):
    for _key, names in ((k, v) for k, v in trace.index.items() if k.startswith("transformer.")):
        init = trace.record(names["initial"])
        for n in (names["grad"], names["updated"], "opt.m." + names["initial"], "opt.v_hat." + names["initial"]):
            assert trace.record(n).shape == init.shape, n
    assert {r.phase for r in trace.records} == {"forward", "backward", "optimizer", "evaluation", "train"}


def test_phases_are_in_execution_order(trace):
    order = ["forward", "backward", "optimizer", "evaluation", "train"]
    ranks = [order.index(r.phase) for r in trace.records]
    assert ranks == sorted(ranks)
    seen = set()
    for r in trace.records:  # every input is recorded before it is used
        assert all(i in seen for i in r.inputs), r.name
        seen.add(r.name)


def test_json_round_trip_is_exact_and_bytes_are_deterministic(trace, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    trace.save(a)
    run(config_from_dict({}, "test")).save(b)
    assert a.read_bytes() == b.read_bytes()
    back = load_trace(a)
    for r1, r2 in zip(trace.records, back.records):
        assert r1.name == r2.name and r1.axes == r2.axes and r1.formula == r2.formula and r1.meta == r2.meta
        assert r1.value.dtype == r2.value.dtype and np.array_equal(r1.value, r2.value), r1.name
    assert back["L0.attn.masked"][0, 0, 0, 1] == -np.inf
    data = json.loads(a.read_text())
    assert data["format"] == "handstep-trace" and data["index"]["loss"] == "loss"
    assert data["index"]["transformer.h.0.attn.c_attn.weight"]["grad"] == "grad.L0.attn.c_attn.weight"


def test_large_traces_put_values_in_a_sidecar(trace, tmp_path, monkeypatch):
    import engine.trace as T

    monkeypatch.setattr(T, "INLINE_MAX_VALUES", 10)
    trace.save(tmp_path / "big.json")
    assert (tmp_path / "big.bin").stat().st_size == 8 * sum(r.value.size for r in trace.records)
    back = load_trace(tmp_path / "big.json")
    assert all(np.array_equal(r1.value, r2.value) for r1, r2 in zip(trace.records, back.records))
    (tmp_path / "big.bin").unlink()
    with pytest.raises(TraceError, match="big.bin is missing"):
        load_trace(tmp_path / "big.json")


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(TraceError, match="not a handstep trace"):
        load_trace(tmp_path / "x.json")


def test_diff_identical_and_seed_change(trace):
    same = diff_traces(trace, trace)
    assert same.identical and same.compared == len(trace)
    other = run(config_from_dict({"seed": 7}, "test"))
    d = diff_traces(trace, other)
    assert not d.identical and d.first == "wte"  # the first parameter drawn differs first
    names = {r.name for r in d.records}
    assert "input_ids" not in names and "targets" not in names  # same text: same tokens
    assert "L0.ln_1.weight" not in names  # LayerNorm weights start at 1 whatever the seed
    assert d.config_changes == ["seed: 42 -> 7"]
    by = {r.name: r for r in d.records}
    assert by["loss"].max_abs == pytest.approx(abs(trace["loss"] - other["loss"]))


def test_diff_reports_missing_and_reshaped():
    a = run(config_from_dict({"train_steps": 3}, "test"))
    b = run(config_from_dict({"train_steps": 3, "model": {"n_layers": 2}, "data": {"texts": ["the cat sat"]}}, "test"))
    d = diff_traces(a, b)
    status = {r.name: r.status for r in d.records}
    assert status["L1.resid_2"] == "only_b" and status["input_ids"] == "reshaped"


def test_diff_cli_exit_codes(trace, tmp_path):
    trace.save(tmp_path / "a.json")
    run(config_from_dict({"seed": 1}, "test")).save(tmp_path / "b.json")
    cmd = [sys.executable, "-m", "engine", "diff"]
    same = subprocess.run(cmd + [str(tmp_path / "a.json")] * 2, capture_output=True, text=True, cwd=ROOT)
    assert same.returncode == 0 and "identical" in same.stdout
    diff = subprocess.run(cmd + [str(tmp_path / "a.json"), str(tmp_path / "b.json")], capture_output=True, text=True, cwd=ROOT)
    assert diff.returncode == 1 and "first difference: wte" in diff.stdout and "summary:" in diff.stdout
    bad = subprocess.run(cmd + [str(tmp_path / "a.json"), str(tmp_path / "none.json")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "none.json: file not found" in bad.stderr and "Traceback" not in bad.stderr


CONFIGS = [{}, {"model": {"n_layers": 2, "d_model": 12, "n_heads": 3},
                "data": {"texts": ["the cat sat", "the dog ran on the mat"]}},
           {"optimizer": {"name": "adam"}}, {"optimizer": {"name": "sgd", "momentum": 0.9}}]


@pytest.mark.parametrize("raw", CONFIGS, ids=["default", "varied", "adam", "sgd"])
def test_explain_regenerates_every_record(raw):
    """explain() recomputes elements from the inputs alone; the result must equal the stored value."""
    trace = run(config_from_dict({**raw, "train_steps": 2}, "test"))
    rng = np.random.default_rng(0)
    for rec in trace.records:
        picks = [()] if rec.value.ndim == 0 else [np.unravel_index(rng.integers(rec.value.size), rec.shape) for _ in range(12)]
        for idx in picks:
            ex = explain(trace, rec.name, idx)
            stored = float(rec.value[idx])
            assert ex.result == stored or abs(ex.result - stored) <= 1e-12 + 1e-10 * abs(stored), (rec.name, idx)
            assert ex.latex, rec.name
            assert all(n in trace for n, _ in ex.operands)


def test_explain_shows_the_real_arithmetic(trace):
    ex = explain(trace, "L0.attn.qkv", (0, 2, 5))
    x, w = trace["L0.ln_1.out"][0, 2], trace["L0.attn.c_attn.weight"][:, 5]
    assert f"{x[3]:.4f} \\cdot" in ex.latex[1].replace("(", "").replace(")", "") and len(ex.operands) == 2 * 16 + 1
    with pytest.raises(IndexError):
        explain(trace, "L0.attn.qkv", (0, 99, 0))
    masked = explain(trace, "L0.attn.masked", (0, 0, 1, 4))
    assert masked.result == -np.inf and "hidden" in masked.latex[0]
    assert float(np.dot(x, w)) == pytest.approx(trace["L0.attn.qkv"][0, 2, 5])


def test_jacobians_agree_with_the_efficient_backward(trace):
    from engine.explain import jacobian

    J, _ = jacobian(trace, "L0.attn.weights", (0, 1, 3))
    g = trace["grad.L0.attn.weights"][0, 1, 3]
    assert np.allclose(J.T @ g, trace["grad.L0.attn.masked"][0, 1, 3], atol=1e-15)
    J, _ = jacobian(trace, "ln_f.xhat", (0, 2))
    g = trace["grad.ln_f.xhat"][0, 2]
    assert np.allclose(J.T @ g, trace["grad.L0.resid_2"][0, 2], atol=1e-13)
    with pytest.raises(KeyError):
        jacobian(trace, "L0.attn.q", (0, 0, 0))
