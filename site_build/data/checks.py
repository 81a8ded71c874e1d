"""The checks a page shows under each tensor: finite differences (run in every build) and the comparison with
Hugging Face GPT-2 + torch.optim, which `make verify` writes and the build only reads, so that it never needs torch.

The figures come from one of two places (`verification_files`): the comparisons shipped with handstep, one file per
shipped config in configs/verification/ (`make verify` writes default.json), found by the config's digest, so that a
site of the default config shows them from its first build; or build/verification.json, git-ignored, which
`make verify CONFIG=...` writes for any other config. Either is used only when its trace digest is the digest of the
trace being built: figures of another trace (another config, seed, checkpoint, or a changed engine) are never shown.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # what `make verify` would compare with, in HTML: set from the config on every use of a run (Session.run), not
    # kept with it, so that a run cached before the words changed says them too
    model: str = "GPT-2"
    pending: threading.Thread | None = field(default=None, repr=False, compare=False)  # the finite differences
    error: BaseException | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        self.finish()
        return {"fd": self.fd, "torch": self.torch, "oracle": self.oracle, "source": self.source, "pending": None,
                "error": None}

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
            where = ", which ships with handstep" if self.source.startswith(SHIPPED_VERIFICATION + "/") else ""
            return (f"{n} tensor{'s' * (n != 1)} of this trace (activations, gradients, updated weights, the loss) "
                    f"{'was' if n == 1 else 'were'} compared with {html_text(self.oracle)}: the largest difference "
                    f"is {worst:.1e}, and the pages show each one's figure under its values. "
                    f"<code>make verify</code> wrote these figures to <code>{html_text(self.source)}</code>{where}; "
                    "the build shows them because the file's trace digest is this trace's.")
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
    """The figures of the first file of `verification_files` made from exactly this trace, if any."""
    traced = ""  # the trace's digest, worked out once and only when a file of its config asks (8 GB for GPT-2)
    for path in verification_files(root, trace.config):
        data = _read(path)
        if data is None or data.get("config_sha256", config_digest(trace)) != config_digest(trace):
            continue  # figures for another config: the values need not be read to know
        traced = traced or digest(trace)
        if data.get("trace_sha256") != traced:
            continue
        figures = data.get("max_abs_diff", {})
        try:
            checks.torch = {str(k): float(v) for k, v in figures.items()}
        except (AttributeError, TypeError, ValueError):
            continue  # not the figures `make verify` writes: this file verifies nothing
        checks.oracle = str(data.get("oracle", "PyTorch"))
        checks.source = path.relative_to(root).as_posix()
        return
