"""The site's figures for `make bench`: build times, memory, page sizes, and full GPT-2-small shapes.

Every build goes into a temporary directory with its own KaTeX cache; the repository's site/,
content/ and .cache/ are never touched. `rows()` is called by benchmarks/bench.py.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REPEAT = 5

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


# Full GPT-2-small shapes (benchmarks/gpt2_small.py): one `handstep build`, as a user runs it, watched from outside.
GPT2_REPEAT = int(os.environ.get("HANDSTEP_BENCH_GPT2_REPEAT", "1"))  # each build takes a minute or more
GPT2_LIMIT_S = 1200
GPT2_LIMIT_MB = 14_000  # the machine must survive a regression
GPT2_GOALS = {"wall": 60.0, "peak_mb": 8000.0, "page_kb": 100.0, "site_mb": 1000.0, "file_mb": 100.0}
# Which phase a moment of the build belongs to: the progress line that ends each phase (stderr, one per phase).
# The finite differences of a big run and each page's files (heatmaps, CSV, .npy) are made in background threads
# while the pages render, so they have no phase of their own.
PHASES = (("engine", "  trace:"), ("pages (finite differences and page files alongside)", "  pages:"),
          ("layout, checks and KaTeX", "  katex:"), ("page data, CSV, .npy, heatmaps", "  data:"),
          ("writing (files, search index)", None))


def gpt2_build(config: Path, out: Path, cache: Path) -> dict:
    """`handstep build` of a config, watched from outside: wall time, each phase's seconds and peak resident memory
    (sampled every 0.1 s; the engine's values are memory-mapped, so resident pages of that file count too), or
    why it was stopped."""
    cmd = [str(Path(PY).parent / "handstep"), "build", "--config", str(config), "--out", str(out), "--cache",
           str(cache)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter(), ln) for ln in proc.stderr),
                              daemon=True)
    start = time.perf_counter()
    reader.start()
    samples: list[tuple[float, float]] = []
    why = ""
    while proc.poll() is None:
        now, rss = time.perf_counter(), _rss_mb(proc.pid)
        samples.append((now, rss))
        if now - start > GPT2_LIMIT_S or rss > GPT2_LIMIT_MB:
            why = f"stopped after {now - start:.0f} s at {rss:.0f} MB"
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    proc.wait()
    reader.join(5)
    wall = time.perf_counter() - start
    if not why and proc.returncode != 0:
        why = "failed: " + (lines[-1][1].strip() if lines else "?")
    ends, times = [], {}
    for name, marker in PHASES:
        hit = next(((t, ln) for t, ln in lines if marker and ln.startswith(marker) and "/" not in ln), None)
        ends.append((name, hit[0] if hit else start + wall))
    begin = start
    peaks = {}
    for name, end in ends:
        inside = [rss for t, rss in samples if begin <= t <= end]
        before = [rss for t, rss in samples if t < begin][-1:]  # a phase shorter than the sampling: the last sample
        peaks[name] = max(inside or before or [0.0])
        times[name] = max(0.0, end - begin)
        begin = end
    return {"wall": wall, "why": why, "phase_s": times, "phase_mb": peaks,
            "peak_mb": max((rss for _, rss in samples), default=0.0)}


def _rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (the KaTeX workers, Pagefind), in MB."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def site_figures(site: Path) -> dict:
    """The sizes the goals are about: every page gzipped, the whole site, the largest file."""
    files = [p for p in site.rglob("*") if p.is_file()]
    pages = sorted(((len(gzip.compress(p.read_bytes(), compresslevel=9, mtime=0)), p.name) for p in files
                    if p.suffix == ".html"), reverse=True)
    largest = max(files, key=lambda p: p.stat().st_size)
    return {"pages": pages, "site_mb": sum(p.stat().st_size for p in files) / 1e6,
            "file": (largest.relative_to(site).as_posix(), largest.stat().st_size / 1e6),
            "trace": (site / "trace.json").exists()}


def _gpt2_rows(row: Callable, tmp: Path) -> list[tuple]:
    """Full GPT-2-small and SmolLM-135M shapes with random weights through the real content."""
    from benchmarks import gpt2_small, smollm

    return (_scale_rows(row, tmp, gpt2_small.write(tmp / "gpt2-small.yaml"),
                        "GPT-2 small (12 × 768, 12 heads, 3072, vocab 50,257, 64 tokens)")
            + _scale_rows(row, tmp, smollm.write(tmp / "smollm.yaml"),
                          "SmolLM-135M shapes (llama, 30 × 576, 9 heads / 3 KV heads, 1536, vocab 49,152, 64 tokens)"))


def _scale_rows(row: Callable, tmp: Path, config: Path, label: str) -> list[tuple]:
    """One model's shapes through the real content: build, memory, pages, site."""
    runs = []
    for i in range(GPT2_REPEAT):
        run = gpt2_build(config, tmp / config.stem / "site", tmp / f"{config.stem}-cache-{i}")  # a cold cache each time
        if run["why"]:
            return [(f"{label}: `handstep build`", f"> {run['wall']:.0f}", "", "", "s", run["why"]),
                    (f"{label}: peak memory", f"{run['peak_mb']:.0f}", "", "", "MB", run["why"])]
        runs.append(run)
    goal = GPT2_GOALS
    again = gpt2_build(config, tmp / config.stem / "site-again", tmp / f"{config.stem}-cache-{GPT2_REPEAT - 1}")
    out = [row(f"{label}: `handstep build`, wall (cold cache, incl. interpreter start)", [r["wall"] for r in runs],
               "s", f"≤ {goal['wall']:.0f} s")]
    out.append(row(f"{label}: the same build into a new folder (the run and pages read from the cache)",
                   [again["wall"]], "s"))
    for phase in runs[0]["phase_s"]:
        out.append(row(f"{label}: time in {phase}", [r["phase_s"][phase] for r in runs], "s"))
    out.append(row(f"{label}: peak memory (build and its children)", [r["peak_mb"] for r in runs], "MB",
                   f"≤ {goal['peak_mb']:.0f} MB"))
    for phase in runs[0]["phase_mb"]:
        out.append(row(f"{label}: peak memory in {phase}", [r["phase_mb"][phase] for r in runs], "MB"))
    fig = site_figures(tmp / config.stem / "site")
    top_kb, top_name = fig["pages"][0][0] / 1000, fig["pages"][0][1]
    out.append(row(f"{label}: largest page ({top_name}), gzip", [top_kb], "KB", f"≤ {goal['page_kb']:.0f} KB"))
    over = [f"{n} {kb / 1000:.0f}" for kb, n in fig["pages"] if kb > goal["page_kb"] * 1000]
    out.append((f"{label}: pages over {goal['page_kb']:.0f} KB gzip ({', '.join(over) or 'none'})",
                str(len(over)), str(len(over)), str(len(over)), "pages", "0"))
    out.append(row(f"{label}: whole site", [fig["site_mb"]], "MB", f"≤ {goal['site_mb']:.0f} MB"))
    out.append(row(f"{label}: largest file ({fig['file'][0]})", [fig["file"][1]], "MB", f"≤ {goal['file_mb']:.0f} MB"))
    out.append((f"{label}: trace.json shipped", "yes" if fig["trace"] else "no", "", "", "", "no"))
    return out


def code_lines(package: str = "site_build") -> tuple[int, int]:
    """(lines, files) of a package's Python source."""
    files = sorted((ROOT / package).rglob("*.py"))
    return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files), len(files)


