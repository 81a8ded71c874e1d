"""Checks that run with every build: finite differences on a sample of every parameter gradient,
and a digest that ties a verification file (written by `make verify` with PyTorch) to one trace."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable

import numpy as np

from . import model
from .budget import fd_elements
from .config import Config
from .trace import Trace

FD_STEP = 1e-6  # central differences in float64: truncation ~h^2, rounding ~1e-16/h, both far below FD_TOL
FD_TOL = 1e-7
# Steps tried in turn until one agrees: where the loss curves sharply (a LayerNorm row of variance ~1e-8,
# whose rstd is ~1e4) the truncation error of 1e-6 is too large, and 1e-7 agrees to ~1e-8.
FD_STEPS = (FD_STEP, 1e-7, 1e-5)


def config_digest(trace: Trace) -> str:
    """sha256 of the config alone: a verification file for another config is told apart without reading the
    values (a GPT-2-small trace holds 8 GB of them)."""
    return config_dict_digest(trace.config)


def config_dict_digest(config: dict) -> str:
    """`config_digest` of the trace a config (`Config.to_dict()`) runs, known before it runs."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _config_bytes(trace: Trace) -> bytes:
    return json.dumps(trace.config, sort_keys=True).encode()


def digest(trace: Trace) -> str:
    """sha256 over the config and every record's name, shape and value bytes."""
    h = hashlib.sha256(_config_bytes(trace))
    for r in trace.records:
        h.update(r.name.encode() + b"\0" + str(r.shape).encode())
        h.update(np.ascontiguousarray(r.value, dtype="<f8").tobytes())
    return h.hexdigest()


def central_difference(cfg: Config, params: dict, ids, targets, name: str, i: int, h: float = FD_STEP,
                       inputs: Callable[[int], np.ndarray] | None = None) -> float:
    """dLoss/d params[name].flat[i] as (L(θ + h) - L(θ - h)) / 2h, the parameter restored afterwards.

    With `inputs(block)` (the recorded input of a block), both passes start at the parameter's own block: the
    blocks before it do not depend on it, so the loss is the same number as from the embeddings."""
    flat = params[name].reshape(-1)
    start = model.first_block(name, cfg) if inputs is not None else 0
    x = inputs(start) if start else None
    old = flat[i]
    flat[i] = old + h
    up = model.loss(cfg, params, ids, targets, start, x)
    flat[i] = old - h
    down = model.loss(cfg, params, ids, targets, start, x)
    flat[i] = old
    return (up - down) / (2 * h)


def checked_difference(cfg: Config, params: dict, ids, targets, name: str, i: int, analytic: float,
                       inputs: Callable[[int], np.ndarray] | None = None) -> float:
    """The central difference closest to `analytic` over FD_STEPS, stopping at the first within FD_TOL."""
    best = None
    for h in FD_STEPS:
        numeric = central_difference(cfg, params, ids, targets, name, i, h, inputs)
        if best is None or abs(numeric - analytic) < abs(best - analytic):
            best = numeric
        if abs(best - analytic) <= FD_TOL:
            break
    return best


