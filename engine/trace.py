"""The trace: a flat, ordered list of records, one per operation, and its JSON file format.

Each record has a stable hierarchical name (a public contract: pages refer to it), an op kind,
a phase, the names of its inputs, its float64 value with named axes, the LaTeX formula that
defines it, a LaTeX symbol for captions, and `meta` (whatever `explain` needs to regenerate
the arithmetic of one element). See docs/trace-format.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "handstep-trace"
VERSION = 1
# Past this many values in all, they go to a binary sidecar `<trace>.bin` (little-endian float64)
# and the JSON keeps offsets: a GPT-2-small-shaped layer has ~60 M values, ~1.5 GB as JSON text.
INLINE_MAX_VALUES = 2_000_000


@dataclass
class Record:
    name: str
    op: str
    phase: str
    inputs: tuple[str, ...]
    value: np.ndarray
    axes: tuple[str, ...]
    formula: str
    symbol: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)


class TraceError(Exception):
    """A trace file that cannot be read; the message is one line."""


class Trace:
    """Records in execution order, indexed by name; `trace["L0.attn.scores"]` gives the value."""

    def __init__(self, config: dict, labels: dict, records: list[Record], index: dict):
        self.config = config
        self.labels = labels
        self.records = records
        self.index = index
        self._by_name = {r.name: r for r in records}
        if len(self._by_name) != len(records):
            raise ValueError("duplicate record names")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.record(name).value

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def record(self, name: str) -> Record:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown trace record {name!r}") from None

    def names(self) -> list[str]:
        return [r.name for r in self.records]

    def save(self, path: str | Path) -> None:
        save_trace(self, path)


class Recorder:
    """Collects records during a run; `NullRecorder` lets the training run skip them for speed."""

    def __init__(self):
        self.records: list[Record] = []
        self.phase = "forward"

    def add(self, name, op, inputs, value, axes, formula, symbol, **meta) -> None:
        value = np.asarray(value)
        if value.ndim != len(axes):
            raise ValueError(f"{name}: {value.ndim} dims but axes {axes}")
        check_finite(name, op, value)
        self.records.append(Record(name, op, self.phase, tuple(inputs), value.copy(), tuple(axes), formula, symbol, meta))


class CheckRecorder(Recorder):
    """Keeps nothing, only checks every value is finite (the training run's many steps)."""

    def add(self, name, op, inputs, value, *args, **kwargs) -> None:
        check_finite(name, op, np.asarray(value))


class NonFiniteError(FloatingPointError):
    """A NaN or Inf appeared; `name` is the first record that holds one."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def check_finite(name: str, op: str, value: np.ndarray) -> None:
    if value.dtype.kind != "f":
        return
    finite = np.isfinite(value)
    if op == "causal_mask":
        finite |= value == -np.inf  # the mask's -inf is meant
    if not finite.all():
        raise NonFiniteError(name)


def _encode(x: float) -> float | str:
    return x if math.isfinite(x) else ("-inf" if x < 0 else ("inf" if x > 0 else "nan"))


def _record_header(r: Record) -> dict[str, Any]:
    return {"name": r.name, "op": r.op, "phase": r.phase, "inputs": list(r.inputs), "axes": list(r.axes),
            "shape": list(r.shape), "dtype": "int64" if r.value.dtype.kind in "iu" else "float64",
            "formula": r.formula, "symbol": r.symbol, "meta": r.meta}


def save_trace(trace: Trace, path: str | Path) -> None:
    """Write the trace as JSON, one record per line; floats written with repr round-trip exactly."""
    path = Path(path)
    total = sum(r.value.size for r in trace.records)
    sidecar = path.with_suffix(".bin") if total > INLINE_MAX_VALUES else None
    head = {"format": FORMAT, "version": VERSION, "config": trace.config, "labels": trace.labels,
            "index": trace.index, "values": {"file": sidecar.name, "dtype": "<f8"} if sidecar else None}
    lines = []
    offset = 0
    blobs = []
    for r in trace.records:
        rec = _record_header(r)
        if sidecar:
            rec["offset"] = offset
            offset += r.value.size
            blobs.append(np.ascontiguousarray(r.value, dtype="<f8").tobytes())
        elif rec["dtype"] == "int64":
            rec["value"] = r.value.tolist()
        else:
            flat = [_encode(x) for x in r.value.ravel().tolist()]
            rec["value"] = np.array(flat, dtype=object).reshape(r.shape).tolist() if r.value.ndim else flat[0]
        lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    head_text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    text = head_text[:-1] + ',"records":[\n' + ",\n".join(lines) + "\n]}\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    if sidecar:
        stmp = sidecar.with_name(sidecar.name + ".tmp")
        stmp.write_bytes(b"".join(blobs))
        stmp.replace(sidecar)
    tmp.replace(path)


def _decode(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, str):
        return float(v)
    return v


def load_trace(path: str | Path) -> Trace:
    """Read a trace file written by `save_trace`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TraceError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: not a handstep trace ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TraceError(f"{path}: not a handstep trace (missing format: {FORMAT})")
    if data.get("version") != VERSION:
        raise TraceError(f"{path}: trace version {data.get('version')} is not supported (expected {VERSION})")
    blob = None
    if data.get("values"):
        side = path.with_name(data["values"]["file"])
        if not side.is_file():
            raise TraceError(f"{path}: its values file {side.name} is missing beside it")
        blob = np.fromfile(side, dtype="<f8")
    records = []
    for rec in data["records"]:
        dtype = np.int64 if rec["dtype"] == "int64" else np.float64
        if blob is not None:
            n = math.prod(rec["shape"])
            value = blob[rec["offset"] : rec["offset"] + n].reshape(rec["shape"]).astype(dtype)
        else:
            value = np.array(_decode(rec["value"]), dtype=dtype).reshape(rec["shape"])
        records.append(Record(rec["name"], rec["op"], rec["phase"], tuple(rec["inputs"]), value,
                              tuple(rec["axes"]), rec["formula"], rec["symbol"], rec["meta"]))
    return Trace(data["config"], data["labels"], records, data["index"])
