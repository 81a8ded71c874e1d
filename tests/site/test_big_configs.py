"""Big configs: a matrix too large for a page is a window with its statistics and a heatmap, says what it shows,
marks the calc's row and column, puts heads behind a selector, and the site carries what its pages show, not the
trace. GPT-2-small shapes take minutes (`make bench` builds them); a mid-size config runs the same code paths.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import math
import re
import struct
import sys
import zlib

import numpy as np
import pytest
from conftest import make_site, page

import engine
from engine.config import config_from_dict
from site_build import session as session_module
from site_build.build import ROOT, build
from site_build.charts.plots import HEAT_COLS, HEAT_LEVELS, pooled
from site_build.data import downloads, interact
from site_build.data.checks import Checks
from site_build.macros import PageContext, page_globals, scale
from site_build.mathslots import MathSlots

sys.path.insert(0, str(ROOT))
from benchmarks import gpt2_small  # noqa: E402 - the benchmark's own config generator, at a mid size

MID = gpt2_small.config(vocab=2000, d_model=256, n_heads=4, d_ff=1024, n_layers=2, n_positions=64)
BIG_PAGE = """{% set H = config.model.n_heads %}
The expansion of block 0.

{{ matrix("L0.mlp.fc") }}

{{ calc("L0.mlp.fc", (0, 10, 300)) }}

{% for h in range(H) %}
{{ matrix("L0.attn.weights", head=h) }}

{% endfor %}
{{ calc("L0.attn.weights", (0, 2, 20, 5)) }}

{{ matrix("wte") }}

{{ vector("L0.mlp.c_fc.bias") }}

{{ matrix("L0.ln_1.mean") }}

{{ other_blocks(["L{l}.attn.weights", "L{l}.mlp.fc"], "the rest") }}

{{ trace_download() }}

