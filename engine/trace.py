"""The trace: a flat, ordered list of records, one per operation, and its JSON file format.

Each record has a stable hierarchical name (a public contract: pages refer to it), an op kind,
a phase, the names of its inputs, its float64 value with named axes, the LaTeX formula that
defines it, a LaTeX symbol for captions, and `meta` (whatever `explain` needs to regenerate
the arithmetic of one element). See docs/trace-format.md.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import mmap
import os
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

FORMAT = "handstep-trace"
VERSION = 1
# Past this many values in all, they go to a binary sidecar `<trace>.bin` (little-endian float64)
# and the JSON keeps offsets: a GPT-2-small-shaped layer has ~60 M values, ~1.5 GB as JSON text.
INLINE_MAX_VALUES = 2_000_000
SPILL_VALUES = 65_536  # in a run that spills, records at least this large live in the values file only


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

    def __init__(self, config: dict, labels: dict, records: list[Record], index: dict,
                 values_file: BinaryIO | None = None):
        self.config = config
        self.labels = labels
        self.records = records
        self.index = index
        # A big run's values, every record's in order as the sidecar format lays them out (see `Recorder`): the
        # records' arrays are read-only views of this file, and saving copies it instead of gathering arrays.
        self.values_file = values_file
        self._by_name = {r.name: r for r in records}
        if len(self._by_name) != len(records):
            dupes = [name for name, n in Counter(r.name for r in records).items() if n > 1]
            raise TraceError(f"duplicate record names: {', '.join(map(repr, dupes))}")

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

    def release(self, names: Iterable[str] | None = None) -> None:
        """Let the memory maps of a big run's records (all, or `names`) drop the pages they have read: the values
        stay in the file and are read again when next used, so a GPT-2-sized build does not end up holding all
        8 GB of them. Each record gives back its own bytes only (`madvise`), whether it maps a part of the run's
        values file or is a view of a whole sidecar read back."""
        for rec in self.records if names is None else (self._by_name[n] for n in names if n in self._by_name):
            if isinstance(rec.value, np.memmap) and rec.value.nbytes:
                _drop_pages(rec.value.ctypes.data, rec.value.nbytes)


def _drop_pages(address: int, size: int) -> None:
    """madvise(MADV_DONTNEED) on the pages of [address, address + size) of a file mapping (Linux; elsewhere, or if
    the call fails, nothing: only memory is at stake)."""
    libc = _libc()
    if libc is not None:
        start = address - address % mmap.PAGESIZE
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(address + size - start), mmap.MADV_DONTNEED)


@functools.cache
def _libc() -> Any:
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


class Recorder:
    """Collects records during a run. `describe(name, op)` gives a record's (formula, symbol): engine.ops.describe.

    With `spill` (an open binary file), every value is written there as it is made, in the sidecar layout of
    `save_trace` (little-endian float64, record after record), by a writer thread while the run goes on; a record
    past SPILL_VALUES then keeps only a read-only memory map of its part. A GPT-2-small step makes ~7 GB of values,
    far more than needs to be in memory at once. A value must not change once recorded (the engine never does so).
    """

    def __init__(self, describe: Callable[[str, str], tuple[str, str]], spill: BinaryIO | None = None):
        self.records: list[Record] = []
        self.phase = "forward"
        self.describe = describe
        self.writer = _Writer(spill) if spill is not None else None

    def add(self, name: str, value: Any, *, op: str, inputs: tuple[str, ...] = (), axes: tuple[str, ...] = (),
            **meta: Any) -> None:
        value = np.asarray(value)
        if value.ndim != len(axes):
            raise ValueError(f"{name}: {value.ndim} dims but axes {axes}")
        check_finite(name, op, value)
        formula, symbol = self.describe(name, op)
        big = self.writer is not None and value.size >= SPILL_VALUES and value.dtype.kind == "f"
        record = Record(name, op, self.phase, tuple(inputs), value if big else value.copy(), tuple(axes), formula,
                        symbol, meta)
        self.records.append(record)
        if self.writer is not None:
            self.writer.put(record, big)

    def finish(self) -> None:
        """Wait until every value is in the file (a no-op without one)."""
        if self.writer is not None:
            self.writer.finish()


class _Writer:
    """Writes records' values to the values file in order, in a thread, holding at most MAX_PENDING bytes.

    Where the system allows it (Linux), the bytes go straight to the disk (O_DIRECT, through an aligned staging
    buffer of CHUNK bytes) instead of through the page cache: a GPT-2-small step writes ~8 GB, and on a machine
    whose fresh memory is slow to hand out (a VM) filling the page cache with it costs more than the disk does.
    A big record becomes a memory map of its part once all its bytes are in the file. Elsewhere, plain writes."""

    MAX_PENDING = 512 << 20
    CHUNK = 8 << 20  # a multiple of every block size O_DIRECT asks for

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.offset = 0
        self.pending: list[tuple[Record, bool, int]] = []
        self.bytes = 0
        self.error: BaseException | None = None
        self.done = False
        self.cond = threading.Condition()
        self.direct = _open_direct(file)
        self.stage = mmap.mmap(-1, self.CHUNK) if self.direct is not None else None
        self.staged = 0  # bytes in the staging buffer
        self.flushed = 0  # bytes in the file
        self.unmapped: list[tuple[Record, int]] = []  # big records written, waiting for their last bytes to land
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, record: Record, mapped: bool) -> None:
        size = record.value.size * 8
        with self.cond:
            self.cond.wait_for(lambda: self.bytes < self.MAX_PENDING or self.error is not None)
            if self.error is not None:
                raise self.error
            self.pending.append((record, mapped, self.offset))
            self.offset += size
            self.bytes += size
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.pending or self.done)
                if not self.pending:
                    break
                record, mapped, start = self.pending[0]
            try:
                data = memoryview(np.ascontiguousarray(record.value, dtype="<f8")).cast("B")
                if self.direct is None:
                    self.file.write(data)
                    if mapped:
                        self.file.flush()
                        self._map(record, start)
                else:
                    self._stage(data)
                    if mapped:
                        self.unmapped.append((record, start))
                        self._map_landed()
            except BaseException as exc:  # noqa: BLE001 - handed to the run's thread (a full disk, say)
                self._fail(exc)
                return
            with self.cond:
                self.pending.pop(0)
                self.bytes -= record.value.size * 8
                self.cond.notify_all()
        try:
            self._close_direct()
        except BaseException as exc:  # noqa: BLE001 - likewise
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.direct is not None:
            os.close(self.direct)
            self.direct = None
        with self.cond:
            self.error = exc
            self.pending.clear()
            self.cond.notify_all()

    def _map(self, record: Record, start: int) -> None:
        record.value = np.memmap(self.file, dtype="<f8", mode="r", offset=start, shape=record.value.shape)

    def _stage(self, data: memoryview) -> None:
        """Copy `data` into the staging buffer, writing the buffer to the file each time it is full."""
        stage = self.stage
        assert stage is not None and self.direct is not None
        done = 0
        while done < len(data):
            n = min(self.CHUNK - self.staged, len(data) - done)
            stage[self.staged:self.staged + n] = data[done:done + n]
            self.staged += n
            done += n
            if self.staged == self.CHUNK:
                _write_all(self.direct, memoryview(stage), self.flushed)
                self.flushed += self.CHUNK
                self.staged = 0

    def _map_landed(self) -> None:
        while self.unmapped and self.unmapped[0][1] + self.unmapped[0][0].value.size * 8 <= self.flushed:
            record, start = self.unmapped.pop(0)
            self._map(record, start)

    def _close_direct(self) -> None:
        """Write the last, partial chunk (padded to a whole block, then the file cut to its length) and map the
        records still waiting for it."""
        if self.direct is None:
            return
        assert self.stage is not None
        if self.staged:
            whole = -(-self.staged // DIRECT_BLOCK) * DIRECT_BLOCK
            self.stage[self.staged:whole] = bytes(whole - self.staged)
            _write_all(self.direct, memoryview(self.stage)[:whole], self.flushed)
            self.flushed += self.staged
            self.staged = 0
            os.ftruncate(self.direct, self.flushed)
        os.close(self.direct)
        self.direct = None
        self.stage.close()
        self.stage = None
        for record, start in self.unmapped:
            self._map(record, start)
        self.unmapped.clear()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()
        self.thread.join()
        if self.error is not None:
            raise self.error
        self.file.flush()
        self.file.seek(0, os.SEEK_END)


DIRECT_WRITES = True  # tests turn it off to cover the plain writes
DIRECT_BLOCK = 4096  # O_DIRECT writes whole blocks at block offsets; 4096 covers every common block size


def _open_direct(file: BinaryIO) -> int | None:
    """A second descriptor on `file` that writes past the page cache (O_DIRECT), or None where that is not
    possible (not Linux, a file system without it, a file not at offset 0)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag or not DIRECT_WRITES:
        return None
    try:
        file.flush()
        if file.tell() != 0:
            return None
        fd = os.open(f"/proc/self/fd/{file.fileno()}", os.O_WRONLY | flag)
    except (OSError, ValueError, AttributeError):
        return None
    try:  # some file systems accept the flag and refuse the write: try one block
        probe = mmap.mmap(-1, DIRECT_BLOCK)
        try:
            os.pwrite(fd, probe, 0)
        finally:
            probe.close()
        os.ftruncate(fd, 0)
    except OSError:
        os.close(fd)
        return None
    return fd


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        if n <= 0:
            raise OSError("could not write the run's values file")
        data, offset = data[n:], offset + n


