"""Greedy generation with a key/value cache (engine/generate.py) picks the same words as decoding with the model's
own forward pass over the whole prefix, for every config shape that matters (layers, heads, trained weights)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import model
from engine.config import config_from_dict
from engine.generate import generate


def greedy_by_forward(params, cfg, bos, length):
    """The plain way: run model.forward on the whole prefix and take the last position's highest logit."""
    seq = [int(bos)]
    for _ in range(length):
        ids = np.array([seq], dtype=np.int64)
        t = model.tape(cfg, params, ids, ids)
        model.forward(t, cfg)
        seq.append(int(np.argmax(t.v["logits"][0, -1])))
    return seq[1:]


CONFIGS = {
    "default": {},
    "two layers, one head": {"model": {"n_layers": 2, "n_heads": 1}},
    "three layers, four heads, big init": {"model": {"n_layers": 3, "n_heads": 4, "init_std": 0.5}, "seed": 3},
    # rotary positions (the cached keys keep the angle of their own position) and a K/V head per two query heads
    "llama, grouped-query, two layers": {"model": {"arch": "llama", "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                                                   "init_std": 0.5}},
    "llama, one K/V head, tied": {"model": {"arch": "llama", "n_heads": 2, "n_kv_heads": 1, "tie_embeddings": True,
                                            "rope_theta": 50.0}, "seed": 5},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_generation_equals_decoding_with_forward(name):
    cfg = config_from_dict(CONFIGS[name], "test")
    params = model.init_params(cfg)
    rng = np.random.default_rng(1)
    # random weights around the initial ones, so the argmax differs from word to word
    params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in params.items()}
    length = cfg.model.n_positions - 1
    words = generate(params, cfg, 1, length).tolist()
    assert words == greedy_by_forward(params, cfg, 1, length)
    assert len(set(words)) > 1, "the test needs a generation that is not one word repeated"



def test_a_big_model_writes_a_shorter_text():
    """Each generated word reads every weight once: a small model writes as many words as the text has tokens,
    GPT-2 small (124M weights) 16 of its 64, and never fewer than 8."""
    from engine.generate import GENERATE_READS, words_to_generate

    assert words_to_generate(64, 10_000) == 64
    assert words_to_generate(64, 124_439_808) == GENERATE_READS // 124_439_808 == 16
    assert words_to_generate(64, 10**12) == 8 and words_to_generate(5, 10**12) == 5
