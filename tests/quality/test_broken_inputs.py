"""Broken inputs: each malformed config, page or template makes `handstep build` stop cleanly.

For every case: exit status 2, exactly one line on stderr that names the file (and the line
or the key) and says what is wrong, no traceback, no control character on stderr (an escape
sequence quoted from the input would reach the terminal), nothing on stdout claiming a build,
and the previous site byte-for-byte as it was, with no temporary directory left next to it.
Inputs built to be expensive (a YAML alias bomb, a 15 MB value) must also stay cheap to refuse.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from quality_helpers import GOOD_CONFIG, build_command, handstep_build, hash_tree, make_inputs
from tiny_checkpoint import write_checkpoint, write_safetensors

BAD_CONFIG = "configs/bad.yaml"


@dataclass(frozen=True)
class Case:
    """One broken input: how to break a fresh fixture copy, and what the error line must hold."""

    apply: Callable[[Path], str | None]  # breaks the inputs; returns the config to build with (None: the good one)
    prefix: str  # the error line starts with this: the file, and `:line` when there is one
    fragments: tuple[str, ...]  # the key, the word or the message that must appear in the line
    lines: int = 1  # one line per problem: several only where one input holds several faults
    absent: tuple[str, ...] = ()  # what the line must not say (a key the config cannot set)
    max_seconds: float | None = None  # for inputs built to be expensive: the whole command's wall time...
    max_memory_mb: float | None = None  # ...its peak memory
    max_stderr: int | None = None  # ...and the length of what it prints


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


def config_link(target: str) -> Callable[[Path], str]:
    """Build with configs/link.yaml, a symbolic link to `target` (beside it), which is not there."""

    def apply(root: Path) -> str:
        (root / "configs" / "link.yaml").symlink_to(target)
        return "configs/link.yaml"

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


def append_bytes(rel: str, data: bytes) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        path.write_bytes(path.read_bytes() + data)

    return apply


def odd_page(make: Callable[[Path], None]) -> Callable[[Path], None]:
    """content/odd.md made by `make` (a FIFO, a link to nothing): never waited on, never a traceback."""

    def apply(root: Path) -> None:
        make(root / "content" / "odd.md")

    return apply


def empty_content(root: Path) -> None:
    for path in (root / "content").iterdir():
        path.unlink()


def alias_bomb(*keys: str, levels: int = 9) -> str:
    """A "billion laughs" under `keys` (a YAML list of `levels` anchors, each nine aliases of the one before): 9^levels
    strings in about 400 bytes."""
    lines = ['- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnopqrstuvwxyz"
    for before, name in zip(names[: levels - 1], names[1:levels], strict=True):
        lines.append(f"- &{name} [{','.join(['*' + before] * 9)}]")
    head = "".join(f"{'  ' * i}{key}:\n" for i, key in enumerate(keys))
    return head + "".join(f"{'  ' * len(keys)}{line}\n" for line in lines)


def merge_bomb() -> str:
    """The same with YAML merge keys (`<<: [*a, *a, ...]`), which copy a mapping's keys into another."""
    lines = ["- &a {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
    for before, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"- &{name} {{<<: [{','.join(['*' + before] * 9)}]}}")
    return "optimizer:\n  betas:\n" + "".join(f"    {line}\n" for line in lines)


def checkpoint(change: Callable[[Path, dict, dict[str, np.ndarray]], None] | None = None,
               texts: str = '["the cat sat"]', extra: str = "") -> Callable[[Path], str]:
    """Build with `model: {from: ckpt}` (a checkpoint folder written by write_checkpoint and broken by `change`),
    these texts, and `extra` lines of config."""

    def apply(root: Path) -> str:
        folder = root / "ckpt"
        conf, tensors = write_checkpoint(folder)
        if change is not None:
            change(folder, conf, tensors)
        (root / BAD_CONFIG).write_text(f"model: {{from: ckpt}}\ndata: {{texts: {texts}}}\ntrain_steps: 2\n{extra}",
                                       encoding="utf-8")
        return BAD_CONFIG

    return apply


