"""The checks a page shows under each tensor: finite differences (run in every build) and the
comparison with Hugging Face GPT-2 + torch.optim (read from the file `make verify` writes, used only
when its trace digest matches the trace being built)."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.verify import config_digest, digest, finite_differences
from site_build.errors import BuildError
from site_build.format import html_text

VERIFICATION_FILE = "build/verification.json"
TORCH_TOL = 1e-9  # the test suite's loosest tolerance (Adam's first step on the key bias' noise gradient)


SLOT_OPEN, SLOT_CLOSE = "\ue002", "\ue003"  # private-use characters around a record name: a check line to come
SLOT_RE = re.compile(f"{SLOT_OPEN}([^{SLOT_CLOSE}]*){SLOT_CLOSE}")


@dataclass
class Checks:
    fd: dict[str, dict] = field(default_factory=dict)
    torch: dict[str, float] | None = None  # record -> max |engine - PyTorch|, None when not verified
    oracle: str = ""
    pending: threading.Thread | None = field(default=None, repr=False, compare=False)  # the finite differences
    error: BaseException | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        self.finish()
        return {"fd": self.fd, "torch": self.torch, "oracle": self.oracle, "pending": None, "error": None}

    def finish(self) -> None:
        """Wait for finite differences running in the background; raise what they raised."""
        if self.pending is not None:
            self.pending.join()
            self.pending = None
        if self.error is not None:
            raise self.error

    def slot(self, name: str) -> str:
        """A placeholder for the check paragraph of record `name` (see `fill`)."""
        return f"{SLOT_OPEN}{name}{SLOT_CLOSE}"

    def fill(self, html: str) -> str:
        """Every placeholder replaced by its check paragraph (nothing where nothing checks the record)."""
        if SLOT_OPEN not in html:
            return html
        self.finish()
        return SLOT_RE.sub(lambda m: self.paragraph(m.group(1)), html)

    def paragraph(self, name: str) -> str:
        line = self.line(name)
        return f'<p class="check">{html_text(line)}</p>' if line else ""

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


def compute_checks(cfg: Any, trace: Any, root: Path, config_label: str, progress: Any = None,
                   started: Checks | None = None) -> Checks:
    """PyTorch figures if `make verify` matched, and finite differences (fail the build if one is off): now, or,
    when `start_checks` began them (`started`), going on in their thread while the pages render; then each page
    holds a slot for a record's check line (Checks.slot), filled once `finish()` has waited for them."""
    checks = started if started is not None else Checks()
    _torch_figures(checks, trace, root)
    if started is None:
        checks.fd = _finite_differences(cfg, trace, config_label, progress)
    return checks


def start_checks(cfg: Any, trace: Any, config_label: str) -> Checks:
    """Finite differences in a thread (a GPT-2-sized check takes seconds of NumPy), on a trace that needs to hold
    only the weights, the forward pass and the gradients; `compute_checks(..., started=)` adds the rest."""
    checks = Checks()

    def work() -> None:
        try:
            checks.fd = _finite_differences(cfg, trace, config_label, None)
        except BaseException as exc:  # noqa: BLE001 - raised again by finish(), in the build's thread
            checks.error = exc

    checks.pending = threading.Thread(target=work, name="finite differences", daemon=True)
    checks.pending.start()
    return checks


def _finite_differences(cfg: Any, trace: Any, config_label: str, progress: Any) -> dict[str, dict]:
    fd = finite_differences(cfg, trace, progress=progress)
    bad = [f"{name} (error {r['max_abs_err']:.1e} > {r['tol']:.0e})" for name, r in fd.items() if not r["ok"]]
    if bad:
        raise BuildError(config_label, 0, "finite-difference check failed for " + ", ".join(bad))
    return fd


def _torch_figures(checks: Checks, trace: Any, root: Path) -> None:
    path = root / VERIFICATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a damaged file (deep nesting raises RecursionError): not verified
        return
    if not isinstance(data, dict) or data.get("config_sha256", config_digest(trace)) != config_digest(trace):
        return  # figures for another config: the values need not be read to know
    if data.get("trace_sha256") == digest(trace):
        figures = data.get("max_abs_diff", {})
        try:
            checks.torch = {str(k): float(v) for k, v in figures.items()}
        except (AttributeError, TypeError, ValueError):
            return  # not the figures `make verify` writes: this build is not verified
        checks.oracle = str(data.get("oracle", "PyTorch"))
