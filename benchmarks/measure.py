"""How a figure is measured: timed repeats, a fresh interpreter with its peak memory, a table row. Shared by
benchmarks/bench.py and benchmarks/site_bench.py."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def child(code: str) -> dict:
    """Run code in a fresh interpreter that prints one JSON line; adds its peak RSS in MB."""
    wrapped = (code + "\nimport resource, json as _j\n"
               "print(_j.dumps({**RESULT, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    p = subprocess.run([PY, "-c", wrapped], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def row(name: str, values: list[float], unit: str, target: str = "") -> tuple:
    scale = 1000 if unit == "ms" else 1
    v = [x * scale for x in values]
    return (name, f"{statistics.median(v):.3g}", f"{min(v):.3g}", f"{max(v):.3g}", unit, target)
