"""A Hugging Face checkpoint's weights through the real command line: float16 and bfloat16 files run; a tensor of
any other dtype, a damaged `model.safetensors`, a tie setting beside `model.from` and a missing `tokenizers`
package each stop with one line naming the file (and the tensor or key), exit code 2, no traceback, and nothing
written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_checkpoint import make_checkpoint
from safetensors.numpy import load_file, save_file

import engine

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["the cat sat on the mat", "a dog ran"]


def handstep(world: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "site_build.cli", *args], cwd=world, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


def world_with(tmp_path: Path, checkpoint: Path, tensors: dict | None = None, extra: str = "",
               data: bytes | None = None) -> Path:
    """A folder with `models/tiny` (the checkpoint, its weights replaced by `tensors` or the bytes `data`) and
    `c.yaml` naming it."""
    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (folder / name).write_bytes((checkpoint / name).read_bytes())
    if tensors is not None:
        save_file(tensors, str(folder / "model.safetensors"))
    if data is not None:
        (folder / "model.safetensors").write_bytes(data)
    (tmp_path / "c.yaml").write_text(f"model:\n  from: models/tiny\n{extra}data:\n  texts: {json.dumps(TEXTS)}\n"
                                     "train_steps: 1\n")
    return tmp_path


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("c.yaml: model.from: ") and "models/tiny: model.safetensors: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("key, dtype, shown", [("transformer.h.0.attn.c_attn.weight", "int32", "I32"),
                                               ("transformer.ln_f.bias", "bool", "BOOL")])
@pytest.mark.parametrize("command", ["trace", "build"])
def test_a_tensor_of_another_dtype_is_refused_in_one_line(tmp_path, checkpoint, key, dtype, shown, command):
    tensors = load_file(str(checkpoint / "model.safetensors"))
    tensors[key] = tensors[key].astype(dtype)
    world = world_with(tmp_path, checkpoint, tensors)
    out = ["--out", "t.json"] if command == "trace" else ["--out", "site", "--cache", "cache"]
    result = handstep(world, command, "--config", "c.yaml", *out)
    assert_one_line(result, f"model.safetensors: tensor {key} has dtype {shown}; handstep reads float weights only "
                            "(F64, F32, F16, BF16): save the model with float weights")
    assert not (world / "t.json").exists() and not (world / "site").exists()


@pytest.mark.parametrize("cut, fragments", [
    (lambda b: b[: len(b) // 2], ("lies at bytes", "of the data, which has", "save the model again")),
    (lambda b: b[:5], ("it has 5 bytes, fewer than the 8 of a header length",)),
    (lambda b: (10**9).to_bytes(8, "little") + b[8:], ("its first 8 bytes give a header of 1000000000 bytes",)),
    (lambda b: b[:8] + b"[" + b[9:], ("its header is not JSON",)),
], ids=["truncated", "too short", "header too long", "header not json"])
def test_a_damaged_weights_file_is_refused_in_one_line(tmp_path, checkpoint, cut, fragments):
    world = world_with(tmp_path, checkpoint, data=cut((checkpoint / "model.safetensors").read_bytes()))
    assert_one_line(handstep(world, "trace", "--config", "c.yaml", "--out", "t.json"), "model.safetensors: ",
                    *fragments)
    assert not (world / "t.json").exists()


def test_tie_embeddings_beside_from_is_refused_in_one_line(tmp_path, checkpoint):
    world = world_with(tmp_path, checkpoint, extra="  tie_embeddings: false\n")
    result = handstep(world, "trace", "--config", "c.yaml", "--out", "t.json")
    assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("c.yaml: model.tie_embeddings: is given beside model.from, whose config.json "
                                     "says whether the output layer is tied (tie_word_embeddings); remove it")


def test_a_missing_tokenizers_package_is_one_line(tmp_path, checkpoint):
    """Without the `tokenizers` package (not a dependency of the default site), a checkpoint config says what to
    install."""
    world = world_with(tmp_path, checkpoint)
    hide = tmp_path / "hide" / "tokenizers"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('tokenizers is hidden by the test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(hide.parent), os.environ.get("PYTHONPATH", "")])}
    result = handstep(world, "trace", "--config", "c.yaml", "--out", "t.json", env=env)
    assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("needs the tokenizers package, which is not installed; run "
                                                 "`pip install tokenizers`"), result.stderr


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_half_precision_weights_run_through_the_command_line(tmp_path, dtype):
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    folder = make_checkpoint(tmp_path / "models" / "tiny", dtype=dtype)
    (tmp_path / "c.yaml").write_text(f"model:\n  from: {folder}\ndata:\n  texts: {json.dumps(TEXTS)}\n"
                                     "train_steps: 1\n")
    result = handstep(tmp_path, "trace", "--config", "c.yaml", "--out", "t.json")
    assert result.returncode == 0, result.stderr
    trace = engine.load_trace(tmp_path / "t.json")
    from safetensors.torch import load_file as load_torch

    stored = load_torch(str(folder / "model.safetensors"))["transformer.wte.weight"]
    assert stored.dtype == dtype and (trace["wte"] == stored.to(torch.float64).numpy()).all()
    assert float(trace["loss"]) > 0  # the step itself is compared with Hugging Face in tests/engine


@pytest.mark.parametrize("command", ["trace", "build"])
@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_pipe_in_place_of_a_checkpoint_file_is_one_line_at_once(tmp_path, checkpoint, command, name):
    """A FIFO named config.json or model.safetensors would block a read forever: refused at once, naming it."""
    world = world_with(tmp_path, checkpoint)
    (world / "models" / "tiny" / name).unlink()
    os.mkfifo(world / "models" / "tiny" / name)
    out = ["--out", "t.json"] if command == "trace" else ["--out", "site", "--cache", "cache"]
    result = subprocess.run([sys.executable, "-m", "site_build.cli", command, "--config", "c.yaml", *out], cwd=world,
                            capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("c.yaml: model.from: ") and \
        f"{name} is a pipe, not a file" in lines[0], lines
    assert not (world / "t.json").exists() and not (world / "site").exists()


def test_a_vocab_size_no_file_could_hold_is_one_line(tmp_path, checkpoint):
    """config.json's vocab_size 10**12 (a word is made per id): refused before the memory fills."""
    world = world_with(tmp_path, checkpoint)
    conf = json.loads((world / "models" / "tiny" / "config.json").read_text())
    (world / "models" / "tiny" / "config.json").write_text(json.dumps({**conf, "vocab_size": 10**12}))
    result = handstep(world, "trace", "--config", "c.yaml", "--out", "t.json")
    assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("c.yaml: model.from: models/tiny/config.json: vocab_size 1000000000000 "
                                            "makes a token table of at least 2,000,000,000,000 bytes"), result.stderr
    assert not (world / "t.json").exists()


def test_two_tensors_on_the_same_bytes_are_refused(tmp_path, checkpoint):
    """A header that points ln_f.weight at ln_f.bias's bytes (Hugging Face's reader refuses such a file): handstep
    would read the bias's values as the weight; it refuses in one line instead."""
    data = (checkpoint / "model.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["transformer.ln_f.weight"]["data_offsets"] = header["transformer.ln_f.bias"]["data_offsets"]
    text = json.dumps(header).encode()
    world = world_with(tmp_path, checkpoint, data=len(text).to_bytes(8, "little") + text + data[8 + n:])
    line = assert_one_line(handstep(world, "trace", "--config", "c.yaml", "--out", "t.json"), "inside another tensor")
    assert "save the model again" in line and not (world / "t.json").exists()
