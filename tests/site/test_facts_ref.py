"""The reference pages' facts (site_build/facts/ref.py): config values as the table shows them, phases, records."""

from __future__ import annotations

from html import unescape

import pytest

import engine
from engine.config import config_from_dict
from site_build.facts import ref


@pytest.fixture(scope="module")
def trace():
    return engine.run(config_from_dict({"model": {"n_layers": 2, "vocab": ["<pad>", "<bos>", "<eos>", "a&b", "c"]},
                                        "data": {"texts": ["a&b c"]}, "train_steps": 1}, "test"))


def test_config_values_are_shown_escaped_and_item_by_item(trace):
    assert ref.show(trace, "model.n_layers") == "`2`"
    assert ref.show(trace, "optimizer.betas") == "`0.9`, `0.999`"
    first = ref.show(trace, "model.vocab", 2)
    assert unescape(first) == "<code><pad></code>, <code><bos></code>" and "<pad>" not in first
    every = ref.show(trace, "model.vocab")
    assert "a&b" not in every and "<code>a&b</code>" in unescape(every) and unescape(every).count("<code>") == 5
    assert ref.vocab_more(trace) == 0 and ref.vocab_size(trace) == 5


def test_phases_in_order_and_each_record_once(trace):
    assert ref.phases(trace) == list(dict.fromkeys(r.phase for r in trace.records))
    rows = [row for phase in ref.phases(trace) for row in ref.records(trace, phase)]
    assert [row.name for row in rows] == [r.name for r in trace.records]
    assert ref.values(trace) == sum(r.value.size for r in trace.records)
    twins = {row.name: row.twin for row in rows}
    assert twins["L1.attn.scores"] == "L0.attn.scores"
    assert twins["L0.attn.scores"] == "" and twins["loss"] == ""


def test_a_figure_of_the_run_is_worked_out_once_even_from_two_threads():
    """per_run: a page asking for a figure a background lane is working out waits for it (the make runs once, every
    caller gets its value), a failure reaches its caller and the next caller tries again, and a kept figure
    pickles without its lock."""
    import pickle
    import threading
    import time

    from site_build.figures import per_run

    class Run:
        pass

    run, calls = Run(), []

    def make():
        calls.append(1)
        time.sleep(0.05)
        return len(calls)

    got = []
    threads = [threading.Thread(target=lambda: got.append(per_run(run, "k", make))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and got == [1, 1, 1, 1]

    def fail():
        raise ValueError("no")

    with pytest.raises(ValueError):
        per_run(run, "bad", fail)
    assert per_run(run, "bad", lambda: 7) == 7
    kept = pickle.loads(pickle.dumps(run.__dict__["_facts_once"]))
    assert kept["k"].get(fail) == 1 and kept["bad"].get(fail) == 7
