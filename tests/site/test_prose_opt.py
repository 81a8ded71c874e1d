"""The blocks the optimization and reference pages place with one line where they looped (macros.optimizer,
macros.reference), and the facts they read, checked against the trace with NumPy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_macros import macros_for

import engine
from engine.config import config_from_dict
from site_build.facts import upd
from site_build.macros.registry import MacroError

MINUS = "\u2212"
TWO_TEXTS = {"data": {"texts": ["the cat", "the dog ran on the mat"]}}
CONFIGS = {
    "gpt2, one text": {},
    "gpt2, two blocks, two heads, two texts, sgd": {"model": {"n_layers": 2, "n_heads": 2}, **TWO_TEXTS,
                                                   "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    "llama, two texts, adam": {"model": {"arch": "llama", "n_layers": 2, "n_heads": 2, "n_kv_heads": 1}, **TWO_TEXTS,
                               "optimizer": {"name": "adam", "weight_decay": 0.1}},
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trace(request):
    return engine.run(config_from_dict({"train_steps": 3, **CONFIGS[request.param]}, "test"))


def _params(trace) -> list[str]:
    return [v["initial"] for v in trace.index.values() if isinstance(v, dict)]


def _llama(trace) -> bool:
    return trace.config["model"].get("arch", "gpt2") == "llama"


def _near(trace, name: str) -> int:
    lr = trace.config["optimizer"]["lr"]
    moved = np.abs(trace["updated." + name] - trace[name])
    return int((np.abs(moved - lr) <= lr / 100).sum())


def _rows(table: str) -> list[list[str]]:
    """The body rows of a Markdown table, cell by cell."""
    lines = str(table).split("\n")
    assert re.fullmatch(r"\|(-+:?\||:?-+:?\|)+", lines[1]), lines[1]
    return [line[2:-2].split(" | ") for line in lines[2:]]


def _plain(cell: str) -> str:
    return re.sub(r"<[^>]+>", "", cell).strip()


def _fixed(x: float, decimals: int = 4, sign: bool = False, minus: str = MINUS) -> str:
    """A number as value() shows it (with a real minus), or as num() writes it (`minus="-"`)."""
    text = f"{x:+.{decimals}f}" if sign else f"{x:.{decimals}f}"
    return text.replace("-", minus)


def test_tensor_table_has_a_row_per_tensor_with_its_update(trace):
    rows = _rows(macros_for(trace).tensor_table())
    names = _params(trace)
    assert [r[0] for r in rows] == [f"`{n}`" for n in names]
    for r, name in zip(rows, names):
        change = np.abs(trace["updated." + name] - trace[name])
        lr = trace.config["optimizer"]["lr"]
        assert r[2] == ("yes" if trace.record(name).meta["decays"] else "no")
        assert r[3] == _fixed(change.max(), 6)
        assert r[4] == _fixed(change.mean() / lr)
        assert r[5] == f"{_near(trace, name)} of {trace[name].size}"
        assert r[6] == _fixed(np.abs(trace["grad." + name]).max())


def test_tensor_pictures_show_every_tensor_under_its_group(trace):
    m = macros_for(trace)
    text = str(m.tensor_pictures())
    names = _params(trace)
    assert re.findall(r"^#### `([^`]+)`$", text, re.M) == names
    headings = re.findall(r"^### (.+)$", text, re.M)
    blocks = int(trace.config["model"]["n_layers"])
    assert [h for h in headings if h.startswith("Block ")] == [f"Block {b}" for b in range(blocks)]
    assert headings[-1] == ("The output layer" if "lm_head.weight" in names else "The final "
                            + ("RMSNorm" if _llama(trace) else "LayerNorm"))
    for name in names:  # the line under each heading: its shape, then how many of its weights moved by about η
        line = text.split(f"#### `{name}`\n\n", 1)[1].split("\n\n", 1)[0]
        assert f" {_near(trace, name)} of its " in line
        assert f" of its {trace[name].size} weight" in line
    assert text.count("<svg") == len(names) or text.count("<figure") == len(names)


def test_the_llama_brief_says_how_a_tensor_moved(trace):
    lr = trace.config["optimizer"]["lr"]
    for name in _params(trace):
        change = np.abs(trace["updated." + name] - trace[name]) / lr
        decays = "decays" if trace.record(name).meta["decays"] else "no decay"
        assert upd.tensor_brief(trace, name) == (
            f"{decays}. {_near(trace, name)} of its {trace[name].size} weights moved by an\namount within 1% of "
            f"$\\eta$; the largest change is {_fixed(change.max(), 3)} $\\eta$ and the mean\n"
            f"{_fixed(change.mean(), 3)} $\\eta$.")


def test_per_text_shows_each_text_in_turn_with_its_label(trace):
    texts = trace.config["data"]["texts"]
    m = macros_for(trace)
    text = str(m.per_text("after.target_prob", label="text"))
    values = re.findall(r'data-record="after.target_prob" data-at="(\d+)"', text)
    assert values == [str(b) for b in range(len(texts))]  # a vector per text, in order
    for b, words in enumerate(texts):  # each shows its text's probabilities
        table = text.split(f'data-at="{b}"', 1)[1].split("</table>", 1)[0]
        shown = re.findall(r"<td class=\"[pnzm][1-9]?\"[^>]*>([^<]*)</td>", table)
        assert shown[:3] == [_fixed(x) for x in np.asarray(trace["after.target_prob"])[b][:3]]
        assert (f"Text {b + 1}, “{words}”:\n" in text) == (len(texts) > 1)
    assert "after.target_prob" in m.ctx.shown
    named = str(macros_for(trace).per_text(["after.logits", "after.per_token"], label="name"))
    assert named.count('class="matrix"') >= len(texts)  # the 3-axis record as a matrix, the 2-axis one a vector
    assert named.count("Text ") == (len(texts) if len(texts) > 1 else 0)
    assert named.startswith("Text 1: \n\n" if len(texts) > 1 else " \n\n")
    with pytest.raises(MacroError, match="label='names'"):
        macros_for(trace).per_text("after.logits", label="names")


def test_gain_table_has_every_target_and_its_change(trace):
    m = macros_for(trace)
    rows = _rows(m.gain_table())
    targets = np.asarray(trace["targets"])
    several = targets.shape[0] > 1
    before, after = np.asarray(trace["loss.target_prob"]), np.asarray(trace["after.target_prob"])
    places = [(b, t) for b, t in zip(*np.nonzero(targets >= 0))]
    assert len(rows) == len(places)
    for r, (b, t) in zip(rows, places):
        cells = r[1:] if several else r
        assert r[0] == str(b + 1) or not several
        assert cells[0] == str(t) and _plain(cells[2]) == trace.labels["targets"][b][t]
        assert _plain(cells[3]) == _fixed(before[b, t]) and _plain(cells[4]) == _fixed(after[b, t])
        assert cells[5] == _fixed(after[b, t] - before[b, t], sign=True, minus="-")
    assert {"loss.target_prob", "after.target_prob"} <= m.ctx.shown


def test_place_table_counts_where_each_prefix_goes_on(trace):
    rows = _rows(macros_for(trace).place_table())
    ins, tgs = trace.labels["inputs"], trace.labels["targets"]
    valid = np.asarray(trace["targets"]) >= 0
    places = list(zip(*np.nonzero(valid)))
    assert len(rows) == len(places)
    for r, (b, t) in zip(rows, places):
        same = [b2 for b2 in range(valid.shape[0]) if valid[b2, t] and ins[b2][:t + 1] == ins[b][:t + 1]]
        hit = sum(tgs[b2][t] == tgs[b][t] for b2 in same)
        assert r[-1] == f"{hit}/{len(same)}"
        assert _plain(r[-2]) == _fixed(np.asarray(trace["train.target_prob.after"])[b, t])


def test_steepest_table_orders_the_tensors_by_their_largest_gradient(trace):
    m = macros_for(trace)
    rows = _rows(m.steepest_table())
    largest = {n: np.abs(trace["grad." + n]).max() for n in _params(trace)}
    order = sorted(largest, key=lambda n: -largest[n])
    assert [r[0] for r in rows] == [f"`grad.{n}`" for n in order]
    for r, name in zip(rows, order):
        assert _plain(r[1]).lstrip(MINUS) == _fixed(largest[name])
        assert r[3] == _fixed(np.abs(trace["grad." + name]).mean())
    assert {"grad." + n for n in order} <= m.ctx.shown


def test_loss_table_shows_the_losses_and_their_changes(trace):
    loss = np.asarray(trace["train.loss"])
    rows = _rows(macros_for(trace).loss_table())
    assert [int(r[0]) for r in rows] == list(range(len(loss)))  # 3 steps: every step is picked
    for r in rows:
        k = int(r[0])
        assert _plain(r[1]) == _fixed(loss[k])
        assert r[2] == ("" if k == 0 else f"{loss[k] - loss[k - 1]:+.3g}")


def test_generation_table_has_each_written_word(trace):
    text = str(macros_for(trace).generation_table())
    assert text.startswith("| $j$ | initial weights | after 3 steps | text ")
    vocab = trace.labels["vocab"]
    rows = _rows(text)
    assert len(rows) == len(trace["train.generate.after"])
    for r, i, j in zip(rows, trace["train.generate.before"], trace["train.generate.after"]):
        assert _plain(r[1]).endswith(" " + vocab[int(i)].replace("<", "&#60;").replace(">", "&#62;"))
        assert _plain(r[2]).endswith(" " + vocab[int(j)].replace("<", "&#60;").replace(">", "&#62;"))


def test_trained_attention_folds_every_head_not_shown(trace):
    m = macros_for(trace)
    text = str(m.trained_attention())
    L, H = int(trace.config["model"]["n_layers"]), int(trace.config["model"]["n_heads"])
    assert text.count('<details class="more">') == L - (H == 1)
    assert text.count("</details>") == L - (H == 1)
    shown = re.findall(r'class="matrix" data-record="(train\.L\d\.attn\.weights\.after)" data-at="0,(\d+)"', text)
    assert shown == [(f"train.L{layer}.attn.weights.after", str(h)) for layer in range(L) for h in range(H)
                     if (layer, h) != (0, 0)]


def test_record_tables_list_every_record_once_by_phase(trace):
    text = str(macros_for(trace).record_tables())
    phases = list(dict.fromkeys(r.phase for r in trace.records))
    sections = re.findall(r"^## (\w+) \((\d+) records\)$", text, re.M)
    assert sections == [(p.capitalize(), str(sum(r.phase == p for r in trace.records))) for p in phases]
    names = re.findall(r"^\| `([^`]+)` \|", text, re.M)
    assert names == [r.name for r in trace.records]


def test_the_reference_sentences_follow_the_config():
    """ref.momentum_unused speaks only for a momentum that Adam or AdamW ignores; ref.blocks_repeat only for a model of
    several blocks, naming how many, and the residual record it names is in the trace."""
    from site_build.facts import ref

    cases = [({"optimizer": {"name": "adam", "momentum": 0.9}}, True, 1),
             ({"optimizer": {"name": "sgd", "momentum": 0.9}, "model": {"n_layers": 3}}, False, 3),
             ({"model": {"n_layers": 2}}, False, 2)]
    for config, unused, blocks in cases:
        trace = engine.run(config_from_dict({"train_steps": 0, **config}, "test"))
        assert bool(ref.momentum_unused(trace)) is unused
        sentence = str(ref.blocks_repeat(trace))
        assert (sentence != "") == (blocks > 1)
        if blocks > 1:
            assert sentence.startswith(f"With {['', 'one', 'two', 'three'][blocks]} blocks,")
            assert f"L{blocks - 1}.resid_2" in trace and "L0.resid_2" in trace


def test_value_list_lists_the_elements_as_a_sentence(trace):
    loss = np.asarray(trace["train.loss"])
    for k in (1, 2, 3):
        m = macros_for(trace)
        text = str(m.value_list("train.loss", [(i,) for i in range(k)]))
        shown = [_fixed(x) for x in loss[:k]]
        assert _plain(text) == (shown[0] if k == 1 else ", ".join(shown[:-1]) + " and " + shown[-1])
        assert "train.loss" in m.ctx.shown
    with pytest.raises(MacroError, match="give a list of indices"):
        macros_for(trace).value_list("train.loss", [])


def test_repeat_at_is_where_a_word_repeats_with_other_next_words():
    from site_build.facts import train

    trace = engine.run(config_from_dict({"train_steps": 1, "data": {"texts": ["the cat sat on the mat"]}}, "test"))
    ins, tgs = trace.labels["inputs"][0], trace.labels["targets"][0]
    at = train.repeat_at(trace)
    assert [t for _, t in at] == [t for t, w in enumerate(ins) if w == "the"] and {b for b, _ in at} == {0}
    assert len({tgs[t] for _, t in at}) > 1  # "the cat", "the mat"
    plain = engine.run(config_from_dict({"train_steps": 1, "data": {"texts": ["the cat sat"]}}, "test"))
    assert train.repeat_at(plain) == []
