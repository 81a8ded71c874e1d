"""The op kinds: one entry per kind of record (the `op` of a trace record), holding every part the engine and the
site need of it. Nothing else is keyed by an op kind's name, but its explanation in engine/explain/ops.yaml (data
the browser reads too), which the entry reaches.

    kind("softmax").pairs          the NumPy forward/backward pairs of engine/layers.py that make its records
    kind("softmax").notation       the function of engine/notation.py that gives its records' formula and symbol
    kind("softmax").explanation    its per-element description in engine/explain/ops.yaml (the data both
                                   explainers read: interpret.py for the pages, interpret.js in the browser)
    kind("softmax").numpy          its record's NumPy line(s), from a `Line` (engine.numpy_steps, the notebook)
    kind("softmax").exercise       what the exercises ask about one of its records (a `Rule`)
    kind("softmax").drill          its pen-and-paper drill (a function of engine/drills.py)

A part a kind honestly does not have is `No("why")` (false in an `if`), never left out: a backward or optimizer op
has no pair of its own, a given value no drill. `kind(op)` raises for an op with no entry, so whatever walks the
records (the exercises, the notebook, the trace's recorder) fails on a new op kind until it has one;
tests/engine/test_ops_registry.py checks every entry has every part and every op of several configs' traces has an
entry. To add an op kind, follow docs/architecture.md ("Add an op kind").
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import drills
from . import layers as L
from . import notation as N
from .config import Config
from .explain import ops as descriptions

Pair = tuple[Callable[..., Any], Callable[..., Any]]


@dataclass(frozen=True)
class No:
    """A part an op kind does not have, and why: `drill=No("a given value: nothing to work out by hand")`."""

    why: str

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer to a value question about a record of one op kind: `value`, an expression of the op's
    description (engine/explain/ops.yaml: its `let` names, i, x, meta; engine.explain.evaluate) that gives it,
    where `when` (an expression too, "" for always) holds. An element whose tolerance cannot tell the mistake from
    the right answer is not asked about: where γ is exactly 1, "γ left out" gives the answer, and a question that
    multiplies by 1 gives itself away. A term that may be exactly zero with nothing given away (a linear layer's
    bias at initialisation: the question is still the dot product) says so in `when`."""

    what: str
    value: str
    when: str = ""


@dataclass(frozen=True)
class Rule:
    """What the exercises ask about a record of one op kind: `rank` orders the questions of a page (the most
    instructive step first); `choice` is "sign", "argmax" or ""; `what` names the element in a question."""

    rank: int
    choice: str = ""
    what: str = "this entry"
    at: Callable[[Any], tuple[int, ...] | None] | None = None  # the element to ask for (default: a seeded pick)
    value: bool = True  # ask for the value itself (not for a number that is only stored, not computed)
    lookup: bool = False  # the element is a copy of one input entry: say where to look, not what is there
    noun: str = "value"  # what the largest entry of a row is called in an argmax answer (a row over keys: "weight")
    keeps_order: bool = False  # its largest output is its largest input's: an argmax question says to predict it
    # the typical wrong answers a value question must grade wrong (besides the wrong sign, which every one must)
    mistakes: tuple[Mistake, ...] = ()
    transposed: bool = False  # a product with a square matrix: reading it the wrong way round (W for Wᵀ) is a mistake
    # a sign question: the signed contributions that add up to the element (an expression, like Mistake.value); it
    # is asked only where they have both signs, so the sign is not one input's, visible on the page
    parts: str = ""


class NumpyStepError(Exception):
    """A record that has no NumPy line: its kind says why (`numpy=No(...)`), or its step is not the first."""


@dataclass(frozen=True)
class Line:
    """What a record's NumPy line is written from: the record and the shapes of its inputs. The values live in a
    dict `v` (record name -> array): `out` is `v["name"]`, `x` the inputs' `v[...]`."""

    rec: Any
    shapes: dict[str, tuple[int, ...]]

    @property
    def out(self) -> str:
        return ref(self.rec.name)

    @property
    def x(self) -> list[str]:
        return [ref(n) for n in self.rec.inputs]

    @property
    def meta(self) -> dict[str, Any]:
        return self.rec.meta

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.rec.value.shape)

    def product(self, n: int | None = None) -> str:
        """The einsum of `meta` over the first `n` inputs (all by default), written as the engine computes it."""
        names = self.rec.inputs[:n]
        return contraction(self.meta["einsum"], self.x[:n], [self.shapes[k] for k in names], self.shape)

    def first_step(self) -> None:
        """Moments start at zero on the first step only: a later step's line would need the earlier ones."""
        if self.meta.get("step", 1) != 1:
            raise NumpyStepError(f"{self.rec.name}: only the first step (where the moments start at zero) is recorded")


