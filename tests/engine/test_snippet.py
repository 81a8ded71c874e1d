"""The PyTorch snippet shown on the summary page runs and reproduces the engine's step."""

import re
import subprocess
import sys

import pytest

from engine import run
from engine.config import config_from_dict
from engine.snippet import pytorch_snippet


@pytest.mark.parametrize("raw", [{}, {"optimizer": {"name": "sgd", "momentum": 0.9}},
                                 {"optimizer": {"name": "adam"}, "data": {"texts": ["the cat", "the dog ran"]}},
                                 {"model": {"tie_embeddings": False}}],
                         ids=["adamw", "sgd", "adam-batch", "untied"])
def test_snippet_reproduces_the_step(tmp_path, raw):
    trace = run(config_from_dict({**raw, "train_steps": 1}, "test"))
    code = pytorch_snippet(trace.config)
    assert len(code.splitlines()) <= 30
    assert_reproduces(tmp_path, trace, code)


@pytest.mark.parametrize("raw", [{"model": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2}},
                                 {"model": {"arch": "llama", "tie_embeddings": True, "rope_theta": 100.0},
                                  "optimizer": {"name": "sgd", "momentum": 0.9},
                                  "data": {"texts": ["the cat", "the dog ran"]}}],
                         ids=["llama-gqa", "llama-tied-sgd-batch"])
def test_snippet_reproduces_a_llama_step(tmp_path, raw):
    """LlamaForCausalLM, its RMSNorm and rotary tables made float64 in the program itself (four short lines)."""
    trace = run(config_from_dict({**raw, "train_steps": 1}, "test"))
    code = pytorch_snippet(trace.config)
    assert len(code.splitlines()) <= 36 and "LlamaForCausalLM" in code
    assert_reproduces(tmp_path, trace, code)


def test_snippet_reproduces_a_checkpoints_step(tmp_path):
    """`model: {from: PATH}`: the vocabulary has no <bos>; the program starts from the checkpoint's own first token."""
    from hf_checkpoint import make_checkpoint

    (tmp_path / "checkpoint").mkdir()
    folder = make_checkpoint(tmp_path / "checkpoint")
    trace = run(config_from_dict({"model": {"from": str(folder)}, "train_steps": 1,
                                  "data": {"texts": ["the cat sat on the mat", "a dog ran"]}}, "test"))
    assert_reproduces(tmp_path, trace, pytorch_snippet(trace.config, bos=int(trace["input_ids"][0, 0])))


def assert_reproduces(folder, trace, code: str) -> None:
    """Run the program beside the trace's file: PyTorch's loss and every updated tensor equal the engine's."""
    trace.save(folder / "trace.json")
    (folder / "step.py").write_text(code)
    p = subprocess.run([sys.executable, "step.py"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    torch_loss, engine_loss = map(float, re.search(r"loss: torch (\S+) handstep (\S+)", p.stdout).groups())
    assert abs(torch_loss - engine_loss) < 1e-12
    diffs = [float(x) for x in re.findall(r"= (\S+)$", p.stdout, re.M)]
    assert len(diffs) == len(trace.index) - 4 and max(diffs) < 1e-9
