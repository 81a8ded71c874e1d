"""The interpreter of `ops.yaml` in Python (its twin, `interpret.js`, runs the same descriptions in the browser).

A description gives, for one op kind, named expressions (`let`), display lines and a one-line text. This
module parses the small expression language once, evaluates an element's bindings lazily (a binding is
computed the first time something uses it, so a branch that is not taken reads nothing), and renders the
templates. Both interpreters must give the same text and numbers; tests/engine/test_explain_parity.py
checks that on several configs.

Expressions: numbers, "strings" (no escapes: backslashes are LaTeX), `templates` (a template in backticks),
names, a.b, f(x, y), v[k], v[a:b], [x, y], [e for a in xs if c], [e for a, b in zip(xs, ys)],
unary - and not, ** * / // % + -, comparisons, and/or, `a if c else b`. Arithmetic on lists is elementwise.
A template is text with `@(expr)`, `@f(args)` or `@name` inserted (`@@` for a literal @); a number is
written with `num`.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from ..notation import latex_text

# -- values ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """One element of one record: `x[0][i]` evaluates to this, so it can be shown as a symbol or a number."""

    record: Any
    index: tuple[int, ...]
    value: float


class TooMany(Exception):
    """An element reads more input numbers than its caller said it could use (Element's `limit`)."""


class ExplainError(Exception):
    """A description that cannot be evaluated for this element (a bug in ops.yaml or a damaged record)."""


def val(v: Any) -> Any:
    return v.value if isinstance(v, Ref) else v


class LazyList:
    """The items of a long list made by a comprehension whose body only formats (it reads no record), worked out
    when looked at. A sum of 3,072 products is shown as its first 8 and last 4 terms (`sumline`): the other
    terms are never typeset. The result is the same as the eager list's, which the JS twin builds."""

    def __init__(self, n: int, item: Callable[[int], Any]) -> None:
        self.n, self.item, self.done = n, item, {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self.n))]
        if k < 0:
            k += self.n
        if not 0 <= k < self.n:
            raise IndexError(k)
        if k not in self.done:
            self.done[k] = self.item(k)
        return self.done[k]

    def __iter__(self) -> Iterator[Any]:
        return (self[k] for k in range(self.n))


def _eager(v: Any) -> Any:
    return list(v) if isinstance(v, LazyList) else v


# Functions that only format or count what they are given: a comprehension body calling nothing else (and
# indexing nothing, which may read a record and note an operand) can be worked out lazily (LazyList).
_FORMATTING = frozenset({"join", "par", "num", "sub", "text", "exact", "int", "word", "quote", "plural", "len"})
_PURE: dict[int, tuple[Any, bool]] = {}


def _identity(x: Any) -> Any:
    return x


def _formats_only(node: Any) -> bool:
    known = _PURE.get(id(node))
    if known is not None and known[0] is node:
        return known[1]
    result = _check_formats_only(node)
    _PURE[id(node)] = (node, result)
    return result


def _check_formats_only(node: Any) -> bool:
    if isinstance(node, list):
        return all(_check_formats_only(n) for n in node)
    if not isinstance(node, tuple) or not node:
        return True
    kind = node[0]
    if kind in ("const", "name"):
        return True
    if kind == "index":
        return False
    if kind == "call":
        return node[1][0] == "name" and node[1][1] in _FORMATTING and all(_check_formats_only(a) for a in node[2])
    return all(_check_formats_only(n) for n in node[1:] if isinstance(n, (tuple, list)))


def _concat(*parts: Any) -> Any:
    """`cat`: lazy when a part is (the last part of a linear's terms is the bias)."""
    if not any(isinstance(p, LazyList) for p in parts):
        return [v for part in parts for v in part]
    starts, n = [], 0
    for part in parts:
        starts.append(n)
        n += len(part)

    def item(k: int) -> Any:
        j = bisect.bisect_right(starts, k) - 1
        while len(parts[j]) == 0 or k - starts[j] >= len(parts[j]):  # empty parts share a start
            j += 1
        return parts[j][k - starts[j]]

    return LazyList(n, item)


