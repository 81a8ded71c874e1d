"""The resource budget: exact value counts, estimates, and one-line refusals that allocate nothing."""

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import BudgetError, ConfigError, run
from engine.budget import MAX_SECONDS, _n_records, _sizes, available_memory, check_budget, count_values, estimate
from engine.config import config_from_dict

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran"]
PLENTY = 10**15  # bytes: lets a test reach the time check whatever this machine has free


def cfg_of(raw: dict, label: str = "configs/x.yaml"):
    return config_from_dict(raw, label)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(n_layers=st.integers(1, 3), n_heads=st.sampled_from([1, 2, 4]), head_dim=st.integers(1, 3),
       d_ff=st.integers(1, 9), extra_positions=st.integers(0, 3), train_steps=st.integers(0, 3),
       texts=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5), min_size=1, max_size=3),
       optimizer=st.sampled_from([("adamw", 0.0), ("adam", 0.0), ("sgd", 0.0), ("sgd", 0.9)]), tied=st.booleans())
def test_count_values_is_exactly_what_the_trace_holds(n_layers, n_heads, head_dim, d_ff, extra_positions,
                                                       train_steps, texts, optimizer, tied):
    longest = max(len(t) for t in texts)
    d_model = max(2, n_heads * head_dim)  # the validator asks for at least 2
    cfg = cfg_of({"model": {"n_layers": n_layers, "n_heads": n_heads, "d_model": d_model, "d_ff": d_ff,
                            "n_positions": longest + extra_positions, "tie_embeddings": tied},
                  "data": {"texts": [" ".join(t) for t in texts]},
                  "optimizer": {"name": optimizer[0], "momentum": optimizer[1]}, "train_steps": train_steps})
    trace = run(cfg)
    assert count_values(cfg) == sum(r.value.size for r in trace.records)
    assert estimate(cfg).values == count_values(cfg)
    assert _n_records(_sizes(cfg)) == len(trace.records)  # the recording's share of the time estimate


@settings(max_examples=15, deadline=None, derandomize=True)
@given(n_layers=st.integers(1, 2), kv_heads=st.sampled_from([1, 2]), group=st.sampled_from([1, 2]),
       half_head=st.integers(1, 2), d_ff=st.integers(1, 9), train_steps=st.integers(0, 2),
       texts=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5), min_size=1, max_size=3),
       optimizer=st.sampled_from([("adamw", 0.0), ("adam", 0.0), ("sgd", 0.9)]), tied=st.booleans())
def test_count_values_is_exactly_what_a_llama_trace_holds(n_layers, kv_heads, group, half_head, d_ff, train_steps,
                                                           texts, optimizer, tied):
    n_heads = kv_heads * group
    cfg = cfg_of({"model": {"arch": "llama", "n_layers": n_layers, "n_heads": n_heads, "n_kv_heads": kv_heads,
                            "d_model": n_heads * 2 * half_head, "d_ff": d_ff, "tie_embeddings": tied},
                  "data": {"texts": [" ".join(t) for t in texts]},
                  "optimizer": {"name": optimizer[0], "momentum": optimizer[1]}, "train_steps": train_steps})
    trace = run(cfg)
    assert count_values(cfg) == sum(r.value.size for r in trace.records)
    assert _n_records(_sizes(cfg)) == len(trace.records)


def test_a_llama_estimate_is_sane_and_names_its_checkpoint_keys():
    from engine.budget import LLAMA_CHECKPOINT_KEYS, _advice, _memory

    cfg = cfg_of({"model": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2}})
    est = check_budget(cfg, available_bytes=PLENTY)
    assert 0.02 < est.seconds < 2 and est.values == count_values(cfg)
    big = _sizes(cfg_of({"model": {"arch": "llama", "d_model": 4096, "n_heads": 32, "n_kv_heads": 8}}))
    key, where, advice = _advice(big, _memory, "folder")
    assert key == "model.d_model" and where == "model.from: folder/config.json: hidden_size 4096"
    assert LLAMA_CHECKPOINT_KEYS[key] in advice


def test_default_config_passes_and_its_estimate_is_sane():
    cfg = cfg_of({})
    est = check_budget(cfg, available_bytes=PLENTY)
    assert est == estimate(cfg)
    assert est.values == count_values(cfg) == sum(r.value.size for r in run(cfg).records)
    assert est.bytes >= 8 * est.values
    assert 0.05 < est.seconds < 2  # measured ~0.25 s; the estimate is conservative, not absurd
    assert est.train_seconds > est.step_seconds and est.train_step_seconds * cfg.train_steps < est.train_seconds
    free = available_memory()
    assert free is None or free > 0


def test_huge_d_model_is_refused_naming_it():
    with pytest.raises(BudgetError) as exc:
        check_budget(cfg_of({"model": {"d_model": 100000}}), available_bytes=20 * 2**30)
    msg = str(exc.value)
    assert msg.startswith("configs/x.yaml: model.d_model: 100000 needs about ") and "\n" not in msg
    assert " TiB for the trace, 20 GiB of memory is free: lower model.d_model (the largest term), or d_ff" in msg


