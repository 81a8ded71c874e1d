"""The run in general: the model's sizes, the texts of the batch, how many of their positions are real, and the words
the pages use for them.

The sizes are named by the symbols the pages write in their formulas (C, H, D, T, ...): `{{ run.C }}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.format import counted
from site_build.macros.optimizer import parameters
from site_build.macros.text import number_word


def _model(trace: Any) -> dict[str, Any]:
    return trace.config["model"]


def V(trace: Any) -> int:
    """The vocabulary size, n_vocab."""
    return len(trace.labels["vocab"])


def C(trace: Any) -> int:
    """The model width, d_model: numbers per position in the residual stream."""
    return int(_model(trace)["d_model"])


def H(trace: Any) -> int:
    """The number of attention heads per block."""
    return int(_model(trace)["n_heads"])


def D(trace: Any) -> int:
    """The head size, C / H."""
    return C(trace) // H(trace)


def F(trace: Any) -> int:
    """The feed-forward width, d_ff."""
    return int(_model(trace)["d_ff"])


def L(trace: Any) -> int:
    """The number of transformer blocks, n_layer."""
    return int(_model(trace)["n_layers"])


def P(trace: Any) -> int:
    """The rows of the position table: the longest possible input."""
    return int(_model(trace)["n_positions"])


def B(trace: Any) -> int:
    """The number of texts in the batch."""
    return int(trace["input_ids"].shape[0])


def T(trace: Any) -> int:
    """The positions per text (the inputs, padding included)."""
    return int(trace["input_ids"].shape[1])


def N(trace: Any) -> int:
    """The real targets of the whole batch: positions that have a next word to predict (padding left out)."""
    return int((trace["targets"] >= 0).sum())


def n0(trace: Any) -> int:
    """The real (unpadded) positions of the first text, the one the tables show."""
    return int((trace["targets"][0] >= 0).sum())


def lengths(trace: Any) -> list[int]:
    """The real (unpadded) input tokens of each text of the batch."""
    return [int(n) for n in (np.asarray(trace["targets"]) >= 0).sum(axis=1)]


def inputs_phrase(trace: Any) -> str:
    """The inputs, for a sentence: 'the 6 input tokens', 'the 6 input tokens of each of the two texts', or, when
    the texts differ in length, 'the input tokens of the two texts, 2 and 6 of them (the shorter padded to 6
    positions)'."""
    n, texts_n = lengths(trace), B(trace)
    if texts_n == 1:
        return f"the {counted(T(trace), 'input token')}"
    if len(set(n)) == 1:
        return f"the {counted(T(trace), 'input token')} of each of the {number_word(texts_n)} texts"
    listed = ", ".join(map(str, n[:-1])) + f" and {n[-1]}"
    shorter = "the shorter" if texts_n == 2 else "the shorter ones"
    return (f"the input tokens of the {number_word(texts_n)} texts, {listed} of them ({shorter} padded to "
            f"{counted(T(trace), 'position')})")


def padded(trace: Any) -> bool:
    """Whether some text of the batch is padded (a target of −100 somewhere)."""
    return bool((trace["targets"] < 0).any())


def checkpoint(trace: Any) -> str:
    """The checkpoint the initial weights are read from (`model.from`), or "" for random weights."""
    return _model(trace).get("from") or ""


def llama(trace: Any) -> bool:
    """Whether the model is Llama-style (`model.arch: llama`) rather than GPT-2."""
    return _model(trace).get("arch", "gpt2") == "llama"


def norm(trace: Any) -> str:
    """The name of the model's normalisation: LayerNorm (GPT-2) or RMSNorm (Llama)."""
    return "RMSNorm" if llama(trace) else "LayerNorm"


def hf_model(trace: Any) -> str:
    """The Hugging Face class of the model: GPT2LMHeadModel or LlamaForCausalLM."""
    return "LlamaForCausalLM" if llama(trace) else "GPT2LMHeadModel"


def tied(trace: Any) -> bool:
    """Whether the output layer is the token table (GPT-2's tied weights)."""
    return bool(_model(trace).get("tie_embeddings", True))


def unit(trace: Any) -> str:
    """What the vocabulary's entries are called: tokens (a checkpoint's tokenizer) or words."""
    return "token" if checkpoint(trace) else "word"


def texts(trace: Any) -> list[str]:
    """The training texts, as the config gives them."""
    return list(trace.config["data"]["texts"])


def start(trace: Any) -> str:
    """The token every text starts with (`<bos>`, or the checkpoint's own)."""
    return trace.labels["inputs"][0][0]


def weights_kind(trace: Any) -> str:
    """The initial weights, in a word: "random", or "checkpoint" when they are read from one."""
    return "checkpoint" if checkpoint(trace) else "random"


def seed(trace: Any) -> int:
    """The seed of the random initial weights."""
    return int(trace.config["seed"])


def weight_decay(trace: Any) -> float:
    """The optimizer's weight decay λ."""
    return float(trace.config["optimizer"]["weight_decay"])


def init_std(trace: Any) -> Any:
    """The spread of the random initial weights, as the config gives it."""
    return _model(trace)["init_std"]


def weights(trace: Any) -> int:
    """How many weights the step adjusts: the sizes of every parameter tensor, added up."""
    return sum(int(np.prod(trace.record(n).value.shape)) for n in parameters(trace))


def tensors(trace: Any) -> int:
    """How many parameter tensors the model has."""
    return len(parameters(trace))


def loss_change(trace: Any) -> float:
    """How much the loss on the same texts changes with the updated weights (negative: it falls)."""
    return float(trace["after.loss"] - trace["loss"])


def optimizer_settings(trace: Any) -> str:
    """The optimizer's settings as the model table lists them: learning rate, Adam's β₁, β₂ and ε (or SGD's
    momentum), and the weight decay with what it applies to."""
    opt = trace.config["optimizer"]
    out = f"learning rate $\\eta$ = {opt['lr']}"
    if opt["name"] != "sgd":
        out += f", $\\beta_1$ = {opt['betas'][0]}, $\\beta_2$ = {opt['betas'][1]}, $\\epsilon$ = {opt['eps']}"
    else:
        out += f", momentum $\\rho$ = {opt['momentum']}"
    what = "2-D weights only" if opt["decay"] == "matrices" else "every tensor"
    return f"{out}, weight decay $\\lambda$ = {opt['weight_decay']} ({what})"