@dataclass(frozen=True)
class OpKind:
    """Every part of one op kind (see the module's docstring); each is present or `No(why)`."""

    name: str
    pairs: tuple[Pair, ...] | No
    notation: N.Namer
    numpy: Callable[[Line], list[str]] | No
    exercise: Rule | No
    drill: Callable[[random.Random, dict], drills.Drill] | No

    @property
    def explanation(self) -> dict[str, Any]:
        """Its description of one element (engine/explain/ops.yaml)."""
        found = descriptions()["ops"].get(self.name)
        if found is None:
            raise KeyError(f"no explanation for op {self.name!r}: describe it in engine/explain/ops.yaml")
        return found


# -- the vocabulary of the NumPy lines ----------------------------------------------------------------------------
def q(name: str) -> str:
    """A record name as a Python string literal."""
    return json.dumps(name)


def ref(name: str, var: str = "v") -> str:
    """`v["name"]`."""
    return f"{var}[{q(name)}]"


def load(r: Line) -> list[str]:
    """A value the notebook reads from the trace file (`T`) rather than computes: the weights and the batch."""
    return [f"{r.out} = T[{q(r.rec.name)}]"]


def contraction(spec: str, operands: list[str], shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> str:
    """A NumPy expression for `np.einsum(spec, *operands)`, written as the engine computes it: a batched matrix
    product, rows (batch × tokens) times a matrix, a product summed over axes, or an elementwise product."""
    lhs, out = spec.split("->")
    specs = lhs.split(",")
    if len(specs) == 1:
        (a,) = specs
        summed = tuple(i for i, ch in enumerate(a) if ch not in out)
        if [ch for ch in a if ch in out] == list(out) and summed:
            return f"{operands[0]}.sum(axis={_axes(summed)})"
    elif len(specs) == 2:
        a, b = specs
        A, B = operands
        summed = [ch for ch in a + b if ch not in out]
        if not summed:  # an elementwise product, the second broadcast over the leading axes of the first
            if a == out and out.endswith(b):
                return f"{A} * {B}"
        elif a == b and set(out) <= set(a):  # a product summed over the axes not kept
            axes = tuple(i for i, ch in enumerate(a) if ch not in out)
            if [ch for ch in a if ch in out] == list(out):
                return f"({A} * {B}).sum(axis={_axes(axes)})"
        batch = out[:-2]
        if len(a) == len(b) == len(out) >= 3 and a[:-2] == b[:-2] == batch:  # batched matrix product
            m, n = out[-2:]
            k = [ch for ch in a[-2:] if ch not in out]
            if len(k) == 1 and sorted(a[-2:]) == sorted(m + k[0]) and sorted(b[-2:]) == sorted(k[0] + n):
                left = A if a[-2:] == m + k[0] else f"{A}.swapaxes(-1, -2)"
                right = B if b[-2:] == k[0] + n else f"{B}.swapaxes(-1, -2)"
                return f"{left} @ {right}"
        lead = a[:-1]
        if len(lead) >= 1 and len(b) == 2 and out == lead + out[-1:] and len(out) == len(a):
            # rows (every leading axis at once) times a matrix, as one product
            i, o = a[-1], out[-1]
            if sorted(b) == sorted(i + o) and i != o:
                right = B if b == i + o else f"{B}.T"
                dims = ", ".join(map(str, out_shape))
                return f"({A}.reshape(-1, {shapes[0][-1]}) @ {right}).reshape({dims})"
        if len(out) == 2 and a[:-1] == b[:-1] and len(a) >= 2 and out == a[-1] + b[-1]:
            # rows of one times rows of the other, summed over every leading axis
            return f"{A}.reshape(-1, {shapes[0][-1]}).T @ {B}.reshape(-1, {shapes[1][-1]})"
    return f"np.einsum({q(spec)}, {', '.join(operands)})"


def _axes(axes: tuple[int, ...]) -> str:
    return str(axes[0]) if len(axes) == 1 else f"({', '.join(map(str, axes))})"


def _tril(n: int) -> str:
    return f"np.tril(np.ones(({n}, {n}), dtype=bool))"


def _factor(factor: float) -> str:
    """A scale as `(1 / np.sqrt(d))` when it is exactly that, else its value."""
    d = round(1.0 / (factor * factor))
    return f"(1 / np.sqrt({d}))" if d >= 1 and 1.0 / math.sqrt(d) == factor else repr(factor)


def _gelu_k(k: float) -> str:
    return "np.sqrt(2 / np.pi)" if k == math.sqrt(2.0 / math.pi) else repr(k)


# -- the NumPy lines of the kinds that take more than one expression --------------------------------------------
def _embedding(r: Line) -> list[str]:
    if len(r.x) == 2:  # the token table, row by input id
        return [f"{r.out} = {r.x[0]}[{r.x[1]}]"]
    return [f"{r.out} = {r.x[0]}[:{r.shape[0]}]"]  # the position table: one row per position


def _forward(r: Line) -> list[str]:  # the forward pass again, on the updated weights (numpy_steps.forward_function)
    return [f"{r.out} = forward(updated_weights(v))[{q(r.rec.name.split('.', 1)[-1])}]"]


def _split_heads(r: Line) -> list[str]:
    B, H, T, D = r.shape
    src = r.x[0]
    if r.meta.get("part") is not None:  # Q, K or V: its third of the packed columns
        lo = int(r.meta["part"]) * H * D
        src = f"{src}[..., {lo}:{lo + H * D}]"
    return [f"{r.out} = {src}.reshape({B}, {T}, {H}, {D}).transpose(0, 2, 1, 3)"]


def _merge_qkv(r: Line) -> list[str]:
    B, T, width = r.shape
    names = ", ".join(q(n) for n in r.rec.inputs)
    return [f"{r.out} = np.concatenate([v[n].transpose(0, 2, 1, 3).reshape({B}, {T}, {width // 3}) "
            f"for n in ({names})], axis=-1)"]


def _gelu(r: Line) -> list[str]:
    k, c = _gelu_k(r.meta["k"]), repr(r.meta["c"])
    return [f"u = {r.x[0]}", f"{r.out} = 0.5 * u * (1.0 + np.tanh({k} * (u + {c} * (u * u * u))))"]


def _gather(r: Line) -> list[str]:
    return [f"y = {r.x[1]}",
            f"{r.out} = np.where(y >= 0, np.take_along_axis({r.x[0]}, np.where(y >= 0, y, 0)[..., None], "
            "axis=-1)[..., 0], 0.0)"]


def _cross_entropy(r: Line) -> list[str]:
    return [f"z, y = {r.x[0]}, {r.x[1]}",
            "m = z.max(axis=-1)",
            "lse = m + np.log(np.exp(z - m[..., None]).sum(axis=-1))",
            f"{r.out} = np.where(y >= 0, lse - np.take_along_axis(z, np.where(y >= 0, y, 0)[..., None], "
            "axis=-1)[..., 0], 0.0)"]


def _cross_entropy_backward(r: Line) -> list[str]:
    return [f"y = {r.x[1]}",
            f"onehot = np.eye({r.shape[-1]})[np.where(y >= 0, y, 0)]",
            f"{r.out} = np.where((y >= 0)[..., None], ({r.x[0]} - onehot) / (y >= 0).sum(), 0.0)"]


def _layernorm_backward(r: Line) -> list[str]:
    return [f"g, xh = {r.x[0]}, {r.x[1]}",
            f"rstd = 1.0 / np.sqrt({r.x[2]}[..., None] + {r.meta['eps']!r})",
            f"{r.out} = rstd * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))"]


def _gelu_backward(r: Line) -> list[str]:
    k, c = _gelu_k(r.meta["k"]), repr(r.meta["c"])
    return [f"g, u = {r.x[0]}, {r.x[1]}",
            f"th = np.tanh({k} * (u + {c} * (u * u * u)))",
            f"{r.out} = g * (0.5 * (1.0 + th) + 0.5 * u * ((1.0 - th * th) * {k} * (1.0 + 3.0 * {c} * (u * u))))"]


def _embedding_backward(r: Line) -> list[str]:
    if len(r.x) == 2:  # scatter-add: a word used at several positions gets the sum of their rows
        return [f"{r.out} = np.zeros({r.shape})", f"np.add.at({r.out}, {r.x[1]}, {r.x[0]})"]
    T = r.shapes[r.rec.inputs[0]][1]
    return [f"{r.out} = np.zeros({r.shape})", f"{r.out}[:{T}] = {r.x[0]}.sum(axis=0)"]


def _adam_m(r: Line) -> list[str]:
    r.first_step()
    return [f"{r.out} = (1 - {r.meta['beta']!r}) * {r.x[0]}"]


def _adam_v(r: Line) -> list[str]:
    r.first_step()
    return [f"{r.out} = (1 - {r.meta['beta']!r}) * {r.x[0]} * {r.x[0]}"]


def _bias_corrected(r: Line) -> list[str]:
    return [f"{r.out} = {r.x[0]} / (1 - {r.meta['beta']!r} ** {r.meta['step']})"]


def _adam_update(decoupled: bool) -> Callable[[Line], list[str]]:
    """Adam's update; AdamW's (`decoupled`) also shrinks the weight by its own weight decay."""

    def lines(r: Line) -> list[str]:
        lr, wd, eps = repr(r.meta["lr"]), r.meta.get("wd", 0.0), repr(r.meta["eps"])
        decayed = f"{r.x[0]} * (1 - {lr} * {wd!r})" if decoupled and wd else r.x[0]
        return [f"{r.out} = {decayed} - {lr} * {r.x[1]} / (np.sqrt({r.x[2]}) + {eps})"]

    return lines


def _sgd_buf(r: Line) -> list[str]:
    r.first_step()
    return [f"{r.out} = {r.x[0]}.copy()  # step 1: the momentum buffer starts at the gradient"]


# -- Llama's kinds ----------------------------------------------------------------------------------------------
def _rope_table(r: Line) -> list[str]:
    T, D = r.shape
    return [f"inv_freq = 1.0 / {r.meta['theta']!r} ** (np.arange(0, {D}, 2) / {D})",
            "angle = np.arange(" + str(T) + ")[:, None] * inv_freq",
            "angle = np.concatenate([angle, angle], axis=-1)",
            f"{r.out} = np.{r.meta['fn']}(angle)"]


def _rot(x: str, D: int) -> str:
    """rotate_half of `x` as NumPy: each pair (d, d + D/2) as (-b, a)."""
    return f"np.concatenate([-{x}[..., {D // 2}:], {x}[..., :{D // 2}]], axis=-1)"


def _rope(r: Line) -> list[str]:
    return [f"u = {r.x[0]}", f"{r.out} = u * {r.x[1]} + {_rot('u', r.shape[-1])} * {r.x[2]}"]


def _rope_backward(r: Line) -> list[str]:
    return [f"g = {r.x[0]}", f"gs = g * {r.x[2]}", f"{r.out} = g * {r.x[1]} - {_rot('gs', r.shape[-1])}"]


def _repeat_kv_backward(r: Line) -> list[str]:
    B, G, S, D = r.shape
    return [f"{r.out} = {r.x[0]}.reshape({B}, {G}, {r.meta['n_rep']}, {S}, {D}).sum(axis=2)"]


def _rmsnorm_backward(r: Line) -> list[str]:
    return [f"g, xh = {r.x[0]}, {r.x[1]}",
            f"rstd = 1.0 / np.sqrt({r.x[2]}[..., None] + {r.meta['eps']!r})",
            f"{r.out} = rstd * (g - xh * (g * xh).mean(-1, keepdims=True))"]


# -- the entries, in the order of engine/explain/ops.yaml -------------------------------------------------------
GIVEN = No("a given value: there is no arithmetic to do by hand")
SUMMARY = No("a summary of the training run (engine/run.py `train`: many steps, not one): the notebook does not "
             "recompute it")
SUMMED_UP = No("a summary of the training run's many steps: no one computation to do by hand")
OPTIMIZER = No("an optimizer op: engine/optim.py computes it from the gradient, no pair of engine/layers.py")
LAYERNORM = ((L.layernorm_forward, L.layernorm_backward),)
M = Mistake
TERMS = "[prod(t) for t in terms]"  # the products of a contraction (its `terms`): a sign question's parts
BIAS_CORRECTION = (M("no bias correction", "v"),
                   M("divided by β to the power k, not 1 − β to it", "v / meta.beta ** meta.step"))
CROSS_ENTROPY = ((L.cross_entropy_forward, L.cross_entropy_backward),)
RMSNORM = ((L.rmsnorm_forward, L.rmsnorm_backward),)
SWIGLU = ((L.swiglu_forward, L.swiglu_backward),)

KINDS = (
    # -- given values: parameters at init, inputs, the re-run forward pass, training-run summaries -------------
    OpKind("param", pairs=No("a weight, drawn at initialisation (model.init_params) or read from a checkpoint"),
           notation=N.parameter, numpy=load,
           exercise=No("a weight as drawn or read: nothing to work out"), drill=GIVEN),
    OpKind("forward", pairs=No("the forward pass again on the updated weights (run.evaluate): the forward kinds' "
                               "pairs make its values"),
           notation=N.by_name, numpy=_forward,
           exercise=No("the forward pass again: its arithmetic is asked on the forward pass's pages"),
           drill=No("the forward pass again: each of its ops has its drill on the forward pass's pages")),
    OpKind("train_loss", pairs=No("the loss of each step of the training run (run.train)"), notation=N.by_name,
           numpy=SUMMARY, drill=SUMMED_UP,
           # the loss after its first update is the loss the summary page computes again
           exercise=Rule(1, what="the training run's loss after its first update",
                         at=lambda rec: (1,) if rec.value.shape[0] > 1 else None)),
    OpKind("train_prob", pairs=No("the right word's probability before and after the training run (run.train)"),
           notation=N.by_name, numpy=SUMMARY, drill=SUMMED_UP,
           exercise=Rule(1, "argmax", "the probability of the right next word", value=False, noun="probability")),
    OpKind("train_attention", pairs=No("the trained model's attention weights (run.train)"), notation=N.by_name,
           numpy=SUMMARY, exercise=No("the training run's result, not one computation of the step"), drill=SUMMED_UP),
    OpKind("generate", pairs=No("greedy decoding (engine/generate.py)"), notation=N.by_name, numpy=SUMMARY,
           exercise=No("word ids chosen by greedy decoding: integers, not arithmetic"), drill=SUMMED_UP),
    OpKind("input", pairs=No("token ids from the tokenizer (run.tokenize)"), notation=N.by_name, numpy=load,
           exercise=No("token ids from the tokenizer: integers, not arithmetic"), drill=GIVEN),

    # -- forward ------------------------------------------------------------------------------------------------
    OpKind("embedding", pairs=((L.embedding_forward, L.embedding_backward),
                               (L.token_embedding_forward, L.token_embedding_backward)),
           notation=N.by_name, numpy=_embedding,
           exercise=Rule(5, what="this entry of the input vectors", lookup=True), drill=drills.embedding),
    OpKind("add", pairs=No("plain `a + b` in engine/tape.py (Tape.add, Tape.add_grads): its backward hands the "
                           "gradient to both inputs"),
           notation=N.stream_sum, numpy=lambda r: [f"{r.out} = {r.x[0]} + {r.x[1]}"],
           exercise=Rule(4, what="this entry of the sum", mistakes=(M("one term subtracted", "a - b"),)),
           drill=drills.add),
    OpKind("mean", pairs=LAYERNORM, notation=N.by_name, numpy=lambda r: [f"{r.out} = {r.x[0]}.mean(axis=-1)"],
           exercise=Rule(6, what="this row mean", mistakes=(M("the sum, not divided by the count", "s"),)),
           drill=drills.mean),
    OpKind("var", pairs=LAYERNORM, notation=N.by_name,
           numpy=lambda r: [f"{r.out} = (({r.x[0]} - {r.x[1]}[..., None]) ** 2).mean(axis=-1)"],
           exercise=Rule(6, what="this row variance", mistakes=(
               M("the sum, not divided by the count", "s"), M("divided by n − 1", "s / (len(row) - 1)", "len(row) > 1"),
               M("the mean not subtracted", "mean(row * row)"))),
           drill=drills.var),
    OpKind("normalize", pairs=LAYERNORM, notation=N.by_name,
           numpy=lambda r: [f"{r.out} = ({r.x[0]} - {r.x[1]}[..., None]) / np.sqrt({r.x[2]}[..., None] + "
                            f"{r.meta['eps']!r})"],
           # no sign question: the sign is x − μ's, both on the page
           exercise=Rule(8, what="this normalised entry", mistakes=(
               M("divided by the variance, not its square root", "(v - mu) / (s2 + meta.eps)"),
               M("the mean not subtracted", "v / sd"))),
           drill=drills.normalize),
    OpKind("affine", pairs=LAYERNORM, notation=N.by_name, numpy=lambda r: [f"{r.out} = {r.x[0]} * {r.x[1]} + {r.x[2]}"],
           exercise=Rule(6, what="this LayerNorm output", mistakes=(M("the weight γ left out", "v + b"),
                                                           M("the bias β left out", "g * v"))),
           drill=drills.affine),
    OpKind("linear", pairs=((L.linear_forward, L.linear_backward),), notation=N.by_name,
           numpy=lambda r: [f"{r.out} = {r.product(2)} + {r.x[2]}"],
           exercise=Rule(7, "sign", "this output of the linear layer", transposed=True,
                         mistakes=(M("the bias left out", "result - b", "b != 0"),),
                         parts="cat([prod(t) for t in terms], [b])"),
           drill=drills.linear),
    OpKind("matmul", pairs=((L.scores_forward, L.scores_backward), (L.context_forward, L.context_backward),
                            (L.logits_forward, L.logits_backward), (L.projection_forward, L.projection_backward)),
           notation=N.by_name, numpy=lambda r: [f"{r.out} = {r.product()}"],
           exercise=Rule(7, "sign", "this entry of the product", transposed=True, parts=TERMS), drill=drills.dot),
    # an elementwise product: the gradient of a norm's x̂ (dout·γ), Llama's RMSNorm gain (x̂·γ) and SwiGLU's products
    OpKind("mul", pairs=RMSNORM + SWIGLU, notation=N.by_name,
           numpy=lambda r: [f"{r.out} = {r.product()}"],
           exercise=Rule(5, what="this entry of the product", mistakes=(M("the weight left out", "prod(first[:1])"),)),
           drill=drills.mul),
    OpKind("sum", pairs=No("a backward op: a weight's or bias's gradient summed over batch and tokens, in "
                           "layers.layernorm_backward and layers.linear_backward"),
           notation=N.by_name, numpy=lambda r: [f"{r.out} = {r.product()}"],
           exercise=Rule(6, "sign", "this sum", parts=TERMS), drill=drills.bias_sum),
    OpKind("split_heads", pairs=((L.split_qkv, L.merge_qkv),), notation=N.by_name, numpy=_split_heads,
           exercise=Rule(3, what="this entry of the head", lookup=True, mistakes=(
               M("the columns of Q, not of K or V", "x0[[i[0], i[2], i[1] * D + i[3]]]", "meta.part"),)),
           drill=drills.split),
    OpKind("merge_heads", pairs=((L.merge_heads, L.split_heads),), notation=N.by_name,
           numpy=lambda r: [f"{r.out} = {r.x[0]}.transpose(0, 2, 1, 3).reshape({', '.join(map(str, r.shape))})"],
           exercise=Rule(3, what="this entry of the merged heads", lookup=True), drill=drills.merge),
    OpKind("merge_qkv", pairs=No("a backward op: layers.merge_qkv, the backward of layers.split_qkv"),
           notation=N.by_name, numpy=_merge_qkv,
           exercise=Rule(3, what="this entry of the packed gradient", lookup=True), drill=drills.split),
    OpKind("scale", pairs=No("plain `x * factor` in engine/tape.py: its backward is a scale by the same factor"),
           notation=N.by_name, numpy=lambda r: [f"{r.out} = {r.x[0]} * {_factor(r.meta['factor'])}"],
           exercise=Rule(5, what="this scaled score", mistakes=(
               M("not scaled", "v"), M("multiplied by the square root, not divided", "v / meta.factor"),
               M("divided by the head size, not its square root", "v * meta.factor * meta.factor"))),
           drill=drills.scale),
    OpKind("causal_mask", pairs=((L.causal_mask_forward, L.causal_mask_backward),), notation=N.by_name,
           numpy=lambda r: [f"{r.out} = np.where({_tril(r.shape[-1])}, {r.x[0]}, -np.inf)"],
           exercise=Rule(3, what="this masked score", lookup=True), drill=drills.mask),
    OpKind("softmax", pairs=((L.softmax_forward, L.softmax_backward), *CROSS_ENTROPY), notation=N.by_name,
           numpy=lambda r: [f"e = np.exp({r.x[0]} - {r.x[0]}.max(axis=-1, keepdims=True))",
                            f"{r.out} = e / e.sum(axis=-1, keepdims=True)"],
           exercise=Rule(9, "argmax", "this weight", noun="probability", keeps_order=True, mistakes=(
               M("not divided by the sum", "e[k]"),
               M("a masked −∞ read as 0 (e⁰ = 1 in the sum)",
                 "e[k] / (total + len([u for u in row if u == -inf]) * exp(0 - m))",
                 "len([u for u in row if u == -inf]) > 0"))),
           drill=drills.softmax),
    OpKind("gelu", pairs=((L.gelu_forward, L.gelu_backward),), notation=N.by_name, numpy=_gelu,
           exercise=Rule(7, what="this GELU output", mistakes=(
               M("ReLU instead of GELU", "max([u, 0])"),
               M("the cubic term left out", "0.5 * u * (1 + tanh(meta.k * u))"), M("the ½ left out", "u * (1 + t)"))),
           drill=drills.gelu),
    OpKind("gather", pairs=CROSS_ENTROPY, notation=N.by_name, numpy=_gather,
           exercise=Rule(5, what="this target probability", lookup=True), drill=drills.gather),
    OpKind("cross_entropy", pairs=CROSS_ENTROPY, notation=N.by_name, numpy=_cross_entropy,
           exercise=Rule(8, what="this loss", mistakes=(M("the target's logit not subtracted", "lse", "not pad"),
                                                M("log base 10", "(lse - row[y]) / log(10)", "not pad"))),
           drill=drills.cross_entropy),
    OpKind("loss_mean", pairs=CROSS_ENTROPY, notation=N.by_name,
           numpy=lambda r: [f"{r.out} = {r.x[0]}.sum() / ({r.x[1]} >= 0).sum()"],
           exercise=Rule(6, what="the loss", mistakes=(
               M("the sum, not the mean", "s", "len(vals) > 1"),
               M("divided by every position, padding too", "s / len(indices(x1))", "len(vals) < len(indices(x1))"))),
           drill=drills.loss_mean),

    # -- Llama's forward kinds (model.arch: llama) ---------------------------------------------------------------
    OpKind("rope_table", pairs=No("constants of the positions and rope_theta (layers.rope_tables): no gradient flows "
                                  "into them"),
           notation=N.by_name, numpy=_rope_table, exercise=Rule(2, "sign", "this entry of the rotary table"),
           drill=drills.rope_angle),
    OpKind("mean_square", pairs=RMSNORM, notation=N.by_name,
           numpy=lambda r: [f"u = {r.x[0]}", f"{r.out} = (u * u).mean(axis=-1)"],
           exercise=Rule(6, what="this row's mean of squares"), drill=drills.mean_square),
    OpKind("rms_normalize", pairs=RMSNORM, notation=N.by_name,
           numpy=lambda r: [f"{r.out} = {r.x[0]} / np.sqrt({r.x[1]}[..., None] + {r.meta['eps']!r})"],
           exercise=Rule(8, "sign", "this normalised entry"), drill=drills.rms_normalize),
    OpKind("rope", pairs=((L.rope_forward, L.rope_backward),), notation=N.by_name, numpy=_rope,
           exercise=Rule(7, "sign", "this rotated entry"), drill=drills.rope),
    OpKind("repeat_kv", pairs=((L.repeat_kv_forward, L.repeat_kv_backward),), notation=N.by_name,
           numpy=lambda r: [f"{r.out} = np.repeat({r.x[0]}, {r.meta['n_rep']}, axis=1)"],
           exercise=Rule(3, what="this entry of the repeated heads", lookup=True), drill=drills.repeat_kv),
    OpKind("silu", pairs=((L.silu_forward, L.silu_backward), *SWIGLU), notation=N.by_name,
           numpy=lambda r: [f"u = {r.x[0]}", f"{r.out} = u / (1.0 + np.exp(-u))"],
           exercise=Rule(7, "sign", "this SiLU output"), drill=drills.silu),

    # -- backward: the gradient of record X is the record `grad.X` ------------------------------------------------
    OpKind("cross_entropy_backward", pairs=No("a backward op: layers.cross_entropy_backward"), notation=N.by_name,
           numpy=_cross_entropy_backward,  # no sign question: the sign only says whether v is the target
           exercise=Rule(8, what="this gradient", mistakes=(
               M("not divided by N", "p - hit", "n > 1"), M("the one-hot target left out", "p / n", "hit"))),
           drill=drills.cross_entropy_backward),
    OpKind("layernorm_backward", pairs=No("a backward op: layers.layernorm_backward"),
           notation=N.through_layernorm, numpy=_layernorm_backward, exercise=Rule(8, "sign", "this gradient", mistakes=(
               M("the mean terms left out", "rstd * g[c]"), M("the x̂ term left out", "rstd * (g[c] - mg)")),
               parts="[rstd * g[c], 0 - rstd * mg, 0 - rstd * xh[c] * mgx]"),
           drill=drills.layernorm_backward),
    OpKind("gelu_backward", pairs=No("a backward op: layers.gelu_backward"), notation=N.by_name,
           # no sign question: the sign is g's for most u
           numpy=_gelu_backward, exercise=Rule(7, what="this gradient", mistakes=(
               M("GELU(u) instead of its slope", "g * 0.5 * u * (1 + t)"), M("the upstream gradient left out", "d"),
               M("the slope of ReLU", "g * (1 if u > 0 else 0)"))),
           drill=drills.gelu_backward),
    OpKind("softmax_backward", pairs=No("a backward op: layers.softmax_backward"), notation=N.by_name,
           numpy=lambda r: [f"g, y = {r.x[0]}, {r.x[1]}", f"{r.out} = y * (g - (g * y).sum(axis=-1, keepdims=True))"],
           exercise=Rule(8, "sign", "this gradient", mistakes=(
               M("the weighted mean of g left out", "y[k] * g[k]"), M("not multiplied by the weight", "g[k] - dot")),
               parts="[y[k] * g[k], 0 - y[k] * dot]"),
           drill=drills.softmax_backward),
    OpKind("mask_backward", pairs=No("a backward op: layers.causal_mask_backward"), notation=N.by_name,
           numpy=lambda r: [f"{r.out} = np.where({_tril(r.shape[-1])}, {r.x[0]}, 0.0)"],
           exercise=Rule(3, what="this gradient", lookup=True), drill=drills.mask),
    OpKind("embedding_backward", pairs=No("a backward op: layers.embedding_backward"), notation=N.by_name,
           numpy=_embedding_backward, exercise=Rule(6, "sign", "this gradient", parts="vals", mistakes=(
               M("one position only", "vals[0]", "len(vals) > 1"),)),
           drill=drills.embedding_backward),
    OpKind("rmsnorm_backward", pairs=No("a backward op: layers.rmsnorm_backward"), notation=N.through_rmsnorm,
           numpy=_rmsnorm_backward, exercise=Rule(8, "sign", "this gradient"), drill=drills.rmsnorm_backward),
    OpKind("rope_backward", pairs=No("a backward op: layers.rope_backward"), notation=N.by_name,
           numpy=_rope_backward, exercise=Rule(7, "sign", "this gradient"), drill=drills.rope_backward),
    OpKind("repeat_kv_backward", pairs=No("a backward op: layers.repeat_kv_backward"), notation=N.by_name,
           numpy=_repeat_kv_backward, exercise=Rule(6, "sign", "this summed gradient"),
           drill=drills.repeat_kv_backward),
    OpKind("silu_backward", pairs=No("a backward op: layers.silu_backward"), notation=N.by_name,
           numpy=lambda r: [f"g, u = {r.x[0]}, {r.x[1]}", "s = 1.0 / (1.0 + np.exp(-u))",
                            f"{r.out} = g * (s * (1.0 + u * (1.0 - s)))"],
           exercise=Rule(7, "sign", "this gradient"), drill=drills.silu_backward),

    # -- the optimizer ----------------------------------------------------------------------------------------------
    OpKind("l2_grad", pairs=OPTIMIZER, notation=N.optimizer_record,
           numpy=lambda r: [f"{r.out} = {r.x[0]} + {r.meta['wd']!r} * {r.x[1]}"],
           exercise=Rule(5, "sign", "this gradient with weight decay", parts="[g, meta.wd * p]", mistakes=(
               M("the decay left out", "g"), M("the decay subtracted", "g - meta.wd * p"))),
           drill=drills.l2_grad),
    OpKind("adam_m", pairs=OPTIMIZER, notation=N.optimizer_record, numpy=_adam_m,
           # no sign question: the sign is the gradient's
           exercise=Rule(5, what="this first moment", mistakes=(
               M("(1 − β₁) left out", "g"), M("β₁ for 1 − β₁", "meta.beta * g"))),
           drill=drills.adam_m),
    OpKind("adam_v", pairs=OPTIMIZER, notation=N.optimizer_record, numpy=_adam_v,
           exercise=Rule(5, what="this second moment", mistakes=(M("(1 − β₂) left out", "g * g"),
                                                         M("the gradient not squared", "(1 - meta.beta) * g"))),
           drill=drills.adam_v),
    OpKind("adam_m_hat", pairs=OPTIMIZER, notation=N.optimizer_record, numpy=_bias_corrected,
           exercise=Rule(4, what="this bias-corrected first moment", mistakes=BIAS_CORRECTION), drill=drills.adam_m),
    OpKind("adam_v_hat", pairs=OPTIMIZER, notation=N.optimizer_record, numpy=_bias_corrected,
           exercise=Rule(4, what="this bias-corrected second moment", mistakes=BIAS_CORRECTION), drill=drills.adam_v),
    OpKind("adamw_update", pairs=OPTIMIZER, notation=N.update(N.ADAMW_UPDATE), numpy=_adam_update(decoupled=True),
           exercise=Rule(7, what="this updated weight", mistakes=(
               M("the decoupled decay left out", "p - step", "meta.wd"),
               M("a step along the gradient", "decayed + step"),
               M("no square root", "decayed - meta.lr * m / (v + meta.eps)"))),
           drill=drills.update),
    OpKind("adam_update", pairs=OPTIMIZER, notation=N.update(N.ADAM_UPDATE), numpy=_adam_update(decoupled=False),
           exercise=Rule(7, what="this updated weight", mistakes=(
               M("a step along the gradient", "p + step"), M("no square root", "p - meta.lr * m / (v + meta.eps)"))),
           drill=drills.update),
    OpKind("sgd_buf", pairs=OPTIMIZER, notation=N.optimizer_record, numpy=_sgd_buf,
           exercise=Rule(2, what="this momentum buffer entry", lookup=True), drill=drills.update),
    OpKind("sgd_update", pairs=OPTIMIZER, notation=N.update(N.SGD_UPDATE, with_momentum=N.SGD_MOMENTUM_UPDATE),
           numpy=lambda r: [f"{r.out} = {r.x[0]} - {r.meta['lr']!r} * {r.x[1]}"],
           exercise=Rule(7, what="this updated weight", mistakes=(
               M("a step along the gradient", "p + meta.lr * g"), M("the learning rate left out", "p - g"))),
           drill=drills.update),
)
OPS: dict[str, OpKind] = {k.name: k for k in KINDS}


class UnknownOpKind(KeyError):
    """An op with no entry in OPS."""

    def __str__(self) -> str:
        return str(self.args[0])


def kind(op: str) -> OpKind:
    """The entry of op kind `op`; an op without one is an error, whoever asks."""
    found = OPS.get(op)
    if found is None:
        raise UnknownOpKind(f"no op kind {op!r}: add its entry to engine/ops.py (docs/architecture.md, "
                            "'Add an op kind')")
    return found


def describe(name: str, op: str, cfg: Config) -> tuple[str, str]:
    """(formula, symbol) of the record `name` made by op `op` under `cfg`: its kind's notation names it."""
    return kind(op).notation(name, cfg)