def test_gpt2_medium_sized_block_does_not_fit_in_a_small_machine():
    raw = {"model": {"d_model": 1024, "d_ff": 4096, "n_layers": 4, "n_heads": 16}}
    with pytest.raises(BudgetError) as exc:
        check_budget(cfg_of(raw), available_bytes=2 * 2**30)
    # Its 354 M values go to a temporary file as they are made; what must fit in memory is the working set.
    assert str(exc.value).startswith("configs/x.yaml: model.d_model: 1024 needs about 2.48 GiB for the trace, "
                                     "2 GiB of memory is free: lower model.d_model (the largest term), or n_layers")
    fits = check_budget(cfg_of(raw), available_bytes=PLENTY)  # fits a big machine
    assert fits.spills and fits.bytes < 3 * 2**30 and fits.disk == 8 * fits.values


@pytest.mark.parametrize("key,value", [("n_positions", 10**12), ("d_ff", 10**15), ("n_layers", 10**9),
                                       ("d_model", 10**200)])
def test_absurd_sizes_are_refused_fast_without_allocating(key, value):
    """Sizes that overflow NumPy's int64: BudgetError from run() itself, nothing else, nothing allocated."""
    cfg = cfg_of({"model": {key: value}})
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(BudgetError) as exc:
            run(cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 1_000_000, peak  # bytes: no array of the model was made
    msg = str(exc.value)
    assert msg.startswith(f"configs/x.yaml: model.{key}: ") and "\n" not in msg
    assert f"lower model.{key} (the largest term)" in msg and "of memory is free" in msg


def test_an_estimate_of_absurd_sizes_is_infinite_not_an_overflow():
    """The site build asks for the estimate before the run (does it spill?): a config of a 400-digit n_layers (from
    YAML or the panel of `handstep serve`) raised OverflowError there, a traceback, where the run refuses it in one
    line."""
    est = estimate(cfg_of({"model": {"n_layers": 10**400}}))
    assert est.spills and est.step_seconds == est.check_seconds == float("inf")


def test_too_many_training_steps_are_refused_with_how_many_fit():
    cfg = cfg_of({"train_steps": 100_000_000})
    start = time.perf_counter()
    with pytest.raises(BudgetError) as exc:
        check_budget(cfg, available_bytes=PLENTY)
    assert time.perf_counter() - start < 1.0
    msg = str(exc.value)
    assert msg.startswith("configs/x.yaml: train_steps: 100000000 would take about ") and " h (about " in msg
    assert " ms a step); lower train_steps (about " in msg and msg.endswith(" fit in 30 min)")
    fit = int(msg.split("(about ")[-1].split(" fit")[0].replace(",", ""))
    assert check_budget(cfg_of({"train_steps": fit}), available_bytes=PLENTY).seconds <= MAX_SECONDS
    with pytest.raises(BudgetError):
        check_budget(cfg_of({"train_steps": fit * 2}), available_bytes=PLENTY)


def test_slow_sizes_name_the_size_and_the_limit_is_adjustable():
    cfg = cfg_of({"model": {"n_layers": 8000, "d_model": 512, "n_heads": 8, "d_ff": 2048}, "train_steps": 0})
    with pytest.raises(BudgetError) as exc:
        check_budget(cfg, available_bytes=PLENTY, available_disk=PLENTY)
    msg = str(exc.value)
    assert msg.startswith("configs/x.yaml: model.n_layers: 8000 would take about ")
    assert "finite-difference check" in msg
    assert "over the limit of 30 min; lower model.n_layers (the largest term)" in msg
    assert check_budget(cfg, available_bytes=PLENTY, max_seconds=10 * 3600, available_disk=PLENTY).seconds > MAX_SECONDS


def test_budget_error_is_a_config_error_and_the_cli_prints_one_line(tmp_path):
    assert issubclass(BudgetError, ConfigError) and engine.BudgetError is BudgetError
    f = tmp_path / "big.yaml"
    f.write_text("model:\n  n_positions: 1000000000000\n")
    out = tmp_path / "t.json"
    p = subprocess.run([sys.executable, "-m", "site_build.cli", "trace", "--config", str(f), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr and not out.exists()
    assert len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith(f"{f}: model.n_positions: 1000000000000 needs about ")


def test_a_run_that_spills_needs_the_disk_for_its_values():
    raw = {"model": {"d_model": 1024, "d_ff": 4096, "n_layers": 4, "n_heads": 16}}
    with pytest.raises(BudgetError) as exc:
        check_budget(cfg_of(raw), available_bytes=PLENTY, available_disk=2**30)
    assert str(exc.value).startswith("configs/x.yaml: model.d_model: 1024 needs about 2.64 GiB of disk for the "
                                     "trace's values, 1 GiB is free in ")
