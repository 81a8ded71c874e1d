"""`model: {from: PATH}` with a Hugging Face Llama-architecture folder: config.json (`model_type: llama`),
model.safetensors in bfloat16 and a `tokenizers` tokenizer, checked against LlamaForCausalLM.from_pretrained of the
same folder (made float64 by the oracle) + torch.optim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_checkpoint import make_llama_checkpoint
from oracle import FLOAT64_ATTENTION, float64_llama, max_abs, oracle_step
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

from engine import ConfigError, load_config, run
from engine.config import config_from_dict

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["the cat sat on the mat", "a dog ran"]  # two lengths: the batch is padded
TOL = 1e-12
NOISE_GRAD, UPDATE_TOL = 1e-6, 1e-9  # as test_oracle: Adam turns a rounding-noise gradient into ~1e-11


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def folder(request, tmp_path_factory):
    return make_llama_checkpoint(tmp_path_factory.mktemp("llama"), tie=request.param)


def config_file(tmp_path: Path, folder: Path, extra: str = "", optimizer: str = "") -> str:
    f = tmp_path / "c.yaml"
    f.write_text(f"model:\n  from: {folder}\n{extra}data:\n  texts: {json.dumps(TEXTS)}\n{optimizer}train_steps: 2\n")
    return str(f)


@pytest.fixture(scope="module")
def trace(folder, tmp_path_factory):
    return run(load_config(config_file(tmp_path_factory.mktemp("cfg"), folder)))


def hf_from_folder(folder: Path) -> LlamaForCausalLM:
    model = LlamaForCausalLM.from_pretrained(folder, attn_implementation=FLOAT64_ATTENTION)
    return float64_llama(model.to(torch.float64).eval())


def test_the_architecture_and_sizes_come_from_config_json(trace, folder):
    conf = json.loads((folder / "config.json").read_text())
    m = trace.config["model"]
    assert list(m)[0] == "arch" and m["arch"] == "llama" and m["from"] == str(folder) and "init_std" not in m
    assert (m["d_model"], m["n_heads"], m["n_kv_heads"], m["n_layers"], m["d_ff"], m["n_positions"]) == \
        (16, 4, 2, 2, 24, 32)
    assert (m["rope_theta"], m["norm_eps"]) == (500.0, 1e-5)  # read from rope_parameters (transformers 5's form)
    assert m["tie_embeddings"] == conf["tie_word_embeddings"] and len(m["vocab"]) == conf["vocab_size"]


def test_bfloat16_weights_are_read_exactly(trace, folder):
    tensors = load_file(str(folder / "model.safetensors"))
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    for key, names in trace.index.items():
        if isinstance(names, dict):
            stored = tensors.get(key, tensors.get("lm_head.weight"))  # a tied file may keep one name of the two
            assert np.array_equal(trace[names["initial"]], stored.to(torch.float64).numpy()), key


def test_every_text_starts_with_the_folders_bos_once(trace, folder):
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    assert tok.encode("the cat").ids[0] == bos  # the tokenizer's own template adds <s>: handstep must not add two
    for b, text in enumerate(TEXTS):
        seq = [bos, *tok.encode(text, add_special_tokens=False).ids]
        assert trace["input_ids"][b, : len(seq) - 1].tolist() == seq[:-1]
        assert trace["targets"][b, : len(seq) - 1].tolist() == seq[1:]
        pad = slice(len(seq) - 1, None)  # padded with the folder's EOS; no target there
        assert (trace["input_ids"][b, pad] == eos).all() and (trace["targets"][b, pad] == -100).all()
    assert trace.labels["inputs"][0][:3] == ["<s>", "▁the", "▁cat"]


def test_the_step_equals_llama_for_causal_lm_from_the_same_folder(trace, folder):
    """from_pretrained of the folder (bfloat16 weights, made float64), not the engine's numbers: logits, loss, every
    gradient, the update."""
    ref = oracle_step(trace, hf_from_folder(folder))
    assert max_abs(trace["logits"], ref["logits"]) < TOL and abs(float(trace["loss"]) - ref["loss"]) < TOL
    assert abs(float(trace["after.loss"]) - ref["after_loss"]) < 1e-10
    for key in ref["keys"]:
        names = trace.index[key]
        assert max_abs(trace[names["grad"]], ref["grads"][key]) < TOL, key
        noise = np.abs(ref["grads"][key]) <= NOISE_GRAD
        assert max_abs(trace[names["updated"]][~noise], ref["updated"][key][~noise]) < TOL, key
        assert max_abs(trace[names["updated"]][noise], ref["updated"][key][noise]) < UPDATE_TOL, key


def test_the_step_with_sgd_equals_hugging_faces(folder, tmp_path):
    trace = run(load_config(config_file(tmp_path, folder, optimizer="optimizer:\n  name: sgd\n  momentum: 0.9\n")))
    ref = oracle_step(trace, hf_from_folder(folder))
    for key in ref["keys"]:
        assert max_abs(trace[trace.index[key]["updated"]], ref["updated"][key]) < TOL, key


def _copy(src: Path, dst: Path, skip: str = "", **changes) -> Path:
    """A copy of the folder without `skip`, with config.json's keys changed (None: removed)."""
    dst.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        if name != skip:
            (dst / name).write_bytes((src / name).read_bytes())
    if skip != "config.json":
        conf = json.loads((src / "config.json").read_text())
        conf.update(changes)
        (dst / "config.json").write_text(json.dumps({k: v for k, v in conf.items() if v is not None}))
    return dst


