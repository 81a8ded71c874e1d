"""The checks a page shows under each tensor: finite differences (run in every build) and the
comparison with Hugging Face GPT-2 + torch.optim (read from the file `make verify` writes, used only
when its trace digest matches the trace being built)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.verify import config_digest, digest, finite_differences
from site_build.errors import BuildError

VERIFICATION_FILE = "build/verification.json"
TORCH_TOL = 1e-9  # the test suite's loosest tolerance (Adam's first step on the key bias' noise gradient)


@dataclass
class Checks:
    fd: dict[str, dict] = field(default_factory=dict)
    torch: dict[str, float] | None = None  # record -> max |engine - PyTorch|, None when not verified
    oracle: str = ""

    def summary(self) -> str:
        if self.torch is None:
            return "not checked against PyTorch in this build (run `make verify`, then rebuild)"
        worst = max(self.torch.values()) if self.torch else 0.0
        return f"{len(self.torch)} tensors checked against {self.oracle}: largest difference {worst:.1e}"

    def line(self, name: str) -> str:
        """Plain-text check figures for one record ('' when nothing checks it directly)."""
        parts = []
        fd = self.fd.get(name)
        if fd:
            parts.append(f"✓ finite differences: {len(fd['checked'])} elements, max error {fd['max_abs_err']:.1e}")
        if self.torch is not None and name in self.torch:
            diff = self.torch[name]
            mark = "✓" if diff <= TORCH_TOL else "✗"
            parts.append(f"{mark} PyTorch: max |Δ| {diff:.1e}")
        elif self.torch is None and (fd or name.startswith("updated.") or name in ("logits", "loss")):
            parts.append("not checked against PyTorch in this build")
        return " · ".join(parts)


def compute_checks(cfg: Any, trace: Any, root: Path, config_label: str, progress: Any = None) -> Checks:
    """Finite differences now (fail the build if one is off), PyTorch figures if `make verify` matched."""
    fd = finite_differences(cfg, trace, progress=progress)
    bad = [f"{name} (error {r['max_abs_err']:.1e} > {r['tol']:.0e})" for name, r in fd.items() if not r["ok"]]
    if bad:
        raise BuildError(config_label, 0, "finite-difference check failed for " + ", ".join(bad))
    checks = Checks(fd=fd)
    path = root / VERIFICATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return checks
    if not isinstance(data, dict) or data.get("config_sha256", config_digest(trace)) != config_digest(trace):
        return checks  # figures for another config: the values need not be read to know
    if data.get("trace_sha256") == digest(trace):
        checks.torch = {k: float(v) for k, v in data.get("max_abs_diff", {}).items()}
        checks.oracle = str(data.get("oracle", "PyTorch"))
    return checks
