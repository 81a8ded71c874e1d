"""The words follow the config: the real site, built for a matrix of configs, shows every record and breaks no rule.

Each rule reads the built pages (their prose with the math taken out, the TeX sources of their formulas, their HTML,
the words of their pictures) and returns what it found wrong, naming the page. The rules catch the classes of defect
of issues 12 and 25: counts that do not agree with their nouns ("1 heads", in prose, in formulas that end in a count,
in SVG labels, captions and alt text), sentences about "the other 1 block", "all two blocks", the parts of a split
that do not add up to its total, a sentence cut before a numbered list, entities escaped twice, a trace-format example
that differs from the trace, training claims with `train_steps: 0`, texts numbered from 0 in prose, lists of positions
that miss an occurrence, heads numbered from 1, colliding symbols, "sum of 1 product", Jinja left in the output, a
missing space before a parenthesis, a claim about parameter counts that the numbers contradict.
`test_every_rule_can_fail` feeds each rule a bad snippet.

One Builder serves every build (KaTeX stays warm); the matrix takes about a minute.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from engine.notation import SIZES, generic
from site_build.build import Builder, Paths

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "one head": {"model": {"n_heads": 1}, "train_steps": 3},
    "three heads, two layers, d_ff 32": {"model": {"d_model": 24, "n_heads": 3, "n_layers": 2, "d_ff": 32},
                                         "train_steps": 3},
    "three layers": {"model": {"n_layers": 3}, "train_steps": 2},
    "one word": {"data": {"texts": ["cat"]}, "train_steps": 2},
    # a learning rate of 10 on two words: the training run's loss reaches exactly 0 (no log scale of it)
    "a loss that reaches 0": {"seed": 1, "optimizer": {"lr": 10}, "data": {"texts": ["the cat"]}, "train_steps": 20},
    "two texts of different lengths": {"data": {"texts": ["the cat", "the dog ran on the mat"]}, "train_steps": 3},
    "sgd with momentum": {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "train_steps": 3},
    "sgd without momentum or decay": {"optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0}, "train_steps": 3},
    "adam, decay all": {"optimizer": {"name": "adam", "weight_decay": 0.1, "decay": "all"}, "train_steps": 3},
    "train_steps 0": {"train_steps": 0},
    "derived vocab": {"data": {"texts": ["a b a c"]}, "train_steps": 3},
    "repeated words": {"data": {"texts": ["the dog ran on the mat the cat"]}, "train_steps": 20},
    "vocab words with specials": {"model": {"vocab": ["<pad>", "<bos>", "<eos>", "<b>", "a&b", "x_y", "$z$"]},
                                  "data": {"texts": ["<b> a&b x_y $z$ <b>"]}, "train_steps": 2},
    "untied output layer": {"model": {"tie_embeddings": False}, "train_steps": 3},
    "adam with L2": {"optimizer": {"name": "adam", "weight_decay": 0.05, "decay": "all"}, "train_steps": 3},
    "adam with L2, four heads, two layers, two texts of different lengths": {
        "model": {"n_heads": 4, "n_layers": 2}, "data": {"texts": ["the cat", "the dog ran on the mat"]},
        "optimizer": {"name": "adam", "weight_decay": 0.05, "decay": "all"}, "train_steps": 3},
    "one head, one token, one step, sgd": {"model": {"n_heads": 1}, "data": {"texts": ["cat"]},
                                          "optimizer": {"name": "sgd", "lr": 0.1}, "train_steps": 1},
    "untied, two layers, a batch, sgd": {"model": {"tie_embeddings": False, "n_layers": 2},
                                         "data": {"texts": ["the cat", "the dog ran on the mat"]},
                                         "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0}, "train_steps": 3},
}

# Llama sites (`model.arch: llama`): configs/llama.yaml, then the dimensions grouped-query attention and tying add.
LLAMA = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "llama.yaml").read_text(encoding="utf-8"))


def _llama(model: dict[str, Any] | None = None, **rest: Any) -> dict[str, Any]:
    """configs/llama.yaml with `model` keys changed and other sections replaced; a short training run."""
    return {**LLAMA, "model": {**LLAMA["model"], **(model or {})}, "train_steps": 3, **rest}


LLAMA_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": _llama(),
    "llama, no grouping (n_kv_heads = n_heads)": _llama({"n_kv_heads": 4}),
    "llama, one key/value head for all": _llama({"n_kv_heads": 1}),
    "llama, tied output layer": _llama({"tie_embeddings": True}),
    "llama, two layers": _llama({"n_layers": 2}),
    "llama, two texts of different lengths": _llama(data={"texts": ["the cat", "the dog ran on the mat"]}),
    "llama, sgd": _llama(optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9}),
    "llama, adam with L2": _llama(optimizer={"name": "adam", "weight_decay": 0.05, "decay": "all"}),
}


# -- what a rule reads --------------------------------------------------------------------------------------------
@dataclass
class Page:
    """One built page: its prose (math and code taken out), its code, the TeX of its formulas, its HTML, the words
    of its pictures (the text, title and description of each SVG, figure captions, calc headings, alt texts and ARIA
    labels, one a line), and the sentences marked as splitting a total (the `split` macro)."""

    name: str
    html: str
    prose: str = ""
    code: str = ""
    tex: list[str] = field(default_factory=list)
    labels: str = ""
    said: str = ""  # the prose, with a formula that ends in a whole number ("$N = 4$") read as that number
    splits: list[tuple[int, tuple[int, ...], str]] = field(default_factory=list)  # (total, parts, its words)


class _Reader(HTMLParser):
    SKIP = {"script", "style", "svg", "nav", "header", "footer"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool, bool]] = []  # (tag, math or skipped, code, a label's words)
        self.prose: list[str] = []
        self.said: list[str] = []  # the prose, a formula that ends in "= 4" read as "4"
        self.code: list[str] = []
        self.tex: list[str] = []
        self.labels: list[str] = []
        self.in_tex = False
        self.math_in_prose = False
        self.splits: list[tuple[int, tuple[int, ...], str]] = []
        self.open_splits: list[tuple[int, int, tuple[int, ...], list[str]]] = []  # (depth, total, parts, words)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        data = {"katex", "sidebar", "matrix-wrap", "calc-step", "check", "toc", "compare"}
        parent_hidden = bool(self.stack and self.stack[-1][1])
        hidden = parent_hidden or tag in self.SKIP or bool(data & set(cls))
        code = bool(self.stack and self.stack[-1][2]) or tag in ("code", "pre")
        # the words of a picture (an SVG's text, title and description, a figure's caption) and of a calc heading
        label = bool(self.stack and self.stack[-1][3]) or tag in ("svg", "figcaption") or "calc-text" in cls
        self.labels.extend(f"\n{v}\n" for k, v in attrs if k in ("alt", "aria-label") and v)
        if tag in ("br", "img", "input", "meta", "link", "hr", "wbr"):
            return
        if "katex" in cls and not parent_hidden and not code:
            self.math_in_prose = True
        self.stack.append((tag, hidden, code, label))
        if "split" in cls:  # a sentence that splits a total (the `split` macro): its numbers, then its words
            parts = tuple(int(x) for x in (a.get("data-parts") or "").split())
            self.open_splits.append((len(self.stack), int(a.get("data-total") or -1), parts, []))
        if label and tag in ("text", "title", "desc", "p", "figcaption"):
            self.labels.append("\n")
        if tag == "annotation" and a.get("encoding") == "application/x-tex":
            self.in_tex = True
            self.tex.append("")
        if tag in ("p", "li", "td", "th", "h1", "h2", "h3", "h4", "div", "tr", "summary") and not hidden:
            self.prose.append("\n")
            self.said.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "annotation" and self.in_tex:
            self.in_tex = False
            if self.math_in_prose:
                said = re.search(r"(?:^|=)\s*(\d+)$", self.tex[-1].strip())
                self.said.append(said.group(1) if said else " MATH ")
            self.math_in_prose = False
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                while self.open_splits and self.open_splits[-1][0] > len(self.stack):
                    _, total, parts, words = self.open_splits.pop()
                    self.splits.append((total, parts, "".join(words)))
                return

    def handle_data(self, data: str) -> None:
        if self.in_tex:
            self.tex[-1] += data
            return
        hidden, code, label = self.stack[-1][1:] if self.stack else (False, False, False)
        if label:
            self.labels.append(data)
        if hidden:
            return
        (self.code if code else self.prose).append(data)
        self.said.append(" CODE " if code else data)
        for split in self.open_splits:
            split[3].append(" CODE " if code else data)
        if code:
            self.prose.append(" CODE ")


def _spaced(parts: list[str]) -> str:
    return re.sub(r"[ \t\r\f\v]+", " ", "".join(parts))


def read(name: str, html: str) -> Page:
    main = html[html.find("<main"):] if "<main" in html else html
    # the exercises are appended by the build from their own source (site_build/exercises.py), not from content/
    main = main[: main.find('id="exercises"')] if 'id="exercises"' in main else main
    parser = _Reader()
    parser.feed(main)
    return Page(name, html, _spaced(parser.prose), "".join(parser.code), parser.tex, _spaced(parser.labels),
                _spaced(parser.said), parser.splits)


@dataclass
class Site:
    pages: dict[str, Page]
    trace: Any
    config: dict[str, Any]


Rule = Callable[[Site], list[str]]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(f: Rule) -> Rule:
        RULES[name] = f
        return f

    return register


def _found(site: Site, pattern: str, where: str = "prose", flags: int = 0) -> list[str]:
    out = []
    for page in site.pages.values():
        texts = page.tex if where == "tex" else [getattr(page, where)]
        for text in texts:
            for m in re.finditer(pattern, text, flags):
                out.append(f"{page.name}: …{text[max(0, m.start() - 40):m.end() + 40]!r}…")
    return out


SINGULARS = ("head", "block", "layer", "text", "position", "word", "step", "target", "row", "column", "dimension",
             "term", "product", "token", "tensor", "number", "element", "slice", "guess", "time", "score", "prediction",
             "id", "weight", "value", "key", "cell", "grid")
PLURALS = tuple(w + ("es" if w.endswith("s") else "s") for w in SINGULARS) + ("entries", "queries")
MODIFIERS = "(?:target|training|input|output|vocabulary|attention|parameter)"  # "4 target positions"


# -- the rules -------------------------------------------------------------------------------------------------------
@rule("a count agrees with its noun")
def count_agrees(site: Site) -> list[str]:
    one = rf"(?<![\d.,−×-])\b(?:1|one) (?:{MODIFIERS} )?(?:{'|'.join(PLURALS)})\b"
    many = rf"(?<![\d.,−×-])(?<![Tt]ext )\b(?:[02-9]|\d\d+|two|three|four|five|six|seven|eight|nine|ten) " \
           rf"(?:{MODIFIERS} )?(?:{'|'.join(SINGULARS)}|entry|query)\b(?![-'’/]|\s+(?:{'|'.join(PLURALS)})\b)"
    return [b for where in ("said", "labels") for b in _found(site, one, where) + _found(site, many, where)]


@rule("no 'the other 1'")
def no_other_one(site: Site) -> list[str]:
    return _found(site, r"\b(?:the )?other (?:1|one) (?:block|layer|head|text)s?\b") + \
        _found(site, r"\beach of the (?:1|one) \w+") + _found(site, r"\b[Tt]he other 1\b(?![.,]\d)", "said")


@rule("the parts of a split add up to its total")
def splits_add_up(site: Site) -> list[str]:
    """A sentence that splits a total into parts is marked by the `split` macro with its total and parts: they add
    up, and the sentence states them (the total somewhere, the parts in order, each as a number of its words)."""
    out = []
    for page in site.pages.values():
        for total, parts, words in page.splits:
            said = [int(x) for x in re.findall(r"(?<![\d.])(?<!\d,)\d+(?!\d|[.,]\d)", words)]
            if sum(parts) != total:
                out.append(f"{page.name}: the parts {list(parts)} add up to {sum(parts)}, not {total}: {words!r}")
            if len(parts) > 1:
                rest = said[:said.index(total)] + said[said.index(total) + 1:] if total in said else None
                found = iter(rest or [])
                if rest is None or not all(part in found for part in parts):
                    out.append(f"{page.name}: the sentence does not state the total {total} and the parts "
                               f"{list(parts)} in order: {words!r}")
    return out


@rule("'both', not 'all two'")
def both_not_all_two(site: Site) -> list[str]:
    return _found(site, r"\ball (?:two|2) [a-z]+", "said", re.I)


@rule("no sentence cut before a list")
def no_cut_sentence(site: Site) -> list[str]:
    out = []
    for page in site.pages.values():
        main = page.html[page.html.find("<main"):]
        for m in re.finditer(r'<ol start="(\d+)"', main):
            out.append(f"{page.name}: a numbered list starts at {m.group(1)}: a line began with a number")
        for m in re.finditer(r"<p>((?:(?!</p>).)*?)</p>\s*<(?:ol|ul)>", main, re.S):
            text = unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()
            if text and not re.search(r"[.:!?)\]]$", text):
                out.append(f"{page.name}: a sentence stops before a list: …{text[-60:]!r}")
    return out


@rule("no entity escaped twice")
def no_double_escape(site: Site) -> list[str]:
    return _found(site, r"&amp;(?:#\d+|#x[0-9a-fA-F]+|lt|gt|amp|quot);", "html") + \
        _found(site, r"&#\d+;|&(?:lt|gt|amp);", "prose") + _found(site, r"&#\d+;|&(?:lt|gt|amp);", "code")


@rule("the trace-format example is this trace")
def trace_format_matches(site: Site) -> list[str]:
    page = site.pages.get("trace-format.html")
    if page is None:
        return ["trace-format.html: missing"]
    out = []
    shapes = {r.name: list(r.value.shape) for r in site.trace.records}
    for m in re.finditer(r'"name": "([^"]+)"[^\n]*?"shape": \[([^\]]*)\]', page.code):
        name, shape = m.group(1), [int(x) for x in m.group(2).split(",") if x.strip()]
        if shapes.get(name) != shape:
            out.append(f"trace-format.html: {name} is shown with shape {shape}, the trace has {shapes.get(name)}")
    for m in re.finditer(r'"vocab": \["((?:[^"\\]|\\.)*)"', page.code):
        if json.loads(f'"{m.group(1)}"') != site.trace.labels["vocab"][0]:
            out.append(f"trace-format.html: the first vocab word shown is {m.group(1)!r}")
    if '"shape"' not in page.code:
        out.append("trace-format.html: the example shows no record")
    return out


@rule("no training claims without training")
def no_training_claims(site: Site) -> list[str]:
    if site.config.get("train_steps", 200) != 0:
        return []
    patterns = [r"falls? fast", r"(?:was|were) not enough", r"\b0 (?:training )?steps?\b", r"\bover 0\b",
                r"the one step", r"times lower"]
    return [b for p in patterns for b in _found(site, p, flags=re.I)] + _found(site, r"\bAfter training\b")


@rule("texts are counted from 1")
def texts_from_one(site: Site) -> list[str]:
    return _found(site, r"\b[Tt]ext 0\b") + _found(site, r"\bfirst text \(batch 0\)")


@rule("a list of positions names every occurrence")
def every_position(site: Site) -> list[str]:
    out = []
    inputs, targets = site.trace.labels["inputs"], np.asarray(site.trace["targets"])
    pattern = (r"[“\"]([^”\"\n]{1,40})[”\"],? (?:which )?appears at positions ((?:\d+(?:, | and ))*\d+)"
               r"(?: of text (\d+))?")
    for page in site.pages.values():
        for m in re.finditer(pattern, page.prose):
            word, listed = m.group(1), [int(x) for x in re.findall(r"\d+", m.group(2))]
            b = int(m.group(3)) - 1 if m.group(3) else 0
            n = int((targets[b] >= 0).sum())
            actual = [t for t, w in enumerate(inputs[b][:n]) if w == word]
            if listed != actual:
                out.append(f"{page.name}: “{word}” listed at {listed}, it is at {actual}")
    return out


@rule("heads are numbered from 0")
def heads_from_zero(site: Site) -> list[str]:
    return _found(site, r"Z_H\b|Z_\{H\}|Z_1\\?,?\|", "tex") + _found(site, r"\bhead [1-9]\d* of \d", flags=re.I)


@rule("one symbol, one meaning")
def symbols_unique(site: Site) -> list[str]:
    out = _found(site, r"X_L\b|\\mu\^\{[12f]\}|\\sigma\^\{2\\?,? ?[12f]\}|\\hat x\^\{[12f]\}", "tex")
    owners: dict[str, set[str]] = defaultdict(set)
    for r in site.trace.records:
        family = generic(r.name)
        if family.startswith("opt."):
            family = ".".join(family.split(".")[:2])
        elif family.startswith("updated."):
            family = "updated"
        owners[r.symbol].add(family)
    out += [f"symbol {s!r} names {sorted(f)}" for s, f in owners.items() if len(f) > 1]
    return out


@rule("formulas use the symbols page's letters in their meaning")
def symbols_in_their_meaning(site: Site) -> list[str]:
    """The symbols page (engine/notation.py SIZES) gives each letter one meaning; a formula may not use a count as a
    record (the gradient of H, the number of heads), repeat an index letter in one subscript ((W_O)_{c=0,c=3}),
    count optimizer steps with the position index t (they are k), or write 1/s (s is a key position; a row's
    spread is σ̂)."""
    counts = "|".join(re.escape(tex) for tex, _, source in SIZES if len(tex) == 1 and source)
    steps = Site({n: p for n, p in site.pages.items() if n.startswith("13-")}, site.trace, site.config)  # optimizer
    return (_found(site, rf"\\nabla\s*\{{?(?:{counts})(?![A-Za-z'])", "tex")
            + _found(site, r"_\{[^{}]*?\b([a-z])\s*=[^{}]*?,\s*\1\s*=", "tex")
            + _found(steps, r"(?:(?<![A-Za-z\\])[mv]|\\theta|\\mathrm\{buf\})_\{?t\b|(?<![A-Za-z\\])t\s*=", "tex")
            + _found(site, r"(?<![A-Za-z\\])1\s*/\s*s\b|\\frac\{1\}\{s\}", "tex"))


@rule("'sum of' only where there is a sum")
def sums_have_terms(site: Site) -> list[str]:
    return _found(site, r"sum of (?:1|one) (?:product|term)s?\b") + _found(site, r"sum of 0 ")


@rule("no template left in the output")
def no_template(site: Site) -> list[str]:
    return _found(site, r"\{\{|\}\}|\{%|%\}|\{##") + _found(site, r"(?<=[a-z,] )None\b|\bUndefined\b|\bnan\b")


@rule("a space before a parenthesis")
def space_before_paren(site: Site) -> list[str]:
    return _found(site, r"[a-z]\((?:layer|block|text|head|the|a|batch) ")


@rule("parameter counts agree with the claim")
def parameter_claim(site: Site) -> list[str]:
    out = []
    for page in site.pages.values():
        claim = r"more of the block's parameters than attention does \((\d+) here, against (\d+)"
        for m in re.finditer(claim, page.prose):
            if int(m.group(1)) <= int(m.group(2)):
                out.append(f"{page.name}: claims {m.group(1)} > {m.group(2)}")
        if "most of the block's parameters" in page.prose and "in GPT-2" not in page.prose:
            out.append(f"{page.name}: 'most of the block's parameters' without its numbers")
    return out


@rule("perplexity against the vocabulary")
def perplexity_claim(site: Site) -> list[str]:
    page = site.pages.get("07-output-loss.html")
    if page is None:
        return []
    worse = math.exp(float(site.trace["loss"])) > len(site.trace.labels["vocab"])
    said = re.search(r"That is (more|fewer) than the (\d+) words there are", page.prose)
    if said is None:
        return ["07-output-loss.html: the perplexity is not compared with the vocabulary"]
    if (said.group(1) == "more") != worse or int(said.group(2)) != len(site.trace.labels["vocab"]):
        return [f"07-output-loss.html: says {said.group(0)!r}, the numbers say worse={worse}"]
    return []


@rule("sentences are spaced")
def spaced(site: Site) -> list[str]:
    return _found(site, r"(?:\b(?<!\.)[a-z]{2,}|\s)[.?!][A-Z][a-z]+\b(?!\.)") + _found(site, r"[”][a-z]")


@rule("every step page works a number")
def step_pages_calc(site: Site) -> list[str]:
    return [f"{p.name}: a step page without a calc block" for p in site.pages.values()
            if 'class="step-map"' in p.html and 'class="calc-step"' not in p.html]


@rule("a row written out in part says how much")
def listed_in_part(site: Site) -> list[str]:
    """An aligned listing with a gap (a long row written out element by element, `listed()`) is announced in
    the prose as "k of the n elements", k the lines it writes out."""
    out = []
    for page in site.pages.values():
        for tex in page.tex:
            if r"\begin{aligned}" not in tex or r"\vdots" not in tex:
                continue
            k = len(re.findall(r"&=", tex))
            if not re.search(rf"\b{k} of the \d+ elements\b", page.prose):
                out.append(f"{page.name}: a listing of {k} lines with a gap, and no '{k} of the n elements'")
    return out


@rule("the update formula follows the optimizer")
def update_formula(site: Site) -> list[str]:
    opt = {"name": "adamw", "momentum": 0.0, **site.config.get("optimizer", {})}
    sgd = r"\\mathrm\{buf\}_k" if opt["momentum"] else r"\\eta\\,g_k"
    want = {"adamw": r"\\eta\\lambda", "adam": r"\\hat m_k", "sgd": sgd}
    out = []
    for page in site.pages.values():
        for tex in page.tex:
            if tex.startswith(r"\theta_k = \theta_{k-1}") and not re.search(want[opt["name"]], tex):
                out.append(f"{page.name}: update formula {tex!r} for {opt['name']} (momentum {opt['momentum']})")
    return out


@rule("with L2 decay inside Adam, no claim that every weight steps against its loss gradient")
def l2_steps(site: Site) -> list[str]:
    """Adam with weight decay adds λθ to the gradient before the moments: where λθ outweighs ∇θ the weight moves
    with its loss gradient, so an unqualified 'against the gradient' claim is false (issue 25, section 1)."""
    opt = {"name": "adamw", "weight_decay": 0.01, **site.config.get("optimizer", {})}
    if opt["name"] != "adam" or not opt["weight_decay"]:
        return []
    patterns = [r"opposite to the gradient's\)", r"every weight (?:with a nonzero gradient )?contributes a decrease",
                r"each weight moves a small step against its gradient"]
    return [b for p in patterns for b in _found(site, p)]


# -- building the matrix --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("config-matrix")
    b = Builder(Paths(cache=root / "cache"))
    b.scratch = root  # type: ignore[attr-defined]
    yield b
    b.close()


_counter = itertools.count()


def build_site(builder: Builder, config: dict[str, Any]) -> tuple[Any, Site]:
    n = next(_counter)
    path = builder.scratch / f"config-{n}.yaml"  # type: ignore[attr-defined]
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    out = builder.scratch / f"site-{n % 2}"  # type: ignore[attr-defined]
    report = builder.build(path, out)
    trace = builder.session.run(*builder.session.run_key(path, None)).trace
    pages = {p.name: read(p.name, p.read_text(encoding="utf-8")) for p in sorted(Path(out).glob("*.html"))}
    return report, Site(pages, trace, config)


def assert_whole_and_unbroken(report: Any, site: Site) -> None:
    """The site shows every record of its trace and breaks no rule."""
    assert report.missing == [], f"records no page shows: {report.missing}"
    assert report.shown == report.records
    broken = {rule_name: found for rule_name, check in RULES.items() if (found := check(site))}
    assert not broken, "\n".join(f"[{r}] {x}" for r, xs in broken.items() for x in xs[:5])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_site_builds_shows_every_record_and_breaks_no_rule(builder, name):
    report, site = build_site(builder, CONFIGS[name])
    assert_whole_and_unbroken(report, site)
    assert_tying_follows(site, CONFIGS[name].get("model", {}).get("tie_embeddings", True))
    optimizer = CONFIGS[name].get("optimizer", {}).get("name", "adamw")
    page = site.pages[f"13-{optimizer}.html"]  # named after the optimizer; the other names are not written
    assert not {f"13-{o}.html" for o in ("adamw", "adam", "sgd") if o != optimizer} & set(site.pages)
    assert page.splits, "the optimizer page marks no sentence that splits a total (the `split` macro)"


@pytest.mark.parametrize("name", list(LLAMA_CONFIGS))
def test_a_llama_site_builds_shows_every_record_and_breaks_no_rule(builder, name):
    report, site = build_site(builder, LLAMA_CONFIGS[name])
    assert_whole_and_unbroken(report, site)
    tie = LLAMA_CONFIGS[name]["model"]["tie_embeddings"]
    shown = unescape(" ".join(p.html for p in site.pages.values()))
    assert ("grad.lm_head.weight" in shown) == (not tie) and ("grad.wte.from_logits" in shown) == tie
    for page in site.pages.values():  # a llama block has no position table, no LayerNorm, no GELU, no biases
        for gpt2 in ("wpe", "c_attn", "c_fc", "ln_1.bias", "LayerNorm ln_", "GELU("):
            assert gpt2 not in page.prose, (page.name, gpt2)
    spoken = [f"{page.name}: {said!r}" for page in site.pages.values() for said in gpt2_words(page.name, page.html)]
    assert not spoken, "GPT-2's words on a Llama site:\n" + "\n".join(spoken)


# -- a Llama site speaks Llama -----------------------------------------------------------------------------------------
# A word of GPT-2's block, and what makes a sentence that names it a comparison rather than a claim about this model:
# the sentence also names Llama, or Llama's counterpart of the word, or says the model has none. "GPT-2" itself needs
# "Llama" in the same sentence. Only the comparison page may speak of GPT-2 freely.
GPT2_WORDS: dict[str, str] = {
    r"\bGPT-?2\b": r"Llama",
    r"LayerNorm": r"RMSNorm|Llama",
    r"\bGELU": r"SwiGLU|SiLU|Llama",
    r"position (?:table|embedding)|\bwpe\b|learned positions?": r"Llama|rotary|\bno position table",
    r"\bc_(?:attn|fc|proj)\b|Conv1D|GPT2LMHeadModel": r"Llama",
    # a layer's bias; Adam's bias correction and its moments' "two biases" are not a layer's
    r"(?<!two )\bbias(?:es)?\b(?![- ]correct)": r"Llama|\bno bias(?:es)?\b|without a bias",
}
COMPARISON_PAGES = ("gpt2-vs-llama.html",)


class _Blocks(HTMLParser):
    """The text of a page's blocks (paragraphs, list items, cells, headings, the words of its pictures, alt texts),
    inline code and all, math and navigation left out: what `gpt2_words` splits into sentences."""

    BLOCK = {"p", "li", "td", "th", "h1", "h2", "h3", "h4", "div", "tr", "summary", "figcaption", "caption", "dt",
             "dd", "text", "title", "desc", "pre", "table", "blockquote"}
    SKIP = {"script", "style", "nav", "header", "footer"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = [""]
        self.stack: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "img", "input", "meta", "link", "hr", "wbr"):
            self.blocks.extend(v for k, v in attrs if k in ("alt", "aria-label") and v)
            return
        cls = set((dict(attrs).get("class") or "").split())
        hidden = bool(self.stack and self.stack[-1][1]) or tag in self.SKIP or bool({"katex", "sidebar", "toc"} & cls)
        self.stack.append((tag, hidden))
        if not hidden:
            self.blocks.extend(v for k, v in attrs if k in ("alt", "aria-label") and v)
        if tag in self.BLOCK:
            self.blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                if tag in self.BLOCK:
                    self.blocks.append("")
                return

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1][1]):
            self.blocks[-1] += data


def gpt2_words(name: str, html: str) -> list[str]:
    """The sentences of a page of a Llama site that name a part of GPT-2's block as if the model had it."""
    if name in COMPARISON_PAGES:
        return []
    reader = _Blocks()
    reader.feed(html[html.find("<main"):] if "<main" in html else html)
    out = []
    for block in reader.blocks:
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z“‘(`\d])", " ".join(block.split())):
            if any(re.search(word, sentence) and not re.search(contrast, sentence, re.I)
                   for word, contrast in GPT2_WORDS.items()):
                out.append(sentence)
    return out


def test_gpt2_words_are_caught_and_comparisons_are_not():
    bad = ["<p>The model is GPT-2 itself, only smaller.</p>", "<p>Each block starts with a LayerNorm.</p>",
           "<ol><li>LayerNorm → attention</li></ol>", "<p>The feed-forward layer is <code>c_fc</code>, GELU.</p>",
           "<p>each position a row of the position table</p>", "<p>The key bias gets zero gradient.</p>",
           '<svg><text>wpe 8×16</text></svg>', '<img alt="a final LayerNorm" src="x.png">',
           "<p>Compared with Hugging Face GPT-2. Llama is next.</p>"]  # another sentence's Llama does not count
    good = ["<p>Like GPT-2, Llama normalises before each sub-layer.</p>", "<p>RMSNorm drops LayerNorm's mean.</p>",
            "<p>There is no position table.</p>", "<p>There is no bias, as nowhere in this model.</p>",
            "<p>Without bias correction the first step would be too small; the two biases do not cancel.</p>",
            '<p>GPT-2 everywhere <span class="katex">\\mathrm{GELU}</span>, says Llama.</p>']
    for html in bad:
        assert gpt2_words("page.html", f"<main>{html}</main>"), html
    for html in good:
        assert gpt2_words("page.html", f"<main>{html}</main>") == [], html
    assert gpt2_words("gpt2-vs-llama.html", f"<main>{bad[0]}</main>") == []


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_a_site_from_a_hugging_face_checkpoint_shows_every_record_and_its_words_follow(builder, tmp_path, tie):
    """`model: {from: PATH}`: the whole site builds, breaks no rule, and says what a checkpoint is: its own first
    token (GPT-2's <|endoftext|>) and padding, weights read from the file, not drawn from a seed. An untied
    checkpoint (tie_word_embeddings false) shows its own output layer, lm_head.weight, and says it is untied."""
    from hf_checkpoint import make_checkpoint

    folder = make_checkpoint(tmp_path, tie=tie)
    report, site = build_site(builder, {"model": {"from": str(folder)}, "train_steps": 3,
                                        "data": {"texts": ["the cat sat on the mat", "a dog ran"]}})
    assert_whole_and_unbroken(report, site)
    for page in site.pages.values():
        if page.name == "config.html":  # it documents every key, the word-level vocabulary's too
            continue
        for word in ("&lt;bos&gt;", "&lt;pad&gt;", "\u27e8bos\u27e9", "drawn at initialisation", "seeded by"):
            assert word not in page.html, (page.name, word)
        assert "random weights" not in page.prose, page.name
    embeddings = site.pages["01-embeddings.html"]
    assert "CODE starts every text" in " ".join(embeddings.prose.split()) and "<|endoftext|>" in embeddings.code
    assert "read from the checkpoint's CODE" in " ".join(embeddings.prose.split())
    assert_tying_follows(site, tie)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_a_site_from_a_llama_checkpoint_folder_shows_every_record(builder, tmp_path, tie):
    """`model: {from: PATH}` with a Hugging Face Llama folder (config.json `model_type: llama`, bfloat16 weights, a
    `tokenizers` tokenizer): the llama site builds, shows every record and breaks no rule; its first token is the
    folder's BOS, and the output layer is tied or not as config.json says."""
    from hf_checkpoint import make_llama_checkpoint

    folder = make_llama_checkpoint(tmp_path, tie=tie)
    report, site = build_site(builder, {"model": {"from": str(folder)}, "train_steps": 2,
                                        "data": {"texts": ["the cat sat on the mat", "a dog ran"]}})
    assert site.trace.config["model"]["arch"] == "llama"
    assert_whole_and_unbroken(report, site)
    shown = unescape(" ".join(p.html for p in site.pages.values()))
    assert ("grad.lm_head.weight" in shown) == (not tie)
    assert not [p.name for p in site.pages.values() if "&lt;bos&gt;" in p.html and p.name != "config.html"]


def assert_tying_follows(site: Site, tie: bool) -> None:
    """The pages on the output layer say whether this run ties it, and show the records it made."""
    output = " ".join(site.pages["07-output-loss.html"].prose.split())
    backward = " ".join(site.pages["09-output-layer.html"].prose.split())
    assert ("There is no new weight matrix here" in output) == tie
    assert ("This model has an output layer of its own" in output) == (not tie)
    assert ("This is only half of the gradient" in backward) == tie
    assert ("This is the whole gradient" in backward) == (not tie)
    shown = unescape(" ".join(p.html for p in site.pages.values()))
    assert ("grad.lm_head.weight" in shown) == (not tie) and ("grad.wte.from_logits" in shown) == tie


# -- every rule can fail --------------------------------------------------------------------------------------------
class _Record:
    def __init__(self, name: str, shape: tuple[int, ...], symbol: str = "") -> None:
        self.name, self.value, self.symbol = name, np.zeros(shape), symbol


class _Trace:
    def __init__(self, records: list[_Record], inputs: list[list[str]], vocab: list[str], loss: float) -> None:
        self.records = records
        self.labels = {"inputs": inputs, "vocab": vocab}
        self._values = {"targets": np.zeros((len(inputs), len(inputs[0])), dtype=int), "loss": loss}

    def __getitem__(self, name: str) -> Any:
        return self._values[name]


def _site(html: str, name: str = "page.html", config: dict | None = None, trace: Any = None) -> Site:
    trace = trace or _Trace([_Record("wte", (10, 16), "W_{te}")], [["<bos>", "the", "cat", "the"]],
                            ["<pad>", "<bos>", "the", "cat"], 1.0)
    return Site({name: read(name, f"<main>{html}</main>")}, trace, config or {})


BAD: dict[str, Site] = {
    "a count agrees with its noun": _site("<p>so that the 1 heads can work side by side.</p>"),
    "a count agrees with its noun ": _site("<p>after 3 steps it writes text 2 word for word, in 2 step.</p>"),
    "no 'the other 1'": _site("<p>and in ln_2 of each of the other 1 block.</p>"),
    "no 'the other 1' ": _site("<p>changed 6863 of the 6864 weights (the other 1 is exactly where it was).</p>"),
    "the parts of a split add up to its total": _site(
        '<p><span class="split" data-total="107" data-parts="1 107">The other 107 did not: 1 has a gradient of '
        "exactly zero; 107 have a gradient smaller than 100 ε.</span></p>"),
    "the parts of a split add up to its total ": _site(  # the marks add up, the words do not say them
        '<p><span class="split" data-total="107" data-parts="1 106">The other 107 did not: 1 has a gradient of '
        "exactly zero; 107 have a gradient smaller than 100 ε.</span></p>"),
    "'both', not 'all two'": _site("<p>The gradient has come down through all two blocks.</p>"),
    "no sentence cut before a list": _site("<p>more likely at 8 of the 9 positions and less likely at</p>"
                                           '<ol start="1"><li>The largest gain</li></ol>'),
    "no entity escaped twice": _site("<p><code>&amp;#60;pad&amp;#62;</code></p>"),
    "the trace-format example is this trace": _site('<pre><code>{"name": "wte", "op": "param", "shape": [10, 17]}'
                                                    "</code></pre>", "trace-format.html"),
    "no training claims without training": _site("<p>Why the curve has this shape: the loss falls fast.</p>",
                                                 config={"train_steps": 0}),
    "texts are counted from 1": _site("<p>as everywhere, the tables show text 0 of the batch.</p>"),
    "a list of positions names every occurrence": _site("<p>The token “the” appears at positions 1 and 5.</p>",
                                                        trace=_Trace([], [["<bos>", "the", "dog", "ran", "on", "the",
                                                                           "mat", "the"]], ["<pad>"], 1.0)),
    "heads are numbered from 0": _site('<span class="katex"><annotation encoding="application/x-tex">Z = [Z_1\\,|\\,'
                                       "\\cdots\\,|\\,Z_H]</annotation></span>"),
    "one symbol, one meaning": _site("<p>x</p>", trace=_Trace([_Record("resid_1", (1,), "H"),
                                                               _Record("attn.q", (1,), "H")], [["a"]], ["a"], 1.0)),
    "formulas use the symbols page's letters in their meaning": _site(
        '<span class="katex"><annotation encoding="application/x-tex">\\nabla H_{t,c}</annotation></span>'),
    "'sum of' only where there is a sum": _site("<p>sum of 1 product</p>"),
    "no template left in the output": _site("<p>the loss is {{ value('loss') }}</p>"),
    "a space before a parenthesis": _site("<p>the output of the last transformer block(layer 1 of 2).</p>"),
    "parameter counts agree with the claim": _site("<p>it holds most of the block's parameters (1592 of them here, "
                                                   "against 2400 for attention).</p>", "06-feedforward.html"),
    "sentences are spaced": _site("<p>It fell to a tenth by step 12.It fell at every step; “cat”in that order.</p>"),
    "sentences are spaced ": _site('<p>so v = <span class="katex">x</span>.Click any number.</p>'),
    "every step page works a number": _site('<details class="step-map"></details><p>no worked number</p>'),
    "a row written out in part says how much": _site('<p>and the row:</p><span class="katex"><annotation '
                                                     'encoding="application/x-tex">\\begin{aligned} a_0 &= 1 \\\\ '
                                                     '&\\vdots \\\\ a_9 &= 2 \\end{aligned}</annotation></span>'),
    "the update formula follows the optimizer": _site('<span class="katex"><annotation encoding="application/x-tex">'
                                                      "\\theta_k = \\theta_{k-1} - \\eta\\,g_k</annotation></span>",
                                                      config={"optimizer": {"name": "sgd", "momentum": 0.9}}),
    "with L2 decay inside Adam, no claim that every weight steps against its loss gradient": _site(
        "<p>most values are close to +1 or −1 (the sign opposite to the gradient's), and the exceptions</p>",
        config={"optimizer": {"name": "adam", "weight_decay": 0.05}}),
    "perplexity against the vocabulary": _site("<p>That is fewer than the 10 words there are.</p>",
                                               "07-output-loss.html",
                                               trace=_Trace([], [["a"]], ["w"] * 10, 2.6622)),
}


@pytest.mark.parametrize("name", list(BAD))
def test_every_rule_can_fail(name):
    rule_name = name.strip()  # a trailing space: a second bad snippet for the same rule
    assert rule_name in RULES, f"no rule {rule_name!r}"
    assert RULES[rule_name](BAD[name]), f"the rule {rule_name!r} did not catch its bad snippet {name!r}"


def test_a_split_that_adds_up_and_says_so_passes():
    good = _site('<p><span class="split" data-total="6864" data-parts="6006 825 33">Of the 6864 weights, '
                 "<strong>6006</strong> moved against their loss gradient, 825 with it (12.0%) and 33 have a loss "
                 "gradient of exactly zero.</span> Those 825 sit in 15 tensors.</p>")
    assert RULES["the parts of a split add up to its total"](good) == []
    assert good.pages["page.html"].splits == [(6864, (6006, 825, 33), "Of the 6864 weights, 6006 moved against "
                                               "their loss gradient, 825 with it (12.0%) and 33 have a loss gradient "
                                               "of exactly zero.")]


def test_every_rule_has_a_bad_snippet():
    assert set(RULES) <= {name.strip() for name in BAD}


def test_the_matrix_covers_the_dimensions_the_issue_names():
    cfgs = list(CONFIGS.values())
    model = [c.get("model", {}) for c in cfgs]
    opt = [c.get("optimizer", {}) for c in cfgs]
    texts = [c.get("data", {}).get("texts", ["the cat sat on the mat"]) for c in cfgs]
    assert len(cfgs) >= 10
    assert {m.get("n_heads", 2) for m in model} >= {1, 3}
    assert {m.get("n_layers", 1) for m in model} >= {1, 2, 3}
    assert any(len(t) == 1 and len(t[0].split()) == 1 for t in texts)
    assert any(len(t) == 2 and len({len(x.split()) for x in t}) == 2 for t in texts)
    assert any(o.get("name") == "sgd" and o.get("momentum") for o in opt)
    assert any(o.get("name") == "sgd" and not o.get("momentum") for o in opt)
    assert any(o.get("name") == "adam" and o.get("weight_decay", 0) > 0 for o in opt)
    assert any(c.get("train_steps") == 1 and len(t) == 1 and len(t[0].split()) == 1
               and c.get("model", {}).get("n_heads") == 1 for c, t in zip(cfgs, texts))
    assert any(m.get("n_heads", 2) >= 4 and m.get("n_layers", 1) >= 2 for m in model)
    assert any(c.get("train_steps") == 0 for c in cfgs)
    assert any("data" in c and "vocab" not in c.get("model", {}) and "a" in c["data"]["texts"][0].split() for c in cfgs)
    assert any(len(t[0].split()) != len(set(t[0].split())) for t in texts)


def test_the_llama_matrix_covers_grouping_tying_layers_and_batches():
    model = [{**LLAMA["model"], **c["model"]} for c in LLAMA_CONFIGS.values()]
    assert all(m["arch"] == "llama" for m in model)
    groups = {m["n_heads"] // m["n_kv_heads"] for m in model}
    assert 1 in groups and len(groups) >= 3  # no grouping, some, all query heads on one key/value head
    assert {m["tie_embeddings"] for m in model} == {True, False}
    assert {m["n_layers"] for m in model} >= {1, 2}
    assert any(len(c.get("data", LLAMA["data"])["texts"]) > 1 for c in LLAMA_CONFIGS.values())
