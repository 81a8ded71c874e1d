"""Checks that run with every build: finite differences on a sample of every parameter gradient,
and a digest that ties a verification file (written by `make verify` with PyTorch) to one trace."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np

from . import model
from .config import Config
from .trace import Trace

FD_STEP = 1e-6  # central differences in float64: truncation ~h^2, rounding ~1e-16/h, both far below FD_TOL
FD_TOL = 1e-7
# Steps tried in turn until one agrees: where the loss curves sharply (a LayerNorm row of variance ~1e-8,
# whose rstd is ~1e4) the truncation error of 1e-6 is too large, and 1e-7 agrees to ~1e-8.
FD_STEPS = (FD_STEP, 1e-7, 1e-5)


def digest(trace: Trace) -> str:
    """sha256 over the config and every record's name, shape and value bytes."""
    h = hashlib.sha256(json.dumps(trace.config, sort_keys=True).encode())
    for r in trace.records:
        h.update(r.name.encode() + b"\0" + str(r.shape).encode())
        h.update(np.ascontiguousarray(r.value, dtype="<f8").tobytes())
    return h.hexdigest()


def central_difference(cfg: Config, params: dict, ids, targets, name: str, i: int, h: float = FD_STEP) -> float:
    """dLoss/d params[name].flat[i] as (L(θ + h) - L(θ - h)) / 2h, the parameter restored afterwards."""
    flat = params[name].reshape(-1)
    old = flat[i]
    flat[i] = old + h
    up = model.loss(cfg, params, ids, targets)
    flat[i] = old - h
    down = model.loss(cfg, params, ids, targets)
    flat[i] = old
    return (up - down) / (2 * h)


def checked_difference(cfg: Config, params: dict, ids, targets, name: str, i: int, analytic: float) -> float:
    """The central difference closest to `analytic` over FD_STEPS, stopping at the first within FD_TOL."""
    best = None
    for h in FD_STEPS:
        numeric = central_difference(cfg, params, ids, targets, name, i, h)
        if best is None or abs(numeric - analytic) < abs(best - analytic):
            best = numeric
        if abs(best - analytic) <= FD_TOL:
            break
    return best


def finite_differences(cfg: Config, trace: Trace, per_tensor: int = 3,
                       progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:
    """For every parameter: the largest-|grad| element plus `per_tensor` seeded random ones, analytic vs central.

    `progress("finite differences", done, total)`, when given, is called at 0 and after each parameter tensor.
    """
    params = {name: trace[name].copy() for name, _, _, _ in model.param_specs(cfg)}
    ids, targets = trace["input_ids"], trace["targets"]
    rng = np.random.default_rng(0)
    out = {}
    if progress is not None:
        progress("finite differences", 0, len(params))
    for done, (name, p) in enumerate(params.items(), 1):
        grad = trace[f"grad.{name}"]
        flat = p.reshape(-1)
        picks = [int(np.argmax(np.abs(grad)))]
        picks += [int(i) for i in rng.choice(flat.size, min(per_tensor, flat.size), replace=False)]
        rows = []
        for i in dict.fromkeys(picks):
            idx = tuple(int(k) for k in np.unravel_index(i, p.shape))
            numeric = checked_difference(cfg, params, ids, targets, name, i, float(grad[idx]))
            rows.append({"index": idx, "analytic": float(grad[idx]), "numeric": numeric})
        err = max(abs(r["analytic"] - r["numeric"]) for r in rows)
        out[f"grad.{name}"] = {"checked": rows, "max_abs_err": err, "tol": FD_TOL, "ok": err <= FD_TOL}
        if progress is not None:
            progress("finite differences", done, len(params))
    return out