def tensor(key: str, edit: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path, dict, dict], None]:
    """A change of one tensor of the checkpoint."""

    def change(folder: Path, conf: dict, tensors: dict[str, np.ndarray]) -> None:
        tensors[key] = edit(tensors[key])
        write_safetensors(folder / "model.safetensors", tensors)

    return change


def config_json(**changes) -> Callable[[Path, dict, dict], None]:
    """A change of the checkpoint's config.json."""

    def change(folder: Path, conf: dict, tensors: dict[str, np.ndarray]) -> None:
        (folder / "config.json").write_text(json.dumps({**conf, **changes}), encoding="utf-8")

    return change


def with_nan(value: np.ndarray) -> np.ndarray:
    value = value.copy()
    value[3, 5] = np.nan
    return value


def too_large(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float64) * 1e300  # finite, but its squares are not


def huge_config_json(folder: Path, conf: dict, tensors: dict[str, np.ndarray]) -> None:
    (folder / "config.json").write_text(json.dumps({**conf, "notes": "x" * 3_000_000}), encoding="utf-8")


def long_number_config_json(folder: Path, conf: dict, tensors: dict[str, np.ndarray]) -> None:
    """n_layer with 5000 digits: more than Python converts (4300)."""
    (folder / "config.json").write_text(json.dumps(conf).replace('"n_layer": 1', '"n_layer": 1' + "0" * 5000),
                                        encoding="utf-8")


TEXT_CONFIG = "model: {{d_model: 8, n_heads: 2, d_ff: 16}}\ndata: {{texts: [{text}]}}\ntrain_steps: 2\n"


def text(yaml_string: str) -> Callable[[Path], str]:
    """Build with one training text, written as a YAML double-quoted string (escapes such as \\e allowed)."""
    return config(TEXT_CONFIG.format(text=yaml_string))