BAD = [
    ({"skip": "config.json"}, "config.json is missing (a Hugging Face checkpoint folder has it)"),
    ({"skip": "tokenizer.json"}, "no tokenizer (tokenizer.json, or vocab.json and merges.txt) in the folder"),
    ({"skip": "model.safetensors"}, "model.safetensors is missing; save the model with save_pretrained"),
    ({"model_type": "mistral"}, "config.json: model_type is 'mistral'; handstep reads gpt2 and llama checkpoints"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "config.json: rope_scaling is {'factor': 8.0, "
     "'rope_type': 'llama3'}; handstep computes the default rotary embedding only (no scaling): use a checkpoint "
     "without it"),
    ({"rope_parameters": {"rope_theta": 500.0, "rope_type": "yarn", "factor": 4.0}}, "config.json: rope_parameters "
     "is {'factor': 4.0, 'rope_theta': 500.0, 'rope_type': 'yarn'}; handstep computes the default rotary embedding"),
    ({"head_dim": 8}, "config.json: head_dim 8 differs from hidden_size / num_attention_heads = 4; handstep's heads "
     "are hidden_size / num_attention_heads wide"),
    ({"num_key_value_heads": 3}, "config.json: num_key_value_heads 3 does not divide num_attention_heads 4"),
    ({"hidden_act": "gelu"}, "config.json: hidden_act is 'gelu'; handstep computes Llama with hidden_act 'silu'"),
    ({"attention_bias": True}, "config.json: attention_bias is True; handstep computes Llama with attention_bias "
     "False"),
    ({"hidden_size": None}, "config.json: hidden_size must be a whole number ≥ 1, got None"),
    ({"rms_norm_eps": 0}, "config.json: rms_norm_eps must be a number > 0, got 0"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(": ", 1)[-1][:40] for _, m in BAD])
def test_a_bad_llama_folder_is_one_line(tmp_path, folder, change, message):
    change = dict(change)
    bad = _copy(folder, tmp_path / "bad", change.pop("skip", ""), **change)
    with pytest.raises(ConfigError) as exc:
        run(config_from_dict({"model": {"from": str(bad)}, "train_steps": 0}, "c.yaml"))
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"c.yaml: model.from: {bad}") and message in text, text


def test_an_odd_head_size_is_refused(tmp_path, folder):
    bad = _copy(folder, tmp_path / "odd", hidden_size=12, head_dim=None)  # 12 / 4 = 3 dimensions a head
    with pytest.raises(ConfigError, match=r"config.json: heads of hidden_size / num_attention_heads = 3 dimensions; "
                                          r"rotary embeddings turn pairs of dimensions, so the size must be even"):
        config_from_dict({"model": {"from": str(bad)}}, "c.yaml")


@pytest.mark.parametrize("key", ["arch", "n_kv_heads", "rope_theta", "norm_eps"])
def test_llama_keys_beside_from_are_refused(tmp_path, folder, key):
    value = {"arch": "llama", "n_kv_heads": 2, "rope_theta": 10000, "norm_eps": 1e-6}[key]
    with pytest.raises(ConfigError, match=f"model.{key}: is given beside model.from, whose config.json says the "
                                          "architecture and its keys"):
        load_config(config_file(tmp_path, folder, extra=f"  {key}: {value}\n"))


def test_a_bad_folder_exits_2_without_a_traceback(tmp_path, folder):
    bad = _copy(folder, tmp_path / "bad", rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    done = subprocess.run([sys.executable, "-m", "site_build.cli", "trace", "--config", config_file(tmp_path, bad),
                           "--out", str(tmp_path / "t.json")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "rope_scaling is {'factor': 2.0, 'rope_type': 'dynamic'}; handstep computes the default rotary" in \
        done.stderr and not (tmp_path / "t.json").exists()


def test_make_verify_checks_a_llama_checkpoints_trace(trace):
    """`make verify CONFIG=...` on a Llama folder: every hooked activation and its gradient, every parameter's gradient
    and update against LlamaForCausalLM (its vocabulary has no <bos>: the model starts from the folder's <s>)."""
    from verify_hf import verification

    data = verification(trace)
    assert "LlamaForCausalLM" in data["oracle"] and "float64" in data["oracle"]
    assert {"rope.cos", "grad.L1.attn.xk", "updated.lm_head.weight" if "lm_head.weight" in trace
            else "updated.wte"} <= set(data["max_abs_diff"])
    assert max(data["max_abs_diff"].values()) < 1e-12
