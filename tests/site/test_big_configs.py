"""Big configs keep pages, page data and downloads bounded; a big trace ships with its values file."""

import json

from conftest import SMALL, make_site, page

import engine.trace as engine_trace
from engine import load_trace
from site_build.build import build
from site_build.data import downloads, interact
from site_build.macros import numbers


def test_big_records_are_bounded_everywhere(tmp_path, monkeypatch):
    # shrink the thresholds instead of running a GPT-2-sized model
    monkeypatch.setattr(numbers, "MAX_CELLS", 20)
    monkeypatch.setattr(interact, "MAX_DATA_VALUES", 40)
    monkeypatch.setattr(downloads, "MAX_CSV_VALUES", 40)
    monkeypatch.setattr(engine_trace, "INLINE_MAX_VALUES", 100)
    body = '{{ matrix("L0.mlp.fc") }}\n\n{{ matrix("L0.ln_1.mean") }}\n\n{{ jacobian("ln_f.xhat", (0, 1)) }}\n'
    paths = make_site(tmp_path, {"extra.md": page(body)})
    build(SMALL, tmp_path / "out", paths=paths)
    html = (tmp_path / "out" / "extra.html").read_text()
    fc = html.split('data-record="L0.mlp.fc"')[1].split("</table>")[0]
    assert fc.count("<tr data-i=") == 6 and fc.count("data-j=") == 8  # 6 tokens kept, columns cut to 4 + ⋯ + 4
    assert "⋯" in fc and "showing 6 × 8" in html
    # no CSV for the big record, a link to the trace instead; the small one keeps its CSV
    assert not (tmp_path / "out" / downloads.csv_path("L0.mlp.fc")).exists()
    assert (tmp_path / "out" / downloads.csv_path("L0.ln_1.mean")).exists()
    assert 'href="trace.json" download' in fc.split("</caption>")[0]
    # page data: the big record is described but carries no values
    data = (tmp_path / "out" / interact.data_path("extra")).read_text()
    records = json.loads(data[data.index("=") + 1 : data.rindex(";")])["records"]
    assert records["L0.mlp.fc"]["b"] is None and records["L0.ln_1.mean"]["b"]
    # the trace's values file is in the site, and the downloaded trace loads
    assert (tmp_path / "out" / "trace.bin").exists()
    assert load_trace(tmp_path / "out" / "trace.json").names()[0] == "wte"