def check_only(name: str, value: Any, *, op: str, **kwargs: Any) -> None:
    """A recorder that keeps nothing and only checks every value is finite (to name the first NaN or Inf)."""
    check_finite(name, op, np.asarray(value))


class NonFiniteError(FloatingPointError):
    """A NaN or Inf appeared; `name` is the first record that holds one."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def check_finite(name: str, op: str, value: np.ndarray) -> None:
    if value.dtype.kind != "f":
        return
    if value.size > 4096 and np.isfinite(value.sum()):  # one fast pass: a NaN or Inf makes the sum non-finite
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
    """Write the trace as JSON, one record per line; floats written with repr round-trip exactly.

    Past INLINE_MAX_VALUES values in all, the values go to `<name>.bin` beside it (little-endian float64, record
    after record) and each record gets an `offset`; the values are streamed, never gathered in memory."""
    path = Path(path)
    total = sum(r.value.size for r in trace.records)
    sidecar = path.with_suffix(".bin") if total > INLINE_MAX_VALUES else None
    head = {"format": FORMAT, "version": VERSION, "config": trace.config, "labels": trace.labels,
            "index": trace.index, "values": {"file": sidecar.name, "dtype": "<f8"} if sidecar else None}
    lines = []
    offset = 0
    for r in trace.records:
        rec = _record_header(r)
        if sidecar:
            rec["offset"] = offset
            offset += r.value.size
        elif rec["dtype"] == "int64":
            rec["value"] = r.value.tolist()
        else:
            flat = [_encode(x) for x in r.value.ravel().tolist()]
            rec["value"] = np.array(flat, dtype=object).reshape(r.shape).tolist() if r.value.ndim else flat[0]
        lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    head_text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    text = head_text[:-1] + ',"records":[\n' + ",\n".join(lines) + "\n]}\n"
    tmp = _temporary(path)
    stmp = _temporary(sidecar) if sidecar else None
    try:
        tmp.write_text(text, encoding="utf-8")
        if sidecar and stmp and _is_values_file(trace, sidecar):
            trace.values_file.flush()  # the run wrote its values there already
        elif sidecar and stmp:
            with open(stmp, "wb") as out:
                _write_values(trace, out, offset)
            stmp.replace(sidecar)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if stmp:
            stmp.unlink(missing_ok=True)
        raise


def _is_values_file(trace: Trace, sidecar: Path) -> bool:
    """Is `sidecar` the very file the run's values were written to (a cached run saved beside its values)?"""
    if trace.values_file is None or not sidecar.exists():
        return False
    try:
        return os.path.samestat(os.fstat(trace.values_file.fileno()), sidecar.stat())
    except (OSError, ValueError):
        return False


