"""Integrity: same inputs give the same bytes; a killed build eats nothing; config text is never markup."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from quality_helpers import (
    GOOD_CONFIG,
    ROOT,
    build_command,
    handstep_build,
    hash_tree,
    html_pages,
    make_inputs,
)

from engine.config import config_from_dict

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"


def build_ok(inputs: Path, config: str | Path, out: Path, cache: Path) -> None:
    result = handstep_build(inputs, config, out, cache)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


# -- determinism -------------------------------------------------------------------------------
def test_fixture_site_builds_are_byte_identical(tmp_path):
    """Cold cache then warm cache, different output paths: the same bytes."""
    inputs = make_inputs(tmp_path / "inputs")
    build_ok(inputs, GOOD_CONFIG, tmp_path / "a" / "site", tmp_path / "cache")
    build_ok(inputs, GOOD_CONFIG, tmp_path / "b" / "site", tmp_path / "cache")
    a, b = hash_tree(tmp_path / "a" / "site"), hash_tree(tmp_path / "b" / "site")
    assert a == b, sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert "trace.json" in a


def test_default_site_builds_are_byte_identical(tmp_path):
    """The real site (content/, templates/, configs/default.yaml), built twice with `handstep build`."""
    digests = []
    for name in ("one", "two"):
        out = tmp_path / name / "site"
        result = subprocess.run([sys.executable, "-m", "site_build.cli", "build", "--out", str(out)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        digests.append(hash_tree(out))
    a, b = digests
    assert a == b, sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def test_trace_files_are_byte_identical(tmp_path):
    for name in ("a.json", "b.json"):
        subprocess.run([sys.executable, "-m", "site_build.cli", "trace", "--config", str(DEFAULT_CONFIG),
                        "--out", str(tmp_path / name)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


# Asks the OpenBLAS that NumPy loaded how many threads it uses (NumPy's wheels bundle scipy-openblas).
BLAS_THREADS = """
import ctypes, glob, os, sys
import site_build.cli
import numpy
libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__), os.pardir, "numpy.libs", "*openblas*"))
assert libs, "NumPy's bundled OpenBLAS was not found"
lib = ctypes.CDLL(libs[0])
get = next(getattr(lib, n) for n in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                                     "openblas_get_num_threads") if hasattr(lib, n))
print(get())
"""


def test_the_handstep_command_runs_blas_on_one_thread():
    """With a thread per core OpenBLAS may split a sum between threads, and the last bit of a big gradient would
    depend on the machine; the command pins one thread before NumPy loads (the GPT-2-shaped pages differed)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", BLAS_THREADS], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "1"


# -- a build killed midway ---------------------------------------------------------------------
KILL_POINTS = {
    # the temporary tree next to site/ has just been created: pages are being written
    "writing pages": lambda tmp: True,
    # the search index is being written into the temporary tree
    "indexing search": lambda tmp: (tmp / "pagefind").is_dir(),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_build_leaves_previous_site(point, tmp_path):
    inputs = make_inputs(tmp_path / "inputs")
    cache = tmp_path / "cache"
    out_parent = tmp_path / "out"
    out = out_parent / "site"
    build_ok(inputs, GOOD_CONFIG, out, cache)
    before = hash_tree(out)
    # The next build must differ, so a swap that slipped through would show.
    page = inputs / "content" / "index.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nA new sentence.\n", encoding="utf-8")
    reached = KILL_POINTS[point]

    for attempt in range(10):  # the window is short: if the build got past it, edit again and retry
        proc = subprocess.Popen(build_command(inputs, GOOD_CONFIG, out, cache), cwd=inputs,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        tmp = out_parent / f".site.build-{proc.pid}"
        killed = False
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if tmp.is_dir() and reached(tmp):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.0005)
            proc.wait(timeout=60)
        finally:
            _end_group(proc)
        if killed:
            break
        assert proc.returncode == 0, "the build failed before it could be killed"
        before = hash_tree(out)
        page.write_text(page.read_text(encoding="utf-8") + f"\nRetry {attempt}.\n", encoding="utf-8")
    else:
        pytest.fail(f"could not kill the build at '{point}' in 10 attempts")

    assert proc.returncode == -signal.SIGKILL
    assert hash_tree(out) == before, "the killed build changed the previous site"
    # The next build succeeds, shows the edit, and clears the killed build's leftovers.
    build_ok(inputs, GOOD_CONFIG, out, cache)
    assert "A new sentence." in (out / "index.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in out_parent.iterdir()) == ["site"]


def _end_group(proc: subprocess.Popen) -> None:
    """Stop what the killed build left running (its KaTeX and Pagefind children), by its group id."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()


# -- hostile text from the config ---------------------------------------------------------------
HOSTILE_WORDS = ["<script>alert(1)</script>", "<img/src=x/onerror=alert(2)>", '"', "&", "$", "\\", "{}", "{{7*7}}",
                 "café", "日本", "a_b^c", "%#~"]
HOSTILE_CONFIG = (
    "seed: 2\n"
    "model:\n"
    '  vocab: ["<pad>", "<bos>", "<eos>", ' + ", ".join(
        '"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in HOSTILE_WORDS) + "]\n"
    "  d_model: 8\n  n_heads: 2\n  d_ff: 16\n  n_layers: 1\n  n_positions: 12\n"
    "data:\n"
    '  texts: ["' + " ".join(w.replace("\\", "\\\\").replace('"', '\\"') for w in HOSTILE_WORDS) + '"]\n'
    "train_steps: 2\n"
)
HOSTILE_PAGE = """---
title: Hostile words
description: Config text that is markup elsewhere.
section: Reference
order: 1
---
Tokens: {% for t in trace.labels.inputs[0] %}[{{ token(loop.index0) }}] {% endfor %}

Words: {% for w in trace.labels.vocab %}[{{ w | text }}] {% endfor %}

{{ matrix("wte") }}

{{ vector("loss.per_token") }}

Math: {% for w in trace.labels.vocab %}$\\text{ {{ w | tex }} }$ {% endfor %}

{{ calc("loss.per_token", (0, 1)) }}

{{ calc("L0.attn.weights", (0, 0, 2, 1)) }}
"""


class _Scan(HTMLParser):
    """Collects script bodies, attribute values, text outside scripts, and KaTeX's visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.scripts: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.katex_depth = 0
        self.katex_text: list[str] = []
        self.errors = 0
        self.handlers: list[str] = []  # event-handler attributes: none in handstep's own markup
        self._katex_open: list[int] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers += [f"<{tag} {name}>" for name, _ in attrs if name.lower().startswith("on")]
        classes = (dict(attrs).get("class") or "").split()
        if "katex-error" in classes:
            self.errors += 1
        if tag not in {"br", "img", "input", "meta", "link", "hr", "col", "area", "base", "wbr", "source"}:
            self.stack.append(tag)
            if "katex-html" in classes:
                self._katex_open.append(len(self.stack))

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack:
                if self._katex_open and self._katex_open[-1] == len(self.stack):
                    self._katex_open.pop()
                    self.katex_text.append("\n")
                if self.stack.pop() == tag:
                    break

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)
        else:
            self.text.append(data)
            if self._katex_open:
                self.katex_text.append(data)


