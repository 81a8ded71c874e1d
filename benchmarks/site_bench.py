"""The site's figures for `make bench`: build times, memory, page sizes, and the GPT-2-small-shaped config.

Every build goes into a temporary directory with its own KaTeX cache; the repository's site/,
content/ and .cache/ are never touched. `rows()` is called by benchmarks/bench.py.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REPEAT = 5
SCALE_REPEAT = 3
# A scale build past these limits is stopped and reported as such (a page that shows every
# element of a 2048 x 768 table can take minutes and many GB).
SCALE_LIMIT_S = 180
SCALE_LIMIT_MB = 4000

def _cli_build(cache: Path, out: Path, config: Path | None = None) -> None:
    """`handstep build` as a user runs it, with its cache in a scratch directory."""
    args = ["build", "--out", str(out), "--cache", str(cache)] + (["--config", str(config)] if config else [])
    subprocess.run([str(Path(PY).parent / "handstep"), *args], cwd=ROOT, check=True, capture_output=True)


def _in_child(child: Callable[[str], dict], cache: Path, out: Path) -> dict:
    """One build of the default site in a fresh interpreter: its time, phase timings and peak memory."""
    code = (
        "import time\nfrom pathlib import Path\nfrom site_build.build import Paths, build\n"
        f"t = time.perf_counter()\n"
        f"report = build({str(ROOT / 'configs' / 'default.yaml')!r}, Path({str(out)!r}), "
        f"paths=Paths(cache=Path({str(cache)!r})))\n"
        "RESULT = {'s': time.perf_counter() - t, 'timings': report.timings, 'pages': report.pages}\n"
    )
    return child(code)


def _sizes(site: Path) -> dict[str, tuple[str, int, int]]:
    """(what, raw bytes, gzip bytes) for: the largest HTML page, all CSS, the JS code, and the
    largest per-page JS data file (under a `data/` folder); Pagefind's own files are left out."""

    def gz(data: bytes) -> int:
        return len(gzip.compress(data, compresslevel=9, mtime=0))

    files = [p for p in site.rglob("*") if p.is_file() and "pagefind" not in p.relative_to(site).parts]
    pages = [(gz(p.read_bytes()), p.stat().st_size, p.name) for p in files if p.suffix == ".html"]
    largest = max(pages)
    css = [p.read_bytes() for p in files if p.suffix == ".css"]
    js = [p for p in files if p.suffix in (".js", ".mjs")]
    code = [p.read_bytes() for p in js if "data" not in p.relative_to(site).parts]
    data = [(gz(p.read_bytes()), p.stat().st_size, p.name) for p in js if "data" in p.relative_to(site).parts]
    out = {
        "html": (largest[2], largest[1], largest[0]),
        "css": (f"{len(css)} files", sum(map(len, css)), sum(gz(b) for b in css)),
        "js code": (f"{len(code)} files", sum(map(len, code)), sum(gz(b) for b in code)),
    }
    if data:
        top = max(data)
        out["largest js data file"] = (top[2], top[1], top[0])
    return out


def _one_page_rebuilds(tmp: Path, repeat: int) -> list[float]:
    """What `serve` does after one page is saved: the builder stays warm, one page changes."""
    from site_build.build import Builder, Paths

    content = tmp / "content"
    shutil.copytree(ROOT / "content", content)
    page = sorted(content.rglob("*.md"))[0]
    builder = Builder(Paths(content=content, cache=tmp / "serve-cache"))
    builder.background_search = True  # as the dev server: the search index is rebuilt after the swap
    config, out = ROOT / "configs" / "default.yaml", tmp / "serve-site"
    times = []
    try:
        builder.build(config, out)
        builder.finish_search()
        for i in range(repeat):
            page.write_text(page.read_text(encoding="utf-8") + f"\nEdit {i}.\n", encoding="utf-8")
            t = time.perf_counter()
            builder.build(config, out)
            times.append(time.perf_counter() - t)
            builder.finish_search()  # in serve this runs while the writer reads the page
    finally:
        builder.close()
    return times


