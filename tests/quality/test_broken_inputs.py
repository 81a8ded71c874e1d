"""Broken inputs: each malformed config, page or template makes `handstep build` stop cleanly.

For every case: exit status 2, exactly one line on stderr that names the file (and the line
or the key) and says what is wrong, no traceback, nothing on stdout claiming a build, and the
previous site byte-for-byte as it was, with no temporary directory left next to it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from quality_helpers import GOOD_CONFIG, handstep_build, hash_tree, make_inputs

BAD_CONFIG = "configs/bad.yaml"


@dataclass(frozen=True)
class Case:
    """One broken input: how to break a fresh fixture copy, and what the error line must hold."""

    apply: Callable[[Path], str | None]  # breaks the inputs; returns the config to build with (None: the good one)
    prefix: str  # the error line starts with this: the file, and `:line` when there is one
    fragments: tuple[str, ...]  # the key, the word or the message that must appear in the line
    lines: int = 1  # one line per problem: several only where one input holds several faults


def config(text: str | bytes) -> Callable[[Path], str]:
    """Build with configs/bad.yaml holding `text`."""

    def apply(root: Path) -> str:
        target = root / BAD_CONFIG
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text, encoding="utf-8")
        return BAD_CONFIG

    return apply


def page_text(body: str, title: str = "Extra", section: str = "Reference", order: int = 1) -> str:
    """A page with valid front matter: its body starts on line 7."""
    return f"---\ntitle: {title}\ndescription: An extra page.\nsection: {section}\norder: {order}\n---\n{body}"


def content(name: str, text: str | bytes) -> Callable[[Path], None]:
    """Add (or replace) content/<name>."""

    def apply(root: Path) -> None:
        target = root / "content" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text, encoding="utf-8")

    return apply


def extra(body: str) -> Callable[[Path], None]:
    """Add content/extra.md with valid front matter and this body (line 7 on)."""
    return content("extra.md", page_text(body))


def remove(rel: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return apply


def edit(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{rel} no longer contains {old!r}: update this case"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return apply


def empty_content(root: Path) -> None:
    for path in (root / "content").iterdir():
        path.unlink()


B, E = BAD_CONFIG, "content/extra.md"
CASES: dict[str, Case] = {
    # -- config: YAML syntax ----------------------------------------------------------------
    "config yaml bad indentation": Case(config("model:\n  d_model: 8\n n_heads: 2\n"), B + ":", ("YAML",)),
    "config yaml unclosed list": Case(config('model:\n  vocab: ["<pad>", "<bos>"\n'), B + ":", ("YAML",)),
    "config yaml tab indentation": Case(config("model:\n\td_model: 8\n"), B + ":", ("YAML",)),
    "config top level is a list": Case(config("- 1\n- 2\n"), B, ("top level",)),
    "config not utf-8": Case(config(b"seed: 1\ndata:\n  texts: ['caf\xe9']\n"), B, ("UTF-8",)),
    "config file missing": Case(lambda root: "configs/nowhere.yaml", "configs/nowhere.yaml", ("not found",)),
    # -- config: wrong types -----------------------------------------------------------------
    "config d_model is text": Case(config("model: {d_model: sixteen}\n"), B, ("model.d_model", "integer")),
    "config d_model is fractional": Case(config("model: {d_model: 16.5}\n"), B, ("model.d_model", "integer")),
    "config seed is a boolean": Case(config("seed: yes\n"), B, ("seed", "integer")),
    "config train_steps is text": Case(config("train_steps: many\n"), B, ("train_steps", "integer")),
    "config model is not a mapping": Case(config("model: 5\n"), B, ("model", "mapping")),
    "config lr is text": Case(config("optimizer: {lr: fast}\n"), B, ("optimizer.lr", "number")),
    "config vocab is text": Case(config("model: {vocab: the cat}\n"), B, ("model.vocab",)),
    # -- config: unknown keys ----------------------------------------------------------------
    "config unknown top key": Case(config("trian_steps: 3\n"), B, ("trian_steps", "unknown key")),
    "config unknown model key": Case(config("model: {dmodel: 8}\n"), B, ("model.dmodel", "unknown key")),
    "config unknown optimizer key": Case(config("optimizer: {beta1: 0.9}\n"), B, ("optimizer.beta1", "unknown")),
    # -- config: impossible sizes ------------------------------------------------------------
    "config heads do not divide d_model": Case(config("model: {d_model: 8, n_heads: 3}\n"), B,
                                               ("model.n_heads", "divide")),
    "config d_model zero": Case(config("model: {d_model: 0}\n"), B, ("model.d_model",)),
    "config negative layers": Case(config("model: {n_layers: -1}\n"), B, ("model.n_layers",)),
    "config negative seed": Case(config("seed: -4\n"), B, ("seed",)),
    "config zero init_std": Case(config("model: {init_std: 0}\n"), B, ("model.init_std",)),
    # -- config: data and vocab --------------------------------------------------------------
    "config word missing from vocab": Case(
        config('model: {vocab: ["<pad>", "<bos>", "<eos>", "the", "cat"]}\ndata: {texts: ["the zebra"]}\n'),
        B, ("model.vocab", "zebra")),
    "config vocab without bos": Case(config('model: {vocab: ["<pad>", "the"]}\ndata: {texts: ["the"]}\n'),
                                     B, ("model.vocab", "<bos>")),
    "config vocab duplicate word": Case(
        config('model: {vocab: ["<pad>", "<bos>", "the", "the"]}\ndata: {texts: ["the"]}\n'),
        B, ("model.vocab", "duplicate")),
    "config empty text": Case(config('data: {texts: [""]}\n'), B, ("data.texts[0]", "empty")),
    "config no texts": Case(config("data: {texts: []}\n"), B, ("data.texts",)),
    "config text too long": Case(config("model: {n_positions: 3}\ndata: {texts: ['the cat sat on the mat']}\n"),
                                 B, ("data.texts[0]", "n_positions")),
    # -- config: optimizer -------------------------------------------------------------------
    "config unknown optimizer": Case(config("optimizer: {name: adamx}\n"), B, ("optimizer.name", "adamx")),
    "config negative lr": Case(config("optimizer: {lr: -0.1}\n"), B, ("optimizer.lr",)),
    "config infinite lr": Case(config("optimizer: {lr: .inf}\n"), B, ("optimizer.lr", "finite")),
    "config one beta": Case(config("optimizer: {betas: [0.9]}\n"), B, ("optimizer.betas",)),
    "config beta of one": Case(config("optimizer: {betas: [0.9, 1.0]}\n"), B, ("optimizer.betas[1]",)),
    "config zero eps": Case(config("optimizer: {eps: 0}\n"), B, ("optimizer.eps",)),
    "config negative weight decay": Case(config("optimizer: {weight_decay: -1}\n"), B,
                                         ("optimizer.weight_decay",)),
    "config unknown decay rule": Case(config("optimizer: {decay: some}\n"), B, ("optimizer.decay",)),
    # A learning rate the recorded step survives but the train_steps run turns into NaN/Inf.
    "config lr blows up over train_steps": Case(
        config("model: {d_model: 8, n_heads: 2, d_ff: 16}\noptimizer: {name: sgd, lr: 1.0e+30}\ntrain_steps: 50\n"),
        B, ("optimizer.lr", "train_steps")),
    "config lr blows up in the recorded step": Case(
        config("model: {d_model: 8, n_heads: 2, d_ff: 16}\noptimizer: {lr: 1.0e+60}\ntrain_steps: 0\n"),
        B, ("optimizer.lr",)),
    # -- pages: macros -------------------------------------------------------------------------
    "page unknown record": Case(extra('Text\n\n{{ matrix("L0.attn.score", head=0) }}\n'), E + ":9:",
                                ("unknown trace record", "L0.attn.scores")),
    "page bad index": Case(extra('x {{ value("L0.attn.weights", (0, 5, 0, 0)) }}\n'), E + ":7:",
                           ("bad index", "(0, 5, 0, 0)")),
    "page index with too few numbers": Case(extra('{{ calc("L0.attn.scores", (0, 1)) }}\n'), E + ":7:",
                                            ("bad index",)),
    "page missing head": Case(extra('{{ matrix("L0.attn.scores") }}\n'), E + ":7:", ("head",)),
    "page bad macro argument": Case(extra('\n{{ matrix("wte", colz=3) }}\n'), E + ":8:", ("colz",)),
    "page undefined name": Case(extra("{{ config.model.n_heads }}\n{{ nothing }}\n"), E + ":8:", ("nothing",)),
    "page jinja syntax error": Case(extra("fine\n{% for x in y %}\n"), E + ":", ("endfor",)),
    "page python error in a page": Case(extra("{{ 1 / 0 }}\n"), E + ":7:", ("division by zero",)),
    # -- pages: math ---------------------------------------------------------------------------
    "page katex error": Case(extra("Fine $x$.\n\nBroken $\\frac{a}{$ here.\n"), E + ":9:", ("KaTeX",)),
    "page katex unknown command": Case(extra("$\\nosuchcommand{x}$\n"), E + ":7:", ("KaTeX", "nosuchcommand")),
    "page unclosed inline math": Case(extra("Fine.\n\nBroken $x + y here.\n"), E + ":9:", ("$",)),
    "page unclosed display math": Case(extra("$$\nx + y\n\nmore text\n"), E + ":7:", ("$$",)),
    # -- pages: front matter -------------------------------------------------------------------
    "page missing front matter": Case(content("extra.md", "# Just a heading\n"), E + ":1:", ("front matter",)),
    "page front matter not closed": Case(content("extra.md", "---\ntitle: x\n"), E + ":1:", ("not closed",)),
    "page front matter bad yaml": Case(
        content("extra.md", "---\ntitle: x\ndescription: [unclosed\nsection: Reference\norder: 1\n---\nbody\n"),
        E + ":", ("not valid YAML",)),
    "page front matter is a list": Case(content("extra.md", "---\n- a\n- b\n---\nbody\n"), E + ":",
                                        ("front matter",)),
    "page front matter missing every key": Case(content("extra.md", "---\n---\nbody\n"), E, ("missing",), lines=4),
    "page order is text": Case(content("extra.md", "---\ntitle: t\ndescription: d\nsection: Reference\n"
                                       "order: first\n---\n"), E + ":5:", ("order",)),
    "page title is empty": Case(content("extra.md", "---\ntitle: ''\ndescription: d\nsection: Reference\n"
                                        "order: 1\n---\n"), E + ":2:", ("title", "empty")),
    "page unknown front matter key": Case(content("extra.md", "---\ntitle: t\ndescription: d\nsection: Reference\n"
                                                  "order: 1\ntilte: x\n---\n"), E + ":6:", ("tilte",)),
    "page unknown section": Case(content("extra.md", "---\ntitle: t\ndescription: d\nsection: Appendix\n"
                                         "order: 1\n---\n"), E + ":4:", ("Appendix",)),
    "page bad slug": Case(content("extra.md", "---\ntitle: t\ndescription: d\nsection: Reference\norder: 1\n"
                                  "slug: Not A Slug\n---\n"), E + ":", ("slug",)),
    "page duplicate order": Case(content("extra.md", page_text("body", section="Forward pass", order=1)),
                                 E + ":5:", ("order 1", "content/attention.md")),
    "page duplicate slug": Case(content("sub/attention.md", page_text("body")), "content/sub/attention.md",
                                ("attention", "content/attention.md")),
    # -- pages: links and files ----------------------------------------------------------------
    "page broken link": Case(extra("See [the page](nowhere.md).\n"), E + ":7:", ("nowhere.md",)),
    "page link to a missing anchor": Case(extra("See [the scores](attention.md#no-such-heading).\n"), E + ":7:",
                                          ("no-such-heading",)),
    "page not utf-8": Case(content("extra.md", page_text("fine\n").encode() + b"caf\xe9\n"), E + ":8:",
                           ("UTF-8",)),
    "no pages at all": Case(empty_content, "content", ("no pages",)),
    # -- templates -----------------------------------------------------------------------------
    "template missing": Case(remove("templates/page.html"), "templates/page.html", ("not found",)),
    "template base missing": Case(remove("templates/base.html"), "templates/base.html", ("not found",)),
    "template syntax error": Case(edit("templates/page.html", "{% endblock %}", "{% endblok %}"),
                                  "templates/page.html", ("endblok",)),
    "template undefined variable": Case(edit("templates/page.html", "{{ page.title }}", "{{ page.no_such_field }}"),
                                        "templates/page.html", ("no_such_field",)),
}


@pytest.fixture(scope="session")
def good_site(tmp_path_factory) -> tuple[Path, Path]:
    """A site built once from the untouched fixture (reused by every case), and the KaTeX cache dir."""
    base = tmp_path_factory.mktemp("good")
    inputs = make_inputs(base / "inputs")
    cache = base / "cache"
    result = handstep_build(inputs, GOOD_CONFIG, base / "site", cache)
    assert result.returncode == 0, result.stderr
    return base / "site", cache


def test_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_broken_input_stops_cleanly(name, good_site, tmp_path):
    case = CASES[name]
    site, cache = good_site
    inputs = make_inputs(tmp_path / "inputs")
    out_parent = tmp_path / "out"
    out = out_parent / "site"
    shutil.copytree(site, out)
    before = hash_tree(out_parent)
    config = case.apply(inputs) or GOOD_CONFIG

    result = handstep_build(inputs, config, out, cache)

    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}, stderr: {result.stderr!r}"
    assert len(lines) == case.lines, f"expected {case.lines} error line(s), got: {lines}"
    for line in lines:
        assert line.startswith(case.prefix), f"{line!r} should start with {case.prefix!r}"
        for fragment in case.fragments:
            assert fragment in line, f"{fragment!r} missing from {line!r}"
    assert "built " not in result.stdout
    assert hash_tree(out_parent) == before, "the previous site changed (or a temporary tree was left)"
