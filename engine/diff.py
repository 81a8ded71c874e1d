"""Compare two traces record by record, in order: what changed, by how much, and where."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .trace import Trace


@dataclass
class RecordDiff:
    name: str
    status: str  # changed | reshaped | only_a | only_b
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: tuple[int, ...] = ()
    a: float = 0.0
    b: float = 0.0
    shape_a: tuple[int, ...] = ()
    shape_b: tuple[int, ...] = ()


@dataclass
class TraceDiff:
    compared: int = 0
    records: list[RecordDiff] = field(default_factory=list)
    loss_a: float | None = None
    loss_b: float | None = None
    config_changes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.records and not self.config_changes

    @property
    def first(self) -> str | None:
        return self.records[0].name if self.records else None


def diff_traces(a: Trace, b: Trace) -> TraceDiff:
    """Records compared by name in A's order; records only in B come last."""
    out = TraceDiff(loss_a=_loss(a), loss_b=_loss(b), config_changes=_config_changes(a.config, b.config))
    for rec in a.records:
        if rec.name not in b:
            out.records.append(RecordDiff(rec.name, "only_a", shape_a=rec.shape))
            continue
        other = b.record(rec.name)
        out.compared += 1
        if rec.shape != other.shape:
            out.records.append(RecordDiff(rec.name, "reshaped", shape_a=rec.shape, shape_b=other.shape))
            continue
        va, vb = rec.value.astype(np.float64), other.value.astype(np.float64)
        same = (va == vb) | (np.isnan(va) & np.isnan(vb))
        if same.all():
            continue
        with np.errstate(invalid="ignore"):
            delta = np.where(same, 0.0, np.abs(va - vb))
            delta = np.where(np.isnan(delta), np.inf, delta)
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(delta)), delta.shape)) if delta.ndim else ()
        scale = np.maximum(np.abs(va), np.abs(vb))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(np.isinf(delta), np.inf, np.where(delta > 0, delta / scale, 0.0))  # a NaN against a number
        out.records.append(RecordDiff(rec.name, "changed", float(delta.max()), float(np.nanmax(rel)), where,
                                      float(va[where]), float(vb[where]), rec.shape, other.shape))
    out.records += [RecordDiff(r.name, "only_b", shape_b=r.shape) for r in b.records if r.name not in a]
    return out


def _loss(t: Trace) -> float | None:
    return float(t["loss"]) if "loss" in t else None


def _config_changes(a: dict, b: dict, prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(a) | set(b), key=lambda k: (list(a) + list(b)).index(k)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            changes += _config_changes(va, vb, f"{prefix}{key}.")
        elif va != vb:
            changes.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return changes


def format_diff(d: TraceDiff, name_a: str, name_b: str, limit: int = 0) -> str:
    """The text report of `handstep diff`: one line per differing record, then a summary."""
    lines = [f"config: {c}" for c in d.config_changes]
    shown = d.records if not limit else d.records[:limit]
    width = max([len(r.name) for r in shown] + [6])
    for r in shown:
        if r.status == "changed":
            lines.append(f"{r.name:<{width}}  max |A-B| {r.max_abs:.3e}  rel {r.max_rel:.3e}  at {list(r.where)}"
                         f"  A {r.a:.6g}  B {r.b:.6g}")
        elif r.status == "reshaped":
            lines.append(f"{r.name:<{width}}  shape {list(r.shape_a)} in A, {list(r.shape_b)} in B")
        else:
            lines.append(f"{r.name:<{width}}  only in {'A' if r.status == 'only_a' else 'B'}")
    if limit and len(d.records) > limit:
        lines.append(f"... and {len(d.records) - limit} more (use --all)")
    changed = sum(r.status == "changed" for r in d.records)
    both = d.loss_a is not None and d.loss_b is not None
    loss = f"loss A {d.loss_a:.10g}  B {d.loss_b:.10g}" if both else "loss: n/a"
    lines.append(f"summary: {d.compared} records compared, {changed} changed, "
                 f"{sum(r.status != 'changed' for r in d.records)} missing or reshaped; "
                 f"first difference: {d.first or 'none'}; {loss}")
    lines.append(f"A = {name_a}, B = {name_b}: " + ("identical" if d.identical else "different"))
    return "\n".join(lines)
