"""Compare two runs: `build --compare` / `--compare-seed`, the summary page, `diff --html`."""

from __future__ import annotations

import base64
import gzip
import json
import re

import numpy as np
import pytest
from conftest import SMALL, digest_tree, make_site

import engine
from engine.diff import diff_traces
from site_build.build import Builder, Compare
from site_build.cli import main
from site_build.data.compare import standalone_html, summary_html


def build_compare(paths, out, compare):
    builder = Builder(paths)
    try:
        return builder.build(SMALL, out, compare=compare)
    finally:
        builder.close()


def changed(html: str) -> int:
    return int(re.search(r'data-changed="(\d+)"', html).group(1))


@pytest.fixture(scope="module")
def seed7(small_trace):
    return engine.run(engine.load_config(str(SMALL), seed=7))


def test_compare_with_itself_shows_no_differences(tmp_path, small_trace):
    out = tmp_path / "site"
    build_compare(make_site(tmp_path), out, Compare(seed=small_trace.config["seed"]))
    summary = (out / "compare.html").read_text(encoding="utf-8")
    assert changed(summary) == 0 and "identical: no record differs" in summary
    assert "No differences" in summary
    attention = (out / "attention.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<details class="compare"[^>]*><summary>([^<]*)</summary>', attention)
    assert blocks and all(b.endswith("the same numbers") for b in blocks)
    assert 'href="compare.html"' in attention  # header and sidebar link


def test_compare_seed_shows_what_diff_traces_finds(tmp_path, small_trace, seed7):
    out = tmp_path / "site"
    build_compare(make_site(tmp_path), out, Compare(seed=7))
    d = diff_traces(small_trace, seed7)
    summary = (out / "compare.html").read_text(encoding="utf-8")
    assert changed(summary) == sum(r.status == "changed" for r in d.records) > 0
    assert summary.count('<tr data-status="changed">') == changed(summary)
    for r in d.records:
        assert f"<code>{r.name}</code>" in summary
    assert '<h2 id="loss">Loss</h2>' in summary and f"{float(small_trace['loss']):.4f}" in summary
    assert f"{float(seed7['loss']):.4f}" in summary
    assert '<h2 id="attention">' in summary and '<h2 id="update">' in summary
    attention = (out / "attention.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<details class="compare" data-compare><summary>([^<]*)</summary>', attention)
    assert blocks and all("max |Δ|" in b for b in blocks)
    # the page's data carries the other run's values for the details table
    text = (out / "assets" / "data" / "attention.js").read_text(encoding="utf-8")
    rec = json.loads(text[len("window.HANDSTEP_DATA="):-2])["records"]["L0.attn.scores"]
    other = np.frombuffer(base64.b64decode(rec["o"]), dtype="<f8").reshape(rec["shape"])
    assert np.array_equal(other, seed7["L0.attn.scores"])
    for html in out.glob("*.html"):
        assert len(gzip.compress(html.read_bytes())) <= 40_000, html.name


def test_no_compare_view_without_compare(tmp_path):
    out = tmp_path / "site"
    build_compare(make_site(tmp_path), out, None)
    assert not (out / "compare.html").exists()
    assert "details class=\"compare\"" not in (out / "attention.html").read_text(encoding="utf-8")
    assert "compare.html" not in (out / "index.html").read_text(encoding="utf-8")


def test_compare_builds_are_deterministic(tmp_path):
    paths = make_site(tmp_path)
    build_compare(paths, tmp_path / "a", Compare(seed=7))
    build_compare(paths, tmp_path / "b", Compare(seed=7))
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")


def test_summary_of_identical_traces(small_trace):
    d = diff_traces(small_trace, small_trace)
    html = summary_html(small_trace, small_trace, d, "A", "B")
    assert changed(html) == 0 and "The same weights in both runs." in html


def test_diff_html_writes_a_standalone_report(tmp_path, small_trace, seed7, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    small_trace.save(a)
    seed7.save(b)
    report = tmp_path / "out" / "diff.html"
    assert main(["diff", str(a), str(b), "--html", str(report)]) == 1  # 1: the traces differ
    printed = capsys.readouterr().out
    assert "summary:" in printed and f"wrote {report}" in printed
    html = report.read_text(encoding="utf-8")
    d = diff_traces(small_trace, seed7)
    assert html.startswith("<!doctype html>") and "<style>" in html and "<script" not in html
    assert "<link" not in html  # standalone: inline CSS, nothing to fetch
    assert changed(html) == sum(r.status == "changed" for r in d.records)
    assert f"{d.loss_a:.4f}" in html and f"{d.loss_b:.4f}" in html
    assert html == standalone_html(engine.load_trace(a), engine.load_trace(b), d, str(a), str(b))


def test_diff_html_of_a_trace_with_itself(tmp_path, small_trace):
    a = tmp_path / "a.json"
    small_trace.save(a)
    report = tmp_path / "same.html"
    assert main(["diff", str(a), str(a), "--html", str(report)]) == 0
    html = report.read_text(encoding="utf-8")
    assert changed(html) == 0 and "identical" in html


def test_comparing_with_a_larger_model_counts_every_difference_and_fills_the_update_table(small_trace):
    cfg = dict(small_trace.config)
    wider = engine.run(engine.config.config_from_dict(
        {"model": {**{k: v for k, v in cfg["model"].items() if k != "vocab"}, "d_model": 16, "n_layers": 2},
         "data": cfg["data"], "train_steps": 1}, "wider"))
    d = diff_traces(small_trace, wider)
    html = summary_html(small_trace, wider, d, "A", "B")
    reshaped = sum(r.status == "reshaped" for r in d.records)
    assert reshaped > 0
    assert f"{len(d.records)} records differ" in html and f"{reshaped} reshaped" in html
    update = html.split('<h2 id="update">')[1].split("</table>")[0]
    params = {v["initial"] for t in (small_trace, wider) for v in t.index.values() if isinstance(v, dict)}
    assert update.count("<tr><td><code>") == len(params)  # B's second block too
    assert "shapes " in update and "<td>not in A</td>" in update


def test_the_update_table_matches_parameters_across_architectures():
    """GPT-2 and Llama name the token table differently in Hugging Face's files (transformer.wte.weight,
    model.embed_tokens.weight); the table matches records, so `wte` is compared, and each run's own parameters are
    listed (every row said "not in B" before)."""
    gpt2 = engine.run(engine.config.config_from_dict({"train_steps": 0}, "gpt2"))
    llama = engine.run(engine.config.config_from_dict({"train_steps": 0, "model": {"arch": "llama"}}, "llama"))
    html = summary_html(gpt2, llama, diff_traces(gpt2, llama), "A", "B")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"<tr><td><code>([^<]+)</code></td>(.*?)</tr>",
                                                        html.split('<h2 id="update">')[1])}
    assert "not in" not in rows["wte"] and rows["wte"].count("<td>–</td>") == 0
    assert rows["wpe"].endswith("<td>not in B</td>") and rows["L0.attn.q_proj.weight"].endswith("<td>not in A</td>")