def cache_kinds(cache: Path) -> list[str]:
    """The kinds of entry a build left in its cache folder: each file or folder at its top (the marker and the lock
    file are not entries)."""
    return sorted(p.name for p in cache.iterdir() if p.name not in {".handstep-cache", "build.lock"})


# The Astro/Starlight site handstep replaced (github.com/zhubert/manual-llm, its docs/ folder), built side by side
# with the default site when HANDSTEP_BENCH_ASTRO names that docs/ folder with its node_modules installed
# (docs/benchmarks.md, "The replaced Astro site"). Nothing of it is in this repository.
ASTRO_REPEAT = int(os.environ.get("HANDSTEP_BENCH_ASTRO_REPEAT", "3"))  # each build takes 10-15 s here
ASTRO_LABEL = "replaced Astro site: `astro build` of zhubert/manual-llm docs/ (wall)"
ASTRO_RATIO = "site: cold `handstep build` ÷ the replaced Astro site's `astro build` (medians, same run)"
ASTRO_HOW = ("not measured: clone github.com/zhubert/manual-llm, run `npm install --no-package-lock` in its docs/, "
             "then HANDSTEP_BENCH_ASTRO=that/docs make bench")


def astro_build(docs: Path) -> None:
    """`astro build` of the replaced site, cold: its output and Astro's and Vite's caches are removed first."""
    for folder in ("dist", ".astro", "node_modules/.astro", "node_modules/.vite"):
        shutil.rmtree(docs / folder, ignore_errors=True)
    subprocess.run([str(docs / "node_modules" / ".bin" / "astro"), "build"], cwd=docs, check=True,
                   capture_output=True, text=True, timeout=900, env={**os.environ, "ASTRO_TELEMETRY_DISABLED": "1"})


