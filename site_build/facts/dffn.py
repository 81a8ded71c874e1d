"""The feed-forward backward pass of the walked block (grads.walked, the last): the hidden unit the pages work
through, and where GELU's slope flips the gradient's sign."""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.facts import grads


def _w(trace: Any, name: str) -> np.ndarray:
    """The first text of record `name` of the walked block (`L{block}` in the name)."""
    return np.asarray(trace[grads.walked_name(trace, name)][0])


def unit(trace: Any) -> int:
    """The hidden unit of largest |∇G| at the worked position (first text): the entry the pages follow."""
    return int(np.abs(_w(trace, "grad.L{block}.mlp.gelu")[grads.row(trace)]).argmax())


def _flips(trace: Any) -> np.ndarray:
    """Where, in the first text, ∇U and ∇G have opposite signs: the GELU's slope was negative there."""
    return (_w(trace, "grad.L{block}.mlp.fc") * _w(trace, "grad.L{block}.mlp.gelu")) < 0


def flips(trace: Any) -> int:
    """How many entries of the first text changed the gradient's sign on the way through the GELU."""
    return int(_flips(trace).sum())


def entries(trace: Any) -> int:
    """How many entries the hidden layer has over the real positions of the first text."""
    return grads.real(trace) * grads.d_ff(trace)


def flip_position(trace: Any) -> int:
    """The position of the first such entry, reading row by row (0 if there is none)."""
    found = np.argwhere(_flips(trace))
    return int(found[0][0]) if len(found) else 0


def flip_unit(trace: Any) -> int:
    """The hidden unit of the first such entry (0 if there is none)."""
    found = np.argwhere(_flips(trace))
    return int(found[0][1]) if len(found) else 0