def _write_values(trace: Trace, out: BinaryIO, total: int) -> None:
    """Every record's values, in order: copied from the run's values file when it has one, else record by record."""
    if trace.values_file is not None:
        trace.values_file.flush()
        trace.values_file.seek(0)
        left = total * 8
        while left:
            chunk = trace.values_file.read(min(left, 64 << 20))
            if not chunk:
                raise OSError("the run's values file is shorter than its records")
            out.write(chunk)
            left -= len(chunk)
        return
    for r in trace.records:
        out.write(memoryview(np.ascontiguousarray(r.value, dtype="<f8")).cast("B"))


HEAD_MAX = 64 << 20  # the first line of a trace file: its head (config, labels, index, values)
NAMING_MAX = 512 << 20  # a big trace's JSON holds no values, so it is far smaller than this


def _temporary(path: Path) -> Path:
    """Where `path` is written before it is moved into place: `<name>.tmp`, or, when that would pass the file
    system's 255 bytes, a shorter one that still tells names apart (a trace and its values file begin alike)."""
    name = path.name + ".tmp"
    if len(os.fsencode(name)) > 255:
        tag = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
        name = f".{os.fsencode(path.name)[:100].decode('utf-8', 'ignore')}.{tag}.tmp"
    return path.with_name(name)


