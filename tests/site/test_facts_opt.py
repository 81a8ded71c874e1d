"""The optimizer's facts (site_build/facts/opt.py, upd.py, summary.py), checked against the trace by other means."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build.facts import opt, rule, summary, upd, way

CONFIGS = {
    "adamw": {},
    "sgd, two layers, untied, a batch": {"model": {"n_layers": 2, "tie_embeddings": False},
                                        "data": {"texts": ["the cat", "the dog ran on the mat"]},
                                        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    "adam, decay all": {"optimizer": {"name": "adam", "weight_decay": 0.1, "decay": "all"}},
    "adam with L2, four heads, two blocks, a padded batch": {
        "model": {"n_heads": 4, "n_layers": 2}, "data": {"texts": ["the cat", "the dog ran on the mat"]},
        "optimizer": {"name": "adam", "weight_decay": 0.05, "decay": "all"}},
}
L2 = {"adam", "sgd"}  # the optimizers that add λθ to the gradient


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



def _flat(trace, prefix: str) -> np.ndarray:
    return np.concatenate([np.asarray(trace[prefix + n]).ravel() for n in _params(trace)])


def _decays(trace) -> np.ndarray:
    return np.concatenate([np.full(trace[n].size, trace.record(n).meta["decays"]) for n in _params(trace)])


def test_every_weight_is_counted_once_by_the_way_it_moved(trace):
    """Against its loss gradient, with it, a loss gradient of exactly 0, or not moved although it has one: the
    sentence's parts are NumPy's counts, and they add up to every weight."""
    g, delta = _flat(trace, "grad."), _flat(trace, "updated.") - _flat(trace, "")
    counts = [int((g * delta < 0).sum()), int((g * delta > 0).sum()), int((g == 0).sum()),
              int(((g != 0) & (delta == 0)).sum())]
    assert [way.against(trace), way.along(trace), way.flat(trace), way.still(trace)] == counts
    split = way.directions(trace)
    assert split.parts == tuple(n for n in counts if n) and sum(split.parts) == split.total == g.size
    assert f"Of the {g.size} weights" in split.text
    assert way.unmoved(trace) == int((delta == 0).sum())
    brief = way.in_brief(trace)
    assert sum(brief.parts) == brief.total == g.size


def test_a_weight_moves_with_its_gradient_where_the_l2_term_outweighs_and_opposes_it(trace):
    """Adam and SGD step against g = ∇θ + λθ, so a weight moves with its loss gradient exactly where g and ∇θ have
    opposite signs; AdamW's decoupled decay turns no step around in these runs."""
    g = _flat(trace, "grad.")
    theta, lam = _flat(trace, ""), trace.config["optimizer"]["weight_decay"] * _decays(trace)
    outweighed = lam * np.abs(theta) > np.abs(g)
    assert way.outweighed(trace) == int(outweighed.sum())
    assert way.opposed(trace) == int((outweighed & (theta * g < 0)).sum())
    if opt.name(trace) in L2:
        seen = _flat(trace, "opt.g.")
        assert way.along(trace) == int((seen * g < 0).sum())
    else:
        assert way.along(trace) == 0


def test_where_the_weights_that_moved_with_their_gradient_sit(trace):
    counts = {n: int(((trace["updated." + n] - trace[n]) * trace["grad." + n] > 0).sum()) for n in _params(trace)}
    for name, n in counts.items():  # the updates page says it under each tensor's picture
        assert (f" {n} of its weights moved with their loss gradient" in upd.tensor_summary(trace, name)) == (n > 0)
    if not way.along(trace):
        return
    split = way.where(trace)
    assert sum(split.parts) == split.total == way.along(trace) == sum(counts.values())
    named = [n for n in counts if f"`{n}`" in split.text]
    assert [counts[n] for n in sorted(named, key=lambda n: -counts[n])] == list(split.parts[:len(named)])
    name, at = way.example(trace), way.example_at(trace)
    assert counts[name] == max(counts.values())
    theta, delta = np.asarray(trace[name]), np.asarray(trace["updated." + name]) - np.asarray(trace[name])
    along = delta * np.asarray(trace["grad." + name]) > 0
    assert along[at] and abs(theta[at]) == np.abs(theta[along]).max()
    assert way.example_decay(trace) == pytest.approx(trace.config["optimizer"]["weight_decay"] * theta[at])


