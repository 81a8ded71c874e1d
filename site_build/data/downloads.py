"""Download the numbers: what the pages show, at full precision, and the pictures of big matrices.

    assets/csv/NAME.csv                 every value of a record small enough to be shown whole (MAX_CSV_VALUES)
    assets/csv/NAME~AT~ROWS~COLS.csv    the window of a big record a page shows (rows and columns as ranges)
    assets/npy/NAME.npy                 every value of a big record, up to MAX_NPY_VALUES (NumPy's format)
    assets/heat/NAME~AT.png             the heatmap of one matrix of a record (`AT`: the fixed leading indices)
    assets/heat/NAME~AT~heads.png       every head of a record side by side

The windows, heatmaps and .npy files are the ones the pages' blocks need (`FileNeed`, kept with each rendered page:
`page_files`), so a page replayed from the build cache gets its files too. The trace itself (`trace.json`) ships
only when it is small (`ships_trace`); a big run's trace stays where it was made (`handstep trace` writes it).

Layout of a CSV file: one index column per leading axis, then one column per entry of the
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
import math
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

import engine.trace as engine_trace
from site_build.charts.plots import heat_png

CSV_DIR = "assets/csv"
NPY_DIR = "assets/npy"
HEAT_DIR = "assets/heat"
# A record up to this many values gets a CSV of all of them; a bigger one, a CSV of the window a page shows.
MAX_CSV_VALUES = 4_096
# A big record up to this many values (2 MB) ships whole as .npy; past it, the local trace has it.
MAX_NPY_VALUES = 262_144


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


def csv_files(run: Any, names: Iterable[str]) -> dict[str, str]:
    """{site path: CSV text} for every named record small enough for a CSV of all its values, in trace order, each
    made once per build (`run`: the build's RunContext)."""
    wanted = set(names)
    return {csv_path(r.name): run.figures(("csv", r.name), lambda r=r: record_csv(r.value, r.axes))
            for r in run.trace.records if r.name in wanted and has_csv(r.value)}


def has_csv(values: np.ndarray) -> bool:
    """Does the record get a CSV of all its values (else: its windows' CSV, and maybe a .npy)?"""
    return values.size <= MAX_CSV_VALUES


def has_npy(values: np.ndarray) -> bool:
    return MAX_CSV_VALUES < values.size <= MAX_NPY_VALUES


def ships_trace(trace: Any) -> bool:
    """Does the site carry the trace file? Not when its values live in a file of their own (a big run): a
    GPT-2-small step is ~8 GB of values, far past what a static host takes."""
    if getattr(trace, "values_file", None) is not None:
        return False
    return sum(r.value.size for r in trace.records) <= engine_trace.INLINE_MAX_VALUES  # read back from a cache too


# -- files named by what they hold ---------------------------------------------------------------------------------
def _at_text(at: tuple[int, ...] | list[int]) -> str:
    return ".".join(str(int(i)) for i in at) or "-"


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 3, 17, 60, 61] -> '0-3_17_60-61'."""
    out, start, prev = [], None, None
    for i in indices:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return "_".join(out)


def heat_path(name: str, *at: int, heads: bool = False) -> str:
    """The heatmap of record[at] (a 2-D or 1-D view), or of every head of record[at] side by side."""
    return f"{HEAT_DIR}/{name}~{_at_text(at)}{'~heads' if heads else ''}.png"


def update_heat_path(name: str) -> str:
    """The heatmap of Δθ/η of parameter `name`: (updated − initial) / lr, every weight."""
    return f"{HEAT_DIR}/{name}~-~update.png"


def window_csv_path(name: str, at: tuple[int, ...], rows: list[int], cols: list[int]) -> str:
    """The CSV of rows × cols of record[at] (a 1-D view has the one row 0)."""
    return f"{CSV_DIR}/{name}~{_at_text(at)}~{_ranges(rows)}~{_ranges(cols)}.csv"


def npy_path(name: str) -> str:
    return f"{NPY_DIR}/{name}.npy"


@dataclass(frozen=True)
class FileNeed:
    """A file a block of a page links to (macros.blocks), and what it holds: the build makes it (`make`)."""

    path: str  # the site path the page links to (heat_path, update_heat_path, window_csv_path, npy_path)
    kind: str  # "heat": record[at] as a heatmap; "heads": its heads side by side; "update": Δθ/η of a parameter;
    #            "window": rows × cols of record[at] as CSV; "npy": the whole record
    record: str
    at: tuple[int, ...] = ()
    rows: tuple[int, ...] = ()
    cols: tuple[int, ...] = ()


def heat_file(name: str, *at: int, heads: bool = False) -> FileNeed:
    return FileNeed(heat_path(name, *at, heads=heads), "heads" if heads else "heat", name, tuple(at))


def update_file(name: str) -> FileNeed:
    return FileNeed(update_heat_path(name), "update", name)


def window_file(name: str, at: tuple[int, ...], rows: list[int], cols: list[int]) -> FileNeed:
    return FileNeed(window_csv_path(name, at, rows, cols), "window", name, tuple(at), tuple(rows), tuple(cols))


def npy_file(name: str) -> FileNeed:
    return FileNeed(npy_path(name), "npy", name)


def page_files(trace: Any, results: Iterable[Any], prefetched: Prefetch | None = None) -> dict[str, bytes | str]:
    """The windows' CSVs, the .npy files and the heatmaps the pages' blocks link to (`results`: the rendered pages,
    render.jinja.PageResult; the files `prefetched` made already are taken from it)."""
    needs = {need.path: need for result in results for need in result.files}
    out: dict[str, bytes | str] = {}
    for path in sorted(needs):
        out[path] = prefetched.get(needs[path]) if prefetched is not None else make(trace, needs[path])
    return out


class Prefetch:
    """The files each rendered page links to, made in a background thread while the next pages render: NumPy
    releases the GIL, so on two cores the seconds of a GPT-2-sized site's heatmaps hide behind the rendering."""

    def __init__(self, trace: Any) -> None:
        self.trace = trace
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="page files")
        self.futures: dict[str, Future] = {}

    def page(self, result: Any) -> None:
        """Start on the files of a rendered page (its `files`); the pages read so far may be dropped from memory
        (Trace.release)."""
        self.trace.release()
        for need in result.files:
            if need.path not in self.futures:
                self.futures[need.path] = self.pool.submit(self._make, need)

    def _make(self, need: FileNeed) -> bytes | str:
        made = make(self.trace, need)
        self.trace.release([need.record, "updated." + need.record])
        return made

    def get(self, need: FileNeed) -> bytes | str:
        future = self.futures.get(need.path)
        return future.result() if future is not None else make(self.trace, need)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make(trace: Any, need: FileNeed) -> bytes | str:
    """The file a block needs: a heatmap (PNG), a window's CSV or a whole record as .npy."""
    rec = trace.record(need.record)
    if need.kind == "npy":
        out = io.BytesIO()
        np.save(out, np.ascontiguousarray(rec.value))
        return out.getvalue()
    view = np.asarray(rec.value)[need.at] if need.at else rec.value
    if need.kind == "window":
        return window_csv(rec, need.at, view, list(need.rows), list(need.cols))
    if need.kind == "heads":
        return heat_png(tile_heads(view))
    if need.kind == "update" and "updated." + need.record in trace:
        lr = float(trace.config["optimizer"]["lr"])
        change = (np.asarray(trace["updated." + need.record], dtype=float) - np.asarray(view, dtype=float)) / lr
        return heat_png(change if change.ndim == 2 else change.reshape(1, -1))
    return heat_png(view if np.ndim(view) == 2 else np.reshape(view, (1, -1)))


