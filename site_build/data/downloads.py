"""Download the numbers: one CSV file per record a page shows, at full precision.

Layout of a file: one index column per leading axis, then one column per entry of the
last axis (`d_model=0`, `d_model=1`, ...), so a (tokens × d_model) matrix reads as it
looks on the page and a (batch × heads × tokens × keys) record is flattened with
`batch`, `heads`, `tokens` index columns. A 1-D record is one index column and `value`;
a scalar is a single `value`. Floats are written as Python's repr (they read back
exactly); the causal mask's −∞ is `-inf`.
"""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import numpy as np

CSV_DIR = "assets/csv"


def csv_path(name: str) -> str:
    """Where the CSV of record `name` lives, relative to the site root."""
    return f"{CSV_DIR}/{name}.csv"


def record_csv(values: np.ndarray, axes: tuple[str, ...] | list[str]) -> str:
    """The CSV text of one record's values."""
    values = np.asarray(values)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cell = _int_text if values.dtype.kind in "iub" else _float_text
    if values.ndim == 0:
        writer.writerow(["value"])
        writer.writerow([cell(values.item())])
        return out.getvalue()
    if values.ndim == 1:
        writer.writerow([axes[0], "value"])
        writer.writerows([i, cell(v)] for i, v in enumerate(values.tolist()))
        return out.getvalue()
    last = axes[-1]
    writer.writerow([*axes[:-1], *(f"{last}={j}" for j in range(values.shape[-1]))])
    for lead in itertools.product(*(range(n) for n in values.shape[:-1])):
        writer.writerow([*lead, *(cell(v) for v in values[lead].tolist())])
    return out.getvalue()


def _float_text(x: float) -> str:
    return repr(float(x))


def _int_text(x: Any) -> str:
    return str(int(x))


def csv_files(trace: Any, names: set[str] | list[str]) -> dict[str, str]:
    """{site path: CSV text} for every named record, in trace order."""
    wanted = set(names)
    return {csv_path(r.name): record_csv(r.value, r.axes) for r in trace.records
            if r.name in wanted and has_csv(r.value)}


# Past this many values a CSV runs to megabytes and takes seconds to write: the trace file carries the values.
MAX_CSV_VALUES = 262_144


def has_csv(values: np.ndarray) -> bool:
    return values.size <= MAX_CSV_VALUES
