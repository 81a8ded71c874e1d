"""The default config's comparison with PyTorch ships in the repository (configs/verification/default.json), so the
default site shows its figures from the first build without torch. This test fails when the file no longer belongs
to the default trace: `make test` does not regenerate it (that would hide a stale file); `make verify` does.

No torch here: the file's digests are compared with the trace's, and its figures with the tolerance the site marks
with ✓. The figures themselves are PyTorch's; tests/engine/test_oracle.py checks the engine against it directly.
"""

import json
from pathlib import Path

import pytest

import engine
from engine.model import param_specs
from engine.verify import config_digest, digest
from site_build.build import ROOT
from site_build.data.checks import TORCH_TOL

SHIPPED = ROOT / "configs" / "verification" / "default.json"
DEFAULT = ROOT / "configs" / "default.yaml"


def stale(path: Path, trace) -> str:
    """Why the comparison in `path` is not one `make verify` wrote for `trace` ('' when it is)."""
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    fix = f"run `make verify` and commit {name}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{name}: not readable ({err}): {fix}"
    if data.get("config_sha256") != config_digest(trace):
        return f"{name}: its config_sha256 is not the digest of configs/default.yaml (the config changed): {fix}"
    if data.get("trace_sha256") != digest(trace):
        return (f"{name}: its trace_sha256 is not the digest of the default trace (the engine's numbers changed, "
                f"or NumPy rounds differently on this machine): {fix}")
    bad = {k: v for k, v in data.get("max_abs_diff", {}).items() if not v <= TORCH_TOL}
    if bad:
        return f"{name}: differences from PyTorch above {TORCH_TOL:.0e}: {sorted(bad)}; fix the engine, then {fix}"
    return ""


@pytest.fixture(scope="module")
def default_trace():
    return engine.run(engine.load_config(str(DEFAULT)))


def test_the_shipped_comparison_belongs_to_the_default_trace(default_trace):
    problem = stale(SHIPPED, default_trace)
    assert not problem, problem


def test_it_covers_every_gradient_and_update_and_the_loss():
    """The figures the default site shows under its tensors: every parameter's gradient and update, and the loss."""
    figures = json.loads(SHIPPED.read_text(encoding="utf-8"))["max_abs_diff"]
    params = [name for name, _, _, _ in param_specs(engine.load_config(str(DEFAULT)))]
    wanted = {"logits", "loss", "after.loss", *(f"grad.{p}" for p in params), *(f"updated.{p}" for p in params)}
    assert wanted <= set(figures), sorted(wanted - set(figures))


@pytest.mark.parametrize("change", ["trace", "config", "figure", "unreadable"])
def test_a_stale_or_failing_comparison_is_caught(tmp_path, default_trace, change):
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    if change == "trace":
        data["trace_sha256"] = "0" * 64
    elif change == "config":
        data["config_sha256"] = "0" * 64
    elif change == "figure":
        data["max_abs_diff"]["loss"] = 1e-6
    path = tmp_path / "default.json"
    path.write_text("{" if change == "unreadable" else json.dumps(data))
    problem = stale(path, default_trace)
    assert "run `make verify`" in problem
    assert {"trace": "trace_sha256", "config": "config_sha256", "figure": "['loss']",
            "unreadable": "not readable"}[change] in problem
