"""`model: {from: PATH}`: a Hugging Face GPT-2 checkpoint and its byte-level BPE tokenizer as the model.

The tests make their own checkpoint (a small random GPT2LMHeadModel saved with safetensors, and a tokenizer
trained on a few sentences): the hub is out of reach here, and the code path is the same as for `gpt2`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hf_checkpoint import make_checkpoint
from oracle import max_abs, oracle_step
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel

from engine import ConfigError, load_config, run
from engine.checkpoint import _byte_decoder, readable
from engine.config import config_from_dict

TEXTS = ["the cat sat on the mat", "a dog ran"]  # two lengths: the batch is padded


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A checkpoint folder as `save_pretrained` leaves it: config.json, model.safetensors, tokenizer.json."""
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def config_file(tmp_path, folder, extra: str = "") -> str:
    f = tmp_path / "c.yaml"
    f.write_text(f"model:\n  from: {folder}\n{extra}data:\n  texts: {json.dumps(TEXTS)}\ntrain_steps: 2\n")
    return str(f)


@pytest.fixture(scope="module")
def trace(folder, tmp_path_factory):
    return run(load_config(config_file(tmp_path_factory.mktemp("cfg"), folder)))


def test_sizes_and_vocabulary_come_from_the_checkpoint(trace, folder):
    conf = json.loads((folder / "config.json").read_text())
    m = trace.config["model"]
    assert (m["d_model"], m["n_heads"], m["n_layers"], m["n_positions"], m["d_ff"]) == (12, 3, 2, 16, 48)
    assert len(m["vocab"]) == conf["vocab_size"] and m["from"] == str(folder) and "init_std" not in m


def test_initial_weights_are_the_files(trace, folder):
    tensors = load_file(str(folder / "model.safetensors"))
    for key, names in trace.index.items():
        if key.startswith("transformer."):
            assert trace[names["initial"]].dtype == np.float64
            assert np.array_equal(trace[names["initial"]], tensors[key].astype(np.float64)), key


def test_input_ids_are_the_tokenizers(trace, folder):
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bos = tok.token_to_id("<|endoftext|>")
    seqs = [[bos, *tok.encode(t, add_special_tokens=False).ids] for t in TEXTS]
    T = max(len(s) for s in seqs) - 1
    for b, s in enumerate(seqs):
        assert trace["input_ids"][b, : len(s) - 1].tolist() == s[:-1]
        assert trace["targets"][b, : len(s) - 1].tolist() == s[1:]
        assert (trace["input_ids"][b, len(s) - 1 :] == bos).all()  # padded with EOS (GPT-2 has no pad token)
        assert (trace["targets"][b, len(s) - 1 :] == -100).all()
    assert trace["input_ids"].shape == (2, T)
    assert "␣cat" in trace.labels["inputs"][0] or "␣sat" in trace.labels["inputs"][0]


def test_the_step_equals_hugging_faces(trace, folder):
    model = GPT2LMHeadModel.from_pretrained(folder).to(torch.float64).eval()
    ref = oracle_step(trace, model)
    assert max_abs(trace["logits"], ref["logits"]) < 1e-12
    assert abs(float(trace["loss"]) - ref["loss"]) < 1e-12
    for key in ref["keys"]:
        names = trace.index[key]
        assert max_abs(trace[names["grad"]], ref["grads"][key]) < 1e-12, key
        tol = 1e-9 * trace.config["optimizer"]["lr"] if key.endswith("c_attn.bias") else 1e-12
        assert max_abs(trace[names["updated"]], ref["updated"][key]) < max(tol, 1e-12), key


def test_a_vocab_and_merges_tokenizer_reads_as_its_tokenizer_json(trace, folder, tmp_path):
    """`vocab.json` + `merges.txt` (the older Hugging Face layout) instead of `tokenizer.json`: the same ids, so
    the same step."""
    other = tmp_path / "vocab-merges"
    other.mkdir()
    for name in ("config.json", "model.safetensors"):
        (other / name).write_bytes((folder / name).read_bytes())
    Tokenizer.from_file(str(folder / "tokenizer.json")).model.save(str(other))  # writes vocab.json, merges.txt
    assert sorted(p.name for p in other.iterdir()) == ["config.json", "merges.txt", "model.safetensors", "vocab.json"]
    again = run(load_config(config_file(tmp_path, other)))
    assert np.array_equal(again["input_ids"], trace["input_ids"])
    assert np.array_equal(again["targets"], trace["targets"])
    assert again.labels["inputs"] == trace.labels["inputs"]
    assert float(again["loss"]) == float(trace["loss"])


def test_readable_tokens():
    assert readable("Ġcat") == "␣cat" and readable("Ċ") == "↵" and readable("<|endoftext|>") == "<|endoftext|>"
    assert readable("Ã©") == "é"
    # every other control byte (GPT-2 has a token for each) as its Unicode picture, never as itself
    encoder = {b: ch for ch, b in _byte_decoder().items()}
    for byte, shown in ((0x00, "␀"), (0x0D, "␍"), (0x1B, "␛"), (0x7F, "␡")):
        assert readable(encoder[byte] + "a") == shown + "a"
    assert all(ch.isprintable() for b in range(256) for ch in readable(encoder[b]))


@pytest.mark.parametrize("extra, message", [
    ("  d_model: 16\n", "model.d_model: is given beside model.from"),
    ("  vocab: [a, b]\n", "model.vocab: is given beside model.from"),
])
def test_sizes_beside_from_are_refused(tmp_path, folder, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_file(tmp_path, folder, extra))


def test_bad_checkpoint_folders_are_one_line(tmp_path, folder):
    with pytest.raises(ConfigError, match="model.from: .*nowhere: no such folder"):
        config_from_dict({"model": {"from": str(tmp_path / "nowhere")}}, "c.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json is missing"):
        config_from_dict({"model": {"from": str(tmp_path / "empty")}}, "c.yaml")
    bad = tmp_path / "relu"
    bad.mkdir()
    conf = json.loads((folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**conf, "activation_function": "relu"}))
    with pytest.raises(ConfigError, match="activation_function is 'relu'"):
        config_from_dict({"model": {"from": str(bad)}}, "c.yaml")
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (no_weights / name).write_bytes((folder / name).read_bytes())
    cfg = config_from_dict({"model": {"from": str(no_weights)}, "train_steps": 0}, "c.yaml")
    with pytest.raises(ConfigError, match="model.safetensors is missing"):
        run(cfg)
    with pytest.raises(ConfigError, match=r"data.texts\[0\]: is \d+ tokens long"):
        config_from_dict({"model": {"from": str(folder)}, "data": {"texts": ["the cat sat " * 10]}}, "c.yaml")


def test_make_verify_checks_a_checkpoints_trace(trace):
    """`make verify CONFIG=...` on a checkpoint: every activation, gradient and update against Hugging Face (its
    vocabulary has no <bos>; the model starts from the checkpoint's own first token)."""
    from verify_hf import verification

    data = verification(trace)
    assert data["format"] == "handstep-verification" and len(data["max_abs_diff"]) > 50
    loose = {name for name in data["max_abs_diff"] if name.startswith("updated.") and name.endswith("c_attn.bias")}
    assert max(v for k, v in data["max_abs_diff"].items() if k not in loose) < 1e-12
    assert max(data["max_abs_diff"][k] for k in loose) < 1e-9 * trace.config["optimizer"]["lr"] + 1e-12