def own_values_file(path: str | Path) -> Path | None:
    """The values file that the trace file at `path` names, when it lies beside it as a plain file of exactly the
    bytes the trace's records need: the file `save_trace` wrote with that trace. None otherwise (not a trace file,
    a trace that keeps its values inline, or a values file missing, not a plain file, or of another size).

    Reads the trace's first line (`save_trace` writes the head on it), and the rest only when the head names a
    values file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            first = f.readline(HEAD_MAX)
            end = b',"records":[\n'
            if not first.startswith(b'{"format":"' + FORMAT.encode() + b'"') or not first.endswith(end):
                return None
            head = json.loads(first[: -len(end)] + b"}")
            values = head.get("values")
            name = values.get("file") if isinstance(values, dict) else None
            if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
                return None
            side = path.with_name(name)
            st = os.lstat(side)
            if not stat.S_ISREG(st.st_mode) or os.fstat(f.fileno()).st_size > NAMING_MAX:
                return None
            records = json.loads(first[: -len(end)] + b',"records":[' + f.read())["records"]
        total = sum(math.prod(r["shape"]) for r in records)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return side if st.st_size == 8 * total else None


DTYPES = {"int64": np.int64, "float64": np.float64}
NUMBER_STRINGS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}  # JSON has no infinity or NaN
MAX_AXES = 32  # NumPy's limit (1.x)
INT64 = (-(2**63), 2**63)


def load_trace(path: str | Path) -> Trace:
    """Read a trace file written by `save_trace`, checking every field: a damaged file is one TraceError line."""
    label = str(path)
    path = Path(path)
    data = _read_json(path, label)
    if not isinstance(data, dict):
        raise TraceError(f"{label}: not a handstep trace (the JSON is {_kind(data)}, not an object)")
    if data.get("format") != FORMAT:
        raise TraceError(f"{label}: not a handstep trace (missing format: {FORMAT})")
    if data.get("version") != VERSION or type(data.get("version")) is not int:
        raise TraceError(f"{label}: trace version {_clip(data.get('version'))} is not supported (expected {VERSION})")
    for key, kind in (("config", dict), ("labels", dict), ("index", dict), ("records", list)):
        if key not in data:
            raise TraceError(f"{label}: '{key}' is missing; the file is damaged (write it again with handstep trace)")
        if not isinstance(data[key], kind):
            want = "an object" if kind is dict else "a list"
            raise TraceError(f"{label}: '{key}' must be {want}, got {_kind(data[key])}")
    _check_labels(data["labels"], label)
    blob = _sidecar(data.get("values"), path, label)
    records: list[Record] = []
    first: dict[str, int] = {}
    for i, rec in enumerate(data["records"]):
        record = _record(rec, i, label, blob, first)
        first[record.name] = i
        records.append(record)
    _check_index(data["index"], first, label)
    return Trace(data["config"], data["labels"], records, data["index"])


def _kind(v: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _read_json(path: Path, label: str) -> Any:
    try:
        if path.is_dir():
            raise TraceError(f"{label}: is a directory, not a trace file (give a .json file written by handstep trace)")
        if not stat.S_ISREG(path.stat().st_mode):  # a pipe would block the read forever, /dev/zero never ends
            raise TraceError(f"{label}: is not a plain file (a pipe, a socket or a device), not a trace file (give a "
                             ".json file written by handstep trace)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{label}: file not found") from None
    except PermissionError:
        raise TraceError(f"{label}: cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{label}: not a handstep trace (not UTF-8 text, byte {exc.start})") from None
    except OSError as exc:
        raise TraceError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if not text.strip():
        raise TraceError(f"{label}: is empty, not a handstep trace (write it again with handstep trace)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{label}: not a handstep trace ({exc})") from None
    except ValueError:  # an integer of more than 4300 digits
        raise TraceError(f"{label}: not a handstep trace (a number has too many digits)") from None
    except RecursionError:
        raise TraceError(f"{label}: not a handstep trace (JSON nested too deeply)") from None


def _check_labels(labels: dict, label: str) -> None:
    for key, depth in (("vocab", 1), ("inputs", 2), ("targets", 2)):
        v = labels.get(key)
        ok = isinstance(v, list) and all(
            isinstance(w, str) if depth == 1 else isinstance(w, list) and all(isinstance(x, str) for x in w) for w in v)
        if not ok:
            want = "a list of strings" if depth == 1 else "a list of lists of strings"
            raise TraceError(f"{label}: labels.{key} must be {want}, got {_kind(v)}")


def _sidecar(values: Any, path: Path, label: str) -> np.ndarray | None:
    """The values file's float64s when the JSON names one (`values: {file, dtype}`), else None."""
    if values is None:
        return None
    if not isinstance(values, dict):
        raise TraceError(f"{label}: 'values' must be null or an object naming the values file, got {_kind(values)}")
    name = values.get("file")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise TraceError(f"{label}: values.file must be the name of a file beside the trace, got {_clip(name)}")
    if values.get("dtype") != "<f8":
        raise TraceError(f"{label}: values.dtype must be \"<f8\" (little-endian float64), got {values.get('dtype')!r}")
    side = path.with_name(name)
    if side.is_dir():
        raise TraceError(f"{label}: its values file {name} is a directory")
    if not side.is_file():
        raise TraceError(f"{label}: its values file {name} is missing beside it")
    try:
        size = side.stat().st_size
        if size % 8:
            raise TraceError(f"{label}: its values file {name} has {size} bytes, not a whole number of float64s")
        return np.memmap(side, dtype="<f8", mode="r") if size else np.zeros(0)
    except OSError as exc:
        raise TraceError(f"{label}: its values file {name} cannot be read ({exc.strerror or exc})") from None


