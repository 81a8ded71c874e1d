"""`model: {from: PATH}`: a Hugging Face GPT-2 checkpoint and its byte-level BPE tokenizer as the model.

The tests make their own checkpoint (a small random GPT2LMHeadModel saved with safetensors, and a tokenizer
trained on a few sentences): the hub is out of reach here, and the code path is the same as for `gpt2`.
"""

from __future__ import annotations

import json
import os

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
        dg = max_abs(trace[names["grad"]], ref["grads"][key])
        assert dg < 1e-12, key
        assert max_abs(trace[names["updated"]], ref["updated"][key]) < update_tolerance(trace, dg), key


def update_tolerance(trace, grad_diff: float) -> float:
    """How far an update may differ from PyTorch's, given how far its gradient does: Adam's first step is
    lr * g / (|g| + eps), which moves by at most lr * Δg / eps, so a gradient that is rounding noise (the key bias':
    exactly zero in exact arithmetic, 1e-17 in floats) moves its update by up to lr * 1e-9, more on a CPU whose
    BLAS rounds differently. Twice that, and 1e-12 for everything else."""
    opt = trace.config["optimizer"]
    adam = opt["name"] in ("adam", "adamw")
    return 1e-12 + (2 * opt["lr"] * grad_diff / opt["eps"] if adam else 0.0)


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
    figures = data["max_abs_diff"]
    for name, diff in figures.items():
        grad = "grad." + name.removeprefix("updated.")
        tol = update_tolerance(trace, figures[grad]) if name.startswith("updated.") else 1e-12
        assert diff < tol, name


# -- an untied output layer (tie_word_embeddings: false) ----------------------------------------------------------
def assert_matches_hugging_face(trace, model) -> None:
    """Loss, logits, every gradient and every updated tensor against `model` (float64) + torch.optim. Adam's first
    step turns the rounding noise of a gradient that is truly zero (the key bias's) into ~1e-11, so those elements
    are held to 1e-9 (as in test_oracle.py), every other one to 1e-12."""
    ref = oracle_step(trace, model)
    assert max_abs(trace["logits"], ref["logits"]) < 1e-12
    assert abs(float(trace["loss"]) - ref["loss"]) < 1e-12
    assert set(ref["keys"]) == {k for k, v in trace.index.items() if isinstance(v, dict)}
    loose = 1e-9 * max(1.0, trace.config["optimizer"]["lr"] / 0.01)
    for key in ref["keys"]:
        names = trace.index[key]
        assert max_abs(trace[names["grad"]], ref["grads"][key]) < 1e-12, key
        noise = np.abs(ref["grads"][key]) <= 1e-6
        mine, theirs = trace[names["updated"]], ref["updated"][key]
        assert max_abs(mine[~noise], theirs[~noise]) < 1e-12, key
        assert max_abs(mine[noise], theirs[noise]) < loose, key


@pytest.fixture(scope="module")
def untied_folder(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("untied"), tie=False)


@pytest.mark.parametrize("optimizer", ["", "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\n",
                                       "optimizer:\n  name: adam\n  weight_decay: 0.1\n"],
                         ids=["adamw", "sgd-momentum", "adam"])
def test_an_untied_checkpoint_reads_its_own_output_layer_and_equals_hugging_face(untied_folder, tmp_path,
                                                                                 optimizer):
    conf = json.loads((untied_folder / "config.json").read_text())
    assert conf["tie_word_embeddings"] is False
    path = config_file(tmp_path, untied_folder)
    with open(path, "a", encoding="utf-8") as f:
        f.write(optimizer)
    trace = run(load_config(path))
    assert trace.config["model"]["tie_embeddings"] is False
    assert trace.index["lm_head.weight"]["grad"] == "grad.lm_head.weight" and "grad.wte.from_logits" not in trace
    tensors = load_file(str(untied_folder / "model.safetensors"))
    assert np.array_equal(trace["lm_head.weight"], tensors["lm_head.weight"].astype(np.float64))
    assert not np.array_equal(trace["lm_head.weight"], trace["wte"])  # the file's own matrix, not the token table
    model = GPT2LMHeadModel.from_pretrained(untied_folder).to(torch.float64).eval()
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    assert_matches_hugging_face(trace, model)


