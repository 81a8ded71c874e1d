"""The checks a build shows and enforces: finite differences every build, PyTorch figures when verified."""

import json
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, make_site, page

import engine
import engine.verify
from engine.verify import config_digest, digest
from site_build.build import ROOT, Paths, build
from site_build.data import checks as checks_mod
from site_build.errors import BuildError

BODY = """{{ matrix("grad.L0.attn.c_proj.weight") }}

{{ jacobian("L0.attn.weights", (0, 0, 2)) }}

{{ jacobian("ln_f.xhat", (0, 1)) }}

{{ verification() }}

{{ pytorch_snippet() }}
"""


def site_with(tmp_path: Path, body: str, verification: dict | None = None,
              shipped: dict[str, dict] | None = None) -> Paths:
    """A fixture site whose root (where build/verification.json and configs/verification/*.json are read) is
    tmp_path / "root": `verification` is written to the first, `shipped` ({file name: data}) to the second."""
    paths = make_site(tmp_path, {"extra.md": page(body)})
    root = tmp_path / "root"
    root.mkdir()
    (root / "node_modules").symlink_to(ROOT / "node_modules")
    if verification is not None:
        (root / "build").mkdir()
        (root / "build" / "verification.json").write_text(json.dumps(verification))
    for name, data in (shipped or {}).items():
        (root / "configs" / "verification").mkdir(parents=True, exist_ok=True)
        (root / "configs" / "verification" / name).write_text(json.dumps(data))
    return Paths(root=root, content=paths.content, templates=ROOT / "templates", cache=tmp_path / "cache")


def text_of(html: str) -> str:
    """The page's text as read: tags dropped, the escapes of Markdown's special characters undone."""
    return unescape(re.sub(r"<[^>]+>", "", html))


NOT_COMPARED = "PyTorch: not compared in this build (make verify CONFIG=…)"


def test_the_note_on_how_to_compare_names_the_run_s_architecture():
    """A llama run is compared with Hugging Face's LlamaForCausalLM, a GPT-2 run with GPT-2."""
    llama = checks_mod.Checks(model=checks_mod.oracle_model({"model": {"arch": "llama"}})).summary()
    gpt2 = checks_mod.Checks(model=checks_mod.oracle_model({"model": {}})).summary()
    assert "Hugging Face Llama (<code>LlamaForCausalLM</code>) and torch.optim" in llama and "GPT-2" not in llama
    assert "Hugging Face GPT-2 and torch.optim" in gpt2 and "Llama" not in gpt2


def test_unverified_build_says_what_was_checked_and_how_to_compare(tmp_path):
    paths = site_with(tmp_path, BODY)
    build(SMALL, tmp_path / "out", paths=paths)
    html = (tmp_path / "out" / "extra.html").read_text()
    text = text_of(html)
    # each checked tensor: one line, its finite differences and the way to compare it with PyTorch
    line = re.search(r"✓ finite differences: 4 elements, max error (\d\.\de-\d\d) · (.*)", text)
    assert line and line.group(2) == NOT_COMPARED and float(line.group(1)) <= 1e-7, text
    # the summary, once: what was checked, with its figures, and the command
    fd = engine.verify.finite_differences(engine.load_config(str(SMALL)), engine.run(engine.load_config(str(SMALL))))
    grads = [k for k in fd if k.startswith("grad.")]
    elements = sum(len(fd[k]["checked"]) for k in grads)
    assert "This trace was not compared with PyTorch" in text
    assert (f"finite differences agree with the backward pass on {elements} elements of {len(grads)} parameter "
            f"gradients, and on the whole gradient along one random direction through all "
            f"{fd['direction']['values']:,} weights (largest error {max(r['max_abs_err'] for r in fd.values()):.1e})"
            in text), text
    assert "run make verify CONFIG=… with this site's config" in text and "<code>make verify CONFIG=…</code>" in html
    assert "not checked against PyTorch" not in text
    assert html.count('class="matrix"') == 3  # the gradient and two Jacobians
    assert "torch.optim." in html and "GPT2LMHeadModel" in html


def test_verified_build_shows_pytorch_figures_only_for_its_own_trace(tmp_path):
    trace = engine.run(engine.load_config(str(SMALL)))
    good = {"trace_sha256": digest(trace), "oracle": "the oracle",
            "max_abs_diff": {"grad.L0.attn.c_proj.weight": 3e-16}}
    paths = site_with(tmp_path, BODY, good)
    build(SMALL, tmp_path / "out", paths=paths)
    text = text_of((tmp_path / "out" / "extra.html").read_text())
    assert "✓ PyTorch: max |Δ| 3.0e-16" in text and "not compared" not in text
    assert ("1 tensor of this trace (activations, gradients, updated weights, the loss) was compared with the "
            "oracle: the largest difference is 3.0e-16" in text and "make verify wrote these figures to "
            "build/verification.json; the build shows them" in text), text
    stale = dict(good, trace_sha256="0" * 64)
    paths = site_with(tmp_path / "stale", BODY, stale)
    build(SMALL, tmp_path / "out2", paths=paths)
    text = text_of((tmp_path / "out2" / "extra.html").read_text())
    assert NOT_COMPARED in text and "PyTorch: max" not in text


