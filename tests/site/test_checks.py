"""The checks a build shows and enforces: finite differences every build, PyTorch figures when verified."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import SMALL, make_site, page

import engine
from engine.verify import digest
from site_build.build import ROOT, Paths, build
from site_build.data import checks as checks_mod
from site_build.errors import BuildError

BODY = """{{ matrix("grad.L0.attn.c_proj.weight") }}

{{ jacobian("L0.attn.weights", (0, 0, 2)) }}

{{ jacobian("ln_f.xhat", (0, 1)) }}

{{ verification() }}

{{ pytorch_snippet() }}
"""


def site_with(tmp_path: Path, body: str, verification: dict | None = None) -> Paths:
    """A fixture site whose root (where build/verification.json is read) is tmp_path."""
    paths = make_site(tmp_path, {"extra.md": page(body)})
    root = tmp_path / "root"
    root.mkdir()
    (root / "node_modules").symlink_to(ROOT / "node_modules")
    if verification is not None:
        (root / "build").mkdir()
        (root / "build" / "verification.json").write_text(json.dumps(verification))
    return Paths(root=root, content=paths.content, templates=ROOT / "templates", cache=tmp_path / "cache")


def test_unverified_build_says_so_and_shows_finite_differences(tmp_path):
    paths = site_with(tmp_path, BODY)
    build(SMALL, tmp_path / "out", paths=paths)
    html = (tmp_path / "out" / "extra.html").read_text()
    assert "✓ finite differences&#58; 4 elements" in html or "✓ finite differences: 4 elements" in html
    assert "not checked against PyTorch in this build" in html
    assert html.count('class="matrix"') == 3  # the gradient and two Jacobians
    assert "torch.optim." in html and "GPT2LMHeadModel" in html


def test_verified_build_shows_pytorch_figures_only_for_its_own_trace(tmp_path):
    trace = engine.run(engine.load_config(str(SMALL)))
    good = {"trace_sha256": digest(trace), "oracle": "the oracle",
            "max_abs_diff": {"grad.L0.attn.c_proj.weight": 3e-16}}
    paths = site_with(tmp_path, BODY, good)
    build(SMALL, tmp_path / "out", paths=paths)
    html = (tmp_path / "out" / "extra.html").read_text()
    assert "PyTorch&#58; max &#124;Δ&#124; 3.0e-16" in html or "PyTorch: max |Δ| 3.0e-16" in html
    assert "not checked against PyTorch" not in html
    stale = dict(good, trace_sha256="0" * 64)
    paths = site_with(tmp_path / "stale", BODY, stale)
    build(SMALL, tmp_path / "out2", paths=paths)
    assert "not checked against PyTorch in this build" in (tmp_path / "out2" / "extra.html").read_text()


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
    with pytest.raises(BuildError, match=r"finite-difference check failed for grad.wte \(error 5.0e-01"):
        build(SMALL, tmp_path / "out", paths=paths)
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before


def test_jacobian_needs_a_softmax_or_layernorm_row(tmp_path):
    paths = site_with(tmp_path, '{{ jacobian("L0.attn.q", (0, 0, 1)) }}\n')
    with pytest.raises(BuildError, match=r"extra.md:7: no Jacobian for L0.attn.q"):
        build(SMALL, tmp_path / "out", paths=paths)
    shutil.rmtree(tmp_path / "root")