def test_tie_embeddings_beside_from_is_refused(tmp_path, untied_folder):
    with pytest.raises(ConfigError, match=r"model.tie_embeddings: is given beside model.from, whose config.json "
                                          r"says whether the output layer is tied \(tie_word_embeddings\)"):
        load_config(config_file(tmp_path, untied_folder, "  tie_embeddings: false\n"))


def test_an_untied_checkpoint_without_its_output_layer_says_so(tmp_path, folder):
    """config.json says untied, but the file has no lm_head.weight (it was saved tied): one line, not a wrong loss."""
    other = tmp_path / "half-untied"
    other.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        (other / name).write_bytes((folder / name).read_bytes())
    conf = json.loads((folder / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**conf, "tie_word_embeddings": False}))
    with pytest.raises(ConfigError, match=r"model.safetensors has no tensor lm_head.weight \(config.json says "
                                          r"tie_word_embeddings: false"):
        run(load_config(config_file(tmp_path, other)))
    other.rename(tmp_path / "yes")  # another folder: a folder's config.json is read once
    (tmp_path / "yes" / "config.json").write_text(json.dumps({**conf, "tie_word_embeddings": "yes"}))
    with pytest.raises(ConfigError, match="config.json: tie_word_embeddings must be true or false, got 'yes'"):
        load_config(config_file(tmp_path, tmp_path / "yes"))


def test_a_tied_checkpoint_with_another_output_layer_is_refused(tmp_path, untied_folder, folder):
    """A file with its own lm_head.weight whose config.json says tied (or says nothing: tied is the default):
    transformers 4 would tie it away, transformers 5 keeps it untied. handstep matches neither silently; it says
    what to set. A copy of the token table under that name (as some tied files hold) is the tied model."""
    other = tmp_path / "tied-again"
    other.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        (other / name).write_bytes((untied_folder / name).read_bytes())
    conf = json.loads((untied_folder / "config.json").read_text())
    conf.pop("tie_word_embeddings")
    (other / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ConfigError) as exc:
        run(load_config(config_file(tmp_path, other)))
    assert str(exc.value).endswith("model.safetensors holds an lm_head.weight that differs from "
                                   "transformer.wte.weight, but config.json ties the two (tie_word_embeddings is true "
                                   "or not given); set tie_word_embeddings to false in config.json to use it as the "
                                   "output layer")
    tensors = load_file(str(folder / "model.safetensors"))
    _copy_with_weights(folder, tmp_path / "copy", {**tensors, "lm_head.weight": tensors["transformer.wte.weight"]})
    trace = run(load_config(config_file(tmp_path, tmp_path / "copy")))
    assert "lm_head.weight" not in trace and "tie_embeddings" not in trace.config["model"]
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "copy").to(torch.float64).eval()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert_matches_hugging_face(trace, model)
    # the shared matrix kept under the output layer's name alone: it is the token table
    tensors["lm_head.weight"] = tensors.pop("transformer.wte.weight")
    _copy_with_weights(folder, tmp_path / "head-only", tensors)
    again = run(load_config(config_file(tmp_path, tmp_path / "head-only")))
    assert np.array_equal(again["wte"], trace["wte"]) and float(again["loss"]) == float(trace["loss"])