def _record(rec: Any, i: int, label: str, blob: np.ndarray | None, first: dict[str, int]) -> Record:
    """One record of the JSON, checked field by field; errors name the record's position and name."""
    where = f"{label}: record {i}"
    if not isinstance(rec, dict):
        raise TraceError(f"{where}: must be an object, got {_kind(rec)}")
    name = rec.get("name")
    if not isinstance(name, str) or not name:
        raise TraceError(f"{where}: name must be a non-empty string, got {_clip(name)}")
    where = f"{label}: record {i} {name!r}"

    def bad(message: str):
        raise TraceError(f"{where}: {message}")

    if name in first:
        bad(f"duplicate name (also record {first[name]})")
    for key in ("op", "phase", "formula", "symbol"):
        if not isinstance(rec.get(key), str):
            bad(f"{key} must be a string, got {_clip(rec.get(key))}")
    inputs = rec.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        bad(f"inputs must be a list of record names, got {_clip(inputs)}")
    for x in inputs:
        if x not in first:
            bad(f"input {x!r} is not an earlier record")
    shape = rec.get("shape")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        bad(f"shape must be a list of whole numbers ≥ 0, got {_clip(shape)}")
    if len(shape) > MAX_AXES:
        bad(f"shape has {len(shape)} axes; at most {MAX_AXES}")
    axes = rec.get("axes")
    if not isinstance(axes, list) or not all(isinstance(a, str) for a in axes):
        bad(f"axes must be a list of strings, got {_clip(axes)}")
    if len(axes) != len(shape):
        bad(f"{len(axes)} axes {_clip(axes)} for shape {shape} ({len(shape)} dims)")
    dtype = rec.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        bad(f"dtype {_clip(dtype)} is unknown (int64 or float64)")
    meta = rec.get("meta")
    if not isinstance(meta, dict):
        bad(f"meta must be an object, got {_clip(meta)}")
    n = math.prod(shape)
    if blob is not None:
        offset = rec.get("offset")
        if type(offset) is not int or offset < 0:
            bad(f"offset must be a whole number ≥ 0 (a position in the values file), got {_clip(offset)}")
        if offset + n > blob.size:
            bad(f"offset {offset} + {n} values runs past the end of the values file ({blob.size} values); "
                "the values file is shorter than the trace needs (write both files again)")
        raw = blob[offset : offset + n]
        if dtype == "int64" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
            bad("an int64 record holds values that are not whole numbers")
    else:
        if "value" not in rec:
            bad("value is missing")
        raw = _flat(rec["value"], shape, dtype == "int64", bad)
    try:
        if blob is not None and dtype == "float64" and n >= SPILL_VALUES:
            value = raw.reshape(shape)  # a read-only view of the values file: a big trace is not read into RAM
        else:
            value = np.array(raw, dtype=DTYPES[dtype]).reshape(shape)
    except (ValueError, OverflowError, MemoryError) as exc:
        bad(f"its value cannot be read as {dtype} of shape {shape} ({exc})")
    return Record(name, rec["op"], rec["phase"], tuple(inputs), value, tuple(axes), rec["formula"], rec["symbol"],
                  meta)


