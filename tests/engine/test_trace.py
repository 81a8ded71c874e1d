"""The trace: names, completeness, JSON round trip, determinism, the sidecar, `diff`, and explain()."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import explain, load_trace, run
from engine.config import config_from_dict
from engine.diff import diff_traces
from engine.docs import render
from engine.explain import operands
from engine.trace import Trace, TraceError

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


def test_a_nan_against_a_number_is_an_infinite_difference_both_ways(trace):
    """`max |A-B|` and the relative difference of a NaN against a number are both infinite (the relative one was
    reported as 0: inf over a NaN scale, dropped by nanmax)."""
    import copy

    other = copy.deepcopy(trace)
    other.record("loss").value[...] = np.nan
    (changed,) = [r for r in diff_traces(trace, other).records if r.name == "loss"]
    assert changed.max_abs == np.inf and changed.max_rel == np.inf


def test_diff_reports_missing_and_reshaped():
    a = run(config_from_dict({"train_steps": 3}, "test"))
    b = run(config_from_dict({"train_steps": 3, "model": {"n_layers": 2}, "data": {"texts": ["the cat sat"]}}, "test"))
    d = diff_traces(a, b)
    status = {r.name: r.status for r in d.records}
    assert status["L1.resid_2"] == "only_b" and status["input_ids"] == "reshaped"


def test_diff_cli_exit_codes(trace, tmp_path):
    trace.save(tmp_path / "a.json")
    run(config_from_dict({"seed": 1}, "test")).save(tmp_path / "b.json")
    cmd = [sys.executable, "-m", "site_build.cli", "diff"]
    same = subprocess.run(cmd + [str(tmp_path / "a.json")] * 2, capture_output=True, text=True, cwd=ROOT)
    assert same.returncode == 0 and "identical" in same.stdout
    diff = subprocess.run(cmd + [str(tmp_path / "a.json"), str(tmp_path / "b.json")], capture_output=True, text=True,
                          cwd=ROOT)
    assert diff.returncode == 1 and "first difference: wte" in diff.stdout and "summary:" in diff.stdout
    bad = subprocess.run(cmd + [str(tmp_path / "a.json"), str(tmp_path / "none.json")], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2 and "none.json: file not found" in bad.stderr and "Traceback" not in bad.stderr


CONFIGS = [{}, {"model": {"n_layers": 2, "d_model": 12, "n_heads": 3},
                "data": {"texts": ["the cat sat", "the dog ran on the mat"]}},
           {"optimizer": {"name": "adam"}}, {"optimizer": {"name": "sgd", "momentum": 0.9}},
           {"model": {"arch": "llama", "n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
            "data": {"texts": ["the cat sat", "the dog ran on the mat"]}}]


@pytest.mark.parametrize("raw", CONFIGS, ids=["default", "varied", "adam", "sgd", "llama"])
def test_explain_regenerates_every_record(raw):
    """explain() recomputes elements from the inputs alone; the result must equal the stored value."""
    trace = run(config_from_dict({**raw, "train_steps": 2}, "test"))
    rng = np.random.default_rng(0)
    for rec in trace.records:
        picks = [()] if rec.value.ndim == 0 else [np.unravel_index(rng.integers(rec.value.size), rec.shape)
                                                  for _ in range(12)]
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


def test_operands_stop_at_a_limit_of_input_numbers(trace):
    """operands(limit=n) gives the same operands when the element reads at most n input numbers, and None (before
    reading them) when it reads more: a qkv entry reads 16 of the LayerNorm's output and 16 weights (and a bias),
    a cross-entropy entry a whole row of logits, words only counted as numbers when they are floats."""
    full = operands(trace, "L0.attn.qkv", (0, 2, 5))
    assert operands(trace, "L0.attn.qkv", (0, 2, 5), limit=33) == full and len(full) == 33
    assert operands(trace, "L0.attn.qkv", (0, 2, 5), limit=32) is None
    row = operands(trace, "loss.per_token", (0, 1))
    floats = sum(trace[n].dtype.kind == "f" for n, _ in row)
    assert operands(trace, "loss.per_token", (0, 1), limit=floats) == row
    assert operands(trace, "loss.per_token", (0, 1), limit=floats - 1) is None


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


# --- damaged trace files: every one is a single TraceError line naming the file, never another exception ---


@pytest.fixture(scope="module")
def small_json(tmp_path_factory):
    """A real trace saved as JSON (train_steps 2 keeps it small); the path, read by each test."""
    path = tmp_path_factory.mktemp("small") / "a.json"
    run(config_from_dict({"train_steps": 2}, "test")).save(path)
    return path


def _refused(path) -> str:
    with pytest.raises(TraceError) as exc:
        load_trace(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


def _set(path, value):
    def edit(d):
        *head, last = path
        for k in head:
            d = d[k]
        d[last] = value
    return edit


def _delete(path):
    def edit(d):
        *head, last = path
        for k in head:
            d = d[k]
        del d[last]
    return edit


def _ragged(d):
    d["records"][4]["value"][3].pop()


def _rename(d):
    d["records"][40]["name"] = d["records"][37]["name"]


def _loss_as_list(d):
    next(r for r in d["records"] if r["name"] == "loss")["value"] = [1.0, 2.0]


DAMAGE = [
    (_set(["records", 26, "shape"], [1, 2, 6, 99]),
     "record 26 'L0.attn.q': shape [1, 2, 6, 99] does not match its value (1 × 2 × 6 × 8)"),
    (_set(["records", 12, "shape"], [3, 99]),
     "record 12 'L0.mlp.c_proj.weight': shape [3, 99] does not match its value (64 × 16)"),
    (_delete(["records", 20, "value"]), "record 20 'embed.out': value is missing"),
    (_delete(["config"]), "'config' is missing"),
    (_set(["config"], [1]), "'config' must be an object, got a list"),
    (_delete(["records"]), "'records' is missing"),
    (_set(["records"], {"a": 1}), "'records' must be a list, got an object"),
    (_set(["records", 3], [1, 2]), "record 3: must be an object, got a list"),
    (_rename, "record 40 'L0.ln_2.mean': duplicate name (also record 37)"),
    (_ragged, "record 4 'L0.attn.c_attn.weight': shape [16, 48] does not match its value, which is ragged: "
              "[0] is 48 but [3] is 47"),
    (_set(["records", 5, "name"], None), "record 5: name must be a non-empty string, got null"),
    (_set(["records", 5, "name"], 7), "record 5: name must be a non-empty string, got 7"),
    (_set(["records", 6, "op"], 3), "record 6 'L0.attn.c_proj.weight': op must be a string, got 3"),
    (_set(["records", 6, "phase"], None), "record 6 'L0.attn.c_proj.weight': phase must be a string, got null"),
    (_set(["records", 20, "inputs"], "embed.tok"), "record 20 'embed.out': inputs must be a list of record names, "
                                                   'got "embed.tok"'),
    (_set(["records", 20, "inputs"], ["embed.tok", 1]), "record 20 'embed.out': inputs must be a list of record names"),
    (_set(["records", 20, "inputs"], ["nope"]), "record 20 'embed.out': input 'nope' is not an earlier record"),
    (_set(["records", 20, "axes"], ["batch", "tokens"]),
     "record 20 'embed.out': 2 axes [\"batch\", \"tokens\"] for shape [1, 6, 16] (3 dims)"),
    (_set(["records", 20, "shape"], [1, -6, 16]), "record 20 'embed.out': shape must be a list of whole numbers ≥ 0"),
    (_set(["records", 20, "dtype"], "float32"),
     "record 20 'embed.out': dtype \"float32\" is unknown (int64 or float64)"),
    (_set(["records", 20, "meta"], []), "record 20 'embed.out': meta must be an object, got []"),
    (_set(["records", 20, "formula"], None), "record 20 'embed.out': formula must be a string, got null"),
    (_delete(["labels"]), "'labels' is missing"),
    (_set(["labels"], "x"), "'labels' must be an object, got a string"),
    (_set(["labels", "vocab"], [1]), "labels.vocab must be a list of strings, got a list"),
    (_delete(["labels", "inputs"]), "labels.inputs must be a list of lists of strings, got null"),
    (_delete(["index"]), "'index' is missing"),
    (_set(["index"], []), "'index' must be an object, got a list"),
    (_set(["index", "loss"], "lost"), "index['loss'] names 'lost', which is not a record of the trace"),
    (_set(["index", "transformer.wte.weight", "grad"], 3),
     "index['transformer.wte.weight']['grad'] must be a record name"),
    (_set(["records", 0, "value", 0, 0], "1.5"),
     'record 0 \'wte\': value [0, 0] is "1.5"; only numbers and the strings "inf", "-inf" and "nan" are allowed'),
    (_set(["records", 0, "value", 2, 3], None), "record 0 'wte': value [2, 3] is null; only numbers"),
    (_set(["records", 0, "value", 2, 3], True), "record 0 'wte': value [2, 3] is true; only numbers"),
    (_set(["records", 0, "value", 2], 1.0), "record 0 'wte': shape [10, 16] does not match its value, which is ragged: "
                                            "[0] is 16 but [2] is a single number"),
    (_set(["records", 16, "value", 0, 1], 1.5), "record 16 'input_ids': value [0, 1] is 1.5; an int64 record holds "
                                                "whole numbers only"),
    (_set(["records", 16, "value", 0, 1], 2**70), "record 16 'input_ids': value [0, 1] is 1180591620717411303424"),
    (_loss_as_list, "'loss': shape [] does not match its value (2)"),
    (_set(["values"], "x.bin"), "'values' must be null or an object naming the values file, got a string"),
    (_set(["version"], True), "trace version true is not supported (expected 1)"),
]


@pytest.mark.parametrize("edit,expected", DAMAGE, ids=[e[1][:50] for e in DAMAGE])
def test_damaged_trace_is_one_clear_line(small_json, tmp_path, edit, expected):
    data = json.loads(small_json.read_text())
    edit(data)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    msg = _refused(path)
    assert msg.startswith(f"{path}: ") and expected in msg, msg


@pytest.mark.parametrize("text,expected", [("", "is empty, not a handstep trace"), ("  \n", "is empty"),
                                           ("null", "not a handstep trace (the JSON is null, not an object)"),
                                           ("[1]", "not a handstep trace (the JSON is a list, not an object)"),
                                           ("{", "not a handstep trace (Expecting property name"),
                                           ("[" * 100000, "not a handstep trace"),
                                           ('{"a": 1' + "0" * 5000 + "}", "a number has too many digits")])
def test_empty_and_non_object_files(tmp_path, text, expected):
    path = tmp_path / "a.json"
    path.write_text(text)
    assert expected in _refused(path)


def test_directory_and_unreadable_trace(tmp_path, monkeypatch):
    d = tmp_path / "a.json"
    d.mkdir()
    assert _refused(d) == f"{d}: is a directory, not a trace file (give a .json file written by handstep trace)"
    f = tmp_path / "b.json"
    f.write_text("{}")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)  # chmod 000 does not stop root
    assert _refused(f) == f"{f}: cannot be read (permission denied)"


def test_paths_in_messages_are_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("sub").mkdir()
    Path("sub/a.json").write_text("null")
    with pytest.raises(TraceError, match=r"^\./sub/\.\./sub/a\.json: not a handstep trace"):
        load_trace("./sub/../sub/a.json")


@pytest.fixture()
def sidecar(small_json, tmp_path, monkeypatch):
    """A real trace saved with its values in a.bin; returns (json path, parsed JSON)."""
    import engine.trace as T

    monkeypatch.setattr(T, "INLINE_MAX_VALUES", 10)
    path = tmp_path / "a.json"
    run(config_from_dict({"train_steps": 2}, "test")).save(path)
    assert (tmp_path / "a.bin").exists()
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("edit,expected", [
    (_delete(["records", 5, "offset"]), "record 5 'L0.attn.c_attn.bias': offset must be a whole number ≥ 0 "
                                        "(a position in the values file), got null"),
    (_set(["records", 5, "offset"], -1), "record 5 'L0.attn.c_attn.bias': offset must be a whole number ≥ 0"),
    (_set(["records", 5, "offset"], "0"), "record 5 'L0.attn.c_attn.bias': offset must be a whole number ≥ 0"),
    (_set(["records", 5, "offset"], 10**9), "record 5 'L0.attn.c_attn.bias': offset 1000000000 + 48 values runs past "
                                            "the end of the values file"),
    (_set(["values", "file"], "../a.bin"), "values.file must be the name of a file beside the trace, got \"../a.bin\""),
    (_set(["values", "file"], None), "values.file must be the name of a file beside the trace, got null"),
    (_set(["values", "dtype"], "<f4"), "values.dtype must be \"<f8\" (little-endian float64), got '<f4'"),
    (_set(["values"], []), "'values' must be null or an object naming the values file, got a list"),
], ids=["offset-missing", "offset-negative", "offset-string", "offset-past-end", "file-path", "file-null",
        "dtype", "values-list"])
def test_damaged_sidecar_trace(sidecar, edit, expected):
    path, data = sidecar
    edit(data)
    path.write_text(json.dumps(data))
    msg = _refused(path)
    assert expected in msg, msg


def test_short_or_odd_values_file(sidecar):
    path, data = sidecar
    binary = path.with_suffix(".bin")
    full = binary.read_bytes()
    last = data["records"][-1]
    binary.write_bytes(full[:-16])
    msg = _refused(path)
    assert f"record {len(data['records']) - 1} {last['name']!r}: offset {last['offset']} + " in msg
    assert "the values file is shorter than the trace needs" in msg
    binary.write_bytes(full[:-3])
    assert f"its values file a.bin has {len(full) - 3} bytes, not a whole number of float64s" in _refused(path)
    binary.unlink()
    binary.mkdir()
    assert "its values file a.bin is a directory" in _refused(path)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(where=st.integers(0, 10_000), key=st.sampled_from(["name", "op", "phase", "inputs", "axes", "shape", "dtype",
                                                          "formula", "symbol", "meta", "value", "offset"]),
       junk=st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=3),
                      st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                               max_size=1), st.just("<delete>")))
def test_any_damaged_record_is_a_trace_or_a_clean_error(small_json, tmp_path_factory, where, key, junk):
    data = json.loads(small_json.read_text())
    rec = data["records"][where % len(data["records"])]
    if junk == "<delete>":
        rec.pop(key, None)
    else:
        rec[key] = junk
    path = tmp_path_factory.mktemp("fuzz") / "a.json"
    path.write_text(json.dumps(data))
    try:
        load_trace(path)
    except TraceError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}: record ")


def test_trace_constructor_refuses_duplicate_names(trace):
    r = trace.records[0]
    with pytest.raises(TraceError, match=r"^duplicate record names: 'wte'$"):
        Trace({}, {}, [r, r], {})


# --- progress: a pure callback, monotone per phase, ending at done == total; Ctrl-C passes through ---


def _phases(calls):
    out = {}
    for phase, done, total in calls:
        out.setdefault(phase, []).append((done, total))
    return out


@pytest.mark.parametrize("steps", [0, 1, 7, 250])
def test_progress_of_run_and_finite_differences(steps, capsys):
    from engine.verify import finite_differences

    calls = []
    cfg = config_from_dict({"train_steps": steps}, "test")
    trace = run(cfg, progress=lambda *a: calls.append(a))
    finite_differences(cfg, trace, progress=lambda *a: calls.append(a))
    phases = _phases(calls)
    assert list(phases) == ["step", "training run", "finite differences"]
    assert phases["step"] == [(0, 1), (1, 1)]
    for phase, seen in phases.items():
        dones = [d for d, _ in seen]
        assert dones == sorted(dones) and dones[0] == 0, phase
        assert {t for _, t in seen} == {seen[-1][1]} and dones[-1] == seen[-1][1], phase
    assert phases["training run"][-1] == (steps, steps)
    every = max(1, steps // 100)  # every step, or every 1/100 of the run; plus the first and the last
    assert [d for d, _ in phases["training run"]] == sorted({0, steps, *range(every, steps + 1, every)})
    # 16 tensors, then the directional check
    assert phases["finite differences"][-1] == (17, 17) and len(phases["finite differences"]) == 18
    assert capsys.readouterr() == ("", "")  # the engine prints nothing


def test_ctrl_c_in_progress_propagates_untouched():
    from engine.verify import finite_differences

    def stop_at(phase_name, at):
        def progress(phase, done, total):
            if phase == phase_name and done >= at:
                raise KeyboardInterrupt
        return progress

    cfg = config_from_dict({"train_steps": 20}, "test")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=stop_at("training run", 5))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=stop_at("step", 1))
    trace = run(cfg)
    with pytest.raises(KeyboardInterrupt):
        finite_differences(cfg, trace, progress=stop_at("finite differences", 3))


@pytest.mark.parametrize("direct", [True, False], ids=["past the page cache", "plain writes"])
def test_a_big_run_spills_its_values_to_a_file_and_saves_them_unchanged(tmp_path, monkeypatch, direct):
    """Past INLINE_MAX_VALUES the recorder writes every value to a file as it is made and keeps memory maps of
    the large records: the same numbers, saved as the same sidecar, read back as the same trace. Written past
    the page cache (O_DIRECT, in chunks far smaller than a record, so records start and end mid-chunk) or with
    plain writes, the file is the same."""
    import engine.budget
    import engine.trace

    raw = {"model": {"d_model": 32, "d_ff": 128, "n_heads": 2}, "train_steps": 1}
    small = run(config_from_dict(raw, "test"))
    assert small.values_file is None
    monkeypatch.setattr(engine.budget, "INLINE_MAX_VALUES", 1000)
    monkeypatch.setattr(engine.trace, "INLINE_MAX_VALUES", 1000)
    monkeypatch.setattr(engine.trace, "SPILL_VALUES", 500)
    monkeypatch.setattr(engine.trace, "DIRECT_WRITES", direct)
    monkeypatch.setattr(engine.trace._Writer, "CHUNK", 3 * engine.trace.DIRECT_BLOCK)
    writes = []
    write_all = engine.trace._write_all
    monkeypatch.setattr(engine.trace, "_write_all", lambda fd, data, at: (writes.append(at), write_all(fd, data, at)))
    big = run(config_from_dict(raw, "test"), spill_dir=tmp_path)
    assert bool(writes) == (direct and _direct_io_works(tmp_path))
    assert big.values_file is not None
    mapped = [r.name for r in big.records if isinstance(r.value, np.memmap)]
    assert "L0.mlp.c_fc.weight" in mapped and "opt.v.L0.mlp.c_fc.weight" in mapped and "input_ids" not in mapped
    for a, b in zip(small.records, big.records, strict=True):
        assert a.name == b.name and a.value.dtype == b.value.dtype and np.array_equal(a.value, b.value), a.name
    big.save(tmp_path / "t.json")
    assert (tmp_path / "t.bin").stat().st_size == 8 * sum(r.value.size for r in big.records)
    back = load_trace(tmp_path / "t.json")
    for a, b in zip(small.records, back.records, strict=True):
        assert np.array_equal(a.value, b.value) and a.value.dtype == b.value.dtype, a.name


def _direct_io_works(folder) -> bool:
    """Can this file system take O_DIRECT writes (Linux ext4, xfs, ...: yes)?"""
    import mmap
    import os

    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError:
        return False
    try:
        os.pwrite(fd, mmap.mmap(-1, 4096), 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_adam_in_slices_is_the_same_arithmetic(monkeypatch, name):
    """A big tensor's Adam update runs a slice at a time (engine.optim.CHUNK), and a small model's training run
    updates every tensor at once as one flat vector (engine.optim._adam_together); every number must be bit for
    bit the same either way. With CHUNK at 7 the run goes tensor by tensor, in slices."""
    from engine import optim

    cfg = config_from_dict({"optimizer": {"name": name, "weight_decay": 0.1}, "train_steps": 2}, "test")
    whole = run(cfg)
    monkeypatch.setattr(optim, "CHUNK", 7)  # slices that cut rows and end ragged
    sliced = run(cfg)
    assert [r.name for r in sliced.records] == [r.name for r in whole.records]
    for a, b in zip(whole.records, sliced.records):
        assert np.array_equal(a.value, b.value, equal_nan=True), a.name


def test_a_big_run_drops_the_pages_it_read_and_reads_them_again(monkeypatch, tmp_path):
    """Trace.release lets a big run's memory maps give back what they read (a GPT-2-sized build would otherwise
    end up holding all its values): the mapping's resident size falls to nothing, and the values are the same
    when read again."""

    import engine.budget
    import engine.trace

    raw = {"model": {"d_model": 128, "d_ff": 512, "n_heads": 2}}
    for module in (engine.budget, engine.trace):
        monkeypatch.setattr(module, "INLINE_MAX_VALUES", 1000)
    monkeypatch.setattr(engine.trace, "SPILL_VALUES", 500)
    big = run(config_from_dict(raw, "test"))
    rec = big.record("opt.v.L0.mlp.c_fc.weight")
    assert isinstance(rec.value, np.memmap)
    before = np.array(rec.value)
    start = rec.value.ctypes.data

    def resident_kb() -> int:  # this mapping's resident pages, from /proc/self/smaps
        lines = Path("/proc/self/smaps").read_text().splitlines()
        for i, line in enumerate(lines):
            lo, _, hi = line.split(" ", 1)[0].partition("-")
            if hi and all(c in "0123456789abcdef" for c in lo + hi) and int(lo, 16) <= start < int(hi, 16):
                rss = next(x for x in lines[i + 1:] if x.startswith("Rss:"))
                return int(rss.split()[1])
        raise AssertionError("mapping not found")

    float(rec.value.sum())  # read every page
    assert resident_kb() >= rec.value.nbytes // 1024 - 8
    big.release()
    assert resident_kb() == 0
    assert np.array_equal(np.array(rec.value), before)

    # read back from its files, every record is a view of one mapping: a record gives back its own pages only
    big.save(tmp_path / "t.json")
    back = load_trace(tmp_path / "t.json")
    a, b = back.record("opt.v.L0.mlp.c_fc.weight").value, back.record("opt.m.L0.mlp.c_fc.weight").value
    start = a.ctypes.data
    float(a.sum()) + float(b.sum())
    both = resident_kb()
    back.release(["opt.v.L0.mlp.c_fc.weight"])
    assert both - resident_kb() >= a.nbytes // 1024 - 8 and resident_kb() >= b.nbytes // 1024 - 8
    assert np.array_equal(np.array(a), before)


@pytest.mark.parametrize("opt", [{"name": "adamw"}, {"name": "sgd", "lr": 0.1, "momentum": 0.9}])
def test_a_non_finite_update_in_the_training_run_is_named_from_the_state_before_its_step(monkeypatch, opt):
    """The training run keeps no copy of m and v at each step (GPT-2's would be 2 GB): when a step's new weights
    are not finite, the state before that step is made again from the start. It must be the state the run had."""
    import copy
    import importlib

    engine_run = importlib.import_module("engine.run")  # the module (`engine.run` is also the function)

    real_step = engine_run.optimizer_step
    seen: dict[int, dict] = {}
    named: list[tuple[dict, int]] = []

    def step(p, grads, state, t, opt_cfg, axes, record=None):
        seen.setdefault(t, copy.deepcopy(state))  # the run's own state before step t (the first call of each t)
        new = real_step(p, grads, state, t, opt_cfg, axes, record)
        if t == 4 and len(seen) == 4 and record is None:  # the run's step 4 (not its replay): a NaN in the update
            new = {**new, "wpe": new["wpe"] * np.nan}
        return new

    def name(p, ids, targets, cfg, axes, state, t):
        named.append((state, t))
        raise engine_run.RunError("named")

    monkeypatch.setattr(engine_run, "optimizer_step", step)
    monkeypatch.setattr(engine_run, "_name_first_non_finite", name)
    with pytest.raises(engine_run.RunError, match="named"):
        run(config_from_dict({"optimizer": opt, "train_steps": 6}, "test"))
    (state, t), = named
    assert t == 4 and state.keys() == seen[4].keys() and state
    for param, moments in seen[4].items():
        assert moments.keys() == state[param].keys()
        for key, value in moments.items():
            assert np.array_equal(state[param][key], value), (param, key)


@pytest.mark.parametrize("opt", [{"name": "adamw"}, {"name": "adam"}])
def test_the_training_runs_first_step_is_the_recorded_step(opt):
    """The training run updates big tensors a slice at a time with m̂ and v̂ as one slice's scratch (the recorded
    step keeps them whole, as records): its first step must give the very weights the recorded step gave, so the
    loss after it is the recorded after.loss to the bit. d_ff 1100 × d_model 64 is past one slice (optim.CHUNK)."""
    from engine.optim import CHUNK

    trace = run(config_from_dict({"model": {"d_model": 64, "n_heads": 2, "d_ff": 1100}, "optimizer": opt,
                                  "train_steps": 2}, "test"))
    assert trace["L0.mlp.c_fc.weight"].size > CHUNK and trace["L0.mlp.c_fc.weight"].size % CHUNK
    assert float(trace["train.loss"][1]) == float(trace["after.loss"])