def _watched(code: str, limit_s: float, limit_mb: float) -> tuple[dict | None, float, float, str]:
    """Run code (which sets RESULT) in a fresh interpreter, stopping it past limit_s or limit_mb.

    Returns (RESULT or None, wall seconds, peak MB of the Python process, why it was stopped or "").
    A runaway build must not take the machine's memory: the peak is read from /proc while it runs.
    """
    wrapped = code + "\nimport json as _j\nprint(_j.dumps(RESULT))"
    proc = subprocess.Popen([PY, "-c", wrapped], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    start, peak, why = time.perf_counter(), 0.0, ""
    while proc.poll() is None:
        peak = max(peak, _peak_mb(proc.pid))
        elapsed = time.perf_counter() - start
        if elapsed > limit_s or peak > limit_mb:
            why = f"stopped after {elapsed:.0f} s at {peak:.0f} MB"
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if why:
        return None, wall, peak, why
    if proc.returncode != 0:
        return None, wall, peak, "failed: " + (stderr.strip().splitlines() or ["?"])[-1]
    result = json.loads(stdout.strip().splitlines()[-1])
    return result, wall, max(peak, result.get("peak_mb", 0.0)), ""


def _peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _scale_rows(row: Callable, scale: dict, tmp: Path) -> list[tuple]:
    """The GPT-2-small-shaped layer through the real content: a YAML file (JSON is YAML)."""
    config = tmp / "scale.yaml"
    config.write_text(json.dumps(scale), encoding="utf-8")
    site = tmp / "scale" / "site"
    code = (
        "import resource, time\nfrom pathlib import Path\nfrom site_build.build import Paths, build\n"
        f"t = time.perf_counter()\nreport = build({str(config)!r}, Path({str(site)!r}), "
        f"paths=Paths(cache=Path({str(tmp / 'scale-cache')!r})))\n"
        "RESULT = {'s': time.perf_counter() - t, 'trace_s': report.timings['trace'],\n"
        "          'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}\n"
    )
    runs = []
    for _ in range(SCALE_REPEAT):
        result, wall, peak, why = _watched(code, SCALE_LIMIT_S, SCALE_LIMIT_MB)
        if why:
            stopped = ("scale config: trace + site build", f"> {wall:.0f}", "", "", "s", why)
            return [stopped, ("scale config: peak memory (Python process)", f"> {peak:.0f}", "", "", "MB", why)]
        runs.append(result)
    out = [
        row("scale config: trace + site build (in-process; KaTeX cache warm after run 1)",
            [r["s"] for r in runs], "s"),
        row("scale config: time in `trace`", [r["trace_s"] for r in runs], "s"),
        row("scale config: peak memory (Python process)", [r["peak_mb"] for r in runs], "MB"),
    ]
    name, raw, gz = _sizes(site)["html"]
    out.append(row(f"scale config: largest HTML page ({name}), raw", [raw / 1000], "KB"))
    out.append(row(f"scale config: largest HTML page ({name}), gzip", [gz / 1000], "KB"))
    out.append(row("scale config: trace.json in the site", [(site / "trace.json").stat().st_size / 1e6], "MB"))
    return out


def rows(row: Callable, timed: Callable, child: Callable, scale: dict) -> list[tuple]:
    out: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="handstep-bench-") as name:
        tmp = Path(name)
        cache = tmp / "cache"

        def cold() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            _cli_build(cache, tmp / "cold" / "site")

        out.append(row("site: cold `handstep build`, empty KaTeX cache (wall, incl. interpreter start)",
                       timed(cold, REPEAT), "s", "≤ 1.0 s"))
        out.append(row("site: warm `handstep build`, KaTeX cache filled (wall)",
                       timed(lambda: _cli_build(cache, tmp / "warm" / "site"), REPEAT), "s"))

        runs = [_in_child(child, cache, tmp / "mem" / "site") for _ in range(3)]
        for phase in runs[0]["timings"]:
            out.append(row(f"site: warm build, time in `{phase}`", [r["timings"][phase] for r in runs], "ms"))
        out.append(row("site: peak memory of a build (Python process)", [r["peak_mb"] for r in runs], "MB",
                       "≤ 150 MB"))

        out.append(row("site: one-page rebuild in `serve` (warm builder, search indexed after the swap)",
                       _one_page_rebuilds(tmp, REPEAT), "s", "≤ 0.3 s"))

        sizes = _sizes(tmp / "warm" / "site")
        name_, raw, gz = sizes["html"]
        out.append(row(f"site: largest HTML page ({name_}), raw", [raw / 1000], "KB"))
        out.append(row(f"site: largest HTML page ({name_}), gzip", [gz / 1000], "KB", "≤ 40 KB"))
        for kind, target in (("css", "≤ 40 KB"), ("js code", ""), ("largest js data file", "")):
            if kind in sizes:
                what, raw, gz = sizes[kind]
                out.append(row(f"site: {kind} ({what}), raw", [raw / 1000], "KB", target))
                out.append(row(f"site: {kind} ({what}), gzip", [gz / 1000], "KB"))

        out.extend(_scale_rows(row, scale, tmp))
    return out