def test_the_weights_that_did_not_move_by_about_the_learning_rate_are_each_counted_once(trace):
    if not opt.adam_like(trace):
        return
    lr, eps = trace.config["optimizer"]["lr"], trace.config["optimizer"]["eps"]
    g, delta = _flat(trace, "grad."), _flat(trace, "updated.") - _flat(trace, "")
    seen = np.abs(_flat(trace, "opt.g.")) if opt.has_l2(trace) else np.abs(g)
    off = np.abs(np.abs(delta) - lr) > lr / 100
    small = off & (seen > 0) & (seen < 100 * eps)
    zero, cancel = off & (seen == 0), small & (np.abs(g) >= 100 * eps)
    assert [opt.zero(trace), opt.tiny(trace), opt.cancel(trace)] == [int(zero.sum()), int((small & ~cancel).sum()),
                                                                      int(cancel.sum())]
    near, rest = opt.near_split(trace), opt.off_split(trace) if off.any() else None
    assert near.parts == tuple(n for n in (int((~off).sum()), int(off.sum())) if n) and near.total == g.size
    others = int((off & ~zero & ~small).sum())
    assert opt.rest(trace) == others
    if rest is not None:
        expected = (int(zero.sum()), int((small & ~cancel).sum()), int(cancel.sum()), others)
        assert rest.parts == tuple(n for n in expected if n) and rest.total == int(off.sum())


def test_the_summary_counts_every_position_once_and_splits_the_prediction(trace):
    changes = summary.changes(trace)
    assert sum(changes.parts) == changes.total == summary.scored(trace)
    assert summary.uphill(trace) + summary.downhill(trace) == pytest.approx(summary.predicted(trace))
    assert summary.uphill(trace) >= 0 >= summary.downhill(trace)
    assert (summary.uphill(trace) > 0) == (way.along(trace) > 0)


# -- the sentences that differ by optimizer, as this run makes them ---------------------------------------------------
def test_the_rule_in_words_is_the_configured_optimizers(trace):
    name = trace.config["optimizer"]["name"]
    assert ("For Adam, $g_k$ is not quite the raw gradient" in rule.averaged(trace)) == (name == "adam")
    assert rule.reading(trace).startswith("Read it from left to right") == (name == "adamw")
    decay_all = trace.config["optimizer"]["decay"] == "all"
    assert rule.decays_when(trace).startswith("every\ntensor decays") == decay_all
    assert ("plain `torch.optim.Adam(model.parameters())`" in rule.decays_when(trace)) == (decay_all and name == "adam")
    assert bool(rule.decay_moot(trace)) == (opt.wd(trace) == 0)
    sizes = rule.sgd_sizes(trace)
    assert f"its own {'buffer' if opt.has_buffer(trace) else 'gradient'}." in sizes
    assert f"{opt.weights(trace)}\nweights moved by an amount within 1% of $\\eta$." in sizes


def test_the_spread_of_the_gradients_names_the_steepest_and_flattest_tensors(trace):
    said = str(rule.spread(trace))
    assert f"`{opt.steepest(trace).name}`" in said and f"`{opt.flattest(trace).name}`" in said
    assert ("times smaller" in said) == (opt.flattest(trace).mean_grad > 0)


def test_the_zero_rows_are_the_unreached_positions_and_the_unread_words(trace):
    said = rule.zero_rows(trace)
    assert ("`wpe`" in said) == opt.zero_in_wpe(trace)
    n_positions = np.asarray(trace["input_ids"]).shape[1]
    if opt.zero_in_wpe(trace):
        assert f"{trace.config['model']['n_positions']} rows but only {n_positions} positions in use" in said


def test_the_summary_says_what_the_step_did_to_the_loss(trace):
    said = str(summary.verdict(trace))
    change = float(trace["after.loss"]) - float(trace["loss"])
    assert said.startswith("The step lowered it" if change < 0 else "The step *raised* it" if change > 0 else
                           "The step did not change it")
    assert ("curves upwards" in summary.against_prediction(trace)) == (0 < summary.ratio(trace) < 1)
    assert ("Adam's first step is about" in summary.ordering(trace)) == opt.adam_like(trace)


def test_the_updates_page_follows_the_optimizers_stages(trace):
    name = opt.name(trace)
    stages = upd.stages(trace)
    assert ("the gradient with the L2 term" in stages) == (name in L2)
    assert ("the moments $m$ and $v$" in stages) == opt.adam_like(trace)
    assert ("the momentum buffer" in stages) == (name == "sgd" and opt.momentum(trace) > 0)
    assert bool(upd.matrix_decay(trace)) == (name == "adamw" and opt.wd(trace) > 0 and upd.matrix_decays(trace))
    assert bool(upd.tiny_moments(trace)) == opt.adam_like(trace)
    key = str(upd.key_step(trace))
    if not opt.adam_like(trace):
        assert key == upd.key_sgd(trace)
    else:
        assert ("is exactly zero, so $\\hat m = 0$" in key) == (upd.key_seen(trace) == 0)
    if upd.unused_row(trace) is not None:
        moved = str(upd.unused_step(trace))
        assert moved.startswith("Without weight decay on it") == (not upd.wpe_decays(trace) or opt.wd(trace) == 0)
        assert ("almost a full $\\eta$ towards zero" in moved) == (name == "adam" and upd.wpe_decays(trace)
                                                                  and opt.wd(trace) > 0)
