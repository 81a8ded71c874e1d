"""The real pages: no typed numbers, 100% coverage on the default config, and clean builds of varied configs."""

import re

import pytest

from site_build.build import ROOT, Paths, build

CONTENT = ROOT / "content"
DECIMAL = re.compile(r"(?<![\w.%{:])[-−]?\d+\.\d+")


def prose_lines(text: str):
    """(line number, text) of every line outside fenced code blocks and Jinja tags."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            yield n, re.sub(r"{%.*?%}|{{.*?}}|{##.*?##}|`[^`]*`", "", line)


def test_no_decimal_is_typed_into_content():
    found = [f"{p.relative_to(ROOT)}:{n}: {m.group()}" for p in sorted(CONTENT.rglob("*.md"))
             for n, line in prose_lines(p.read_text(encoding="utf-8")) for m in DECIMAL.finditer(line)]
    assert not found, "numbers on pages must come from the trace through macros:\n" + "\n".join(found)


def test_the_decimal_scan_can_fail(tmp_path):
    bad = "The loss is 2.66 here.\n```\nx = 2.66  # fine in code\n```\n"
    assert [m.group() for _, line in prose_lines(bad) for m in DECIMAL.finditer(line)] == ["2.66"]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("sites")


@pytest.fixture(scope="module")
def default_site(out):
    report = build(ROOT / "configs/default.yaml", out / "default", require_coverage=True,
                   paths=Paths(cache=out / "cache"))
    return report


def test_default_site_shows_every_record(out, default_site):
    report = default_site
    assert report.shown == report.records and report.missing == []
    assert report.pages >= 20
    html = "".join(p.read_text() for p in (out / "default").glob("*.html"))
    calc_ops = set(re.findall(r'<div [^>]*class="calc-step" data-record="([^"]+)"', html))
    assert calc_ops, "no calc() blocks on the site"
    import engine

    trace = engine.run(engine.load_config(str(ROOT / "configs/default.yaml")))
    ops = {r.op for r in trace}
    with_calc = {trace.record(name).op for name in calc_ops}
    assert ops - with_calc == set(), f"op kinds with no calc() expansion anywhere: {sorted(ops - with_calc)}"


VARIED = {
    "other-seed-and-text": "seed: 3\ndata:\n  texts: ['a dog ran on a mat']\n",
    "three-heads-two-layers": "model:\n  d_model: 24\n  n_heads: 3\n  n_layers: 2\n",
    "batch-of-two": "data:\n  texts: ['the cat sat', 'the dog ran on the mat']\n",
    "adam": "optimizer:\n  name: adam\n  weight_decay: 0.1\n",
    "sgd-momentum": "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\n",
}


@pytest.mark.parametrize("name", VARIED)
def test_varied_configs_build_and_the_words_follow(out, name):
    cfg = out / f"{name}.yaml"
    cfg.write_text(VARIED[name])
    build(cfg, out / name, paths=Paths(cache=out / "cache"))
    pages = {p.name: p.read_text() for p in (out / name).glob("*.html")}
    text = " ".join(pages.values())
    if name == "three-heads-two-layers":
        assert "both heads" not in text.lower()
    if name in ("adam", "sgd-momentum"):
        adamw_page = next(v for k, v in pages.items() if "adamw" in k)
        assert ("torch.optim.Adam" if name == "adam" else "torch.optim.SGD") in text
        assert ("SGD" if name == "sgd-momentum" else "Adam") in adamw_page


def test_the_python_snippets_on_the_reference_page_run(out, default_site):
    """The loader and the PyTorch check shown to readers run against the site's own trace.json."""
    import html as html_lib
    import subprocess
    import sys

    page = (out / "default" / "trace-format.html").read_text()
    blocks = [html_lib.unescape(b) for b in re.findall(r'<code class="language-python">(.*?)</code>', page, re.S)]
    runnable = [b for b in blocks if "trace.bin" not in b]  # the big-trace reader needs a trace past 2M values
    assert len(runnable) >= 2 and any("torch.optim" in b for b in runnable)
    for code in runnable:
        p = subprocess.run([sys.executable, "-c", code], cwd=out / "default", capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
    assert "max |torch - handstep| = " in p.stdout
    diffs = [float(x) for x in re.findall(r"= (\S+)$", p.stdout, re.M)]
    assert diffs and max(diffs) < 1e-9


def test_the_defaults_shown_on_the_config_page_are_the_default_file(out, default_site):
    import html as html_lib

    import yaml

    page = (out / "default" / "config.html").read_text()
    blocks = [yaml.safe_load(html_lib.unescape(b))
              for b in re.findall(r'<code class="language-yaml">(.*?)</code>', page, re.S)]
    assert yaml.safe_load((ROOT / "configs/default.yaml").read_text()) in blocks
