"""The optimizer's facts (site_build/facts/opt.py, upd.py, summary.py), checked against the trace by other means."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build.facts import opt, summary, upd

CONFIGS = {
    "adamw": {},
    "sgd, two layers, untied, a batch": {"model": {"n_layers": 2, "tie_embeddings": False},
                                        "data": {"texts": ["the cat", "the dog ran on the mat"]},
                                        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    "adam, decay all": {"optimizer": {"name": "adam", "weight_decay": 0.1, "decay": "all"}},
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trace(request):
    return engine.run(config_from_dict({"train_steps": 2, **CONFIGS[request.param]}, "test"))


def _params(trace) -> list[str]:
    return [v["initial"] for v in trace.index.values() if isinstance(v, dict)]


def test_the_counts_of_the_step_add_up(trace):
    names = _params(trace)
    assert opt.weights(trace) == sum(np.asarray(trace[n]).size for n in names)
    assert opt.tensor_count(trace) == len(names)
    assert sorted(opt.decaying(trace) + opt.plain(trace)) == sorted(names)
    moved = np.concatenate([np.abs(trace["updated." + n] - trace[n]).ravel() for n in names])
    lr = trace.config["optimizer"]["lr"]
    assert opt.near(trace) == int((np.abs(moved - lr) <= lr / 100).sum())
    assert 0 <= opt.rest(trace) <= opt.off(trace) <= opt.weights(trace)
    assert opt.largest_change(trace) == pytest.approx(moved.max())


def test_the_steepest_and_flattest_tensors(trace):
    means = {n: np.abs(trace["grad." + n]).mean() for n in _params(trace)}
    assert opt.steepest(trace).mean_grad == pytest.approx(max(means.values()))
    assert opt.flattest(trace).mean_grad == pytest.approx(min(means.values()))


def test_the_worked_element_has_the_largest_gradient(trace):
    g = np.abs(trace["grad.wte"])
    assert g[opt.worked_at(trace)] == g.max()
    assert opt.worked_word(trace) == trace.labels["vocab"][opt.worked_at(trace)[0]]
    key = upd.key_at(trace)
    C = trace.config["model"]["d_model"]
    assert C <= key < 2 * C and abs(trace["grad.L0.attn.c_attn.bias"][key]) == np.abs(
        trace["grad.L0.attn.c_attn.bias"][C:2 * C]).max()


def test_every_tensor_is_pictured_once_under_its_heading(trace):
    groups = upd.groups(trace)
    assert [t.name for _, ts in groups for t in ts] == _params(trace)
    headings = [h for h, _ in groups]
    blocks = [f"Block {layer}" for layer in range(trace.config["model"]["n_layers"])]
    output = [] if trace.config["model"].get("tie_embeddings", True) else ["The output layer"]
    assert headings == ["The embeddings", *blocks, "The final LayerNorm", *output]


def test_the_step_position_by_position(trace):
    valid = np.asarray(trace["targets"]) >= 0
    gain = np.asarray(trace["after.target_prob"]) - np.asarray(trace["loss.target_prob"])
    assert summary.scored(trace) == int(valid.sum())
    assert summary.up(trace) + summary.down(trace) + summary.kept(trace) == summary.scored(trace)
    assert summary.up(trace) == int((gain[valid] > 0).sum())
    assert summary.best(trace).change == pytest.approx(gain[valid].max())
    assert summary.worst(trace).change == pytest.approx(gain[valid].min())


def test_the_first_order_prediction_and_the_largest_gradients(trace):
    names = _params(trace)
    g = np.concatenate([trace["grad." + n].ravel() for n in names])
    step = np.concatenate([(trace["updated." + n] - trace[n]).ravel() for n in names])
    assert summary.predicted(trace) == pytest.approx(float(g @ step))
    largest = [r.largest for r in summary.gradients(trace)]
    assert largest == sorted(largest, reverse=True)
    assert summary.top(trace).largest == pytest.approx(np.abs(g).max())
