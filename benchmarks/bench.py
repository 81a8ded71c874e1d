"""`make bench`: the engine's and the site's speed and size figures, each run several times.

Prints a table (median, min, max) and writes it to docs/benchmarks.md with the machine it ran on.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile

from benchmarks.measure import PY, ROOT, child, row, timed

SCALE = {"seed": 0, "train_steps": 0,
         "model": {"vocab": ["<pad>", "<bos>", "<eos>"] + [f"w{i}" for i in range(2045)],
                   "d_model": 768, "n_heads": 12, "d_ff": 3072, "n_layers": 1, "n_positions": 64, "init_std": 0.02},
         "data": {"texts": [" ".join(f"w{(i * 37) % 2045}" for i in range(64))]}}


def _fixed_task() -> None:
    """The same CPU work every time (pure Python): its time says how fast the machine runs this hour."""
    total = 0
    for i in range(1_000_000):
        total += i * i % 7


def speed_row(when: str) -> tuple:
    return row(f"machine: a fixed CPU task, timed at the {when} (the other figures scale with it)",
               timed(_fixed_task, 7), "ms")


def engine_rows() -> list[tuple]:
    from engine import run
    from engine.config import config_from_dict

    rows = []
    cfg0 = config_from_dict({"train_steps": 0}, "bench")
    run(cfg0)
    rows.append(row("engine: one recorded default step (forward, backward, AdamW, re-evaluation)",
                    timed(lambda: run(cfg0), 20), "ms", "≤ 5 ms"))
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(row("`handstep trace` wall time, default config (incl. 200-step run, interpreter start)",
                        timed(lambda: subprocess.run([PY, "-m", "site_build.cli", "trace", "--out", f"{tmp}/t.json"],
                                                     cwd=ROOT, check=True, capture_output=True), 5), "s"))
    cfg1000 = config_from_dict({"train_steps": 1000}, "bench")
    rows.append(row("engine: default config with train_steps 1000", timed(lambda: run(cfg1000), 3), "s", "≤ 3 s"))
    scale_runs = [child(f"import time\nfrom engine import run\nfrom engine.config import config_from_dict\n"
                        f"cfg = config_from_dict({SCALE!r}, 'bench')\nt = time.perf_counter(); tr = run(cfg)\n"
                        f"RESULT = {{'s': time.perf_counter() - t, 'records': len(tr)}}") for _ in range(3)]
    rows.append(row("engine: GPT-2-small-shaped layer (768, 12 heads, 3072, 64 tokens, vocab 2048), one step",
                    [r["s"] for r in scale_runs], "s", "≤ 5 s"))
    rows.append(row("engine: same, peak memory (whole process)", [r["peak_mb"] for r in scale_runs], "MB", "≤ 3000 MB"))
    return rows


def site_rows() -> list[tuple]:
    path = ROOT / "benchmarks" / "site_bench.py"
    if not path.exists():
        return []
    from benchmarks import site_bench

    return site_bench.rows(row, timed, child)


def main() -> int:
    rows = [speed_row("start"), *engine_rows(), *site_rows(), speed_row("end")]
    header = ("figure", "median", "min", "max", "unit", "target")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    text = "\n".join(table)
    print(text)
    doc = ROOT / "docs" / "benchmarks.md"
    old = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    by_hand = old[old.index(HAND_MARK):] if HAND_MARK in old else ""  # kept as it is
    doc.write_text(
        "# Benchmarks\n\nWritten by `make bench` (each figure run several times: median, min, max).\n\n"
        f"Machine: {machine}. Its speed changes from hour to hour, by up to a half on the machine these figures\n"
        "come from: the first and last rows time a fixed task, so that two runs can be compared (to compare two\n"
        "versions of the code, run them in turns in the same hour).\n\n"
        f"{text}\n" + (f"\n{by_hand}" if by_hand else ""), encoding="utf-8")
    return 0


HAND_MARK = "<!-- Written by hand, not by `make bench`: everything from here on. -->"


if __name__ == "__main__":
    sys.exit(main())