{{ update_picture("L0.mlp.c_fc.weight") }}
"""


@pytest.fixture(scope="module")
def mid(tmp_path_factory):
    """The mid-size site: (output folder, trace, the big page's HTML). Finite differences are tested elsewhere;
    here they would only cost time."""
    root = tmp_path_factory.mktemp("mid")
    config = root / "mid.yaml"
    config.write_text(json.dumps(MID), encoding="utf-8")
    paths = make_site(root, {"big.md": page(BIG_PAGE, title="Big")})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(session_module, "compute_checks", lambda *args, **kwargs: Checks())
        mp.setattr(session_module, "start_checks", lambda *args, **kwargs: Checks())
        build(config, root / "out", paths=paths)
    trace = engine.run(engine.load_config(str(config)))
    return root / "out", trace, (root / "out" / "big.html").read_text(encoding="utf-8")


def figure_of(page_html: str, record: str, head: int | None = None) -> str:
    """The <figure> that holds the table of `record` (of one head)."""
    at = f'data-at="0,{head}"' if head is not None else ""
    for fig in re.findall(r"<figure class=\"big[^\"]*\">.*?</figure>", page_html, re.S):
        if f'data-record="{record}"' in fig and at in fig:
            return fig
    raise AssertionError(f"no figure for {record}")


def numbers_in(sentence: str) -> list[float]:
    return [float(x.replace("−", "-").replace(",", "")) for x in re.findall(r"−?[\d,]*\d(?:\.\d+)?(?:e[−-]?\d+)?",
                                                                            sentence)]


def stats_line(fig: str) -> dict[str, float]:
    text = html.unescape(re.search(r'<p class="stats">(.*?)</p>', fig).group(1))
    out = {}
    for key, word in (("mean", "mean"), ("std", "standard deviation"), ("min", "min"), ("max", "max"),
                      ("norm", "norm")):
        out[key] = float(re.search(rf"{word} (−?[\d.]+(?:e[−-]\d+)?)", text).group(1).replace("−", "-"))
    return out


def close(shown: float, exact: float) -> bool:
    """A figure shown with 4 significant digits."""
    return math.isclose(shown, exact, rel_tol=1e-3, abs_tol=1e-12)


def png_levels(data: bytes) -> np.ndarray:
    """The palette indices of a heat_png image (filter type 0 rows)."""
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width + 1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:]


def test_a_big_matrix_is_a_window_with_statistics_heatmap_and_statement(mid):
    out, trace, big = mid
    fig = figure_of(big, "L0.mlp.fc")
    values = trace["L0.mlp.fc"][0]
    # the window: first and last rows and columns, plus the calc's row 10 and column 300, gaps marked
    rows = [int(i) for i in re.findall(r'<tr data-i="(\d+)"', fig)]
    cols = [int(j) for j in re.findall(r'data-j="(\d+)"', fig)]
    assert 10 in rows and 300 in cols and rows[0] == 0 and rows[-1] == 63 and cols[0] == 0 and cols[-1] == 1023
    assert len(cols) < 1024 and len(rows) < 64
    head = fig.split("</thead>")[0]
    heads = [re.search(r'data-j="(\d+)"', th) for th in re.findall(r"<th(?:\s[^>]*)?>", head)[1:]]
    for a, b in zip(heads, heads[1:]):  # a gap (⋯) wherever columns are skipped: never a silent cut
        if a and b:
            assert int(b.group(1)) == int(a.group(1)) + 1
    assert head.count('class="gap"') == sum(1 for a, b in zip(cols, cols[1:]) if b != a + 1) > 0
    # the plain statement of what is shown
    shown = html.unescape(re.search(r'<p class="shown">(.*?)</p>', fig).group(1))
    assert f"{len(rows)} of 64 rows" in shown and f"{len(cols)} of 1,024 columns" in shown
    assert f'showing {len(rows)} × {len(cols)}' in fig
    # the statistics are NumPy's over every value of the view
    s = stats_line(fig)
    assert close(s["mean"], values.mean()) and close(s["std"], values.std())
    assert close(s["min"], values.min()) and close(s["max"], values.max())
    assert close(s["norm"], np.linalg.norm(values))
    assert "All 65,536 values" in fig
    # the heatmap: the whole view, downsampled (and saying so), each pixel the largest-magnitude value of its block
    src = re.search(r'<img src="([^"]+)"', fig).group(1)
    levels = png_levels((out / src).read_bytes())
    block = math.ceil(1024 / HEAT_COLS)
    assert levels.shape == (64, math.ceil(1024 / block))
    assert f"downsampled to 64 × {levels.shape[1]} pixels" in fig and f"among 1 × {block} of them" in fig
    grid, _ = pooled(values)
    peak = np.abs(values).max()
    want = np.ceil(HEAT_LEVELS * np.abs(grid) / peak) + np.where(grid < 0, HEAT_LEVELS, 0)
    assert (levels == want).all()


def test_the_calc_row_and_column_are_marked(mid):
    _, _, big = mid
    fig = figure_of(big, "L0.mlp.fc")
    assert '<tr data-i="10" class="hl">' in fig
    cols = re.search(r"<colgroup>(.*?)</colgroup>", fig).group(1)
    heads = [re.search(r'data-j="(\d+)"', th) for th in re.findall(r"<th(?:\s[^>]*)?>", fig.split("</thead>")[0])]
    marked = [k for k, c in enumerate(re.findall(r"<col[^>]*>", cols)) if 'class="hl"' in c]
    assert [heads[k].group(1) for k in marked] == ["300"]
    # and on the heatmap
    assert fig.count('class="hl-r"') == 1 and fig.count('class="hl-c"') == 1
    # no other matrix of the page is marked
    assert big.count('class="hl"') == 2 + 2  # fc's row and column, the weights' row and column (head 2)


def test_heads_show_behind_a_selector(mid):
    _, trace, big = mid
    after = r'(?=\s*(?:</details>\s*)?<div[^>]*class="calc-step")'  # a group after the page's first table is folded
    group = re.search(r'<div class="heads" data-heads-of="L0.attn.weights">.*?</div>' + after, big, re.S)
    assert group, "no head selector for L0.attn.weights"
    details = re.findall(r'<details class="head" data-head="(\d+)"( open)?>', group.group(0))
    assert [int(h) for h, _ in details] == list(range(4))
    assert [h for h, is_open in details if is_open] == ["2"]  # the head the calc uses
    for h in range(4):  # every head reachable without JavaScript: its own window with statistics
        fig = figure_of(group.group(0), "L0.attn.weights", h)
        assert close(stats_line(fig)["max"], trace["L0.attn.weights"][0, h].max())


def test_other_blocks_of_a_big_model_summarise_heads(mid):
    out, trace, big = mid
    fig = re.search(r'<figure class="big heads-summary">.*?</figure>', big, re.S).group(0)
    assert "<code>L1.attn.weights</code>" in fig
    rows = re.findall(r"<tr><th scope=\"row\">(\d+)</th>(.*?)</tr>", fig)
    assert [int(h) for h, _ in rows] == list(range(4))
    for h, cells in rows:
        mean, std, lo, hi, norm = numbers_in(html.unescape(re.sub(r"<[^>]+>", " ", cells)))
        v = trace["L1.attn.weights"][0, int(h)]
        assert close(mean, v.mean()) and close(std, v.std()) and close(hi, v.max()) and close(norm, np.linalg.norm(v))
    src = re.search(r'<img src="([^"]+)"', fig).group(1)
    assert (out / src).read_bytes().startswith(b"\x89PNG")
    assert 'data-record="L1.mlp.fc"' in big  # a head-less record of another block: a small window


def test_downloads_are_what_the_pages_show(mid):
    out, trace, big = mid
    fig = figure_of(big, "L0.mlp.fc")
    csv_href, npy_href = re.findall(r'<a class="csv" href="([^"]+)" download', fig.split("</figcaption>")[0])
    assert "~" in csv_href and npy_href == downloads.npy_path("L0.mlp.fc")
    rows = list(__import__("csv").reader(io.StringIO((out / csv_href).read_text(encoding="utf-8"))))
    cols = [int(h.split("=")[1]) for h in rows[0][2:]]
    assert rows[0][:2] == ["batch", "tokens"] and 300 in cols
    for row in rows[1:]:
        assert [float(x) for x in row[2:]] == trace["L0.mlp.fc"][0, int(row[1]), cols].tolist()
    assert np.array_equal(np.load(out / npy_href), trace["L0.mlp.fc"])
    # a small record keeps its CSV of every value; wte (512,000 values) has its window CSV and no .npy
    assert (out / downloads.csv_path("L0.ln_1.mean")).is_file()
    wte = figure_of(big, "wte").split("</figcaption>")[0]
    assert "~" in wte and ".npy" not in wte
    # the trace (past INLINE_MAX_VALUES) stays local, and the page says how to get it
    assert not downloads.ships_trace(trace)
    assert not (out / "trace.json").exists() and not list(out.glob("*.bin"))
    assert "handstep trace --config CONFIG --out trace.json" in big
    # page data: within its budget, the records the page shows carried first
    data = (out / interact.data_path("big")).read_text(encoding="utf-8")
    records = json.loads(data[data.index("=") + 1: data.rindex(";")])["records"]
    carried = [n for n, r in records.items() if r["b"]]
    assert "L0.mlp.fc" in carried and sum(trace[n].size for n in carried) <= interact.MAX_PAGE_VALUES
    assert records["wte"]["b"] is None


def test_the_site_holds_exactly_the_files_its_pages_link_to(mid):
    """The heatmaps, window CSVs and .npy files are the ones the pages' blocks need (downloads.FileNeed, kept in each
    PageResult): every file a page links to is there, and nothing else."""
    out, _, _ = mid
    linked = set()
    for path in out.rglob("*.html"):
        for ref in re.findall(r'(?:src|href)="((?:\.\./)*assets/(?:heat|npy|csv)/[^"]+)"', path.read_text("utf-8")):
            linked.add(html.unescape(ref).lstrip("./"))
    linked = {ref for ref in linked if not (ref.startswith("assets/csv/") and "~" not in ref)}  # a record's own CSV
    made = {p.relative_to(out).as_posix() for folder in ("heat", "npy", "csv")
            for p in (out / "assets" / folder).glob("*") if folder != "csv" or "~" in p.name}
    assert made == linked and any(ref.startswith("assets/heat/") for ref in made)
    assert any(ref.startswith("assets/npy/") for ref in made) and any("~" in ref for ref in made)


def test_pages_and_files_stay_small(mid):
    out, _, _ = mid
    for path in out.glob("*.html"):
        assert len(gzip.compress(path.read_bytes())) <= 100_000, path.name
    assert max(p.stat().st_size for p in out.rglob("*") if p.is_file()) <= 100_000_000


def test_a_wide_matrix_shows_a_heatmap_and_links_every_number_on_a_page_of_its_own():
    trace = engine.run(config_from_dict({"train_steps": 0}))  # the default sizes: L0.mlp.fc is 6 × 64
    ctx = PageContext(trace, MathSlots())
    html_ = str(page_globals(ctx)["matrix"]("L0.mlp.fc"))
    url = "numbers/L0.mlp.fc~batch0.html"
    assert html_.startswith('<figure class="big wide">') and "<table" not in html_ and "<details" not in html_
    assert f'<p class="numbers"><a href="{url}">All 384 numbers as a table</a> (its own page)</p>' in html_
    assert 'src="assets/heat/L0.mlp.fc~0.png"' in html_ and "one square each" in html_
    assert "open the table of all numbers, for its number" in html_
    part = ctx.made[url]  # every number, one click away: on the page this figure links to
    assert part.table.count("<td class=") == trace["L0.mlp.fc"][0].size
    assert part.name == "L0.mlp.fc, batch 0" and "6 × 64 (tokens × d&#95;ff)" in part.about
    # one page per record and fixed indices: a row of it (a wide vector) has a page of its own
    row = str(page_globals(ctx)["vector"]("L0.mlp.fc", row=2))
    assert 'href="numbers/L0.mlp.fc~batch0~row2.html"' in row and set(ctx.made) == {url, url[:-5] + "~row2.html"}
    assert scale.mode_of(6, 16, 64) == "full" and scale.mode_of(6, 64, 64) == "wide"
    assert scale.mode_of(64, 768, 64) == "window"


def test_a_big_update_picture_is_an_image_of_every_change(mid):
    """Past 96 × 96 weights the update picture is an image file, not thousands of SVG cells: its pixels are the
    signs of (updated − initial), pooled as the caption says."""
    out, trace, big = mid
    href = downloads.update_heat_path("L0.mlp.c_fc.weight")
    assert f'<img src="{href}"' in big and "<rect" not in big.split(href)[1].split("</figure>")[0]
    change = (trace["updated.L0.mlp.c_fc.weight"] - trace["L0.mlp.c_fc.weight"]) / trace.config["optimizer"]["lr"]
    grid, (bh, bw) = pooled(change)
    assert f"among {bh} × {bw} weights" in big
    levels = png_levels((out / href).read_bytes())
    assert levels.shape == grid.shape
    up, down = (levels >= 1) & (levels <= HEAT_LEVELS), levels > HEAT_LEVELS
    assert (grid[up] > 0).all() and (grid[down] < 0).all() and up.any() and down.any()


def test_a_deep_model_shows_each_other_block_as_one_table_of_statistics():
    """Past OTHER_TABLES tables, other_blocks shows each block as one table (a row of statistics per record, its
    numbers those of the record) instead of a table per record, so a page of a deep model stays loadable; every
    record is still counted as shown, and each row links its values."""
    from site_build.macros import numbers

    deep = engine.run(config_from_dict({"model": {"n_layers": 4}, "train_steps": 1}))
    names = ["L{l}.ln_1.mean", "L{l}.mlp.fc", "L{l}.attn.weights"]
    for limit, compact in ((len(names) * 3 - 1, True), (len(names) * 3, False)):  # 3 other blocks of 3 records
        ctx = PageContext(deep, MathSlots())
        numbers.OTHER_TABLES, saved = limit, numbers.OTHER_TABLES
        try:
            out = str(page_globals(ctx)["other_blocks"](names))
        finally:
            numbers.OTHER_TABLES = saved
        assert (out.count('<figure class="big block-stats">') == 3) == compact
        assert {n.replace("{l}", str(k)) for n in names for k in (1, 2, 3)} <= set(ctx.shown)
        if not compact:
            continue
        assert "data-record=" not in out  # no per-record tables
        for k in (1, 2, 3):
            for n in names:
                name = n.replace("{l}", str(k))
                row = re.search(rf"<tr><th scope=\"row\"><code>{re.escape(html.escape(name))}</code>(.*?)</tr>",
                                out.replace("&#95;", "_"), re.S)
                assert row is not None, name
                assert f'href="assets/csv/{name}.csv"' in row.group(1)
                cells = re.findall(r"<td>(.*?)</td>", row.group(1))
                v = np.asarray(deep[name], dtype=float)
                assert cells[0] == " × ".join(map(str, v.shape))
                finite = v[np.isfinite(v)]
                mean, std, lo, hi, norm = (numbers_in(html.unescape(c))[0] for c in cells[1:])
                assert close(mean, finite.mean()) and close(std, finite.std()) and close(lo, finite.min())
                assert close(hi, finite.max()) and close(norm, np.linalg.norm(finite))
