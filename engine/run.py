"""One complete training step, recorded: tokenize → init → forward → loss → backward → update → re-evaluate,
then a separate unrecorded `train_steps` run for the training-run page."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import model
from .budget import check_budget
from .config import Config
from .layers import cross_entropy_forward
from .optim import optimizer_step
from .trace import CheckRecorder, NonFiniteError, Recorder, Trace

IGNORE = -100  # Hugging Face's label for "no target here"
Progress = Callable[[str, int, int], None]  # progress(phase, done, total)


class RunError(Exception):
    """The run could not finish (a NaN or Inf appeared); the message is one line."""


def tokenize(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Each text becomes <bos> + words; inputs drop the last token, targets the first; right-pad the batch."""
    vocab = {w: i for i, w in enumerate(cfg.model.vocab)}
    seqs = [[vocab["<bos>"]] + [vocab[w] for w in t.split()] for t in cfg.data.texts]
    T = max(len(s) for s in seqs) - 1
    ids = np.full((len(seqs), T), vocab["<pad>"], dtype=np.int64)  # (B, T)
    targets = np.full((len(seqs), T), IGNORE, dtype=np.int64)  # (B, T)
    for b, s in enumerate(seqs):
        ids[b, : len(s) - 1] = s[:-1]
        targets[b, : len(s) - 1] = s[1:]
    return ids, targets


def labels(cfg: Config, ids: np.ndarray, targets: np.ndarray) -> dict:
    v = cfg.model.vocab
    return {"vocab": list(v),
            "inputs": [[v[i] for i in row] for row in ids.tolist()],
            "targets": [[v[i] if i >= 0 else "<ignored>" for i in row] for row in targets.tolist()]}


def run(cfg: Config, progress: Progress | None = None) -> Trace:
    """Run one recorded training step and the training run; return the trace.

    Refuses (BudgetError, one line) a config whose trace would not fit in memory or would take too long,
    before anything is allocated. `progress(phase, done, total)`, when given, is called as the work goes:
    phase "step" (0 then 1 of 1) and "training run" (0, then every 1/100 of train_steps, then the last).
    """
    check_budget(cfg)
    with np.errstate(all="ignore"):  # a NaN or Inf is reported by name (NonFiniteError), not as a warning
        try:
            return _run(cfg, progress or _skip)
        except RunError as exc:
            raise RunError(f"{cfg.source}: {exc}" if cfg.source else str(exc)) from None


def _run(cfg: Config, progress: Progress) -> Trace:
    ids, targets = tokenize(cfg)
    specs = model.param_specs(cfg)
    axes = {name: ax for name, _, _, ax in specs}
    progress("step", 0, 1)
    params = model.init_params(cfg)
    rec = Recorder()
    try:
        for name, _, _, ax in specs:
            rec.add(name, "param", [], params[name], ax, _init_formula(name, cfg), model.param_symbol(name),
                    init_std=cfg.model.init_std)
        rec.add("input_ids", "input", [], ids, ("batch", "tokens"), r"\mathrm{id}_t = \mathrm{vocab}[w_t]",
                r"\mathrm{id}")
        rec.add("targets", "input", [], targets, ("batch", "tokens"), r"y_t = \mathrm{id}_{t+1}", "y", ignore=IGNORE)
        fw = model.forward(params, ids, targets, cfg, rec.add)
        rec.phase = "backward"
        grads = model.backward(params, ids, targets, fw, cfg, rec.add)
        rec.phase = "optimizer"
        new = optimizer_step(params, grads, {}, 1, cfg.optimizer, axes, rec.add)
        rec.phase = "evaluation"
        evaluate(new, ids, targets, cfg, rec)
    except NonFiniteError as exc:
        raise RunError(f"a NaN or Inf appeared in record {exc.name!r} of the recorded step; "
                       "lower optimizer.lr or init_std") from None
    progress("step", 1, 1)
    rec.phase = "train"
    train(params, ids, targets, cfg, rec, axes, before=fw["target_prob"], progress=progress)
    index = {key: {"initial": name, "grad": f"grad.{name}", "updated": f"updated.{name}"}
             for name, key, _, _ in specs}
    index.update({"input_ids": "input_ids", "targets": "targets", "logits": "logits", "loss": "loss"})
    return Trace(cfg.to_dict(), labels(cfg, ids, targets), rec.records, index)