def _clip(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, str, int, float, type(None))) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _flat(value: Any, shape: list[int], integer: bool, bad) -> list:
    """The nested list's numbers in C order, checked against the shape; "inf", "-inf", "nan" decoded."""
    out: list = []
    last = len(shape) - 1

    def number(x: Any, index: tuple[int, ...]):
        t = type(x)
        if integer:
            if t is int and INT64[0] <= x < INT64[1]:
                return x
            bad(f"value {list(index)} is {_clip(x)}; an int64 record holds whole numbers only")
        if t is float or t is int:
            return x
        if t is str and x in NUMBER_STRINGS:
            return NUMBER_STRINGS[x]
        bad(f'value {list(index)} is {_clip(x)}; only numbers and the strings "inf", "-inf" and "nan" are allowed')

    def walk(v: Any, depth: int, index: tuple[int, ...]) -> None:
        if depth > last:  # a 0-d record: one number
            if type(v) is list:
                raise _Mismatch
            out.append(number(v, index))
            return
        if type(v) is not list or len(v) != shape[depth]:
            raise _Mismatch
        if depth == last:
            for j, x in enumerate(v):
                t = type(x)
                out.append(x if t is int or (t is float and not integer) else number(x, index + (j,)))
            return
        for j, x in enumerate(v):
            walk(x, depth + 1, index + (j,))

    try:
        walk(value, 0, ())
    except _Mismatch:
        try:
            dims = _value_shape(value, ())
        except _Ragged as exc:
            bad(f"shape {shape} does not match its value, which is ragged: {exc}")
        got = " × ".join(map(str, dims)) if dims else "a single number"
        bad(f"shape {shape} does not match its value ({got})")
    if integer:
        for j, x in enumerate(out):
            if not INT64[0] <= x < INT64[1]:
                bad(f"value {[int(k) for k in np.unravel_index(j, shape)]} is {x}, past the int64 range")
    return out


class _Mismatch(Exception):
    pass


class _Ragged(Exception):
    pass


def _value_shape(v: Any, index: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a nested list; raises _Ragged naming two rows of different shapes."""
    if type(v) is not list:
        return ()
    shapes = [_value_shape(x, index + (j,)) for j, x in enumerate(v)]
    for j, s in enumerate(shapes):
        if s != shapes[0]:
            def show(d):
                return " × ".join(map(str, d)) if d else "a single number"
            raise _Ragged(f"{list(index + (0,))} is {show(shapes[0])} but {list(index + (j,))} is {show(s)}")
    return (len(v),) + (shapes[0] if shapes else ())


def _check_index(index: dict, names: dict[str, int], label: str) -> None:
    """Every index entry names records of the trace: a name, or {"initial": ..., "grad": ..., "updated": ...}."""
    for key, entry in index.items():
        targets = entry.items() if isinstance(entry, dict) else [("", entry)]
        for part, name in targets:
            where = f"index[{key!r}]" + (f"[{part!r}]" if part else "")
            if not isinstance(name, str):
                raise TraceError(f"{label}: {where} must be a record name, got {_kind(name)}")
            if name not in names:
                raise TraceError(f"{label}: {where} names {name!r}, which is not a record of the trace")