def tile_heads(values: np.ndarray) -> np.ndarray:
    """(heads, rows, cols) as one picture: the heads in a grid (row-major, about square), a blank line between."""
    heads, rows, cols = values.shape
    across = math.ceil(math.sqrt(heads * rows / cols)) if cols else 1
    across = max(1, min(heads, across))
    down = math.ceil(heads / across)
    out = np.zeros((down * (rows + 1) - 1, across * (cols + 1) - 1))
    for h in range(heads):
        r, c = divmod(h, across)
        out[r * (rows + 1): r * (rows + 1) + rows, c * (cols + 1): c * (cols + 1) + cols] = values[h]
    return out


def window_csv(rec: Any, at: tuple[int, ...], view: np.ndarray, rows: list[int], cols: list[int]) -> str:
    """A window of record[at] as CSV: the fixed indices, then one row per shown row with its index, one column per
    shown column (`d_model=17`, ...); the file says which rows and columns of how many it holds."""
    axes = list(rec.axes)
    lead = axes[: len(at)]
    if np.ndim(view) == 1:
        view, names = np.reshape(view, (1, -1)), ["", axes[-1]]
    else:
        names = axes[len(at):]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cell = _int_text if view.dtype.kind in "iub" else _float_text
    writer.writerow([*lead, names[0] or "row", *(f"{names[1]}={j}" for j in cols)])
    picked = np.asarray(view[np.ix_(rows, cols)])
    for i, line in zip(rows, picked.tolist()):
        writer.writerow([*(str(k) for k in at), i, *(cell(v) for v in line)])
    return out.getvalue()