def test_the_shipped_comparison_of_a_config_is_found_by_its_digest(tmp_path):
    """configs/verification/*.json: the file whose config digest is this config's is read, whatever its name, and
    before build/verification.json; one of another trace is not, and build/verification.json is read after it."""
    trace = engine.run(engine.load_config(str(SMALL)))
    mine = {"config_sha256": config_digest(trace), "trace_sha256": digest(trace), "oracle": "the oracle",
            "max_abs_diff": {"grad.L0.attn.c_proj.weight": 4e-16}}
    other = dict(mine, config_sha256="1" * 64, max_abs_diff={"grad.L0.attn.c_proj.weight": 5e-16})
    local = dict(mine, max_abs_diff={"grad.L0.attn.c_proj.weight": 6e-16})
    shipped = {"a.json": other, "small.json": mine}
    paths = site_with(tmp_path, BODY, local, shipped)
    build(SMALL, tmp_path / "out", paths=paths)
    text = text_of((tmp_path / "out" / "extra.html").read_text())
    assert "✓ PyTorch: max |Δ| 4.0e-16" in text and "5.0e-16" not in text and "6.0e-16" not in text
    assert "wrote these figures to configs/verification/small.json; the build shows them because" in text
    # the same file made from another trace (the engine changed since `make verify`): the next file is read
    stale = {"a.json": other, "small.json": dict(mine, trace_sha256="0" * 64)}
    build(SMALL, tmp_path / "out2", paths=site_with(tmp_path / "stale", BODY, local, stale))
    text = text_of((tmp_path / "out2" / "extra.html").read_text())
    assert "✓ PyTorch: max |Δ| 6.0e-16" in text and "to build/verification.json;" in text
    build(SMALL, tmp_path / "out3", paths=site_with(tmp_path / "none", BODY, None, stale))
    assert NOT_COMPARED in text_of((tmp_path / "out3" / "extra.html").read_text())
    # PyTorch's own numbers (what `make verify` ships): the figure is worked out from them and this trace
    name = "grad.L0.attn.c_proj.weight"
    value = np.asarray(trace[name], dtype=np.float64)
    moved = value.copy()
    moved.flat[0] += 2e-3
    numbers = {"config_sha256": config_digest(trace), "oracle": "the oracle",
               "reference": {name: {"shape": list(value.shape), "values": moved.ravel().tolist()}}}
    build(SMALL, tmp_path / "out4", paths=site_with(tmp_path / "numbers", BODY, local, {"small.json": numbers}))
    text = text_of((tmp_path / "out4" / "extra.html").read_text())
    assert "✗ PyTorch: max |Δ| 2.0e-03" in text and "6.0e-16" not in text
    assert "this build worked out each figure from those numbers and its own trace" in text


def test_a_wrong_gradient_fails_the_build_and_keeps_the_old_site(tmp_path, monkeypatch):
    paths = site_with(tmp_path, BODY)
    build(SMALL, tmp_path / "out", paths=paths)
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    real = checks_mod.finite_differences

    def corrupted(cfg, trace, *args, **kwargs):  # whatever else the build passes (per_tensor, progress)
        out = real(cfg, trace, *args, **kwargs)
        out["grad.wte"] = dict(out["grad.wte"], max_abs_err=0.5, ok=False)
        return out

    monkeypatch.setattr(checks_mod, "finite_differences", corrupted)
    shutil.rmtree(paths.cache / "runs")  # the first build's checks are cached by config and engine source
    with pytest.raises(BuildError, match=r"finite-difference check failed for grad.wte \(error 5.0e-01") as failed:
        build(SMALL, tmp_path / "out", paths=paths)
    assert str(failed.value).startswith(f"{SMALL}:")  # the line names the config it checked
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before


def test_jacobian_needs_a_softmax_or_layernorm_row(tmp_path):
    paths = site_with(tmp_path, '{{ jacobian("L0.attn.q", (0, 0, 1)) }}\n')
    with pytest.raises(BuildError, match=r"extra.md:7: no Jacobian for L0.attn.q"):
        build(SMALL, tmp_path / "out", paths=paths)
    shutil.rmtree(tmp_path / "root")
