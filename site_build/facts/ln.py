"""LayerNorm: the row the normalisation page works through, and its figures (block 0's ln_1)."""

from __future__ import annotations

from typing import Any


def row(trace: Any) -> int:
    """The position worked in full: the third, or the last real token of the first text if it has fewer."""
    real = int((trace["targets"][0] >= 0).sum())
    return min(2, real - 1)


def eps(trace: Any) -> float:
    """ε of ln_1, as the run used it."""
    return float(trace.record("L0.ln_1.xhat").meta["eps"])


def sd(trace: Any) -> float:
    """The standard deviation of the worked row, √(var + ε)."""
    return float((trace["L0.ln_1.var"][0, row(trace)] + eps(trace)) ** 0.5)
