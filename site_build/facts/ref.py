"""The reference pages: the config as this build resolved it, and the trace's records, phases and index."""

from __future__ import annotations

from typing import Any, NamedTuple

from markupsafe import Markup, escape

from site_build import format as fmt
from site_build.macros.reference import first_block_twin
from site_build.macros.text import counted

# What each phase of the trace holds: the sentence that opens its section on the records page.
PHASES = {
    "forward": "the parameters as initialised, the inputs, and every step of the forward pass and the loss",
    "backward": "the gradient of the loss with respect to each intermediate and each parameter, `grad.X` being the "
                "derivative of the loss with respect to `X`",
    "optimizer": "the optimizer's intermediates and the updated parameters, for each parameter tensor",
    "evaluation": "the forward pass re-run on the updated weights: did the step lower the loss?",
    "train": "the separate training run of `train_steps` steps: its loss per step, and the trained model's "
             "predictions, attention weights and greedy text (with the initial model's, for comparison)",
}


# -- the config -------------------------------------------------------------------------------------------------------
def _shown(value: Any) -> Markup:
    if isinstance(value, str):
        return fmt.html_code(value)
    if isinstance(value, (list, tuple, dict)):
        return Markup(", ").join(_shown(v) for v in value)
    return Markup(f"`{escape(value)}`")


def show(trace: Any, key: str, limit: int | None = None) -> Markup:
    """A config value (by key) as the config table shows it: `` `24` ``, text as code, a list item by item."""
    value: Any = trace.config
    for part in key.split("."):
        value = value[part]
    return _shown(value[:limit] if limit is not None else value)


def checkpoint(trace: Any) -> bool:
    """The model comes from a Hugging Face checkpoint (`model.from`)."""
    return bool(trace.config["model"].get("from"))


def tied(trace: Any) -> bool:
    """The output layer is the token table, transposed (weight tying)."""
    return bool(trace.config["model"].get("tie_embeddings", True))


def vocab_size(trace: Any) -> int:
    """How many words the configured vocabulary holds."""
    return len(trace.config["model"]["vocab"])


def vocab_more(trace: Any) -> int:
    """How many of them the config table leaves out after the first 64 (0 if none)."""
    return max(vocab_size(trace) - 64, 0)


def head_dim(trace: Any) -> int:
    """The dimensions of each head: d_model / n_heads."""
    m = trace.config["model"]
    return m["d_model"] // m["n_heads"]


def first_token(trace: Any) -> str:
    """The token every text starts with (`<bos>`, or the checkpoint's)."""
    return trace.labels["inputs"][0][0]


# -- the trace --------------------------------------------------------------------------------------------------------
def record_count(trace: Any) -> int:
    """How many records the trace holds."""
    return len(trace.records)


def values(trace: Any) -> int:
    """How many numbers the trace holds, over every record."""
    return sum(int(r.value.size) for r in trace.records)


def phases(trace: Any) -> list[str]:
    """The trace's phases, in the order of their first record."""
    return list(dict.fromkeys(r.phase for r in trace.records))


def phase_list(trace: Any) -> str:
    """The phases as the trace-format page lists them: code spans joined by commas."""
    return ", ".join(f"`{p}`" for p in phases(trace))


def about(trace: Any, phase: str) -> str:
    """What a phase's records hold, as its section on the records page says it ("" for a phase not described)."""
    return PHASES.get(phase, "")


class Row(NamedTuple):
    """One record of the records page: its name, its op, and the block-0 record whose formula it repeats ("" if it
    has its own)."""

    name: str
    op: str
    twin: str


def records(trace: Any, phase: str) -> list[Row]:
    """The records of one phase, in execution order."""
    rows = []
    for r in trace.records:
        if r.phase == phase:
            twin = first_block_twin(r.name)
            rows.append(Row(r.name, r.op, twin if twin and twin in trace else ""))
    return rows


def index_keys(trace: Any) -> int:
    """How many keys the trace's index maps."""
    return len(trace.index)


class Entry(NamedTuple):
    """One key of the trace's index with its records."""

    key: str
    initial: str
    grad: str
    updated: str


def index_example(trace: Any) -> Entry:
    """The first key of the index, with its records: the example the trace-format page gives."""
    key, names = next(iter(trace.index.items()))
    return Entry(key, names["initial"], names["grad"], names["updated"])


def momentum_unused(trace: Any) -> str:
    """The config page's sentence for a momentum set where it does nothing (only SGD uses it); "" otherwise."""
    o = trace.config["optimizer"]
    if o["name"] == "sgd" or not o["momentum"]:
        return ""
    return "In this build `optimizer.momentum` is set but has no effect: only SGD uses it."


def blocks_repeat(trace: Any) -> Markup:
    """The records page's sentence for a model of several blocks: block 0's records repeat for each block, and what
    links one block to the next; "" for one block (the line break is the page's own)."""
    n = int(trace.config["model"]["n_layers"])
    if n == 1:
        return Markup("")
    return Markup(f"With {counted(n, 'block')}, the records of block 0 (`L0.`) repeat for each block (`L1.` and\n"
                  "on), and the residual input of block $l > 0$ is the output `L{l-1}.resid_2` of the block before.")
