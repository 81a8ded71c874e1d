"""One complete training step, recorded: tokenize → init → forward → loss → backward → update → re-evaluate,
then a separate unrecorded `train_steps` run for the training-run page, which records its loss per step, the
predictions and attention weights of the trained model, and greedy text from `<bos>` before and after it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import model, ops
from .budget import check_budget
from .checkpoint import CheckpointError
from .config import Config
from .generate import generate, words_to_generate
from .layers import cross_entropy_forward
from .optim import decays, optimizer_step
from .tape import BHTS, BT
from .tokens import IGNORE, labels, tokenize
from .trace import NonFiniteError, Recorder, Trace, check_only

Progress = Callable[[str, int, int], None]  # progress(phase, done, total)


class RunError(Exception):
    """The run could not finish (a NaN or Inf appeared); the message is one line."""


def run(cfg: Config, progress: Progress | None = None, spill_dir: str | Path | None = None,
        values_path: str | Path | None = None, on_gradients: Callable[[Trace], None] | None = None) -> Trace:
    """Run one recorded training step and the training run; return the trace.

    Refuses (BudgetError, one line) a config whose trace would not fit in memory or would take too long,
    before anything is allocated. `progress(phase, done, total)`, when given, is called as the work goes:
    phase "step" (0 then 1 of 1) and "training run" (0, then every 1/100 of train_steps, then the last).

    A big run's values go to a file as they are made (see trace.Recorder): `values_path` when given (the caller
    keeps it, e.g. as a cached run's sidecar; it is removed if the run fails), else a temporary file in
    `spill_dir` that goes with the trace.

    `on_gradients(trace)`, when given, is called as soon as the gradients are recorded, with a trace of the records
    so far (the weights, the forward pass, the gradients): a caller can check the gradients while the optimizer
    step and the rest of the run go on (the build's finite differences do, for a big run).
    """
    if values_path is not None:
        spill_dir = Path(values_path).parent
    estimate = check_budget(cfg, spill_dir=spill_dir)
    spill = None
    if estimate.spills and values_path is not None:
        spill = open(values_path, "w+b")  # noqa: SIM115 - the trace holds it open: its records map it
    elif estimate.spills:
        spill = tempfile.TemporaryFile(dir=spill_dir)  # noqa: SIM115 - likewise, and it goes with the trace
    with np.errstate(all="ignore"):  # a NaN or Inf is reported by name (NonFiniteError), not as a warning
        try:
            return _run(cfg, progress or _skip, spill, on_gradients)
        except BaseException as exc:
            if spill is not None and values_path is not None:
                spill.close()
                Path(values_path).unlink(missing_ok=True)
            if isinstance(exc, RunError):
                raise RunError(f"{cfg.source}: {exc}" if cfg.source else str(exc)) from None
            raise


def _run(cfg: Config, progress: Progress, spill: BinaryIO | None,
         on_gradients: Callable[[Trace], None] | None = None) -> Trace:
    ids, targets = tokenize(cfg)
    specs = model.param_specs(cfg)
    axes = {name: ax for name, _, _, ax in specs}
    progress("step", 0, 1)
    params = model.init_params(cfg)
    if cfg.model.checkpoint:
        _check_weights(cfg, params, specs)
    rec = Recorder(lambda name, op: ops.describe(name, op, cfg), spill)
    try:
        for name, _, _, ax in specs:
            init = {"source": "checkpoint"} if cfg.model.checkpoint else {"init_std": cfg.model.init_std}
            rec.add(name, params[name], op="param", axes=ax, decays=decays(params[name], cfg.optimizer.decay), **init)
        rec.add("input_ids", ids, op="input", axes=BT)
        rec.add("targets", targets, op="input", axes=BT, ignore=IGNORE)
        t = model.tape(cfg, params, ids, targets, rec.add)
        model.forward(t, cfg)
        rec.phase = "backward"
        grads = model.backward(t, cfg)
        if on_gradients is not None:
            on_gradients(Trace(cfg.to_dict(), labels(cfg, ids, targets), list(rec.records), {}, values_file=spill))
        rec.phase = "optimizer"
        new = optimizer_step(params, grads, None, 1, cfg.optimizer, axes, rec.add)  # its m and v: in the trace
        rec.phase = "evaluation"
        evaluate(new, ids, targets, cfg, rec)
    except NonFiniteError as exc:
        raise RunError(_non_finite(cfg, exc.name, rec.phase, exc.name in params)) from None
    progress("step", 1, 1)
    before = t.v["loss.target_prob"]
    del t, grads, new  # the recorded step's working values: a big model's training run needs the room
    rec.phase = "train"
    train(params, ids, targets, cfg, rec, axes, before=before, progress=progress)
    index = {key: {"initial": name, "grad": f"grad.{name}", "updated": f"updated.{name}"}
             for name, key, _, _ in specs}
    index.update({"input_ids": "input_ids", "targets": "targets", "logits": "logits", "loss": "loss"})
    rec.finish()
    return Trace(cfg.to_dict(), labels(cfg, ids, targets), rec.records, index, values_file=spill)


def _check_weights(cfg: Config, params: dict[str, np.ndarray], specs) -> None:
    """Refuse a checkpoint whose weights hold a NaN or an infinity, naming the tensor as the file does."""
    for name, key, _, _ in specs:
        value = params[name]
        if np.isfinite(value).all():
            continue
        bad = np.argwhere(~np.isfinite(value))
        first = tuple(int(i) for i in bad[0])
        what = "NaN" if np.isnan(value[first]) else "inf" if value[first] > 0 else "-inf"
        raise CheckpointError(f"{cfg.source or '<config>'}: model.from: "
                              f"{Path(cfg.model.checkpoint or '') / 'model.safetensors'}: tensor {key} holds {what} "
                              f"(first at {list(first)}; {len(bad):,} of its {value.size:,} values not finite); "
                              "the checkpoint is damaged: download or save it again")


def _non_finite(cfg: Config, name: str, phase: str, initial: bool) -> str:
    """The line for a NaN or Inf in the recorded step, naming what to change. The forward and backward passes depend
    on the initial weights alone (model.init_std, or a checkpoint's weights), the update and the re-evaluation after
    it on the optimizer too."""
    found = f"a NaN or Inf appeared in record {name!r}"
    if phase in ("optimizer", "evaluation"):
        when = "of the update" if phase == "optimizer" else "when the updated weights were evaluated"
        return f"optimizer.lr: {found} {when}; lower optimizer.lr (now {cfg.optimizer.lr:g})"
    if cfg.model.checkpoint:  # its weights are finite (_check_weights), but too large to compute with
        return (f"model.from: {cfg.model.checkpoint}: {found} of the {phase} pass, computed from the checkpoint's "
                "weights alone: they are too large; use another checkpoint")
    if initial:
        return (f"model.init_std: {cfg.model.init_std:g} draws initial weights too large for a number ({found}); "
                "lower model.init_std")
    return f"model.init_std: {found} of the {phase} pass; lower model.init_std (now {cfg.model.init_std:g})"


def evaluate(params, ids, targets, cfg, rec):
    """The forward pass re-run on the updated weights: did the step lower the loss?"""
    t = model.tape(cfg, params, ids, targets, check_only)
    model.forward(t, cfg)
    probs, target_prob, per_token, loss = cross_entropy_forward(t.v["logits"], targets)
    BTV = ("batch", "tokens", "vocab")
    rec.add("after.logits", t.v["logits"], op="forward", axes=BTV)
    rec.add("after.probs", probs, op="softmax", inputs=("after.logits",), axes=BTV)
    rec.add("after.target_prob", target_prob, op="gather", inputs=("after.probs", "targets"), axes=BT)
    rec.add("after.per_token", per_token, op="cross_entropy", inputs=("after.logits", "targets"), axes=BT)
    rec.add("after.loss", np.float64(loss), op="loss_mean", inputs=("after.per_token", "targets"))


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
    for step in range(1, cfg.train_steps + 2):
        t = model.tape(cfg, p, ids, targets)
        loss = t.v[model.forward(t, cfg)]
        if not np.isfinite(loss):
            _name_first_non_finite(p, ids, targets, cfg, axes, dict(state), step)
        losses.append(loss)
        if step == cfg.train_steps + 1:
            break
        grads = model.backward(t, cfg)
        new = optimizer_step(p, grads, state, step, cfg.optimizer, axes)
        del grads  # not kept into the next step: GPT-2's are 1 GB
        if not all(np.isfinite(v).all() for v in new.values()):
            # the state before this step is made again: a copy kept at every step would be 2 GB more for GPT-2
            before_state = _state_before(params, ids, targets, cfg, axes, step)
            _name_first_non_finite(p, ids, targets, cfg, axes, before_state, step)
        p = new
        if step % every == 0 or step == total:
            progress("training run", step, total)
    rec.add("train.loss", np.array(losses), op="train_loss", axes=("step",), steps=cfg.train_steps)
    rec.add("train.target_prob.before", before, op="train_prob", inputs=("loss.target_prob",), axes=BT)
    rec.add("train.target_prob.after", t.v["loss.target_prob"], op="train_prob", axes=BT, steps=cfg.train_steps)
    for i in range(cfg.model.n_layers):  # the attention of the trained model, from the last forward pass above
        rec.add(f"train.L{i}.attn.weights.after", t.v[f"L{i}.attn.weights"], op="train_attention", axes=BHTS,
                steps=cfg.train_steps)
    length = words_to_generate(ids.shape[1], sum(v.size for v in params.values()))
    before_words = generate(params, cfg, ids[0, 0], length)
    after_words = generate(p, cfg, ids[0, 0], length) if cfg.train_steps else before_words.copy()  # same weights
    rec.add("train.generate.before", before_words, op="generate", axes=("generated",), weights="initial")
    rec.add("train.generate.after", after_words, op="generate", axes=("generated",), weights="trained",
            steps=cfg.train_steps)


def _skip(*args, **kwargs):
    pass


def _state_before(params, ids, targets, cfg, axes, step):
    """The optimizer state (m, v or momentum) before `step` of the training run, made again from the start: the
    same arithmetic on the same numbers, so the same state the run had."""
    state: dict = {}
    p = params
    for k in range(1, step):
        t = model.tape(cfg, p, ids, targets)
        model.forward(t, cfg)
        p = optimizer_step(p, model.backward(t, cfg), state, k, cfg.optimizer, axes)
    return state


def _name_first_non_finite(p, ids, targets, cfg, axes, state, step):
    try:
        t = model.tape(cfg, p, ids, targets, check_only)
        model.forward(t, cfg)
        grads = model.backward(t, cfg)
        optimizer_step(p, grads, state, step, cfg.optimizer, axes, check_only)
    except NonFiniteError as exc:
        raise RunError(f"training run: a NaN or Inf first appeared in record {exc.name!r} at step {step} "
                       f"of train_steps {cfg.train_steps}; lower optimizer.lr") from None
    raise RunError(f"training run: a NaN or Inf appeared at step {step} of train_steps {cfg.train_steps}; "
                   "lower optimizer.lr")
