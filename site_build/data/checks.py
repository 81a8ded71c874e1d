"""The checks a page shows under each tensor: finite differences (run in every build) and the comparison with
Hugging Face GPT-2 + torch.optim, which `make verify` writes and the build only reads, so that it never needs torch.

The figures come from one of two places (`verification_files`): the comparisons shipped with handstep, one file per
shipped config in configs/verification/ (`make verify` writes default.json), found by the config's digest, so that a
site of the default config shows them from its first build; or build/verification.json, git-ignored, which
`make verify CONFIG=...` writes for any other config. A shipped file holds PyTorch's own numbers (`reference`), and
the build works out each figure, max |engine - PyTorch|, from them and the trace it builds: true of that trace on
any machine (NumPy's last bits differ between CPUs). build/verification.json holds the figures alone and is used
only when its trace digest is the digest of the trace being built. Figures of another config are never shown, and a
trace that moved (a changed engine) shows how far it is from PyTorch, ✗ past TORCH_TOL.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.verify import config_dict_digest, config_digest, digest, finite_differences
from site_build.errors import BuildError
from site_build.format import html_text
from site_build.stamp import SHIPPED_VERIFICATION, VERIFICATION_FILE

__all__ = ["SHIPPED_VERIFICATION", "VERIFICATION_FILE", "Checks", "compute_checks", "oracle_model", "start_checks",
           "verification_files"]
TORCH_TOL = 1e-9  # the test suite's loosest tolerance (Adam's first step on the key bias' noise gradient)


SLOT_OPEN, SLOT_CLOSE = "\ue002", "\ue003"  # private-use characters around a record name: a check line to come
SLOT_RE = re.compile(f"{SLOT_OPEN}([^{SLOT_CLOSE}]*){SLOT_CLOSE}")
SUMMARY_SLOT = " summary"  # no record name holds a space: the slot of the page's summary (`verification()`)
HOW_TO_VERIFY = "make verify CONFIG=…"  # with the config the site was built from (a page never names its path)


@dataclass
class Checks:
    fd: dict[str, dict] = field(default_factory=dict)
    torch: dict[str, float] | None = None  # record -> max |engine - PyTorch|, None when not verified
    oracle: str = ""
    source: str = ""  # the file the PyTorch figures came from, from the project root
    worked_out: bool = False  # the figures were worked out from PyTorch's numbers in that file (not written there)
    # what `make verify` would compare with, in HTML: set from the config on every use of a run (Session.run), not
    # kept with it, so that a run cached before the words changed says them too
    model: str = "GPT-2"
    pending: threading.Thread | None = field(default=None, repr=False, compare=False)  # the finite differences
    error: BaseException | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        self.finish()
        return {"fd": self.fd, "torch": self.torch, "oracle": self.oracle, "source": self.source,
                "worked_out": self.worked_out, "pending": None, "error": None}

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
        return SLOT_RE.sub(lambda m: self.summary() if m.group(1) == SUMMARY_SLOT else self.paragraph(m.group(1)),
                           html)

    def paragraph(self, name: str) -> str:
        line = self.line(name)
        return f'<p class="check">{html_text(line)}</p>' if line else ""

    def summary_html(self) -> str:
        """The page's summary (`summary`), or its slot while the finite differences run (see `fill`)."""
        return self.slot(SUMMARY_SLOT) if self.pending is not None else self.summary()

    def summary(self) -> str:
        """What this build checked, in a few sentences of HTML: said once on a page, so that each tensor's line can
        stay short."""
        self.finish()
        if self.torch is not None:
            n, worst = len(self.torch), max(self.torch.values(), default=0.0)
            source = f"<code>{html_text(self.source)}</code>"
            ships = ", which ships with handstep," if self.source.startswith(SHIPPED_VERIFICATION + "/") else ""
            how = (f"<code>make verify</code> wrote PyTorch's numbers for them to {source}{ships} and this build "
                   "worked out each figure from those numbers and its own trace." if self.worked_out else
                   f"<code>make verify</code> wrote these figures to {source}; the build shows them because the "
                   "file's trace digest is this trace's.")
            return (f"{n} tensor{'s' * (n != 1)} of this trace (activations, gradients, updated weights, the loss) "
                    f"{'was' if n == 1 else 'were'} compared with {html_text(self.oracle)}: the largest difference "
                    f"is {worst:.1e}, and the pages show each one's figure under its values. {how}")
        return ("This trace was not compared with PyTorch: the build runs without torch, and no comparison written "
                f"by <code>make verify</code> belongs to this trace. What was checked: {self._fd_summary()}. To "
                f"compare every tensor with Hugging Face {self.model} and torch.optim, run "
                f"<code>{HOW_TO_VERIFY}</code> with this site's config (it needs torch, a test dependency), then build "
                "again.")

    def _fd_summary(self) -> str:
        grads = [r for name, r in self.fd.items() if name.startswith("grad.")]
        if not grads:
            return "nothing beyond the build's own run"
        text = (f"finite differences agree with the backward pass on {sum(len(r['checked']) for r in grads)} "
                f"elements of {len(grads)} parameter gradients")
        direction = self.fd.get("direction")
        if direction:
            text += (", and on the whole gradient along one random direction through all "
                     f"{direction['values']:,} weights")
        worst = max(r["max_abs_err"] for r in self.fd.values())
        return f"{text} (largest error {worst:.1e})"

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
            parts.append(f"PyTorch: not compared in this build ({HOW_TO_VERIFY})")
        return " · ".join(parts)