def evaluate(params, ids, targets, cfg, rec):
    """The forward pass re-run on the updated weights: did the step lower the loss?"""
    fw = model.forward(params, ids, targets, cfg, CheckRecorder().add)
    probs, target_prob, per_token, loss = cross_entropy_forward(fw["logits"], targets)
    rec.add("after.logits", "forward", [], fw["logits"], ("batch", "tokens", "vocab"),
            r"\mathrm{logits}' = \mathrm{model}_{\theta'}(x)", r"\mathrm{logits}'")
    rec.add("after.probs", "softmax", ["after.logits"], probs, ("batch", "tokens", "vocab"),
            r"p'_{t,v} = \mathrm{softmax}(\mathrm{logits}'_t)_v", "p'")
    rec.add("after.target_prob", "gather", ["after.probs", "targets"], target_prob, ("batch", "tokens"),
            r"p'_t(y_t) = p'_{t,y_t}", "p'(y)")
    rec.add("after.per_token", "cross_entropy", ["after.logits", "targets"], per_token, ("batch", "tokens"),
            r"\ell'_t = -\log p'_{t,y_t}", r"\ell'")
    rec.add("after.loss", "loss_mean", ["after.per_token", "targets"], np.float64(loss), (),
            r"\mathcal{L}' = \tfrac1N\textstyle\sum_t \ell'_t", r"\mathcal{L}'")


def train(params, ids, targets, cfg, rec, axes, before, progress: Progress | None = None):
    """train_steps updates without recording ops; keeps the loss per step and the final predictions.

    Ops are not checked one by one (that would triple the time); when a step's loss or new weights are
    not finite, the step is re-run with a checking recorder to name the first record that went bad.
    `progress("training run", done, train_steps)` is called at 0, every 1/100 of the steps, and at the end.
    """
    progress = progress or _skip
    total = cfg.train_steps
    every = max(1, total // 100)
    progress("training run", 0, total)
    state: dict = {}
    losses = []
    p = params
    for t in range(1, cfg.train_steps + 2):
        fw = model.forward(p, ids, targets, cfg, _skip)
        if not np.isfinite(fw["loss"]):
            _name_first_non_finite(p, ids, targets, cfg, axes, dict(state), t)
        losses.append(fw["loss"])
        if t == cfg.train_steps + 1:
            break
        before_state = {k: dict(v) for k, v in state.items()}
        grads = model.backward(p, ids, targets, fw, cfg, _skip)
        new = optimizer_step(p, grads, state, t, cfg.optimizer, axes, _skip)
        if not all(np.isfinite(v).all() for v in new.values()):
            _name_first_non_finite(p, ids, targets, cfg, axes, before_state, t)
        p = new
        if t % every == 0 or t == total:
            progress("training run", t, total)
    rec.add("train.loss", "train_loss", [], np.array(losses), ("step",),
            r"\mathcal{L}_k = \mathcal{L}(\theta_k),\ k = 0,\dots,K", r"\mathcal{L}", steps=cfg.train_steps)
    rec.add("train.target_prob.before", "train_prob", ["loss.target_prob"], before, ("batch", "tokens"),
            r"p_{\theta_0}(y_t)", r"p_0(y)")
    rec.add("train.target_prob.after", "train_prob", [], fw["target_prob"], ("batch", "tokens"),
            r"p_{\theta_K}(y_t)", r"p_K(y)", steps=cfg.train_steps)


def _skip(*args, **kwargs):
    pass


def _name_first_non_finite(p, ids, targets, cfg, axes, state, t):
    check = CheckRecorder().add
    try:
        fw = model.forward(p, ids, targets, cfg, check)
        grads = model.backward(p, ids, targets, fw, cfg, check)
        optimizer_step(p, grads, state, t, cfg.optimizer, axes, check)
    except NonFiniteError as exc:
        raise RunError(f"training run: a NaN or Inf first appeared in record {exc.name!r} at step {t} "
                       f"of train_steps {cfg.train_steps}; lower optimizer.lr") from None
    raise RunError(f"training run: a NaN or Inf appeared at step {t} of train_steps {cfg.train_steps}; "
                   "lower optimizer.lr")


def _init_formula(name: str, cfg: Config) -> str:
    std = cfg.model.init_std
    if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
        return r"\gamma = 1"
    if name.endswith(".bias"):
        return r"b = 0"
    if name.endswith("c_proj.weight"):
        return rf"W \sim \mathcal{{N}}\!\left(0,\ ({std}/\sqrt{{2\cdot{cfg.model.n_layers}}})^2\right)"
    return rf"W \sim \mathcal{{N}}(0,\ {std}^2)"
