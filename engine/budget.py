"""How much a run will hold and take, from the config alone, and a one-line refusal when it will not fit.

`count_values(cfg)` is the exact number of values `engine.run(cfg)` records (every size is a Python
int, so nothing overflows and nothing is allocated); `estimate(cfg)` turns it into bytes and seconds;
`check_budget(cfg)` raises `BudgetError` (a `ConfigError`: every handler of config errors catches it) when
the trace would not fit in the free memory or the work would take longer than `MAX_SECONDS`. The message
names the size that dominates the estimate, so the fix is obvious:

    configs/x.yaml: model.d_model: 100000 needs about 7.13 TiB for the trace, 20 GiB of memory is free:
        lower model.d_model (the largest term), or d_ff, data.texts, vocab      (one line)
    configs/x.yaml: train_steps: 100000000 would take about 45 h (about 1.6 ms a step); lower train_steps
        (about 1,000,000 fit in 30 min)
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from .config import Config, ConfigError
from .generate import words_to_generate
from .tokens import sequences
from .trace import INLINE_MAX_VALUES

# Peak memory of `handstep trace` (the run, then the save) per byte of recorded values. Measured with
# ru_maxrss in a fresh interpreter, minus the RSS after `import engine`, divided by 8 x count_values(cfg),
# for four configs of 26 M to 202 M values (GPT-2-small-shaped layer; 4 layers of 256; 2 layers of 1024
# with Adam; 4 texts of 256 tokens with 16 heads): the run alone peaks at 1.8-2.5 copies (the records,
# plus the forward caches they were copied from), the run plus the save at 3.0-3.05 (the records, the
# sidecar's byte blobs and their join). 3.5 leaves a margin above the worst of those.
COPIES = 3.5

# Time. A step costs NumPy calls (a fixed overhead each: the tiny default config is all overhead) plus
# arithmetic: BLAS matmuls, einsum weight gradients (NumPy's own loops, no BLAS) and elementwise passes
# (memory-bound: one value read and written per pass; GELU's tanh and x**3 count as ~45 passes). Measured
# on a 2-core x86_64 VM (Python 3.11, NumPy 2.4, OpenBLAS): ~0.6 µs per NumPy call on a small array plus
# ~1.5 µs of Python around it, 45-75 GFLOP/s for float64 matmuls, 6-9 GFLOP/s for einsum("bti,bto->io"),
# 0.5-3 ns per value of an elementwise pass (3 ns for exp, or when it allocates fresh pages). Then checked
# against 11 configs (default; 4 and 16 layers; d_model 64 to 768; 64 to 256 tokens; 16 heads; vocab 2048):
# the recorded step, a training step and the finite-difference check each came out at 1.05-3x the measured
# time on a quiet machine (the default config: ~0.38 s estimated in all, ~0.25 s measured). A busy machine
# (other jobs on the cores) measured up to 3x slower, so the throughputs are well below the peaks above.
CALL_SECONDS = 3e-6
BLAS_FLOPS = 20e9
EINSUM_FLOPS = 3e9
VALUE_SECONDS = 2e-9
MAX_SECONDS = 30 * 60  # longer than this is almost surely a typo (one zero too many)


class BudgetError(ConfigError):
    """The run would not fit in memory or time; the message is one line naming the size to lower."""


@dataclass(frozen=True)
class Estimate:
    values: int  # exactly what the trace's records hold
    bytes: int  # peak memory of the run and its save: values x 8 x COPIES
    step_seconds: float  # the recorded step (forward, backward, update, re-evaluation, recording)
    train_seconds: float  # the training run: train_steps updates and train_steps + 1 forward passes
    check_seconds: float  # the finite-difference check of the site build
    train_step_seconds: float  # one step of the training run
    spills: bool = False  # the values go to a temporary file as they are made (engine.trace.Recorder)
    disk: int = 0  # bytes of that file

    @property
    def seconds(self) -> float:
        return self.step_seconds + self.train_seconds + self.check_seconds


@dataclass(frozen=True)
class _Sizes:
    V: int  # vocab
    C: int  # d_model
    F: int  # d_ff
    P: int  # n_positions
    L: int  # n_layers
    H: int  # n_heads
    B: int  # texts
    T: int  # tokens: the longest text's words (<bos> + words, minus the last)
    steps: int  # train_steps
    opt: str  # adamw | adam | sgd | sgd+momentum
    tied: bool = True  # the output layer is the token table; else its own V x C matrix (lm_head.weight)
    llama: bool = False  # model.arch: llama (engine.model.llama_forward)
    G: int = 1  # key/value heads (llama; GPT-2's are its H heads)

    @property
    def K(self) -> int:
        """Width of a llama block's keys (and values): G heads of C / H."""
        return self.G * (self.C // self.H)


def _sizes(cfg: Config) -> _Sizes:
    m, o = cfg.model, cfg.optimizer
    opt = "sgd+momentum" if o.name == "sgd" and o.momentum else o.name
    return _Sizes(V=len(m.vocab or ()), C=m.d_model, F=m.d_ff, P=m.n_positions, L=m.n_layers, H=m.n_heads,
                  B=len(cfg.data.texts), T=max(len(s) for s in sequences(cfg)) - 1, steps=cfg.train_steps,
                  opt=opt, tied=m.tie_embeddings, llama=m.arch == "llama", G=m.kv_heads)


OPT_RECORDS = {"adamw": 5, "adam": 6, "sgd": 2, "sgd+momentum": 3}  # records per parameter (m, v, ..., updated)
OPT_PASSES = {"adamw": 16, "adam": 18, "sgd": 4, "sgd+momentum": 6}  # elementwise passes per parameter value


def _n_params(s: _Sizes) -> int:
    C, F = s.C, s.F
    if s.llama:  # wte (and lm_head); per block q, k, v, o, gate, up, down and two norms; the final norm
        return s.V * C * (1 if s.tied else 2) + s.L * (2 * C * C + 2 * s.K * C + 3 * C * F + 2 * C) + C
    return s.V * C * (1 if s.tied else 2) + s.P * C + s.L * (4 * C * C + 2 * C * F + 9 * C + F) + 2 * C


def _n_tensors(s: _Sizes) -> int:
    if s.llama:
        return 2 + 9 * s.L + (0 if s.tied else 1)
    return 4 + 12 * s.L + (0 if s.tied else 1)


def _values(s: _Sizes) -> int:
    """Every record's value.size, summed; mirrors engine.run and engine.model record by record."""
    V, C, L, B, T = s.V, s.C, s.L, s.B, s.T
    N = _n_params(s)
    BT, BTC, BTF, BTV, A = B * T, B * T * C, B * T * s.F, B * T * V, B * s.H * T * T
    inputs = 2 * BT  # input_ids, targets
    if s.llama:
        BTK = B * T * s.K
        # embed.out, rope.cos/sin; per block 15 (B, T, C) (the norms' x̂ and out, xq, q_heads, q, k_rep, v_rep,
        # context, merged, attn.out, resid_1, mlp.out, resid_2), 5 (B, T, K) (xk, xv, k_heads, v, k), 2 mean
        # squares, 4 attention maps and 4 (B, T, F); ln_f; logits, probs, target_prob, per_token, loss
        forward = (BTC + 2 * T * (C // s.H) + L * (15 * BTC + 5 * BTK + 2 * BT + 4 * A + 4 * BTF) + BT + 2 * BTC
                   + 2 * BTV + 2 * BT + 1)
        # every parameter's gradient, the tied shares, grad.logits, grad.ln_f.out/xhat and ln_f's input; per block
        # 21 (B, T, C), 5 (B, T, K), 4 attention maps and 4 (B, T, F)
        backward = N + (2 * V * C if s.tied else 0) + BTV + 3 * BTC + L * (21 * BTC + 5 * BTK + 4 * A + 4 * BTF)
        return N + inputs + forward + backward + _after(s, N)
    # embed.tok/pos/out; per block ln_1 (mean, var, xhat, out), qkv, q/k/v, 4 attention maps, context,
    # merged, attn.out, resid_1, ln_2, fc, gelu, mlp.out, resid_2; ln_f; logits, probs, target_prob, per_token, loss
    forward = 2 * BTC + T * C + L * (16 * BTC + 4 * A + 2 * BTF + 4 * BT) + 2 * BT + 2 * BTC + 2 * BTV + 2 * BT + 1
    # every parameter's gradient, grad.wte.from_logits/from_embed (tied only), grad.logits, grad.ln_f.out/xhat and
    # ln_f's input; per block 16 (B, T, C) gradients, 4 attention maps and 2 (B, T, F)
    backward = N + (2 * V * C if s.tied else 0) + BTV + 3 * BTC + L * (16 * BTC + 4 * A + 2 * BTF)
    return N + inputs + forward + backward + _after(s, N)


def _after(s: _Sizes, N: int) -> int:
    """The values of the records after the backward pass: the optimizer's, the evaluation's, the training run's."""
    BT, T = s.B * s.T, s.T
    optimizer = OPT_RECORDS[s.opt] * N
    evaluation = 2 * BT * s.V + 2 * BT + 1  # after.logits, after.probs, after.target_prob, after.per_token, after.loss
    # train.loss, train.target_prob.before/after, train.L{i}.attn.weights.after, train.generate.before/after
    train = s.steps + 1 + 2 * BT + s.L * s.B * s.H * T * T + 2 * T
    return optimizer + evaluation + train


def count_values(cfg: Config) -> int:
    """The exact number of values all records of `engine.run(cfg)` hold (sum of record.value.size).

    Pure integer arithmetic on the config's sizes: no array is made, and no size is too large.
    """
    return _values(_sizes(cfg))


def _n_records(s: _Sizes) -> int:
    shares = 2 if s.tied else 0  # grad.wte.from_logits and grad.wte.from_embed
    # each tensor: itself, its gradient and its optimizer records; then the activations and their gradients
    if s.llama:  # per block 30 forward records, 34 gradients and the trained model's attention
        return _n_tensors(s) * (2 + OPT_RECORDS[s.opt]) + 27 + shares + 65 * s.L
    return _n_tensors(s) * (2 + OPT_RECORDS[s.opt]) + 28 + shares + 45 * s.L


@dataclass(frozen=True)
class _Work:
    calls: int = 0  # NumPy calls
    blas: int = 0  # flops of BLAS matmuls
    einsum: int = 0  # flops of einsum weight gradients
    passes: int = 0  # values read and written by elementwise passes

    def __add__(self, o: _Work) -> _Work:
        return _Work(self.calls + o.calls, self.blas + o.blas, self.einsum + o.einsum, self.passes + o.passes)

    def seconds(self) -> Fraction:
        return (self.calls * Fraction(CALL_SECONDS) + self.blas / Fraction(BLAS_FLOPS)
                + self.einsum / Fraction(EINSUM_FLOPS) + self.passes * Fraction(VALUE_SECONDS))


def _forward(s: _Sizes) -> _Work:
    """One forward pass. BLAS: qkv 6BTC², attention output 2BTC², scores and context 4BT²C, MLP 4BTCF,
    logits 2BTCV. Passes: LayerNorms, residuals and head splits over (B, T, C); scale, mask and softmax
    over the attention maps; GELU over (B, T, F); softmax and cross-entropy over the logits; every
    weight read once (with few tokens the matmuls are bound by reading the weights)."""
    BT, C, F, V, L = s.B * s.T, s.C, s.F, s.V, s.L
    A = s.B * s.H * s.T * s.T
    if s.llama:  # projections 4BTC² + 4BTCK + 6BTCF; rotations, SiLU (an exp) and the norms over (B, T, C) and F
        return _Work(calls=30 + 80 * L,
                     blas=L * (4 * BT * C * C + 4 * BT * C * s.K + 4 * BT * s.T * C + 6 * BT * C * F) + 2 * BT * C * V,
                     passes=L * (45 * BT * C + 14 * A + 30 * BT * F) + 10 * BT * V + 3 * BT * C + _n_params(s))
    return _Work(calls=30 + 61 * L,
                 blas=L * (8 * BT * C * C + 4 * BT * s.T * C + 4 * BT * C * F) + 2 * BT * C * V,
                 passes=L * (30 * BT * C + 14 * A + 45 * BT * F) + 10 * BT * V + 3 * BT * C + _n_params(s))


def _backward(s: _Sizes) -> _Work:
    """One backward pass: every matmul's input gradient by BLAS, every weight gradient by einsum."""
    BT, C, F, V, L = s.B * s.T, s.C, s.F, s.V, s.L
    A = s.B * s.H * s.T * s.T
    if s.llama:
        matrices = 4 * BT * C * C + 4 * BT * C * s.K + 6 * BT * C * F
        return _Work(calls=30 + 110 * L, blas=L * (matrices + 8 * BT * s.T * C) + 2 * BT * C * V,
                     einsum=L * matrices + 2 * BT * C * V,
                     passes=L * (60 * BT * C + 16 * A + 40 * BT * F) + 8 * BT * V + 20 * BT * C + 3 * _n_params(s))
    return _Work(calls=30 + 80 * L,
                 blas=L * (8 * BT * C * C + 8 * BT * s.T * C + 4 * BT * C * F) + 2 * BT * C * V,
                 einsum=L * (8 * BT * C * C + 4 * BT * C * F) + 2 * BT * C * V,
                 passes=L * (40 * BT * C + 16 * A + 60 * BT * F) + 8 * BT * V + 20 * BT * C + 3 * _n_params(s))


def _optimizer(s: _Sizes) -> _Work:
    per_tensor = {"adamw": 16, "adam": 18, "sgd": 4, "sgd+momentum": 7}[s.opt]
    return _Work(calls=per_tensor * _n_tensors(s), passes=OPT_PASSES[s.opt] * _n_params(s))


def _picks(s: _Sizes) -> int:
    """Elements the finite-difference check takes when it covers every tensor: 1 + 3 per tensor (fewer in tiny ones)."""
    C, F = s.C, s.F
    block = [C, C, 3 * C * C, 3 * C, C * C, C, C, C, C * F, F, F * C, C]  # the tensors of one block
    outside = [s.V * C, s.P * C, C, C] + ([] if s.tied else [s.V * C])  # wte, wpe, ln_f, lm_head
    if s.llama:  # q, k, v, o, gate, up, down, the two norms; wte, ln_f, lm_head
        block = [C * C, s.K * C, s.K * C, C * C, F * C, F * C, C * F, C, C]
        outside = [s.V * C, C] + ([] if s.tied else [s.V * C])
    return sum(1 + min(3, n) for n in outside) + s.L * sum(1 + min(3, n) for n in block)


# The finite-difference check of a big model is held to about this many seconds (from the config's estimate, so a
# config always checks the same elements); a small model checks 1 + 3 elements of every tensor (engine.verify).
FD_SECONDS = 20.0
FD_MAX_ELEMENTS = 200


def _fd_allowed(s: _Sizes) -> int:
    return max(4, min(FD_MAX_ELEMENTS, int(FD_SECONDS / max(_float(_forward(s).seconds()), 1e-9) / 2)))


def _fd_forwards(s: _Sizes) -> int:
    """Forward passes of the finite-difference check: two per element, plus two for the directional check."""
    return 2 * min(_picks(s), _fd_allowed(s)) + 2


def fd_elements(cfg: Config) -> int | None:
    """How many elements the finite-difference check may take: None for 1 + 3 of every tensor, else the budget."""
    s = _sizes(cfg)
    allowed = _fd_allowed(s)
    return None if _picks(s) <= allowed else allowed


def _seconds(s: _Sizes) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """(recorded step, training run, finite-difference check, one training step), exact fractions."""
    fw = _forward(s)
    update = fw + _backward(s) + _optimizer(s)
    recording = _Work(calls=8 * _n_records(s), passes=4 * _values(s))  # asarray, isfinite, all, copy, ...
    step = (update + fw + recording).seconds()
    per_step = update.seconds()
    words = words_to_generate(s.T, _n_params(s))
    generate = 2 * words * _forward(replace(s, B=1)).seconds()  # greedy text before and after: a pass a word
    train = per_step * s.steps + fw.seconds() + generate
    check = fw.seconds() * _fd_forwards(s)
    return step, train, check, per_step


def _float(x: Fraction | int) -> float:
    try:
        return float(x)
    except OverflowError:
        return math.inf


def _bytes(values: int) -> int:
    return math.ceil(values * 8 * Fraction(COPIES))


def _spills(s: _Sizes) -> bool:
    return _values(s) > INLINE_MAX_VALUES


def _memory(s: _Sizes) -> int:
    """Peak bytes in RAM. A small run keeps every record (COPIES per value); a run that spills its values to a
    file keeps the working set: the parameters, their gradients, the update and the training run's state
    (about six copies of the parameters) plus the activations twice (the tape, and small records)."""
    values = _values(s)
    if not _spills(s):
        return _bytes(values)
    n = _n_params(s)
    activations = values - (2 + OPT_RECORDS[s.opt]) * n
    return 8 * (6 * n + 3 * max(activations, 0)) + 200 * 2**20  # plus the interpreter and NumPy


def free_disk(folder: str | Path | None) -> int | None:
    try:
        return shutil.disk_usage(folder or tempfile.gettempdir()).free
    except OSError:
        return None


def estimate(cfg: Config) -> Estimate:
    """Values, bytes and seconds of `engine.run(cfg)` and the build's finite-difference check."""
    s = _sizes(cfg)
    values = _values(s)
    step, train, check, per_step = _seconds(s)
    return Estimate(values=values, bytes=_memory(s), step_seconds=_float(step), train_seconds=_float(train),
                    check_seconds=_float(check), train_step_seconds=_float(per_step), spills=_spills(s),
                    disk=8 * values if _spills(s) else 0)


def available_memory() -> int | None:
    """Bytes of memory free for a new process: MemAvailable, capped by a cgroup limit; None when unknown."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:  # a container's limit (cgroup v2) is often far below the machine's free memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            free = min(free, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return free


# The sizes a user can lower, as the config names them, and the _Sizes fields each one sets.
KNOBS = {"model.d_model": ("C",), "model.d_ff": ("F",), "model.n_layers": ("L",), "model.n_positions": ("P",),
         "model.n_heads": ("H",), "model.vocab": ("V",), "data.texts": ("B", "T"), "train_steps": ("steps",)}
DEFAULT_SIZES = _sizes(Config())
# With `model.from`, the checkpoint's config.json sets the model's sizes (the config may not give them): a message
# names them there, as config.json does. Only data.texts and train_steps are the config's to lower.
CHECKPOINT_KEYS = {"model.d_model": "n_embd", "model.d_ff": "n_inner", "model.n_layers": "n_layer",
                   "model.n_positions": "n_positions", "model.n_heads": "n_head", "model.vocab": "vocab_size"}
LLAMA_CHECKPOINT_KEYS = {"model.d_model": "hidden_size", "model.d_ff": "intermediate_size",
                         "model.n_layers": "num_hidden_layers", "model.n_positions": "max_position_embeddings",
                         "model.n_heads": "num_attention_heads", "model.vocab": "vocab_size"}


def _lowered(s: _Sizes, key: str, to_default: bool) -> _Sizes:
    """`s` with one knob back at its default (when larger), or halved."""
    if to_default:
        return replace(s, **{f: min(getattr(s, f), getattr(DEFAULT_SIZES, f)) for f in KNOBS[key]})
    return replace(s, **{f: getattr(s, f) // 2 if f == "steps" else max(1, (getattr(s, f) + 1) // 2)
                         for f in KNOBS[key]})


def _shown(key: str, s: _Sizes, unit: str = "words") -> str:
    value = {"model.d_model": s.C, "model.d_ff": s.F, "model.n_layers": s.L, "model.n_positions": s.P,
             "model.n_heads": s.H, "train_steps": s.steps}.get(key)
    if value is not None:
        return str(value) if value.bit_length() <= 60 else _count(value)  # as the config gives it
    if key == "model.vocab":
        return f"{_count(s.V)} {unit}"
    return f"{_count(s.B)} text{'s' * (s.B != 1)} of up to {_count(s.T)} {unit}"


def _advice(s: _Sizes, cost, checkpoint: str | None = None) -> tuple[str, str, str]:
    """(the dominant key, where the message starts: that key and its value, advice naming it first and then the
    other sizes that would help) for a cost.

    The dominant key is the one whose return to its default value saves the most (a huge n_positions is
    named even though halving d_model would also halve the position table); the others are ranked by
    what halving each would save. With a `checkpoint` (model.from) the model's sizes are its config.json's: one of
    them is named there, and only the config's own sizes are offered to lower.
    """
    base = cost(s)
    back = {k: base - cost(_lowered(s, k, True)) for k in KNOBS}
    halved = {k: base - cost(_lowered(s, k, False)) for k in KNOBS}
    top = max(KNOBS, key=lambda k: (back[k], halved[k]))
    others = sorted((k for k in KNOBS if k != top and halved[k] > 0), key=lambda k: -halved[k])
    if checkpoint is None:
        names = [k.removeprefix("model.") for k in others[:3]]
        return top, f"{top}: {_shown(top, s)}", f"lower {top} (the largest term)" + (
            f", or {', '.join(names)}" if names else "")
    own = [k for k in others if k not in CHECKPOINT_KEYS]
    if top not in CHECKPOINT_KEYS:
        return top, f"{top}: {_shown(top, s, 'tokens')}", f"lower {top} (the largest term)" + (
            f", or {', '.join(own)}" if own else "")
    name = (LLAMA_CHECKPOINT_KEYS if s.llama else CHECKPOINT_KEYS)[top]
    four = top == "model.d_ff" and not s.llama  # GPT-2's n_inner may be null: 4 × n_embd
    value = _shown(top, s, "tokens").removesuffix(" tokens") + (" (4 × n_embd)" if four else "")
    where = f"model.from: {Path(checkpoint) / 'config.json'}: {name} {value}"
    return top, where, (f"the checkpoint is too large ({name} is the largest term); use a smaller "
                        "checkpoint" + (f", or lower {' or '.join(own)}" if own else ""))


def check_budget(cfg: Config, available_bytes: int | None = None, max_seconds: float = MAX_SECONDS,
                 spill_dir: str | Path | None = None, available_disk: int | None = None) -> Estimate:
    """Raise BudgetError when the trace would not fit in free memory or the work would take too long.

    The work is the recorded step, the training run and the build's finite-difference check, together.

    Nothing is allocated: every figure comes from the config's sizes. `available_bytes` overrides the free
    memory read from the system, `available_disk` the free disk where a big run's values go (tests). Returns the
    estimate when the run fits.
    """
    label = cfg.source or "<config>"
    s = _sizes(cfg)
    values = _values(s)
    need = _memory(s)
    free = available_memory() if available_bytes is None else available_bytes
    ck = cfg.model.checkpoint
    if free is not None and need > free:
        key, where, advice = _advice(s, _memory, ck)
        raise BudgetError(f"{label}: {where} needs about {_size(need)} for the trace, "
                          f"{_size(free)} of memory is free: {advice}")
    disk = 8 * values if _spills(s) else 0
    room = (free_disk(spill_dir) if available_disk is None else available_disk) if disk else None
    if room is not None and disk * 1.05 > room:
        key, where, advice = _advice(s, _values, ck)
        folder = spill_dir or tempfile.gettempdir()
        raise BudgetError(f"{label}: {where} needs about {_size(disk)} of disk for the trace's "
                          f"values, {_size(room)} is free in {folder}: {advice}")
    step, train, check, per_step = _seconds(s)
    limit = Fraction(max_seconds)
    total = step + train + check
    if total <= limit:
        return Estimate(values, need, _float(step), _float(train), _float(check), _float(per_step), bool(disk), disk)
    key, where, advice = _advice(s, lambda z: sum(_seconds(z)[:3]), ck)
    fixed = total - per_step * s.steps  # what train_steps 0 would still take
    if key == "train_steps" and fixed + per_step <= limit:
        fit = int((limit - fixed) / per_step)
        raise BudgetError(f"{label}: train_steps: {_shown(key, s)} would take about {_duration(_float(total))} "
                          f"(about {_duration(_float(per_step))} a step); lower train_steps "
                          f"(about {_count(_round_down(fit))} fit in {_duration(max_seconds)})")
    raise BudgetError(f"{label}: {where} would take about {_duration(_float(total))} "
                      f"(recorded step {_duration(_float(step))}, training run {_duration(_float(train))}, "
                      f"finite-difference check {_duration(_float(check))}), over the limit of "
                      f"{_duration(max_seconds)}; {advice}")


def _round_down(n: int) -> int:
    """Down to two significant digits: 2,047,118 -> 2,000,000; 1,890 -> 1,800."""
    if n < 100:
        return n
    scale = 10 ** (len(str(n)) - 2)
    return n // scale * scale


def _count(n: int) -> str:
    """1,234,567; past 10^18 as 1.2e+45 (never str() of an int past Python's digit limit)."""
    if n.bit_length() > 60:
        f = _float(n)
        return f"{f:.2g}" if math.isfinite(f) else f"about 2^{n.bit_length() - 1}"
    return f"{n:,}"


def _num(x: float) -> str:
    """2 significant digits below 10, whole numbers up to a million, then 1.2e+07."""
    return f"{x:.2g}" if x < 10 or x >= 1e6 else f"{round(x):,}"


def _size(n: int) -> str:
    """224 GiB, 18.6 GiB, 512 MiB, 1.2e+12 EiB."""
    x = _float(n)
    if not math.isfinite(x):
        return f"2^{n.bit_length() - 1} bytes"
    if x < 1024:
        return f"{int(x)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        x /= 1024
        if x < 1024 or unit == "EiB":
            return f"{x:.3g} {unit}" if x < 100 else f"{_num(x)} {unit}"
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    """0.9 ms, 12 s, 4.5 min, 26 h, 3.2 days, 1.2e+07 years."""
    if not math.isfinite(seconds):
        return "forever"
    for limit, div, unit in ((1e-3, 1e-6, "µs"), (1, 1e-3, "ms"), (60, 1, "s"), (3600, 60, "min"),
                             (2 * 86400, 3600, "h"), (365 * 86400, 86400, "days")):
        if seconds < limit:
            return f"{_num(seconds / div)} {unit}"
    return f"{_num(seconds / (365 * 86400))} years"