def _scan(html: str) -> _Scan:
    scan = _Scan()
    scan.feed(html)
    scan.close()
    return scan


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    inputs = make_inputs(base / "inputs")
    (inputs / "configs" / "hostile.yaml").write_text(HOSTILE_CONFIG, encoding="utf-8")
    (inputs / "content" / "hostile.md").write_text(HOSTILE_PAGE, encoding="utf-8")
    build_ok(inputs, "configs/hostile.yaml", base / "site", base / "cache")
    return base / "site"


def test_hostile_config_is_valid():
    config = config_from_dict(yaml.safe_load(HOSTILE_CONFIG), "hostile")
    assert list(config.model.vocab[3:]) == HOSTILE_WORDS
    assert config.data.texts[0].split() == HOSTILE_WORDS


def test_hostile_text_is_never_markup(hostile_site):
    for path in html_pages(hostile_site):
        html = path.read_text(encoding="utf-8")
        scan = _scan(html)
        assert "<script>alert" not in html and "<img/src" not in html, path.name
        assert not any("alert(" in s for s in scan.scripts), path.name
        assert not scan.handlers, f"{path.name}: {scan.handlers}"
        assert scan.errors == 0 and "katex-error" not in html, f"{path.name}: KaTeX error"
    page = _scan((hostile_site / "hostile.html").read_text(encoding="utf-8"))
    text = "".join(page.text)
    tokens = "[" + "] [".join(["<bos>", *HOSTILE_WORDS[:-1]]) + "]"
    assert tokens in text, "the tokens should read as themselves"
    words = "[" + "] [".join(["<pad>", "<bos>", "<eos>", *HOSTILE_WORDS]) + "]"
    assert words in text, "the vocab words should read as themselves"
    assert "49" not in re.findall(r"\[(\d+)\]", text)  # `{{7*7}}` is a word, not a Jinja expression


def test_hostile_text_renders_in_latex(hostile_site):
    """In math, each word comes out of KaTeX as its own characters (escaped for LaTeX, not dropped)."""
    page = _scan((hostile_site / "hostile.html").read_text(encoding="utf-8"))
    assert page.errors == 0
    shown = [re.sub(r"\s+", "", t) for t in "".join(page.katex_text).split("\n")]
    shown = [t for t in shown if t]
    for word in ["<pad>", "<bos>", "<eos>", *HOSTILE_WORDS]:
        # KaTeX builds an accented letter from the letter and the accent: é comes out as "e" + "ˊ".
        spellings = {word, unicodedata.normalize("NFD", word).replace("\u0301", "\u02ca")}
        assert spellings & set(shown), f"{word!r} not typeset as itself: {shown[:20]}"