CHEAP = {"max_seconds": 30.0, "max_memory_mb": 300.0, "max_stderr": 600}  # an expensive input stays cheap
B, E = BAD_CONFIG, "content/extra.md"
CASES: dict[str, Case] = {
    # -- config: YAML syntax ----------------------------------------------------------------
    "config yaml bad indentation": Case(config("model:\n  d_model: 8\n n_heads: 2\n"), B + ":", ("YAML",)),
    "config yaml unclosed list": Case(config('model:\n  vocab: ["<pad>", "<bos>"\n'), B + ":", ("YAML",)),
    "config yaml tab indentation": Case(config("model:\n\td_model: 8\n"), B + ":", ("YAML",)),
    "config top level is a list": Case(config("- 1\n- 2\n"), B, ("top level",)),
    "config not utf-8": Case(config(b"seed: 1\ndata:\n  texts: ['caf\xe9']\n"), B, ("UTF-8",)),
    "config file missing": Case(lambda root: "configs/nowhere.yaml", "configs/nowhere.yaml", ("not found",)),
    "config link to nothing": Case(config_link("gone.yaml"), "configs/link.yaml", ("link to nothing",)),
    "config link that loops": Case(config_link("link.yaml"), "configs/link.yaml", ("link to nothing",)),
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
        B, ("optimizer.lr",), absent=("init_std",)),
    "config init_std blows up the forward pass": Case(
        config("model: {d_model: 8, n_heads: 2, d_ff: 16, init_std: 1.0e+300}\ntrain_steps: 2\n"),
        B, ("model.init_std", "forward pass"), absent=("optimizer.lr",)),
    "config init_std too large for a number": Case(
        config("model: {d_model: 8, n_heads: 2, d_ff: 16, init_std: 1.0e+308}\ntrain_steps: 2\n"),
        B, ("model.init_std",), absent=("optimizer.lr",)),
    # -- config: sizes and expansions built to be expensive ---------------------------------------------------------
    "config file over 4 MiB": Case(config("seed: 1\n# " + "x" * (17 * 2**20) + "\n"), B,
                                   ("17 MiB", "4 MiB"), **CHEAP),
    "config 4 MB value is quoted cut": Case(config('seed: "' + "x" * 4_000_000 + '"\n'), B,
                                            ("seed", "integer", "…", "4,000,000 characters"), **CHEAP),
    "config alias bomb in a value": Case(config(alias_bomb("optimizer", "betas")), B,
                                         ("optimizer.betas", "aliases", "4 MiB"), **CHEAP),
    # Just under the size cap, two million one-letter values: counted from the parser's events, never built.
    "config flow list of 2M one-letter texts": Case(
        config("data:\n  texts: [" + ",".join(["a"] * 2_000_000) + "]\n"), B, ("250,000 YAML values",),
        **{**CHEAP, "max_seconds": 10.0, "max_memory_mb": 200.0}),
    "config flow list of 2M texts naming a checkpoint": Case(  # the up-to-date check reads `from` cheaply too
        config("model: {from: models/x}\ndata:\n  texts: [" + ",".join(["a"] * 2_000_000) + "]\n"), B,
        ("250,000 YAML values",), **{**CHEAP, "max_seconds": 10.0, "max_memory_mb": 200.0}),
    "config block list of 500k texts with a syntax error at the end": Case(
        config("data:\n  texts:\n" + "  - a\n" * 500_000 + "  - [\n"), B, ("250,000 YAML values",),
        **{**CHEAP, "max_seconds": 10.0, "max_memory_mb": 200.0}),
    "config alias bomb in the texts": Case(config(alias_bomb("data", "texts")), B, ("data.texts", "aliases"),
                                           **CHEAP),
    "config alias bomb of merge keys": Case(config(merge_bomb()), B, ("optimizer.betas", "aliases"), **CHEAP),
    "config alias bomb of one long string": Case(
        config('x: &x "' + "y" * 100_000 + '"\ndata:\n  texts: [' + ", ".join(["*x"] * 1000) + "]\n"), B,
        ("data.texts", "aliases"), **CHEAP),
    "config alias loop": Case(config("optimizer:\n  betas: &b [0.9, *b]\n"), B + ":2:", ("alias", "loop")),
    "config unknown key of 10,000 characters": Case(config("model:\n  ? " + "k" * 10_000 + "\n  : 1\n"), B,
                                                    ("model.'kkk", "10,000 characters", "unknown key"),
                                                    max_stderr=600),
    "config unknown key with an escape character": Case(config('model:\n  "d_\\e[31mmodel": 8\n'), B,
                                                        ("model.'d_\\x1b[31mmodel'", "unknown key")),
    "config value with an escape character": Case(config('optimizer: {name: "adam\\e[2J"}\n'), B,
                                                  ("optimizer.name", "'adam\\x1b[2J'")),
    "config duplicate key of 10,000 characters": Case(config(f"? {'a' * 10_000}\n: 1\n? {'a' * 10_000}\n: 2\n"),
                                                      B + ":3:", ("duplicate key", "10,000 characters"),
                                                      max_stderr=600),
    "config unknown tag of 100,000 characters": Case(config("seed: !" + "t" * 100_000 + " 5\n"), B + ":1:",
                                                     ("YAML", "…"), max_stderr=600),
    "config integer of 4000 digits": Case(config("model: {n_heads: 3" + "0" * 4000 + "}\n"), B,
                                          ("model.n_heads", "4,001 digits"), max_stderr=600),
    "config thousands of missing words": Case(
        config("model: {vocab: ['<pad>', '<bos>']}\ndata: {texts: ['" + " ".join(f"w{i}" for i in range(5000))
               + "']}\n"), B, ("model.vocab", "w0, w1", "and 4,990 more"), max_stderr=600),
    # -- config: characters no page can show -------------------------------------------------------------------------
    "config text with an escape character": Case(text('"the c\\eat sat"'), B,
                                                 ("data.texts[0]", "character 6 is U+001B", "remove it")),
    "config text with a NUL": Case(text('"the cat\\0"'), B, ("data.texts[0]", "character 8 is U+0000")),
    "config text with a bell": Case(text('"the \\acat"'), B, ("data.texts[0]", "U+0007")),
    "config text with DEL": Case(text('"the ca\\x7ft"'), B, ("data.texts[0]", "U+007F")),
    "config text with a C1 control": Case(text('"the ca\\x9bt"'), B, ("data.texts[0]", "U+009B")),
    "config text with a lone combining mark": Case(text('"the \\u0301cat sat"'), B,
                                                   ("data.texts[0]", "character 5 is U+0301", "start of a word")),
    "config text with a lone surrogate": Case(text('"the ca\\ud800t"'), B, ("data.texts[0]", "U+D800")),
    "config text with a private-use character": Case(text('"the ca\\ue000t"'), B, ("data.texts[0]", "U+E000")),
    "config second text with a control character": Case(text('"the cat", "the \\x1bmat"'), B,
                                                        ("data.texts[1]", "character 5 is U+001B")),
    "config vocab word with a control character": Case(
        config('model: {vocab: ["<pad>", "<bos>", "the", "c\\x07t"]}\ndata: {texts: ["the"]}\n'), B,
        ("model.vocab[3]", "character 2 is U+0007")),
    "config vocab word with a lone combining mark": Case(
        config('model: {vocab: ["<pad>", "<bos>", "the", "\\u0308x"]}\ndata: {texts: ["the"]}\n'), B,
        ("model.vocab[3]", "U+0308")),
    "config file name with an escape character": Case(lambda root: "configs/\x1b[31mnowhere.yaml",
                                                      "configs/\\x1b[31mnowhere.yaml", ("not found",)),
    # -- config: a checkpoint (model.from), whose hints name the checkpoint's files, never model.* ----------------
    "checkpoint weight is NaN": Case(checkpoint(tensor("transformer.h.0.attn.c_attn.weight", with_nan)), B,
                                     ("model.from", "ckpt/model.safetensors",
                                      "tensor transformer.h.0.attn.c_attn.weight holds NaN", "[3, 5]"),
                                     absent=("init_std", "optimizer.lr")),
    "checkpoint weight is infinite": Case(
        checkpoint(tensor("transformer.wpe.weight", lambda v: np.where(np.arange(v.size).reshape(v.shape) == 9,
                                                                      -np.inf, v))),
        B, ("ckpt/model.safetensors", "tensor transformer.wpe.weight holds -inf", "[1, 1]"), absent=("init_std",)),
    "checkpoint weights too large to compute with": Case(
        checkpoint(tensor("transformer.wte.weight", too_large)), B,
        ("model.from: ckpt", "forward pass", "another checkpoint"), absent=("init_std", "optimizer.lr")),
    "checkpoint with 10^9 layers": Case(checkpoint(config_json(n_layer=10**9)), B,
                                        ("model.from: ckpt/config.json: n_layer 1000000000", "smaller checkpoint"),
                                        absent=("model.n_layers", "model.d_model")),
    "checkpoint of 1e9 positions": Case(checkpoint(config_json(n_positions=10**9, n_embd=4096, n_head=2)), B,
                                        ("ckpt/config.json: n_", "smaller checkpoint"),
                                        absent=("model.n_positions", "model.d_model")),
    "checkpoint lr blows up in the recorded step": Case(checkpoint(extra="optimizer: {lr: 1.0e+300}\n"), B,
                                                        ("optimizer.lr",), absent=("init_std",)),
    "checkpoint text with an escape character": Case(checkpoint(texts='["the c\\eat"]'), B,
                                                     ("data.texts[0]", "U+001B")),
    "checkpoint config.json of 3 MB": Case(checkpoint(huge_config_json), B, ("model.from: ckpt",
                                                                            "config.json is over 1 MiB")),
    "checkpoint config.json quotes a long value cut": Case(checkpoint(config_json(model_type="m" * 100_000)), B,
                                                           ("config.json", "model_type", "100,000 characters"),
                                                           max_stderr=600),
    "checkpoint config.json with a 5000-digit number": Case(checkpoint(long_number_config_json), B,
                                                            ("config.json is not valid JSON", "4300")),
    "checkpoint config.json without n_layer": Case(checkpoint(config_json(n_layer=None)), B,
                                                   ("ckpt/config.json", "n_layer")),
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
    "page front matter alias bomb": Case(
        content("extra.md", "---\n" + alias_bomb("title") + "description: d\nsection: Reference\norder: 1\n---\n"),
        E + ":2:", ("title", "must be text", "items)"), **CHEAP),
    "page front matter over 64 KiB": Case(
        content("extra.md", page_text("body").replace("description:", "# " + "x" * 70_000 + "\ndescription:")),
        E + ":1:", ("front matter", "65,536")),
    "page front matter key with an escape character": Case(
        content("extra.md", page_text("body").replace("order: 1", 'order: 1\n"ti\\etle": x')), E + ":6:",
        ("unknown front matter key", "'ti\\x1btle'")),
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
    "page that is a FIFO": Case(odd_page(os.mkfifo), "content/odd.md", ("not a regular file",), max_seconds=60),
    "page that is a link to nothing": Case(odd_page(lambda p: p.symlink_to(p.with_name("gone.md"))), "content/odd.md",
                                           ("link to nothing",)),
    # -- templates -----------------------------------------------------------------------------
    "template missing": Case(remove("templates/page.html"), "templates/page.html", ("not found",)),
    "template base missing": Case(remove("templates/base.html"), "templates/base.html", ("not found",)),
    "template syntax error": Case(edit("templates/page.html", "{% endblock %}", "{% endblok %}"),
                                  "templates/page.html", ("endblok",)),
    "template undefined variable": Case(edit("templates/page.html", "{{ page.title }}", "{{ page.no_such_field }}"),
                                        "templates/page.html", ("no_such_field",)),
    "template python error": Case(edit("templates/page.html", "<h1>{{ page.title }}</h1>",
                                       "<h1>{{ page.title + 1 }}</h1>"),
                                  "templates/page.html:7:", ("can only concatenate str",)),
    "template division by zero": Case(edit("templates/base.html", "</body>", "{{ 1 / 0 }}</body>"),
                                      "templates/base.html:", ("ZeroDivisionError",)),
    "template not utf-8": Case(append_bytes("templates/base.html", b"caf\xe9\n"), "templates/base.html:",
                               ("not valid UTF-8", "0xe9")),
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


