"""The default config's comparison with PyTorch ships in the repository (configs/verification/default.json): PyTorch's
own numbers for every compared tensor, from which each build works out its figures, so the default site shows them
from the first build, without torch, on any machine. This test fails when the default trace no longer agrees with
them: `make test` does not regenerate the file (that would hide a stale one); `make verify` does.

No torch here: the trace is compared with PyTorch's numbers as the build compares them, against the tolerance the
site marks with ✓; tests/engine/test_oracle.py checks the engine against PyTorch directly.
"""

import json
from pathlib import Path

import pytest

import engine
from engine.model import param_specs
from engine.verify import config_digest
from site_build.build import ROOT
from site_build.data.checks import TORCH_TOL, Checks, _against, _torch_figures

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
    figures = _against(trace, data.get("reference", {}))
    if not figures:
        return f"{name}: its reference is not PyTorch's numbers for tensors of the default trace: {fix}"
    bad = {k: v for k, v in figures.items() if not v <= TORCH_TOL}
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
    figures = json.loads(SHIPPED.read_text(encoding="utf-8"))["reference"]
    params = [name for name, _, _, _ in param_specs(engine.load_config(str(DEFAULT)))]
    wanted = {"logits", "loss", "after.loss", *(f"grad.{p}" for p in params), *(f"updated.{p}" for p in params)}
    assert wanted <= set(figures), sorted(wanted - set(figures))


@pytest.mark.parametrize("change", ["shape", "config", "figure", "unreadable"])
def test_a_stale_or_failing_comparison_is_caught(tmp_path, default_trace, change):
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    if change == "shape":
        data["reference"]["logits"]["shape"] = [1, -1]
    elif change == "config":
        data["config_sha256"] = "0" * 64
    elif change == "figure":  # the engine's loss moved by 1e-6
        data["reference"]["loss"]["values"][0] += 1e-6
    path = tmp_path / "default.json"
    path.write_text("{" if change == "unreadable" else json.dumps(data))
    problem = stale(path, default_trace)
    assert "run `make verify`" in problem
    assert {"shape": "not PyTorch's numbers", "config": "config_sha256", "figure": "['loss']",
            "unreadable": "not readable"}[change] in problem


def shipped_figures(root: Path, trace) -> dict | None:
    """The figures a build of `trace` takes from root/configs/verification/ (site_build.data.checks)."""
    checks = Checks()
    _torch_figures(checks, trace, root)
    return checks.torch


def test_figures_are_worked_out_from_pytorchs_numbers_on_any_machine(tmp_path, default_trace):
    """Another CPU rounds the default trace's last bits differently: the figures are still shown, worked out from this
    trace (max |trace - PyTorch|), not copied from the machine that shipped them; a trace that moved shows how far."""
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    folder = tmp_path / "configs" / "verification"
    folder.mkdir(parents=True)
    ref = data["reference"]["grad.wte"]["values"]
    ref[3] = ref[3] * (1 + 4e-16) + 1e-17  # PyTorch's number, as another machine's trace would meet it
    (folder / "default.json").write_text(json.dumps(data))
    figures = shipped_figures(tmp_path, default_trace)
    assert figures is not None and set(figures) == set(data["reference"])
    engine_value = float(default_trace["grad.wte"].ravel()[3])
    assert figures["grad.wte"] >= abs(engine_value - ref[3]) and all(v <= TORCH_TOL for v in figures.values())
    ref[3] += 1e-3  # an engine whose gradient is off by 1e-3
    (folder / "default.json").write_text(json.dumps(data))
    assert abs(shipped_figures(tmp_path, default_trace)["grad.wte"] - 1e-3) < 1e-9
    data["reference"]["grad.wte"]["values"] = "damaged"
    (folder / "default.json").write_text(json.dumps(data))
    assert shipped_figures(tmp_path, default_trace) is None
