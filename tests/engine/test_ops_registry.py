"""The op registry (engine/ops.py): every op kind has every part, and every op the engine records has an entry.

A part is present (a pair of engine/layers.py, a function, a Rule) or says why it is not (`No("...")`); a part left
as None, an empty reason or a kind missing from ops.yaml is a failure. The traces of several configs must hold no op
without an entry, and no entry may be dead (made by none of them).
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import cache

import pytest

from engine import drills, run
from engine import layers as L
from engine import notation as N
from engine.config import config_from_dict
from engine.explain import ops as descriptions
from engine.ops import KINDS, OPS, No, OpKind, Rule, UnknownOpKind, describe, kind

CONFIGS = {
    "default": {},
    "adam": {"optimizer": {"name": "adam"}},
    "sgd with momentum": {"optimizer": {"name": "sgd", "momentum": 0.9}},
    "untied": {"model": {"tie_embeddings": False}},
    "two layers": {"model": {"n_layers": 2}},
    "train_steps 0": {"train_steps": 0},
    # Llama: RMSNorm, rotary embeddings, grouped-query attention (two query heads per K/V head), SwiGLU; untied
    "llama": {"model": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2}},
    "llama tied, two layers": {"model": {"arch": "llama", "n_layers": 2, "tie_embeddings": True}},
}
LLAMA_KINDS = {"rope_table", "mean_square", "rms_normalize", "rope", "repeat_kv", "silu", "rmsnorm_backward",
               "rope_backward", "repeat_kv_backward", "silu_backward"}
COMPOSITE = {"attention_forward", "attention_backward"}  # the attention kinds' pairs chained (finite-difference test)


@cache
def trace(name: str):
    return run(config_from_dict({"train_steps": 1, **CONFIGS[name]}, "test"))


def _pairs(part: object) -> bool:
    return isinstance(part, tuple) and bool(part) and all(
        len(p) == 2 and all(inspect.getmodule(f) is L for f in p) for p in part)


FORMS = {  # each part, when present: what it must be
    "pairs": (_pairs, "(forward, backward) functions of engine/layers.py"),
    "notation": (lambda f: callable(f) and inspect.getmodule(f) is N, "a function of engine/notation.py"),
    "numpy": (callable, "a function of a Line"),
    "exercise": (lambda r: isinstance(r, Rule), "a Rule"),
    "drill": (lambda f: callable(f) and inspect.getmodule(f) is drills, "a function of engine/drills.py"),
}


def missing_parts(k: OpKind) -> list[str]:
    """What entry `k` lacks: each part must be present in its form or be `No(why)` with a reason; its explanation
    must be in engine/explain/ops.yaml."""
    out = []
    for field in dataclasses.fields(k):
        part = getattr(k, field.name)
        if field.name == "name":
            continue
        if part is None or (isinstance(part, No) and not part.why.strip()):
            out.append(f"{field.name}: missing (give it, or No('why not'))")
        elif not isinstance(part, No) and not FORMS[field.name][0](part):
            out.append(f"{field.name}: not {FORMS[field.name][1]}")
    try:
        if not k.explanation.get("let", {}).get("result"):
            out.append("explanation: its description computes no `result`")
    except KeyError:
        out.append("explanation: no description in engine/explain/ops.yaml")
    return out


@pytest.mark.parametrize("op", OPS)
def test_every_op_kind_has_every_part(op):
    assert OPS[op].name == op
    assert missing_parts(OPS[op]) == []


def test_a_missing_part_fails():
    """The check above can fail: a part left out, a reason left empty, a kind with no explanation."""
    mean = OPS["mean"]
    assert missing_parts(dataclasses.replace(mean, drill=None)) == ["drill: missing (give it, or No('why not'))"]
    assert missing_parts(dataclasses.replace(mean, exercise=No(" "))) == [
        "exercise: missing (give it, or No('why not'))"]
    assert missing_parts(dataclasses.replace(mean, pairs=((L.gelu_forward, len),))) == [
        "pairs: not (forward, backward) functions of engine/layers.py"]
    assert missing_parts(dataclasses.replace(mean, notation=None, numpy=No(""))) == [
        "notation: missing (give it, or No('why not'))", "numpy: missing (give it, or No('why not'))"]
    assert missing_parts(dataclasses.replace(mean, name="mean_of_squares")) == [
        "explanation: no description in engine/explain/ops.yaml"]
    with pytest.raises(TypeError):
        OpKind("thing", pairs=No("x"), notation=describe, numpy=No("x"), exercise=No("x"))  # no drill at all


def test_the_registry_and_the_explanations_list_the_same_kinds():
    assert len(OPS) == len(KINDS)  # one entry per kind: a second would hide the first
    assert list(OPS) == list(descriptions()["ops"])  # the same kinds, in the same order


@pytest.mark.parametrize("config", CONFIGS)
def test_every_op_of_a_trace_has_an_entry(config):
    ops = {r.op for r in trace(config).records}
    assert ops <= set(OPS), sorted(ops - set(OPS))


def test_no_entry_is_dead():
    """Every entry is made by one of the configs (an op kind the engine no longer makes goes with its entry)."""
    made = set().union(*({r.op for r in trace(c).records} for c in CONFIGS))
    assert set(OPS) - made == set()


def test_an_op_without_an_entry_is_an_error():
    with pytest.raises(UnknownOpKind, match="add its entry to engine/ops.py"):
        kind("thing")


def test_every_pair_of_the_layers_has_its_kind():
    """A new pair in engine/layers.py belongs to an op kind (or it is not recorded: the attention chain's test pair)."""
    listed = {f.__name__ for k in OPS.values() if not isinstance(k.pairs, No) for pair in k.pairs for f in pair}
    pairs = {name for name, f in vars(L).items() if inspect.isfunction(f) and name.endswith(("_forward", "_backward"))}
    assert pairs - COMPOSITE - listed == set()


def test_the_llama_kinds_are_made_by_llama_runs_alone():
    """The kinds added for `model.arch: llama` are registered, made by the llama configs, and by no GPT-2 one."""
    assert LLAMA_KINDS <= set(OPS)
    llama = set().union(*({r.op for r in trace(c).records} for c in CONFIGS if c.startswith("llama")))
    gpt2 = set().union(*({r.op for r in trace(c).records} for c in CONFIGS if not c.startswith("llama")))
    assert LLAMA_KINDS <= llama and not LLAMA_KINDS & gpt2


@pytest.mark.parametrize("config", CONFIGS)
def test_the_numpy_lines_recompute_every_trace_to_the_bit(config):
    """Every computed record's NumPy line(s) (the notebook's code), run in trace order from the weights and the batch,
    give the trace's own value, bit for bit: with test_no_entry_is_dead, every kind's `numpy` part is checked."""
    import numpy as np

    from engine.numpy_steps import computed, forward_function, loaded, numpy_lines, updated_weights_function

    t = trace(config)
    T = {r.name: r.value for r in t.records}
    v: dict = {}
    scope = {"np": np, "v": v, "T": T, "PARAMETERS": [r.name for r in t.records if r.op == "param"]}
    exec("\n".join(forward_function(t) + updated_weights_function(t)), scope)
    checked = 0
    for rec in t.records:
        if not (loaded(rec) or computed(rec)) or rec.phase == "train":
            continue
        exec("\n".join(numpy_lines(t, rec.name)), scope)
        assert np.array_equal(v[rec.name], rec.value, equal_nan=True), rec.name
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.startswith("llama")])
def test_every_llama_record_has_its_own_formula_and_meaning(config):
    """A llama record is written with RMSNorm, its own projections (W_Q, W_K, W_V, W_O, W_gate, W_up, W_down) and no
    position table: no formula or symbol of a llama trace reads a LayerNorm, GPT-2's packed [Q|K|V], a bias or W_pe,
    and every record says what it is."""
    t = trace(config)
    tied = "lm_head.weight" not in t
    for r in t.records:
        written = r.formula + " " + r.symbol
        assert r.formula and r.symbol, r.name
        for gpt2 in (r"\mathrm{LN}", "[Q|K|V]", "W_{pe}", "W_1", "W_2", r"\text{attn}", "b_O", "GELU"):
            assert gpt2 not in written, (r.name, gpt2)
        assert N.meaning(r.name, tied=tied, arch="llama"), r.name
        assert "LayerNorm" not in N.meaning(r.name, tied=tied, arch="llama"), r.name


@pytest.mark.parametrize("op, gpt2, llama", [("embedding", "plus position embedding", "no position table"),
                                             ("mul", "a LayerNorm", "an RMSNorm"),
                                             ("split_heads", "Q then K then V", "The query projection Q_cat")])
def test_shared_drills_speak_of_the_runs_architecture(op, gpt2, llama):
    """A kind both architectures make has one drill; where the architectures differ (no position table, RMSNorm,
    separate projections) the drill follows the config's."""
    import random

    for seed in range(5):
        assert gpt2 in drills.draw(kind(op).drill, random.Random(seed), {}).question
        question = drills.draw(kind(op).drill, random.Random(seed), {"model": {"arch": "llama"}}).question
        assert llama in question and gpt2 not in question