# `python -m site_build.cli ARGS`, that then writes its peak resident memory (VmHWM, kB) to the file named first.
# (The rusage of a child is no use here: its maxrss starts at the forking test process's own size.)
MEASURED_CLI = """
import atexit, runpy, sys
path = sys.argv.pop(1)

def peak():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(kb)

atexit.register(peak)
runpy.run_module("site_build.cli", run_name="__main__", alter_sys=True)
"""


def measured_build(inputs: Path, config: str, out: Path, cache: Path,
                   timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """`handstep_build`, with the command's wall time (s) and peak memory (MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        command = build_command(inputs, config, out, cache)
        assert command[1:3] == ["-m", "site_build.cli"], command
        start = time.monotonic()
        result = subprocess.run([command[0], "-c", MEASURED_CLI, str(peak), *command[3:]], cwd=inputs,
                                capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - start
        memory = int(peak.read_text()) / 1024 if peak.is_file() else float("inf")
    return result, seconds, memory


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

    if case.max_memory_mb is None and case.max_seconds is None:
        result, seconds, memory = handstep_build(inputs, config, out, cache), 0.0, 0.0
    else:
        result, seconds, memory = measured_build(inputs, config, out, cache)

    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.returncode == 2, f"exit {result.returncode}, stderr: {result.stderr[-3000:]!r}"
    assert len(lines) == case.lines, f"expected {case.lines} error line(s), got: {[line[:300] for line in lines]}"
    for line in lines:
        assert line.startswith(case.prefix), f"{line[:300]!r} should start with {case.prefix!r}"
        for fragment in case.fragments:
            assert fragment in line, f"{fragment!r} missing from {line[:1000]!r}"
        for word in case.absent:
            assert word not in line, f"{word!r} should not be in {line!r}: the config cannot set it"
    bad = re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", result.stderr)
    assert bad is None, f"stderr holds {bad.group()!r}, unescaped: {result.stderr[:300]!r}"
    if case.max_stderr is not None:
        assert len(result.stderr) <= case.max_stderr, f"{len(result.stderr):,} characters on stderr"
    if case.max_seconds is not None:
        assert seconds <= case.max_seconds, f"took {seconds:.1f} s"
    if case.max_memory_mb is not None:
        assert memory <= case.max_memory_mb, f"peaked at {memory:.0f} MB"
    assert "built " not in result.stdout
    assert hash_tree(out_parent) == before, "the previous site changed (or a temporary tree was left)"
