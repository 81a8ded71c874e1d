"""Integrity: same inputs give the same bytes; a killed build eats nothing; config text is never markup."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import shutil
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
    for threads in ({}, {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}):  # a value the user set too
        out = subprocess.run([sys.executable, "-c", BLAS_THREADS], cwd=ROOT, env={**env, **threads},
                             capture_output=True, text=True, timeout=120, check=True)
        assert out.stdout.strip() == "1", threads


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


# -- a damaged cache is a miss -------------------------------------------------------------------
# Every kind of file a build of the fixture site writes into its cache folder (test_every_cache_kind_is_damaged
# keeps this list whole), with what must go too for a build to read it: a layer is read when the one above misses.
CACHE_KINDS = {
    "runs": [],  # the trace with its checks
    "pages": [],  # each rendered page
    "katex": [],  # the typeset formulas
    "stamps": [],  # what each output folder was built from (read by `handstep build` before anything else)
    "hashes": [],  # the sha256 of input files by their stat numbers (the npm packages', a checkpoint's)
}
PICKLED = ("runs", "pages")
# A pickle that raises OverflowError as it loads: BINUNICODE8 of 2**63 bytes.
OVERFLOW_PICKLE = b"\x80\x04\x8d" + (2 ** 63).to_bytes(8, "little") + b"."


def cache_files(cache: Path, kind: str) -> list[Path]:
    if kind in PICKLED:
        return sorted((cache / kind).glob("*.pickle"))
    return [cache / {"katex": "katex.json", "stamps": "stamps.json", "hashes": "hashes.json"}[kind]]


def _entry(payload: bytes) -> bytes:
    """A DiskCache entry holding `payload` with a digest that matches: damage that only unpickling can find."""
    from site_build.cache import VERSION

    return VERSION + hashlib.sha256(payload).digest() + payload


def _katex_entry(data, body: bytes | None = None) -> bytes:
    """katex.json holding `data` (any JSON; or the text `body`) with a digest that matches."""
    from site_build.render.katex import CACHE_HEAD

    body = json.dumps(data).encode() if body is None else body
    return CACHE_HEAD + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _katex_data(path: Path) -> dict:
    return json.loads(path.read_bytes().partition(b"\n")[2])


def _in_place_of(path: Path, make) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    make(path)


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "x").write_text("x")


# Each damage: (files of one kind, the cache they are in) -> None. Every file of the kind gets it.
COMMON_DAMAGE = {
    "truncated": lambda f, c: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
    "empty": lambda f, c: f.write_bytes(b""),
    "garbage": lambda f, c: f.write_bytes(random.Random(f.name).randbytes(max(64, f.stat().st_size))),
    "one byte changed": lambda f, c: f.write_bytes(_flip(f.read_bytes())),
    "deleted": lambda f, c: f.unlink(),
    "a folder in its place": lambda f, c: _in_place_of(f, _folder),
}
KIND_DAMAGE = {
    "pickle": {
        "a list": lambda f, c: f.write_bytes(_entry(pickle.dumps(["not", "a", "cache", "value"]))),
        "a dict of numbers": lambda f, c: f.write_bytes(_entry(pickle.dumps({"index.html": 1, "x": 2.5}))),
        "OverflowError": lambda f, c: f.write_bytes(_entry(OVERFLOW_PICKLE)),
        "another kind's entry": lambda f, c: f.write_bytes(
            next(p for p in sorted(c.glob("*/*.pickle")) if p.parent != f.parent).read_bytes()),
        "the old format": lambda f, c: f.write_bytes(b"handstep cache 1" + f.read_bytes()[len(_entry(b"")):]),
    },
    "katex": {
        "a list": lambda f, c: f.write_bytes(_katex_entry([1, 2, 3])),
        "formulas a list": lambda f, c: f.write_bytes(_katex_entry({**_katex_data(f), "formulas": ["x"]})),
        "formulas of numbers": lambda f, c: f.write_bytes(_katex_entry(
            {**_katex_data(f), "formulas": {k: 7 for k in _katex_data(f)["formulas"]}})),
        "wrong version": lambda f, c: f.write_bytes(_katex_entry({**_katex_data(f), "katex": ["0"]})),
        "deeply nested": lambda f, c: f.write_bytes(_katex_entry(None, b"[" * 100_000 + b"]" * 100_000)),
        "the old format": lambda f, c: f.write_bytes(f.read_bytes().partition(b"\n")[2]),
    },
    "stamps": {
        "a list": lambda f, c: f.write_text("[1, 2]"),
        "entries of the wrong types": lambda f, c: f.write_text(json.dumps(
            {k: {"inputs": v["inputs"], "files": "x", "summary": 5} for k, v in json.loads(f.read_text()).items()})),
        "entries as lists": lambda f, c: f.write_text(json.dumps({k: [] for k in json.loads(f.read_text())})),
        "deeply nested": lambda f, c: f.write_text("[" * 100_000 + "]" * 100_000),
    },
    "hashes": {
        "a list": lambda f, c: f.write_text("[1, 2]"),
        "files a list": lambda f, c: f.write_text(json.dumps({**json.loads(f.read_text()), "files": [1]})),
        "entries of the wrong types": lambda f, c: f.write_text(json.dumps({**json.loads(f.read_text()), "files": {
            k: ["1", 2.5, None, [], {}, 7] for k in json.loads(f.read_text())["files"]}})),
        "huge numbers": lambda f, c: f.write_text(json.dumps({**json.loads(f.read_text()), "files": {
            k: [10**300] * 5 + ["0" * 64] for k in json.loads(f.read_text())["files"]}})),
        "a number of 5,000 digits": lambda f, c: f.write_text('{"format": ' + "9" * 5000 + "}"),
        "deeply nested": lambda f, c: f.write_text("[" * 100_000 + "]" * 100_000),
    },
}


def _flip(data: bytes) -> bytes:
    at = len(data) // 2
    return data[:at] + bytes([data[at] ^ 0x08]) + data[at + 1:]


def _other(path: Path, pattern: str) -> Path:
    return next(p for p in sorted(path.parent.glob(pattern)) if p != path)


def _damages(kind: str) -> dict:
    own = KIND_DAMAGE["pickle" if kind in PICKLED else kind]
    return {**COMMON_DAMAGE, **own}


CASES = [(kind, damage) for kind in CACHE_KINDS for damage in _damages(kind)]


@pytest.fixture(scope="module")
def built_once(tmp_path_factory):
    """The fixture site built with a fresh cache: (inputs, the cache, the site's hash tree)."""
    base = tmp_path_factory.mktemp("damaged-cache")
    inputs = make_inputs(base / "inputs")
    build_ok(inputs, GOOD_CONFIG, base / "fresh" / "site", base / "cache")
    return inputs, base / "cache", hash_tree(base / "fresh" / "site")


def test_every_cache_kind_is_damaged(built_once):
    """Each file a build writes into its cache is of a kind the test below damages."""
    _, cache, _ = built_once
    listed = {p for kind in CACHE_KINDS for p in cache_files(cache, kind)}
    written = {p for p in cache.rglob("*") if p.is_file() and p.name not in {".handstep-cache", "build.lock"}}
    assert written == listed, sorted(str(p.relative_to(cache)) for p in written ^ listed)
    assert all(cache_files(cache, kind) for kind in CACHE_KINDS)


@pytest.mark.parametrize("kind, damage", CASES, ids=[f"{k}: {d}" for k, d in CASES])
def test_a_damaged_cache_entry_is_rebuilt(built_once, tmp_path, kind, damage):
    """Whatever is wrong with a cache entry, the next build reads it as a miss: it succeeds, says nothing of it,
    makes the same site as a build with a fresh cache, and writes the entry anew."""
    inputs, fresh_cache, fresh_site = built_once
    cache = tmp_path / "cache"
    shutil.copytree(fresh_cache, cache)
    out = tmp_path / "site"
    if kind == "stamps":  # the stamp of this very output folder is read: build there first
        build_ok(inputs, GOOD_CONFIG, out, cache)
    for above in CACHE_KINDS[kind]:
        for path in cache_files(cache, above):
            path.unlink()
    files = cache_files(cache, kind)
    assert files
    for path in files:
        _damages(kind)[damage](path, cache)

    result = handstep_build(inputs, GOOD_CONFIG, out, cache)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.startswith("built "), result.stdout + result.stderr
    assert hash_tree(out) == fresh_site
    assert cache_files(cache, kind) == files  # the build looked for these very entries (no other key)
    if damage != "a folder in its place":  # written anew, and read back whole
        _assert_readable(cache, kind, out)


def _assert_readable(cache: Path, kind: str, out: Path) -> None:
    from site_build.build import _text_files
    from site_build.cache import DiskCache
    from site_build.exercises import PageExercises
    from site_build.render import jinja

    if kind in PICKLED:
        for path in cache_files(cache, kind):
            entry = DiskCache(path.parent).get(path.stem)
            assert entry is not None, path
            if kind == "pages":  # and what the next build accepts: a page, or what is made of one page alone
                assert (jinja.PageResult.valid(entry) or PageExercises.valid(entry) or _text_files(entry)
                        or isinstance(entry, str)), type(entry)
    elif kind == "katex":
        formulas = _katex_data(cache / "katex.json")["formulas"]
        assert formulas and all(isinstance(v, str) for v in formulas.values())
    elif kind == "hashes":
        data = json.loads((cache / "hashes.json").read_text())
        assert data["files"] and all(len(entry) == 6 for entry in data["files"].values())
    else:
        assert str(out.resolve()) in json.loads((cache / "stamps.json").read_text())


def test_a_cache_folder_that_is_a_file_is_only_slower(built_once, tmp_path):
    """Each cache folder replaced by a file: nothing can be read from it or written to it, and the build succeeds."""
    inputs, fresh_cache, fresh_site = built_once
    cache = tmp_path / "cache"
    shutil.copytree(fresh_cache, cache)
    for name in ("runs", "pages"):
        shutil.rmtree(cache / name)
        (cache / name).write_text("not a folder")
    result = handstep_build(inputs, GOOD_CONFIG, tmp_path / "site", cache)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert hash_tree(tmp_path / "site") == fresh_site


def test_a_cache_folder_that_is_a_link_to_a_folder_of_the_users_is_never_pruned(built_once, tmp_path):
    """Each cache folder replaced by a link to a folder of the user's, full of files named like entries: the builds
    succeed (only slower) and delete or change none of them."""
    inputs, fresh_cache, fresh_site = built_once
    cache = tmp_path / "cache"
    shutil.copytree(fresh_cache, cache)
    mine = tmp_path / "mine"
    for name in ("runs", "pages"):
        shutil.rmtree(cache / name)
        (mine / name).mkdir(parents=True)
        for i in range(30):
            for ext in ("pickle", "json", "bin"):
                (mine / name / f"{i:064x}.{ext}").write_text(f"my file {i}\n")
        (cache / name).symlink_to(mine / name)
    before = hash_tree(mine)
    for seed in ("11", "12"):
        result = handstep_build(inputs, GOOD_CONFIG, tmp_path / "site", cache, "--seed", seed)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    assert hash_tree(mine) == before
    result = handstep_build(inputs, GOOD_CONFIG, tmp_path / "site", cache)
    assert result.returncode == 0 and hash_tree(tmp_path / "site") == fresh_site


# -- SIGTERM before and after the swap ----------------------------------------------------------------------------
# Runs `handstep build` with write.swap_in and stamp.record wrapped to send the build SIGTERM at a chosen point:
# just before the new site is swapped in, just after, or just before the stamp that says it is up to date.
INTERRUPTING_BUILD = """
import signal, sys
from site_build import stamp, write

point = sys.argv[1]
sig = signal.SIGHUP if point.startswith("hangup ") else signal.SIGTERM  # a closed terminal ends a build like SIGTERM
point = point.removeprefix("hangup ")
real_swap_in, real_record = write.swap_in, stamp.record


def swap_in(*args, **kwargs):
    if point == "before the swap":
        signal.raise_signal(sig)
    real_swap_in(*args, **kwargs)
    if point == "after the swap":
        signal.raise_signal(sig)


def record(*args, **kwargs):
    if point == "before the stamp":
        signal.raise_signal(sig)
    real_record(*args, **kwargs)


write.swap_in, stamp.record = swap_in, record
from site_build.cli import main

sys.exit(main(sys.argv[2:]))
"""
REPLACED = ("handstep: interrupted after out/site/ was replaced: it holds the new site, complete with its search "
            "index, but the cache and the record that out/site/ is up to date may not be written; run the same build "
            "again to finish (it uses what is cached)")
SIGTERM_POINTS = {
    "before the swap": "handstep: interrupted; nothing was replaced (out/site/ is as it was)",
    "after the swap": REPLACED,
    "before the stamp": REPLACED,
    "hangup before the swap": "handstep: interrupted; nothing was replaced (out/site/ is as it was)",
    "hangup after the swap": REPLACED,
}


@pytest.mark.parametrize("point", list(SIGTERM_POINTS))
def test_sigterm_says_whether_the_site_was_replaced(point, tmp_path):
    """The last line says what the interrupted build left; the site is the old one or the new one, whole; and
    the next build builds (it never says "up to date" over a build that did not finish) the same site as a fresh
    build of the same inputs."""
    inputs = make_inputs(tmp_path / "inputs")
    out, cache = inputs / "out" / "site", tmp_path / "cache"
    build_ok(inputs, GOOD_CONFIG, out, cache)
    before = hash_tree(out)
    page = inputs / "content" / "index.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nA new sentence.\n", encoding="utf-8")
    driver = tmp_path / "interrupting_build.py"
    driver.write_text(INTERRUPTING_BUILD, encoding="utf-8")
    argv = build_command(inputs, GOOD_CONFIG, Path("out/site"), cache)[3:]  # ["build", ...]

    result = subprocess.run([sys.executable, str(driver), point, *argv], cwd=inputs, capture_output=True,
                            text=True, timeout=300)

    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == SIGTERM_POINTS[point]
    assert sorted(p.name for p in out.parent.iterdir()) == ["site"]  # no temporary folder left
    fresh = tmp_path / "fresh" / "site"
    build_ok(inputs, GOOD_CONFIG, fresh, tmp_path / "fresh-cache")
    if point.endswith("before the swap"):
        assert hash_tree(out) == before
    else:
        assert hash_tree(out) == hash_tree(fresh)  # the whole new site, search index and all
    again = handstep_build(inputs, GOOD_CONFIG, out, cache)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("built "), again.stdout
    assert hash_tree(out) == hash_tree(fresh)
    assert "up to date" in handstep_build(inputs, GOOD_CONFIG, out, cache).stdout  # and now it is recorded