# -- weight dtypes: float16 and bfloat16 read exactly; any other dtype refused ------------------------------------
@pytest.mark.parametrize("dtype, tie", [(torch.bfloat16, True), (torch.float16, False)], ids=["bfloat16", "float16"])
def test_half_precision_weights_read_exactly_and_the_step_equals_hugging_faces(tmp_path, dtype, tie):
    """A model saved in bfloat16 (or float16): the engine widens every value exactly, and the step equals Hugging
    Face's model loaded from the same file and cast to float64: loss, every gradient, the update."""
    (tmp_path / "half").mkdir()
    folder = make_checkpoint(tmp_path / "half", tie=tie, dtype=dtype)
    trace = run(load_config(config_file(tmp_path, folder)))
    model = GPT2LMHeadModel.from_pretrained(folder, dtype=dtype)
    assert model.transformer.wte.weight.dtype == dtype
    state = model.state_dict()
    for key, names in trace.index.items():
        if isinstance(names, dict):
            theirs = state[key].to(torch.float64).numpy()
            assert np.array_equal(trace[names["initial"]], theirs), key
            assert np.array_equal(trace[names["initial"]].astype(np.float32).astype(np.float64), theirs), key
    assert_matches_hugging_face(trace, model.to(torch.float64).eval())


def test_bfloat16_is_the_upper_half_of_a_float32(tmp_path):
    """Every bit pattern of bfloat16 (normals, subnormals, ±0, ±inf, NaN) against torch's own widening."""
    from engine.checkpoint import SafetensorsFile

    bits = np.arange(1 << 16, dtype=np.uint16)
    header = json.dumps({"x": {"dtype": "BF16", "shape": [1 << 16], "data_offsets": [0, 1 << 17]}}).encode()
    path = tmp_path / "all.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bits.astype("<u2").tobytes())
    mine = SafetensorsFile(path, "all.safetensors").read("x")
    theirs = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16).to(torch.float64).numpy()
    same = (mine == theirs) | (np.isnan(mine) & np.isnan(theirs))
    assert same.all() and np.isnan(mine).sum() == 2 * 127


def _copy_with_weights(src, dst, tensors: dict) -> None:
    from safetensors.numpy import save_file

    dst.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    save_file(tensors, str(dst / "model.safetensors"))


@pytest.mark.parametrize("key, dtype, shown", [("transformer.wpe.weight", np.int32, "I32"),
                                               ("transformer.h.0.ln_1.weight", np.bool_, "BOOL"),
                                               ("transformer.wte.weight", np.int8, "I8")])
def test_weights_of_another_dtype_are_refused_naming_the_tensor(tmp_path, folder, key, dtype, shown):
    tensors = load_file(str(folder / "model.safetensors"))
    tensors[key] = tensors[key].astype(dtype)
    _copy_with_weights(folder, tmp_path / "ints", tensors)
    with pytest.raises(ConfigError) as exc:
        run(load_config(config_file(tmp_path, tmp_path / "ints")))
    msg = str(exc.value)
    assert "\n" not in msg and f"model.safetensors: tensor {key} has dtype {shown}; handstep reads float weights " \
        "only (F64, F32, F16, BF16): save the model with float weights" in msg, msg


