"""The training run's facts (site_build/facts/train.py), checked against the loss curve and the texts themselves."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build.facts import train


def _run(raw: dict):
    return engine.run(config_from_dict(raw, "test"))


@pytest.fixture(scope="module")
def repeated():
    return _run({"data": {"texts": ["the dog ran on the mat the cat"]}, "train_steps": 20})


@pytest.fixture(scope="module")
def batch():
    return _run({"data": {"texts": ["the cat", "the dog ran on the mat"]}, "train_steps": 7})


def test_the_loss_table_shows_the_milestones_up_to_the_last_step(repeated, batch):
    assert [k for k, _ in train.loss_rows(repeated)] == [0, 1, 2, 3, 5, 10, 20]
    assert [k for k, _ in train.loss_rows(batch)] == [0, 1, 2, 3, 5, 7]
    L = np.asarray(repeated["train.loss"])
    for k, change in train.loss_rows(repeated)[1:]:
        assert change == pytest.approx(L[k] - L[k - 1])


def test_halving_rises_and_the_tenths_follow_the_curve(repeated, batch):
    for trace in (repeated, batch):
        L = np.asarray(trace["train.loss"])
        half = train.half_step(trace)
        below = np.flatnonzero(L[1:] <= L[0] / 2)
        assert half == (int(below[0]) + 1 if below.size else None)
        assert train.rises(trace) == int((np.diff(L) > 0).sum())
    L = np.asarray(repeated["train.loss"])
    assert train.tenth(repeated) == 2
    assert train.early_fall(repeated) == pytest.approx(L[0] - L[2])
    assert train.late_fall(repeated) == pytest.approx(L[18] - L[20])


def test_a_shared_prefix_with_two_continuations_is_ambiguous(batch):
    # both texts start "<bos> the": after "<bos>" the next word is "the" in both; after "<bos> the" it is "cat"
    # in one and "dog" in the other
    firsts = [p for p in train.places(batch) if p.t == 1]
    assert [(p.b, p.target, p.hit, p.same) for p in firsts] == [(0, "cat", 1, 2), (1, "dog", 1, 2)]
    assert {(p.b, p.t) for p in train.ambiguous(batch)} == {(0, 1), (1, 1)}
    assert all(p.hit == p.same for p in train.places(batch) if p.t != 1)


def test_the_repeated_word_and_what_follows_it(repeated):
    rep = train.repeat(repeated)
    assert (rep.b, rep.word, rep.where, rep.nexts) == (0, "the", [1, 5, 7], ["dog", "mat", "cat"])
    assert train.ambiguous(repeated) == []


def test_the_greedy_text_is_compared_word_for_word(repeated):
    rows = train.generation_rows(repeated)
    assert len(rows) == train.generated(repeated)
    compared = [(before, after, ref) for _, before, after, ref in rows if ref is not None]
    assert len(compared) == train.compared(repeated)
    assert train.hits_after(repeated) == sum(after == ref for _, after, ref in compared)
    assert train.hits_before(repeated) == sum(before == ref for before, _, ref in compared)


# -- the sentences the page takes whole, as this run makes them -------------------------------------------------------
@pytest.fixture(scope="module")
def untrained():
    return _run({"train_steps": 0})


def test_the_run_says_how_often_it_repeats_the_step(repeated, batch, untrained):
    assert "repeats it 20 times (`train_steps: 20`)" in train.repeated(repeated)
    assert "repeats it 7 times" in train.repeated(batch)
    assert train.repeated(untrained).startswith("This build runs no training at all")
    assert "_{20}$ the loss after the last of the 20 steps." in train.loss_steps(repeated)
    assert train.loss_steps(untrained).startswith("With no steps")


def test_the_course_of_the_loss_follows_the_curve(repeated, batch):
    for trace in (repeated, batch):
        course = str(train.course(trace))
        half = train.half_step(trace)
        assert (f"It halved by step {half}" in course) == bool(half)
        if train.rises(trace):
            assert f"On {train.rises(trace)} of the" in course
        else:
            assert "It fell at every single step." in course


def test_every_ambiguous_place_is_named_once(batch, repeated):
    said = str(train.learnable(batch))
    assert said.count(" places where that exact prefix occurs") == len(train.ambiguous(batch)) == 2
    assert "Every position can be learned" not in said
    said = str(train.learnable(repeated))
    assert said.startswith("Every position can be learned for sure")
    assert "appears at positions 1, 5 and 7" in said and "“dog”, “mat” and “cat”" in said
    assert "the three places look different" in said
    assert train.repeat_trained(repeated) and not train.repeat_trained(batch)


def test_the_greedy_text_is_compared_with_its_reference(repeated, batch, untrained):
    for trace in (repeated, batch):
        said = str(train.what_it_wrote(trace))
        if train.learned_text(trace):
            assert "word for word" in said
        else:
            assert f"; after\n{train.steps(trace)} steps, {train.hits_after(trace)}." in said
        assert ("this batch has two texts" in said or "one of the two texts" in said) == (train.texts(trace) > 1)
    assert str(train.what_it_wrote(untrained)).startswith("Without training the two rows are the same: "
                                                         f"{train.hits_before(untrained)} of the")


def test_the_model_is_big_or_small_for_its_targets(repeated):
    said = str(train.capacity(repeated))
    assert f"With {train.targets(repeated)} targets to fit" in said
    assert train.can_memorise(repeated)