# -- numbers as LaTeX (the JS twin formats exactly the same way) ----------------------------------------------

def num(x: Any) -> str:
    """4 decimals, or 3 significant digits as m×10^e when tiny or huge; ties round away from zero."""
    x = float(val(x))
    if math.isinf(x):
        return r"-\infty" if x < 0 else r"\infty"
    if math.isnan(x):
        return r"\mathrm{NaN}"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        return str(Decimal(x).quantize(Decimal("0.0001"), ROUND_HALF_UP))
    d = Decimal(x)
    e = d.adjusted()
    m = d.scaleb(-e).quantize(Decimal("0.01"), ROUND_HALF_UP)
    if abs(m) >= 10:
        m, e = (m / 10).quantize(Decimal("0.01"), ROUND_HALF_UP), e + 1
    return _sci(str(m), e)


def _sci(mantissa: str, e: int) -> str:
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    if mantissa in ("1", "-1"):
        return f"{mantissa[:-1]}10^{{{e}}}"
    return rf"{mantissa}\times10^{{{e}}}"


def exact(x: Any) -> str:
    """The shortest decimal that reads back as x (a config constant: 0.01, 10^{-8}, 0.044715)."""
    x = float(val(x))
    if x == 0 or not math.isfinite(x):
        return num(x)
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    e = exp + len(ds) - 1  # the power of ten of the first digit
    neg = "-" if sign else ""
    if -4 <= e < 6:
        if e >= 0:
            whole, frac = ds[: e + 1].ljust(e + 1, "0"), ds[e + 1 :]
        else:
            whole, frac = "0", "0" * (-e - 1) + ds
        return neg + whole + ("." + frac if frac else "")
    return _sci(neg + ds[0] + ("." + ds[1:] if len(ds) > 1 else ""), e)


def integer(x: Any) -> str:
    return str(int(val(x)))


def quote(word: str) -> str:
    """A config word in a sentence: in quotes, isolated (U+2068..U+2069) so right-to-left text stays inside."""
    return f"“\u2068{word}\u2069”"


def par(x: Any) -> str:
    s = num(x)
    return f"({s})" if s.startswith("-") else s


def split_line(tex: str) -> tuple[str, str]:
    """A display line cut after its first relation (`=` or `:`) outside any group: (`lhs =`, the rest), or
    ("", tex) when there is none. The site sets the rest beside the left side, wrapping under its own start, so
    a long sum's continuation lines align after the `=`."""
    depth, k = 0, 0
    while k < len(tex):
        c = tex[k]
        if c == "\\":
            word = re.match(r"\\(?:[A-Za-z]+|.)", tex[k:], re.S)
            name = word.group(0) if word else "\\"
            if name == "\\begin":  # an environment (aligned, ...) lays out its own lines
                return "", tex
            depth += {"\\left": 1, "\\right": -1}.get(name, 0)
            k += len(name)
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c in "=:" and depth == 0 and tex[:k].strip():
            rest = re.sub(r"^(?:\s|\\ |\\quad\b)+", "", tex[k + 1:])
            return (tex[:k + 1].strip(), rest) if rest else ("", tex)
        k += 1
    return "", tex


# -- the expression language -----------------------------------------------------------------------------------

TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?) |
    (?P<name>[A-Za-z_]\w*) |
    (?P<str>"[^"]*"|'[^']*') |
    (?P<tpl>`[^`]*`) |
    (?P<op>\*\*|//|==|!=|<=|>=|[-+*/%<>()\[\],:.])
)""", re.X)
NAME = re.compile(r"[A-Za-z_]\w*")
KEYWORDS = {"if", "else", "for", "in", "and", "or", "not"}
BINARY = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
          "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "**": 8}


class Parser:
    """A Pratt parser over one string; `parse_at(text, pos)` stops after one primary (for templates)."""

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = self.last_end = pos
        self.tok: tuple[str, str] | None = None
        self._advance()

    def _advance(self) -> None:
        self.last_end = self.pos  # where the token just consumed ends (a template resumes there)
        m = TOKEN.match(self.text, self.pos)
        if self.pos >= len(self.text) or not self.text[self.pos:].strip():
            self.tok = None
            return
        if not m:  # not an error yet: a template's text after an insertion is LaTeX, not an expression
            self.tok = ("bad", self.text[self.pos:].lstrip()[:1])
            return
        self.pos = m.end()
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "name" and text in KEYWORDS:
            kind = "op"
        self.tok = (kind, text)

    def _is(self, text: str) -> bool:
        return self.tok is not None and self.tok[0] == "op" and self.tok[1] == text

    def _expect(self, text: str) -> None:
        if not self._is(text):
            raise ExplainError(f"expected {text!r} in {self.text!r}")
        self._advance()

    def expression(self) -> tuple:
        node = self._binary(0)
        if self._is("if"):
            self._advance()
            cond = self._binary(0)
            self._expect("else")
            return ("ifelse", cond, node, self.expression())
        return node

    def _binary(self, min_prec: int) -> tuple:
        if self._is("not"):
            self._advance()
            left: tuple = ("not", self._binary(3))
        elif self._is("-"):
            self._advance()
            left = ("neg", self._binary(7))
        else:
            left = self._postfix(self._primary())
        while self.tok is not None and self.tok[0] == "op" and self.tok[1] in BINARY:
            op = self.tok[1]
            prec = BINARY[op]
            if prec < min_prec:
                break
            self._advance()
            right = self._binary(prec if op == "**" else prec + 1)
            left = ("bin", op, left, right)
        return left

    def _primary(self) -> tuple:
        if self.tok is None or self.tok[0] == "bad":
            what = "end" if self.tok is None else repr(self.tok[1])
            raise ExplainError(f"unexpected {what} in {self.text!r}")
        kind, text = self.tok
        self._advance()
        if kind == "num":
            return ("const", float(text))
        if kind == "str":
            return ("const", text[1:-1])
        if kind == "tpl":
            return ("tpl", parse_template(text[1:-1]))
        if kind == "name":
            return ("name", text)
        if text == "(":
            node = self.expression()
            self._expect(")")
            return node
        if text == "[":
            if self._is("]"):
                self._advance()
                return ("list", [])
            first = self.expression()
            if self._is("for"):
                self._advance()
                names = [self._name()]
                while self._is(","):
                    self._advance()
                    names.append(self._name())
                self._expect("in")
                source = self._binary(0)
                cond = None
                if self._is("if"):
                    self._advance()
                    cond = self._binary(0)
                self._expect("]")
                return ("comp", first, names, source, cond)
            items = [first]
            while self._is(","):
                self._advance()
                items.append(self.expression())
            self._expect("]")
            return ("list", items)
        raise ExplainError(f"unexpected {text!r} in {self.text!r}")

    def _name(self) -> str:
        if self.tok is None or self.tok[0] != "name":
            raise ExplainError(f"expected a name in {self.text!r}")
        name = self.tok[1]
        self._advance()
        return name

    def _call(self, node: tuple) -> tuple:
        self._expect("(")
        args = []
        while not self._is(")"):
            args.append(self.expression())
            if not self._is(")"):
                self._expect(",")
        self._advance()
        return ("call", node, args)

    def _postfix(self, node: tuple) -> tuple:
        while True:
            if self._is("("):
                node = self._call(node)
            elif self._is("["):
                self._advance()
                lo = None if self._is(":") else self.expression()
                if self._is(":"):
                    self._advance()
                    hi = None if self._is("]") else self.expression()
                    self._expect("]")
                    node = ("slice", node, lo, hi)
                else:
                    self._expect("]")
                    node = ("index", node, lo)
            elif self._is("."):
                self._advance()
                node = ("attr", node, self._name())
            else:
                return node


_PARSED: dict[str, tuple] = {}


def parse(text: str) -> tuple:
    node = _PARSED.get(text)
    if node is None:
        p = Parser(str(text))
        node = p.expression()
        if p.tok is not None:
            raise ExplainError(f"unexpected {p.tok[1]!r} in {text!r}")
        _PARSED[text] = node
    return node


_TEMPLATES: dict[str, list] = {}


def parse_template(text: str) -> list:
    """[str | ast, ...]: the literal pieces and the inserted expressions of a template."""
    parts = _TEMPLATES.get(text)
    if parts is not None:
        return parts
    parts = []
    buf = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch != "@":
            buf.append(ch)
            pos += 1
            continue
        if text.startswith("@@", pos):
            buf.append("@")
            pos += 2
            continue
        if buf:
            parts.append("".join(buf))
            buf = []
        name = NAME.match(text, pos + 1)
        if text.startswith("@(", pos):  # @(expression)
            p = Parser(text, pos + 1)
            parts.append(p._primary())
            pos = p.last_end
        elif name and text.startswith("(", name.end()):  # @function(arguments)
            p = Parser(text, name.end())
            parts.append(p._call(("name", name.group(0))))
            pos = p.last_end
        elif name:  # @name
            parts.append(("name", name.group(0)))
            pos = name.end()
        else:
            raise ExplainError(f"'@' must be followed by '(', a name or '@' in {text!r}")
    if buf:
        parts.append("".join(buf))
    _TEMPLATES[text] = parts
    return parts


# -- evaluation --------------------------------------------------------------------------------------------------

INF = float("inf")


def truthy(v: Any) -> bool:
    v = val(v)
    if isinstance(v, float):
        return v != 0 and not math.isnan(v)
    return bool(v)


def _arith(op: str, a: Any, b: Any) -> Any:
    a, b = _eager(val(a)), _eager(val(b))
    if isinstance(a, list) or isinstance(b, list):
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                raise ExplainError(f"lists of lengths {len(a)} and {len(b)} in {op}")
            return [_arith(op, x, y) for x, y in zip(a, b)]
        return [_arith(op, x, b) for x in a] if isinstance(a, list) else [_arith(op, a, y) for y in b]
    if isinstance(a, str) or isinstance(b, str):
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        raise ExplainError(f"cannot apply {op} to text")
    a, b = float(a), float(b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(INF, a) * math.copysign(1.0, b)
        return a / b
    if op == "//":
        return float(math.floor(a / b))
    if op == "%":
        return math.fmod(a, b)
    if op == "**":
        return math.pow(a, b)
    raise ExplainError(f"unknown operator {op}")


def _compare(op: str, a: Any, b: Any) -> bool:
    a, b = val(a), val(b)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _map(f):
    def apply(x: Any) -> Any:
        x = val(x)
        return [apply(v) for v in x] if isinstance(x, (list, LazyList)) else f(float(x))

    return apply


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def _log(x: float) -> float:
    return -INF if x == 0 else (math.nan if x < 0 else math.log(x))


def _seq_sum(xs: list) -> float:
    total = 0.0  # left to right, as the JS twin: a fixed order gives the same bits in both
    for x in xs:
        total += float(val(x))
    return total


class Element:
    """The evaluation of one element of one record against its op's description."""

    def __init__(self, ops: dict, record: Any, inputs: list, index: tuple[int, ...], vocab: list[str],
                 patch: dict[tuple[str, tuple[int, ...]], float] | None = None, limit: int | None = None,
                 terms: dict | None = None) -> None:
        self.ops = ops
        # the terms of each einsum of this element, unpatched, shared by evaluations of the same element that only
        # patch other inputs (`engine.explain.evaluate(terms=)`): they read the same elements, so the gathering
        # is done once
        self.terms = terms
        # the most input numbers (elements of float records) to read: more raise TooMany before they are read
        self.limit = limit
        self.numbers = 0
        self.patch = patch or {}  # {(input record, index): value}: read instead of the record's value
        self.desc = ops["ops"][record.op]
        self.out = record
        self.vocab = vocab
        self.operands: list[tuple[str, tuple[int, ...]]] = []
        self.lets = self.desc.get("let") or {}
        self.values: dict[str, Any] = {}
        self.busy: set[str] = set()
        self.names = {"i": [float(k) for k in index], "out": record, "x": list(inputs), "meta": record.meta,
                      "inf": INF, "MAX_TERMS": float(ops["max_terms"])}
        for k, r in enumerate(inputs):
            self.names[f"x{k}"] = r
        self.functions = {
            "sqrt": _map(lambda v: math.sqrt(v) if v >= 0 else math.nan), "exp": _map(_exp), "log": _map(_log),
            "tanh": _map(math.tanh), "abs": _map(abs), "cos": _map(math.cos), "sin": _map(math.sin),
            "max": lambda xs: max(float(val(v)) for v in xs), "min": lambda xs: min(float(val(v)) for v in xs),
            "sum": _seq_sum, "mean": lambda xs: _seq_sum(xs) / len(xs), "prod": self._prod,
            "len": lambda xs: float(len(xs)), "all": lambda xs: all(truthy(v) for v in xs),
            "range": lambda n: [float(k) for k in range(int(val(n)))], "zip": lambda *ls: [list(t) for t in zip(*ls)],
            "cat": _concat, "join": lambda sep, xs: sep.join(xs),
            "shape": lambda r: [float(n) for n in r.value.shape], "indices": self._indices, "value": self._value,
            "row": self._row, "einsum": self._einsum, "word": self._word, "text": latex_text, "num": num, "par": par,
            "exact": exact, "int": integer, "sub": self._sub, "sumline": self._sumline,
            "plural": lambda n: "" if val(n) == 1 else "s", "quote": quote,
        }

    # -- the result --------------------------------------------------------------------------------------
    def explain(self) -> tuple[float, list[str], str]:
        result = val(self.get("result"))
        if self.desc.get("reads"):  # elements the explanation depends on without showing them in a line
            self.eval(parse(self.desc["reads"]))
        lines = self._lines(self.desc.get("lines") or [])
        text = self._text(self.desc.get("text", ""))
        return float(result), lines, text

    def value_of(self, expression: str) -> Any:
        """An expression of the description's language evaluated over this element's bindings (`result`, the
        `let` names, i, x, meta...): a number, or a list of numbers."""
        v = _eager(self.eval(parse(expression)))
        return [float(val(x)) for x in v] if isinstance(v, list) else float(val(v))

    def _lines(self, entries: Any) -> list[str]:
        out: list[str] = []
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict):
                branch = entry.get("then") if truthy(self.eval(parse(entry["if"]))) else entry.get("else")
                if branch is not None:
                    out.extend(self._lines(branch))
            else:
                out.append(self.render(entry))
        return out

    def _text(self, entry: Any) -> str:
        lines = self._lines(entry)
        return lines[0] if lines else ""

    # -- names -----------------------------------------------------------------------------------------
    def get(self, name: str, scope: dict | None = None) -> Any:
        if scope and name in scope:
            return scope[name]
        if name in self.values:
            return self.values[name]
        if name in self.lets:
            if name in self.busy:
                raise ExplainError(f"{self.out.op}: '{name}' depends on itself")
            self.busy.add(name)
            self.values[name] = self.eval(parse(str(self.lets[name])))
            self.busy.discard(name)
            return self.values[name]
        if name in self.names:
            return self.names[name]
        raise ExplainError(f"{self.out.op}: unknown name '{name}'")

    # -- expressions -------------------------------------------------------------------------------------
    def eval(self, node: tuple, scope: dict | None = None) -> Any:
        kind = node[0]
        if kind == "const":
            return node[1]
        if kind == "name":
            return self.get(node[1], scope)
        if kind == "tpl":
            return self._render_parts(node[1], scope)
        if kind == "list":
            return [self.eval(n, scope) for n in node[1]]
        if kind == "comp":
            _, body, names, source, cond = node
            items = self.eval(source, scope)
            if cond is None and len(items) > self.ops["max_terms"] and _formats_only(body):
                def one(k: int) -> Any:
                    local = dict(scope or {})
                    local.update({names[0]: items[k]} if len(names) == 1 else zip(names, items[k]))
                    return self.eval(body, local)

                return LazyList(len(items), one)
            if len(names) == 1:  # `[f(t) for t in terms if g(t)]`: called directly, no scope per item
                body_fn, cond_fn = self._direct(body, names[0]), self._direct(cond, names[0])
                if body_fn is not None and (cond is None or cond_fn is not None):
                    if cond_fn is None:
                        return [body_fn(item) for item in items]
                    return [body_fn(item) for item in items if truthy(cond_fn(item))]
            out = []
            for item in items:
                local = dict(scope or {})
                if len(names) == 1:
                    local[names[0]] = item
                else:
                    local.update(zip(names, item))
                if cond is None or truthy(self.eval(cond, local)):
                    out.append(self.eval(body, local))
            return out
        if kind == "ifelse":
            return self.eval(node[2] if truthy(self.eval(node[1], scope)) else node[3], scope)
        if kind == "not":
            return not truthy(self.eval(node[1], scope))
        if kind == "neg":
            return _arith("-", 0.0, self.eval(node[1], scope))
        if kind == "bin":
            op = node[1]
            if op in ("and", "or"):
                left = self.eval(node[2], scope)
                if truthy(left) == (op == "or"):
                    return left
                return self.eval(node[3], scope)
            a, b = self.eval(node[2], scope), self.eval(node[3], scope)
            if op in ("==", "!=", "<", "<=", ">", ">="):
                return _compare(op, a, b)
            return _arith(op, a, b)
        if kind == "call":
            fname = node[1][1] if node[1][0] == "name" else None
            f = self.functions.get(fname or "")
            if f is None:
                raise ExplainError(f"{self.out.op}: unknown function {fname!r}")
            return f(*[self.eval(a, scope) for a in node[2]])
        if kind == "index":
            base, key = self.eval(node[1], scope), self.eval(node[2], scope)
            if isinstance(base, (list, LazyList)):
                k = int(val(key))
                if not -len(base) <= k < len(base):
                    raise ExplainError(f"{self.out.op}: index {k} outside a list of {len(base)}")
                return base[k]
            return self.element(base, key)
        if kind == "slice":
            base = self.eval(node[1], scope)
            lo = None if node[2] is None else int(val(self.eval(node[2], scope)))
            hi = None if node[3] is None else int(val(self.eval(node[3], scope)))
            return base[lo:hi]
        if kind == "attr":
            base = self.eval(node[1], scope)
            if isinstance(base, dict):
                return base.get(node[2])
            if node[2] in ("name", "op", "symbol", "formula"):
                return getattr(base, node[2])
            raise ExplainError(f"{self.out.op}: no attribute {node[2]!r}")
        raise ExplainError(f"unknown node {kind}")

    # -- records ----------------------------------------------------------------------------------------
    def element(self, record: Any, index: Any) -> Ref:
        """record[index]; a shorter record is indexed by the trailing axes (a bias by the last one)."""
        shape = record.value.shape
        idx = [int(val(k)) for k in index]
        if len(idx) > len(shape):
            idx = idx[len(idx) - len(shape):]
        if len(idx) != len(shape) or any(not 0 <= k < n for k, n in zip(idx, shape)):
            raise ExplainError(f"{self.out.op}: index {idx} outside {record.name} of shape {list(shape)}")
        if record is not self.out:
            self._reads(record, 1)
        ref = Ref(record, tuple(idx), self._read(record, tuple(idx)))
        if record is not self.out:
            self.operands.append((record.name, ref.index))
        return ref

    def _reads(self, record: Any, n: int) -> None:
        """Count n more numbers read of an input record against the limit."""
        if self.limit is not None and record.value.dtype.kind == "f":
            self.numbers += n
            if self.numbers > self.limit:
                raise TooMany(f"{self.out.name} reads more than {self.limit} input numbers")

    def _value(self, record: Any, index: Any) -> float:
        return self._read(record, tuple(int(val(k)) for k in index))

    def _read(self, record: Any, index: tuple[int, ...]) -> float:
        """One element's value: the record's, or the patched one (an input as a page shows it, rounded)."""
        if self.patch and record is not self.out and (record.name, index) in self.patch:
            return float(self.patch[(record.name, index)])
        return float(record.value[index])

    def _patched(self, record: Any, indices: list, values: list) -> list:
        if self.patch and record is not self.out:
            return [float(self.patch.get((record.name, tuple(k)), v)) for k, v in zip(indices, values)]
        return values

    def _indices(self, record: Any) -> list:
        shape = record.value.shape
        out = [[]]
        for n in shape:
            out = [p + [float(k)] for p in out for k in range(n)]
        return out

    def _row(self, record: Any, prefix: Any) -> list:
        """record[*prefix, k] for every k: the same refs (and operands) as element() one by one, read at once (a
        softmax row over a 50,257-word vocabulary)."""
        n = record.value.shape[-1]
        if n == 0:
            return []
        first = self.element(record, [*prefix, 0.0])  # checks the index, as element() does for each k
        if record is not self.out:
            self.operands.pop()
            self._reads(record, n - 1)
        at = first.index[:-1]
        values = np.asarray(record.value[at], dtype=float).tolist()
        values = self._patched(record, [(*at, k) for k in range(n)], values)
        refs = [Ref(record, (*at, k), v) for k, v in enumerate(values)]
        if record is not self.out:
            self.operands.extend((record.name, r.index) for r in refs)
        return refs

    def _prod(self, xs: list) -> float:
        p = 1.0
        for x in xs:
            p *= float(val(x))
        return p

    def _direct(self, node: Any, var: str) -> Callable[[Any], Any] | None:
        """The loop variable itself, or a function applied to it alone, as a plain callable (what eval would do
        with the variable bound); None for anything else."""
        if node == ("name", var):
            return _identity
        if isinstance(node, tuple) and len(node) == 3 and node[0] == "call" and node[1][0] == "name" \
                and len(node[2]) == 1 and node[2][0] == ("name", var):
            return self.functions.get(node[1][1])
        return None

    def _einsum(self, spec: str, records: list) -> list:
        """The terms of one output element of an einsum: a list of factors (element refs) for each term."""
        lhs, out = spec.split("->")
        specs = lhs.split(",")
        letters = {ch: int(k) for ch, k in zip(out, self.names["i"])}
        joined = "".join(specs)
        free = []
        for ch in joined:
            if ch not in out and ch not in free:
                free.append(ch)
        key = (spec, tuple(r.name for r in records), tuple(letters.items()))
        if self.terms is not None and key in self.terms and self.limit is None:
            return self._repatched(*self.terms[key])
        sizes = {ch: n for s, r in zip(specs, records) for ch, n in zip(s, r.value.shape)}
        total = math.prod(sizes[ch] for ch in free)
        if total == 0:
            return []
        for ch in free:  # the first term through element(), which checks every index
            letters[ch] = 0
        for s, r in zip(specs, records):
            self.element(r, [float(letters[ch]) for ch in s])
            if r is not self.out:
                self._reads(r, total - 1)
        del self.operands[len(self.operands) - sum(r is not self.out for r in records):]
        grid = dict(zip(free, (a.reshape(-1) for a in np.indices([sizes[ch] for ch in free])))) if free else {}
        factors = []  # per record: the refs of every term, in the order of the terms (the last free letter fastest)
        for s, r in zip(specs, records):
            axes = [grid[ch] if ch in grid else np.full(total, letters[ch]) for ch in s]
            values = np.asarray(r.value[tuple(axes)], dtype=float).reshape(-1).tolist() if axes else \
                [float(r.value)] * total
            indices = list(zip(*(a.tolist() for a in axes))) if axes else [()] * total
            factors.append([Ref(r, k, v) for k, v in zip(indices, values)])
        terms = [list(t) for t in zip(*factors)]
        named = [r.name if r is not self.out else None for r in records]
        for t in terms:
            self.operands.extend((name, f.index) for name, f in zip(named, t) if name is not None)
        if self.terms is None and not self.patch:
            return terms
        where: dict[tuple, list[tuple[int, int]]] = {}  # input element -> (term, factor) it stands at
        for k, t in enumerate(terms):
            for j, (name, f) in enumerate(zip(named, t)):
                if name is not None:
                    where.setdefault((name, f.index), []).append((k, j))
        if self.terms is not None:
            self.terms[key] = (terms, where)
        return self._repatched(terms, where)

    def _repatched(self, terms: list, where: dict) -> list:
        """The einsum's terms with this element's patched inputs in place (copies where a factor changed)."""
        out = terms
        for element, value in self.patch.items():
            for k, j in where.get(element, ()):
                if out is terms:
                    out = list(terms)
                out[k] = list(out[k])
                out[k][j] = Ref(out[k][j].record, out[k][j].index, float(value))
        return out

    def _word(self, v: Any) -> str:
        k = int(val(v))
        return self.vocab[k] if 0 <= k < len(self.vocab) else "<ignored>"

    def _sub(self, ref: Any, index: Any = None) -> str:
        """`{Q}_{h=0,t=2,d=5}`: a record's symbol with an element's index (no batch index for one text); a symbol
        with a subscript of its own is parenthesised, `{(W_1)}_{c=0,f=3}`, so the two subscripts cannot run together."""
        record, idx = (ref.record, ref.index) if isinstance(ref, Ref) else (ref, [int(val(k)) for k in index])
        letters, parts, used = self.ops["axis_letters"], [], set()
        for ax, k in zip(record.axes, idx):
            if ax == "batch" and record.value.shape[0] == 1:
                continue
            letter = letters.get(ax, ax)
            while letter in used:  # two axes of one kind (W_O is C × C): c, then c'
                letter += "'"
            used.add(letter)
            parts.append(f"{letter}={k}")
        if not parts:
            return record.symbol
        symbol = f"({record.symbol})" if "_" in record.symbol else record.symbol  # (W_1)_{c=0}, not W_{1c=0}
        return f"{{{symbol}}}_{{{','.join(parts)}}}"

    def _sumline(self, lhs: str, terms: list, total: Any) -> str:
        """`lhs = t1 + t2 + ... = total`, the middle of a very long sum elided. Each term is a group, so a page
        breaks a long sum onto several lines between terms only (split_line, the site's CSS), never inside one."""
        n, most = len(terms), self.ops["max_terms"]
        if n > most:
            terms = [*terms[:8], rf"\cdots\ (\text{{{n - 12} more terms}})", *terms[-4:]]
        if not terms:
            terms = ["0"]
        return f"{lhs} = {' + '.join(f'{{{t}}}' for t in terms)} = {num(total)}"

    # -- templates ---------------------------------------------------------------------------------------
    def render(self, template: str) -> str:
        return self._render_parts(parse_template(template), None)

    def _render_parts(self, parts: list, scope: dict | None) -> str:
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            v = self.eval(part, scope)
            out.append(v if isinstance(v, str) else ("" if v is None else num(v)))
        return "".join(out)