def _safetensors(header, data: bytes = b"", length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


WPE = "transformer.wpe.weight"


@pytest.mark.parametrize("content, expected", [
    (b"", "it has 0 bytes, fewer than the 8 of a header length"),
    (b"\x05\x00", "it has 2 bytes, fewer than the 8 of a header length"),
    (_safetensors(b"{}", length=10**12), "its first 8 bytes give a header of 1000000000000 bytes, but the file has 10"),
    (_safetensors(b"{not json"), "its header is not JSON"),
    (_safetensors(b"\xff\xfe{}"), "its header is not JSON"),
    (_safetensors([1, 2]), "its header is not a JSON object"),
    (_safetensors({WPE: [1]}), f"the header entry of {WPE} is not an object"),
    (_safetensors({WPE: {"shape": [16, 12], "data_offsets": [0, 768]}}), f"the header entry of {WPE} has no dtype"),
    (_safetensors({WPE: {"dtype": "F32", "shape": "16x12", "data_offsets": [0, 768]}}),
     f"the shape of {WPE} is '16x12', not a list of sizes"),
    (_safetensors({WPE: {"dtype": "F32", "shape": [16, 12], "data_offsets": [0]}}),
     f"the data_offsets of {WPE} are [0], not [begin, end]"),
    (_safetensors({WPE: {"dtype": "F32", "shape": [16, 12], "data_offsets": [0, 768]}}, bytes(100)),
     f"{WPE} lies at bytes 0 to 768 of the data, which has 100"),
    (_safetensors({WPE: {"dtype": "F32", "shape": [16, 12], "data_offsets": [0, 700]}}, bytes(768)),
     f"{WPE} is F32 of shape [16, 12], 768 bytes, but its data_offsets span 700"),
], ids=["empty", "short", "huge header", "not json", "not utf-8", "a list", "entry", "dtype", "shape", "offsets",
        "past the end", "inconsistent"])
def test_a_damaged_safetensors_file_is_one_line(tmp_path, folder, content, expected):
    """Whatever the bytes, a clean one-line error naming the file, never a traceback (the other tensors of the
    header are not needed for these: wte is looked up first, so each case names its own tensor where it can)."""
    from engine.checkpoint import CheckpointError, SafetensorsFile

    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        tensors = SafetensorsFile(path, "x/model.safetensors")
        tensors.read(WPE)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("x/model.safetensors: ") and expected in msg, msg


def test_a_truncated_checkpoint_is_one_line(tmp_path, folder):
    damaged = tmp_path / "cut"
    damaged.mkdir()
    data = (folder / "model.safetensors").read_bytes()
    (damaged / "model.safetensors").write_bytes(data[: len(data) // 2])
    for name in ("config.json", "tokenizer.json"):
        (damaged / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(ConfigError, match=r"model.safetensors: \S+ lies at bytes \d+ to \d+ of the data, which has "
                                          r"\d+; save the model again with save_pretrained$"):
        run(load_config(config_file(tmp_path, damaged)))


def test_a_big_tensor_is_converted_a_slice_at_a_time(tmp_path, monkeypatch):
    """GPT-2's token table (38.6M values) is not widened through one temporary of its size: the reader converts
    CONVERT values at a time, straight into the float64 result, from a memory map of the file."""
    import engine.checkpoint as ck

    monkeypatch.setattr(ck, "CONVERT", 7)
    values = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    halves = (values.view(np.uint32) >> 16).astype("<u2")  # the same values cut to bfloat16
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "F32", "shape": [5, 11], "data_offsets": [0, values.nbytes]},
                         "b": {"dtype": "BF16", "shape": [5, 11],
                               "data_offsets": [values.nbytes, values.nbytes + halves.nbytes]}}).encode()
    (tmp_path / "w.safetensors").write_bytes(_safetensors(header, values.tobytes() + halves.tobytes()))
    tensors = ck.SafetensorsFile(tmp_path / "w.safetensors", "w")
    out, cut = tensors.read("w"), tensors.read("b")
    assert out.dtype == np.float64 and np.array_equal(out, values.astype(np.float64))
    assert np.array_equal(cut, (halves.astype(np.uint32) << 16).view(np.float32).astype(np.float64))
    assert 0 < np.abs(cut - out).max() < 2**-7 * np.abs(out).max()  # bfloat16 keeps 8 bits of mantissa


def _copy_with_config(src, dst, **changes) -> None:
    """A copy of the checkpoint with config.json's keys changed (None: removed)."""
    dst.mkdir()
    for name in ("tokenizer.json", "model.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    conf = json.loads((src / "config.json").read_text())
    conf.update(changes)
    (dst / "config.json").write_text(json.dumps(conf))


@pytest.mark.parametrize("changes, message", [
    ({"n_inner": 0}, "config.json: n_inner must be a whole number ≥ 1 or null (4 × n_embd), got 0"),
    ({"n_inner": "48"}, "n_inner must be a whole number ≥ 1 or null (4 × n_embd), got '48'"),
    ({"n_inner": 48.0}, "n_inner must be a whole number ≥ 1 or null (4 × n_embd), got 48.0"),
    ({"bos_token_id": True}, "config.json: bos_token_id True is not a token id"),
    ({"vocab_size": 10**12}, "config.json: vocab_size 1000000000000 makes a token table of at least "
                             "2,000,000,000,000 bytes, more than all of model.safetensors"),
], ids=["n_inner 0", "n_inner text", "n_inner float", "bos true", "vocab_size past the file"])
def test_config_values_hugging_face_would_read_otherwise_are_refused(tmp_path, folder, changes, message):
    """Hugging Face builds an MLP of width 0 from n_inner 0 and fails on a text or a float; a vocab_size no file could
    hold is refused before a word is made for each id (10**12 of them would fill the memory)."""
    _copy_with_config(folder, tmp_path / "ck", **changes)
    with pytest.raises(ConfigError) as exc:
        run(load_config(config_file(tmp_path, tmp_path / "ck")))
    assert "\n" not in str(exc.value) and message in str(exc.value), exc.value


def test_a_tensor_under_both_names_with_other_values_is_refused(tmp_path, folder):
    """`transformer.h.0...` and `h.0...` in one file: the same values are one tensor; different ones are refused
    (transformers 5 reads the other name than handstep would, silently)."""
    tensors = load_file(str(folder / "model.safetensors"))
    key = "transformer.h.0.ln_1.weight"
    _copy_with_weights(folder, tmp_path / "same", {**tensors, key.removeprefix("transformer."): tensors[key]})
    trace = run(load_config(config_file(tmp_path, tmp_path / "same")))
    assert np.array_equal(trace[trace.index[key]["initial"]], tensors[key].astype(np.float64))
    _copy_with_weights(folder, tmp_path / "both", {**tensors, key.removeprefix("transformer."): tensors[key] + 1})
    with pytest.raises(ConfigError, match=r"model.safetensors holds both transformer.h.0.ln_1.weight and "
                                          r"h.0.ln_1.weight, with different values; keep one of them$"):
        run(load_config(config_file(tmp_path, tmp_path / "both")))


def _layout(entries: dict, data: bytes, meta=None) -> bytes:
    header = {k: {"dtype": "F32", "shape": [n], "data_offsets": list(at)} for k, (n, at) in entries.items()}
    if meta is not None:
        header["__metadata__"] = meta
    return _safetensors(header, data)


@pytest.mark.parametrize("content, expected", [
    (_layout({"a": (2, (0, 8)), "b": (2, (0, 8))}, bytes(8)), "b starts at byte 0 of the data, inside another tensor"),
    (_layout({"a": (2, (0, 8)), "b": (2, (12, 20))}, bytes(20)), "bytes 8 to 12 of its data belong to no tensor"),
    (_layout({"a": (2, (0, 8))}, bytes(12)), "its tensors end at byte 8 of the data, which has 12"),
    (_layout({"a": (2, (0, 8)), "v_head": (2, (8, 10**9))}, bytes(16)), "v_head lies at bytes 8 to 1000000000"),
    (_layout({"a": (2, (0, 8))}, bytes(8), meta=[1]), "its __metadata__ is [1], not an object of strings"),
    (_layout({"a": (2, (0, 8))}, bytes(8), meta={"format": {"pt": 1}}), "not an object of strings"),
    (_safetensors(b'{"a": ' + b"9" * 5000 + b"}"), "its header is not JSON (Exceeds the limit (4300 digits)"),
    (_safetensors({"a\x1b[2J": 5}), r"the header entry of 'a\x1b[2J' is not an object"),
], ids=["overlap", "gap", "trailing bytes", "an unused tensor out of range", "metadata list", "metadata nested",
        "a 5000-digit number", "a name with an escape"])
def test_a_safetensors_layout_hugging_face_refuses_is_refused(tmp_path, content, expected):
    """What the safetensors library checks of the whole header before Hugging Face reads a file, checked here too:
    two names on the same bytes (which would make ln_f.weight read ln_f.bias's values), bytes no tensor owns, an
    entry of a tensor handstep does not read. One line, naming the file."""
    from engine.checkpoint import CheckpointError, SafetensorsFile

    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        SafetensorsFile(path, "x/model.safetensors")
    msg = str(exc.value)
    assert "\n" not in msg and "\x1b" not in msg and msg.startswith("x/model.safetensors: ") and expected in msg, msg


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
@pytest.mark.parametrize("kind", ["fifo", "folder", "link loop"])
def test_a_checkpoint_file_that_is_not_a_file_is_one_line(tmp_path, folder, name, kind):
    """A pipe named config.json would block a read forever; a folder, or a link that leads back to itself, cannot
    be read: each is one line naming the file, at once."""
    ck = tmp_path / "ck"
    ck.mkdir()
    for n in ("config.json", "tokenizer.json", "model.safetensors"):
        if n != name:
            (ck / n).write_bytes((folder / n).read_bytes())
    {"fifo": lambda p: os.mkfifo(p), "folder": lambda p: p.mkdir(), "link loop": lambda p: p.symlink_to(p.name)}[kind](
        ck / name)
    what = {"fifo": "is a pipe, not a file", "folder": "is a folder, not a file",
            "link loop": "is a symbolic link that loops"}[kind]
    with pytest.raises(ConfigError) as exc:
        run(load_config(config_file(tmp_path, ck)))
    assert "\n" not in str(exc.value) and f"{name} {what}" in str(exc.value), exc.value


@pytest.mark.parametrize("files, expected", [
    ({"model-00001-of-00002.safetensors": b"", "model.safetensors.index.json": b"{}"},
     "the weights are split into shards (model.safetensors.index.json); handstep reads one model.safetensors: save "
     "the model again with save_pretrained(folder, max_shard_size=\"100GB\")"),
    ({"pytorch_model.bin": b"PK"}, "model.safetensors is missing (there is only pytorch_model.bin); save the model "
                                   "with save_pretrained(folder, safe_serialization=True)"),
], ids=["sharded", "pytorch_model.bin"])
def test_weights_in_another_form_say_what_to_do(tmp_path, folder, files, expected):
    ck = tmp_path / "ck"
    ck.mkdir()
    for n in ("config.json", "tokenizer.json"):
        (ck / n).write_bytes((folder / n).read_bytes())
    for n, data in files.items():
        (ck / n).write_bytes(data)
    with pytest.raises(ConfigError) as exc:
        run(load_config(config_file(tmp_path, ck)))
    assert str(exc.value).endswith(expected), exc.value


@pytest.mark.parametrize("activation, accepted", [("gelu_pytorch_tanh", True), ("gelu", False), ("gelu_fast", False),
                                                  ("quick_gelu", False), ("relu", False)])
def test_only_activations_that_compute_gelu_new_are_read(tmp_path, folder, activation, accepted):
    """PyTorch's tanh GELU is gelu_new's formula: such a checkpoint runs and equals Hugging Face (float64, 1e-12);
    the exact erf GELU, gelu_fast's rounded constants and the others would differ: refused, naming the key."""
    _copy_with_config(folder, tmp_path / "ck", activation_function=activation)
    config = config_file(tmp_path, tmp_path / "ck")
    if not accepted:
        with pytest.raises(ConfigError, match=f"config.json: activation_function is '{activation}'; handstep "
                                              "computes GPT-2 with activation_function 'gelu_new'"):
            load_config(config)
        return
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "ck").to(torch.float64).eval()
    assert model.config.activation_function == activation
    assert_matches_hugging_face(run(load_config(config)), model)
