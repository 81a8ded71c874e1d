"""The optimizer: which one the run uses, its constants, which tensors decay, and the figures of its step (the
optimizer page, and the pages after it)."""

from __future__ import annotations

from typing import Any


def _config(trace: Any) -> dict[str, Any]:
    return trace.config["optimizer"]


def name(trace: Any) -> str:
    """The optimizer as the config names it: `adamw`, `adam` or `sgd`."""
    return _config(trace)["name"]


def adam_like(trace: Any) -> bool:
    """The optimizer keeps Adam's running averages m and v (AdamW or Adam, not SGD)."""
    return name(trace) in ("adamw", "adam")


def momentum(trace: Any) -> float:
    """SGD's momentum ρ (0: none)."""
    return _config(trace)["momentum"]


def memory1(trace: Any) -> float:
    """How many steps the first moment m remembers, about: 1/(1 − β₁), to one decimal."""
    return round(1 / (1 - _config(trace)["betas"][0]), 1)


def memory2(trace: Any) -> float:
    """How many steps the second moment v remembers, about: 1/(1 − β₂), to one decimal."""
    return round(1 / (1 - _config(trace)["betas"][1]), 1)