def astro_rows(row: Callable, timed: Callable, handstep_cold: list[float]) -> list[tuple]:
    """The replaced Astro site's build time and the ratio of handstep's cold build to it (both medians, this run);
    without HANDSTEP_BENCH_ASTRO, two rows saying how to prepare it."""
    import json
    import statistics

    folder = os.environ.get("HANDSTEP_BENCH_ASTRO", "")
    docs = Path(folder).expanduser().resolve() if folder else None
    why = ""
    if docs is None:
        why = ASTRO_HOW
    elif not (docs / "node_modules" / ".bin" / "astro").exists():
        why = f"not measured: {folder} has no node_modules/.bin/astro; " + ASTRO_HOW.removeprefix("not measured: ")
    else:
        try:
            times = timed(lambda: astro_build(docs), ASTRO_REPEAT)
        except subprocess.CalledProcessError as e:
            why = "failed: " + ((e.stderr or e.stdout or "").strip().splitlines() or ["?"])[-1]
        except subprocess.TimeoutExpired:
            why = "failed: over 900 s"
    if why:
        return [(ASTRO_LABEL, "skipped", "", "", "s", why), (ASTRO_RATIO, "skipped", "", "", "x", "≤ 0.25")]
    astro, starlight = (json.loads((docs / "node_modules" / p / "package.json").read_text(encoding="utf-8"))["version"]
                        for p in ("astro", "@astrojs/starlight"))
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return [row(ASTRO_LABEL, times, "s", f"astro {astro}, Starlight {starlight}, Node {node}"),
            row(ASTRO_RATIO, [statistics.median(handstep_cold) / statistics.median(times)], "x", "≤ 0.25")]


def rows(row: Callable, timed: Callable, child: Callable) -> list[tuple]:
    out: list[tuple] = []
    lines, files = code_lines()
    out.append(row(f"site_build: lines of Python ({files} files)", [lines], "lines"))
    with tempfile.TemporaryDirectory(prefix="handstep-bench-") as name:
        tmp = Path(name)
        cache = tmp / "cache"

        def cold() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            _cli_build(cache, tmp / "cold" / "site")

        cold_times = timed(cold, REPEAT)
        out.append(row("site: cold `handstep build`, empty KaTeX cache (wall, incl. interpreter start)",
                       cold_times, "s", "≤ 1.6 s"))
        out.extend(astro_rows(row, timed, cold_times))  # right after, so both see the machine at the same speed
        kinds = cache_kinds(cache)
        out.append(row(f"site: kinds of cache entry on disk after a build ({', '.join(kinds)})", [len(kinds)], ""))
        _cli_build(cache, tmp / "warm" / "site")  # the folder the next builds find up to date
        out.append(row("site: warm `handstep build`, nothing changed (wall: the site is up to date)",
                       timed(lambda: _cli_build(cache, tmp / "warm" / "site"), REPEAT), "s", "≤ 0.1 s + start"))
        fresh = iter(range(REPEAT))
        out.append(row("site: warm `handstep build` into a new folder each time (wall: everything from the cache)",
                       timed(lambda: _cli_build(cache, tmp / "new" / str(next(fresh)) / "site"), REPEAT), "s",
                       "≤ 0.6 s"))

        runs = [_in_child(child, cache, tmp / "mem" / "site") for _ in range(3)]
        for phase in runs[0]["timings"]:
            out.append(row(f"site: warm build, time in `{phase}`", [r["timings"][phase] for r in runs], "ms"))
        out.append(row("site: peak memory of a warm build (Python process)", [r["peak_mb"] for r in runs], "MB",
                       "≤ 120 MB"))
        cold_runs = []
        for i in range(3):
            shutil.rmtree(tmp / "cold-mem-cache", ignore_errors=True)
            cold_runs.append(_in_child(child, tmp / "cold-mem-cache", tmp / "cold-mem" / str(i) / "site"))
        out.append(row("site: peak memory of a cold build (Python process, empty cache)",
                       [r["peak_mb"] for r in cold_runs], "MB", "≤ 120 MB"))

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

        out.extend(_gpt2_rows(row, tmp))
    return out


if __name__ == "__main__":  # only the GPT-2-small rows: python -m benchmarks.site_bench
    from benchmarks.measure import row as bench_row

    with tempfile.TemporaryDirectory(prefix="handstep-bench-") as folder:
        for line in _gpt2_rows(bench_row, Path(folder)):
            print("| " + " | ".join(line) + " |")