def oracle_model(config: dict) -> str:
    """The Hugging Face model `make verify` compares a run of `config` (`Config.to_dict()`) with, in HTML."""
    return "Llama (<code>LlamaForCausalLM</code>)" if config["model"].get("arch", "gpt2") == "llama" else "GPT-2"


def compute_checks(cfg: Any, trace: Any, root: Path, progress: Any = None,
                   started: Checks | None = None) -> Checks:
    """PyTorch figures if `make verify` matched, and finite differences (fail the build if one is off): now, or,
    when `start_checks` began them (`started`), going on in their thread while the pages render; then each page
    holds a slot for a record's check line (Checks.slot), filled once `finish()` has waited for them."""
    checks = started if started is not None else Checks()
    _torch_figures(checks, trace, root)
    if started is None:
        checks.fd = _finite_differences(cfg, trace, progress)
    return checks


def start_checks(cfg: Any, trace: Any) -> Checks:
    """Finite differences in a thread (a GPT-2-sized check takes seconds of NumPy), on a trace that needs to hold
    only the weights, the forward pass and the gradients; `compute_checks(..., started=)` adds the rest."""
    checks = Checks()

    def work() -> None:
        try:
            checks.fd = _finite_differences(cfg, trace, None)
        except BaseException as exc:  # noqa: BLE001 - raised again by finish(), in the build's thread
            checks.error = exc

    checks.pending = threading.Thread(target=work, name="finite differences", daemon=True)
    checks.pending.start()
    return checks


def _finite_differences(cfg: Any, trace: Any, progress: Any) -> dict[str, dict]:
    """The gradients against finite differences; a BuildError naming the config (`cfg.source`) if one is off."""
    fd = finite_differences(cfg, trace, progress=progress)
    bad = [f"{name} (error {r['max_abs_err']:.1e} > {r['tol']:.0e})" for name, r in fd.items() if not r["ok"]]
    if bad:
        raise BuildError(cfg.source, 0, "finite-difference check failed for " + ", ".join(bad))
    return fd


def _against(trace: Any, reference: Any) -> dict[str, float] | None:
    """max |trace - PyTorch| for each tensor of `reference` ({name: {"shape": [...], "values": [...]}}); None when it
    is not that (a damaged file, or a tensor the trace lacks or holds in another shape)."""
    figures = {}
    try:
        for name, ref in reference.items():
            want = np.asarray(ref["values"], dtype=np.float64).reshape(ref["shape"])
            have = np.asarray(trace[name], dtype=np.float64)
            if have.shape != want.shape:
                return None
            figures[name] = float(np.max(np.abs(have - want))) if want.size else 0.0
    except Exception:  # noqa: BLE001 - anything else a damaged file holds: it verifies nothing
        return None
    return figures


def verification_files(root: Path, config: dict) -> list[Path]:
    """The files a build of `config` (`Config.to_dict()`) may take PyTorch figures from, in the order tried: each
    shipped comparison whose config digest is this config's, then build/verification.json. Known before the run,
    so the run's cache key (site_build.cache.run_key) holds what the build reads."""
    want = config_dict_digest(config)
    shipped = sorted((root / SHIPPED_VERIFICATION).glob("*.json"))
    return [*(p for p in shipped if (_read(p) or {}).get("config_sha256") == want), root / VERIFICATION_FILE]


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a damaged file (deep nesting raises RecursionError): not verified
        return None
    return data if isinstance(data, dict) else None


def _torch_figures(checks: Checks, trace: Any, root: Path) -> None:
    """The figures of the first file of `verification_files` for this trace, if any: worked out from PyTorch's
    numbers (a shipped file's `reference`), or written for exactly this trace (its digest)."""
    traced = ""  # the trace's digest, worked out once and only when a file of its config asks (8 GB for GPT-2)
    for path in verification_files(root, trace.config):
        data = _read(path)
        if data is None or data.get("config_sha256", config_digest(trace)) != config_digest(trace):
            continue  # figures for another config: the values need not be read to know
        if "reference" in data:
            figures = _against(trace, data["reference"])
        else:
            traced = traced or digest(trace)
            figures = data.get("max_abs_diff") if data.get("trace_sha256") == traced else None
        try:
            checks.torch = {str(k): float(v) for k, v in figures.items()}  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            continue  # not the figures `make verify` writes: this file verifies nothing
        checks.oracle = str(data.get("oracle", "PyTorch"))
        checks.worked_out = "reference" in data
        checks.source = path.relative_to(root).as_posix()
        return