def finite_differences(cfg: Config, trace: Trace, per_tensor: int = 3,
                       progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:
    """Analytic gradients against central differences: for every parameter its largest-|grad| element plus
    `per_tensor` seeded random ones; past the budget of `budget.fd_elements`, the largest-|grad| element of tensors
    spread evenly over the model. Then the whole gradient at once, along one random direction (key "direction").

    `progress("finite differences", done, total)`, when given, is called at 0 and after each check.
    """
    # the trace's own arrays (memory maps for a big run), read only; a tensor is copied while one of its elements
    # is moved, so GPT-2's check holds one tensor more than the trace, not a second copy of all 124M weights
    params = {name: np.asarray(trace[name], dtype=np.float64) for name, _, _, _ in model.param_specs(cfg)}
    ids, targets = np.asarray(trace["input_ids"]), np.asarray(trace["targets"])
    rng = np.random.default_rng(0)
    names = list(params)
    budget = fd_elements(cfg)
    if budget is None:
        chosen = names
    else:
        chosen = [names[i] for i in dict.fromkeys(np.linspace(0, len(names) - 1, budget).round().astype(int))]
    total = len(chosen) + 1
    if progress is not None:
        progress("finite differences", 0, total)
    out = {}
    for done, name in enumerate(chosen, 1):
        shared = params[name]
        p = params[name] = np.array(shared)
        grad = np.asarray(trace[f"grad.{name}"])
        flat = p.reshape(-1)
        picks = [int(np.argmax(np.abs(grad)))]
        if budget is None:
            picks += [int(i) for i in rng.choice(flat.size, min(per_tensor, flat.size), replace=False)]
        rows = []
        for i in dict.fromkeys(picks):
            idx = tuple(int(k) for k in np.unravel_index(i, p.shape))
            numeric = checked_difference(cfg, params, ids, targets, name, i, float(grad[idx]),
                                         lambda b: np.array(trace[model.block_input(b)]))
            rows.append({"index": idx, "analytic": float(grad[idx]), "numeric": numeric})
        params[name] = shared
        trace.release([name, f"grad.{name}"])
        err = max(abs(r["analytic"] - r["numeric"]) for r in rows)
        out[f"grad.{name}"] = {"checked": rows, "max_abs_err": err, "tol": FD_TOL, "ok": err <= FD_TOL}
        if progress is not None:
            progress("finite differences", done, total)
    out["direction"] = directional_check(cfg, params, ids, targets, trace)
    trace.release()
    if progress is not None:
        progress("finite differences", total, total)
    return out


def directional_check(cfg: Config, params: dict, ids, targets, trace: Trace) -> dict:
    """Every gradient element at once: along a random unit direction u over all parameters, the slope
    (L(θ + hu) - L(θ - hu)) / 2h must equal Σ ∇θ·u. Two forward passes, whatever the model's size."""
    rng = np.random.default_rng(1)
    # A random sign for every weight (any direction tests every element of the gradient; signs are drawn 20 times
    # faster than normal numbers, which matters for GPT-2's 124M weights), scaled to unit length.
    u = {name: rng.integers(0, 2, size=p.shape, dtype=np.int8) for name, p in params.items()}
    scale = 1.0 / math.sqrt(sum(p.size for p in params.values()))
    analytic = 0.0
    for name, signs in u.items():
        analytic += _signed_dot(np.asarray(trace[f"grad.{name}"]), signs, scale)
    # the moved weights go to one set of arrays, filled again for every pass (GPT-2: 1 GB once, not 2 GB a pass)
    moved = {name: np.empty(p.shape) for name, p in params.items()}
    best = None
    for h in FD_STEPS:
        step = h * scale
        numeric = _shifted_loss(cfg, params, u, step, ids, targets, moved)
        numeric -= _shifted_loss(cfg, params, u, -step, ids, targets, moved)
        numeric /= 2 * h
        if best is None or abs(numeric - analytic) < abs(best - analytic):
            best = numeric
        if abs(best - analytic) <= FD_TOL:
            break
    err = abs(best - analytic)
    return {"checked": [], "analytic": analytic, "numeric": best, "max_abs_err": err, "tol": FD_TOL,
            "ok": err <= FD_TOL, "values": int(sum(p.size for p in params.values()))}


_SLICE = 1 << 20  # values a pass over a big tensor handles at once (no temporary the size of the tensor)


def _signed(signs: np.ndarray, x: float, out: np.ndarray) -> np.ndarray:
    """`out` = +x where the sign is 1, -x where it is 0 (exactly: 2x and 2x - x are exact)."""
    np.multiply(signs, 2 * x, out=out)
    out -= x
    return out


def _signed_dot(grad: np.ndarray, signs: np.ndarray, scale: float) -> float:
    """Σ grad·d with d = +scale where the sign is 1 and -scale where it is 0, a slice at a time."""
    g, s = grad.reshape(-1), signs.reshape(-1)
    d = np.empty(min(g.size, _SLICE))
    total = 0.0
    for at in range(0, g.size, _SLICE):
        part = _signed(s[at:at + _SLICE], scale, d[:min(_SLICE, g.size - at)])
        total += float(np.dot(g[at:at + _SLICE], part))
    return total


def _shifted_loss(cfg: Config, params: dict, signs: dict, step: float, ids, targets, moved: dict) -> float:
    """The loss with every weight moved by `step` up (sign 1) or down (sign 0); the moved weights are written
    into `moved` (arrays of the parameters' shapes), a slice at a time."""
    for name, p in params.items():
        out, s, flat = moved[name].reshape(-1), signs[name].reshape(-1), p.reshape(-1)
        for at in range(0, out.size, _SLICE):
            _signed(s[at:at + _SLICE], step, out[at:at + _SLICE])
            out[at:at + _SLICE] += flat[at:at + _SLICE]
    return model.loss(cfg, moved, ids, targets)
