"""Every command and flag of `handstep`, given bad input, stops with one line and exit status 2, and touches
nothing: each case runs the real command in a small "world" folder (the fixture site's inputs, a user's
folder of files, a user's file, a symbolic link, a previous handstep site) and hashes the whole world before
and after. The output-safety rules of `--out` (README, "What --out replaces") are pinned here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from quality_helpers import GOOD_CONFIG, ROOT, hash_tree, make_inputs
from tiny_checkpoint import write_checkpoint

import engine

SITE_FLAGS = ("--content", "content", "--templates", "templates", "--cache", "cache")
WIDE = "model: {d_model: 256, d_ff: 1024, n_heads: 4}\ntrain_steps: 0\n"  # past two million values: a values file


@dataclass(frozen=True)
class Case:
    argv: Callable[[Path], list[str]]  # the arguments after `handstep`, given the world folder
    prefix: str  # the error line starts with this
    fragments: tuple[str, ...] = ()


def handstep(world: Path, *args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "site_build.cli", *args], cwd=world, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def build(*args: str) -> Callable[[Path], list[str]]:
    return lambda world: ["build", "--config", GOOD_CONFIG, *SITE_FLAGS, *args]


def serve(*args: str) -> Callable[[Path], list[str]]:
    return lambda world: ["serve", "--config", GOOD_CONFIG, *SITE_FLAGS, *args]


def fixed(*args: str) -> Callable[[Path], list[str]]:
    return lambda world: list(args)


def damaged(edit: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    """diff of the good trace against a copy damaged by `edit` (applied to the parsed JSON)."""

    def argv(world: Path) -> list[str]:
        data = json.loads((world / "good.json").read_text())
        edit(data)
        (world / "bad.json").write_text(json.dumps(data))
        return ["diff", "good.json", "bad.json"]

    return argv


def _record(data: dict, name: str) -> dict:
    return next(r for r in data["records"] if r["name"] == name)


def _reshape(data: dict) -> None:
    _record(data, "L0.attn.q")["shape"][-1] = 99


def _duplicate(data: dict) -> None:
    data["records"].append(dict(_record(data, "loss")))


def _ragged(data: dict) -> None:
    _record(data, "wte")["value"][2].pop()


CASES: dict[str, Case] = {
    # -- the command line itself ------------------------------------------------------------------
    "no command": Case(fixed(), "handstep: ", ("COMMAND",)),
    "unknown command": Case(fixed("bulid"), "handstep: ", ("bulid",)),
    "unknown flag": Case(build("--outt", "x"), "handstep: ", ("--outt",)),
    # -- build: --out --------------------------------------------------------------------------------
    "build --out a user's folder": Case(build("--out", "docs"), "--out docs: ",
                                        ("not empty and not a handstep site", "--force")),
    "build --out a file": Case(build("--out", "notes.txt"), "--out notes.txt: ", ("is a file",)),
    "build --out a file with --force": Case(build("--out", "notes.txt", "--force"), "--out notes.txt: ",
                                            ("is a file",)),
    "build --out a symbolic link": Case(build("--out", "link"), "--out link: ", ("symbolic link",)),
    "build --out a symbolic link to a site": Case(build("--out", "sitelink", "--force"), "--out sitelink: ",
                                                  ("symbolic link",)),
    "build --out /": Case(build("--out", "/", "--force"), "--out /: ", ("root of the file system",)),
    "build --out the current folder": Case(build("--out", ".", "--force"), "--out .: ", ("current folder",)),
    "build --out the parent folder": Case(build("--out", "..", "--force"), "--out ..: ", ("current folder",)),
    "build --out a git checkout": Case(build("--out", "project", "--force"), "--out project: ", ("git checkout",)),
    "build --out the content folder": Case(build("--out", "content", "--force"), "--out content: ",
                                           ("pages",)),
    "build --out a folder holding the cache": Case(
        lambda world: ["build", "--config", GOOD_CONFIG, "--content", "content", "--templates", "templates",
                       "--cache", "outer/cache", "--out", "outer", "--force"], "--out outer: ", ("cache",)),
    "build --out a folder holding the config": Case(build("--out", "configs", "--force"), "--out configs: ",
                                                    ("config",)),
    "build --out under a file": Case(build("--out", "notes.txt/site"), "--out notes.txt/site: ", ("is a file",)),
    # -- build: other flags --------------------------------------------------------------------------
    "build --content missing": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "nowhere",
                                               "--templates", "templates", "--cache", "cache", "--out", "out"],
                                    "--content nowhere: ", ("does not exist",)),
    "build --content a file": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "notes.txt",
                                              "--templates", "templates", "--cache", "cache", "--out", "out"],
                                   "--content notes.txt: ", ("not a folder",)),
    "build --templates missing": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "content",
                                                 "--templates", "nowhere", "--cache", "cache", "--out", "out"],
                                      "--templates nowhere: ", ("does not exist",)),
    "build --cache a file": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "content",
                                            "--templates", "templates", "--cache", "notes.txt", "--out", "out"],
                                 "--cache notes.txt: ", ("is a file",)),
    "build --cache a user's folder": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "content",
                                                     "--templates", "templates", "--cache", "docs", "--out", "out"],
                                          "--cache docs: ", ("not a handstep cache",)),
    "build --cache a symbolic link": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "content",
                                                     "--templates", "templates", "--cache", "link", "--out", "out"],
                                          "--cache link: ", ("symbolic link",)),
    "build --config missing": Case(lambda w: ["build", "--config", "configs/none.yaml", *SITE_FLAGS, "--out", "o"],
                                   "configs/none.yaml: ", ("not found",)),
    "build --config a folder": Case(lambda w: ["build", "--config", "configs", *SITE_FLAGS, "--out", "o"],
                                    "configs: ", ("directory",)),
    "build --seed text": Case(build("--seed", "seven", "--out", "o"), "handstep build: ", ("--seed", "seven")),
    "build --seed negative": Case(build("--seed", "-3", "--out", "o"), "handstep build: ", ("--seed",)),
    "build --compare missing": Case(build("--compare", "configs/none.yaml", "--out", "o"), "configs/none.yaml: ",
                                    ("not found",)),
    "build --compare-seed text": Case(build("--compare-seed", "x", "--out", "o"), "handstep build: ",
                                      ("--compare-seed",)),
    "build a config too big for memory": Case(
        lambda w: ["build", "--config", "configs/huge.yaml", *SITE_FLAGS, "--out", "o"],
        "configs/huge.yaml: ", ("model.d_model", "lower")),
    "build a training run too long": Case(
        lambda w: ["build", "--config", "configs/long.yaml", *SITE_FLAGS, "--out", "o"],
        "configs/long.yaml: ", ("train_steps", "lower")),
    # -- serve ----------------------------------------------------------------------------------------
    "serve --port too large": Case(serve("--port", "99999"), "handstep serve: ", ("--port", "99999")),
    "serve --port text": Case(serve("--port", "http"), "handstep serve: ", ("--port", "http")),
    "serve --out a user's folder": Case(serve("--out", "docs", "--port", "0"), "--out docs: ",
                                        ("not empty and not a handstep site",)),
    "serve --content missing": Case(lambda w: ["serve", "--config", GOOD_CONFIG, "--content", "nowhere",
                                               "--templates", "templates", "--port", "0"],
                                    "--content nowhere: ", ("does not exist",)),
    # -- trace ----------------------------------------------------------------------------------------
    "trace --out a folder": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "docs"), "--out docs: ",
                                 ("is a folder",)),
    "trace --out a user's file": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "notes.txt"),
                                      "--out notes.txt: ", ("not a handstep trace", "--force")),
    "trace --out a symbolic link": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "filelink"),
                                        "--out filelink: ", ("symbolic link",)),
    "trace --out under a file": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "notes.txt/t.json"),
                                     "--out notes.txt/t.json: ", ("is a file",)),
    "trace --config a folder": Case(fixed("trace", "--config", "docs", "--out", "t.json"), "docs: ", ("directory",)),
    "trace --seed text": Case(fixed("trace", "--seed", "x"), "handstep trace: ", ("--seed",)),
    "trace a config too big for memory": Case(fixed("trace", "--config", "configs/huge.yaml", "--out", "t.json"),
                                              "configs/huge.yaml: ", ("model.d_model",)),
    # -- diff -----------------------------------------------------------------------------------------
    "diff a missing file": Case(fixed("diff", "good.json", "none.json"), "none.json: ", ("not found",)),
    "diff a folder": Case(fixed("diff", "good.json", "docs"), "docs: ", ("directory",)),
    "diff a file that is not a trace": Case(fixed("diff", "good.json", "notes.txt"), "notes.txt: ",
                                            ("not a handstep trace",)),
    "diff one argument": Case(fixed("diff", "good.json"), "handstep diff: ", ("b",)),
    "diff --html a folder": Case(fixed("diff", "good.json", "good.json", "--html", "docs"), "--html docs: ",
                                 ("is a folder",)),
    "diff --html a user's file": Case(fixed("diff", "good.json", "good.json", "--html", "notes.txt"),
                                      "--html notes.txt: ", ("--force",)),
    "diff a record's shape changed": Case(damaged(_reshape), "bad.json: ", ("L0.attn.q", "shape")),
    "diff a value missing": Case(damaged(lambda d: _record(d, "wpe").pop("value")), "bad.json: ", ("wpe", "value")),
    "diff the config missing": Case(damaged(lambda d: d.pop("config")), "bad.json: ", ("config",)),
    "diff a duplicated record": Case(damaged(_duplicate), "bad.json: ", ("loss", "duplicate")),
    "diff a ragged row": Case(damaged(_ragged), "bad.json: ", ("wte",)),
    "diff a record without a name": Case(damaged(lambda d: d["records"][3].update(name=None)), "bad.json: ",
                                         ("record 3", "name")),
    # -- build and serve: a folder holding something else the build reads -----------------------------
    "build --out a folder holding the checkpoint folder": Case(
        lambda w: ["build", "--config", "configs/ckpt.yaml", *SITE_FLAGS, "--out", "models", "--force"],
        "--out models: ", ("checkpoint folder", "models/tiny")),
    "build --out the checkpoint folder": Case(
        lambda w: ["build", "--config", "configs/ckpt.yaml", *SITE_FLAGS, "--out", "models/tiny", "--force"],
        "--out models/tiny: ", ("checkpoint folder",)),
    "build --out holding a checkpoint named from the current folder": Case(
        lambda w: ["build", "--config", "configs/ckpt-here.yaml", *SITE_FLAGS, "--out", "models", "--force"],
        "--out models: ", ("checkpoint folder", "models/tiny")),
    "build --out a folder holding the --compare config": Case(
        build("--compare", "alt/compare.yaml", "--out", "alt", "--force"), "--out alt: ",
        ("--compare config", "alt/compare.yaml")),
    "build --out a folder holding the --compare config's checkpoint": Case(
        build("--compare", "configs/ckpt.yaml", "--out", "models", "--force"), "--out models: ",
        ("--compare config's checkpoint folder",)),
    "build --cache a folder holding the checkpoint folder": Case(
        lambda w: ["build", "--config", "configs/ckpt.yaml", "--content", "content", "--templates", "templates",
                   "--cache", "models", "--out", "out"], "--cache models: ", ("checkpoint folder",)),
    "serve --out a folder holding the checkpoint folder": Case(
        lambda w: ["serve", "--config", "configs/ckpt.yaml", *SITE_FLAGS, "--out", "models", "--force", "--port", "0"],
        "--out models: ", ("checkpoint folder",)),
    # -- places where nothing can be written -----------------------------------------------------------
    "build --out in /proc": Case(build("--out", "/proc/handstep-site"), "--out /proc/handstep-site: ",
                                 ("cannot write in",)),
    "serve --out in /proc": Case(serve("--out", "/proc/handstep-site", "--port", "0"), "--out /proc/handstep-site: ",
                                 ("cannot write in",)),
    "build --cache in /proc": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "content", "--templates",
                                              "templates", "--cache", "/proc/handstep-cache", "--out", "out"],
                                   "--cache /proc/handstep-cache: ", ("cannot write in",)),
    "trace --out in /proc": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "/proc/t.json"),
                                 "--out /proc/t.json: ", ("cannot write in",)),
    "notebook --out in /proc": Case(fixed("notebook", "--config", GOOD_CONFIG, "--out", "/proc/s.ipynb"),
                                    "--out /proc/s.ipynb: ", ("cannot write in",)),
    "notebook --out under a file": Case(fixed("notebook", "--config", GOOD_CONFIG, "--out", "notes.txt/s.ipynb"),
                                        "--out notes.txt/s.ipynb: ", ("is a file",)),
    "diff --html in /proc": Case(fixed("diff", "good.json", "good.json", "--html", "/proc/d.html"),
                                 "--html /proc/d.html: ", ("cannot write in",)),
    "diff --html under a file": Case(fixed("diff", "good.json", "good.json", "--html", "notes.txt/d.html"),
                                     "--html notes.txt/d.html: ", ("is a file",)),
    "trace --out a device, even with --force": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "/dev/null",
                                                          "--force"), "--out /dev/null: ", ("not a plain file",)),
    "diff --html a device, even with --force": Case(fixed("diff", "good.json", "good.json", "--html", "/dev/null",
                                                          "--force"), "--html /dev/null: ", ("not a plain file",)),
    # -- a big trace's values file, beside --out --------------------------------------------------------
    "trace --out beside a user's .bin": Case(fixed("trace", "--config", "configs/wide.yaml", "--out", "data.json"),
                                             "--out data.json: ", ("data.bin", "--force")),
    "trace --out a handstep trace beside a user's .bin": Case(
        fixed("trace", "--config", "configs/wide.yaml", "--out", "good.json"), "--out good.json: ",
        ("good.bin", "not the values file of good.json", "--force")),
    "trace --out beside a .bin folder, even with --force": Case(
        fixed("trace", "--config", "configs/wide.yaml", "--out", "folder.json", "--force"), "--out folder.json: ",
        ("folder.bin", "a folder")),
    "trace --out beside a .bin link, even with --force": Case(
        fixed("trace", "--config", "configs/wide.yaml", "--out", "link.json", "--force"), "--out link.json: ",
        ("link.bin", "symbolic link")),
    "trace --out ending in .bin, for a big trace": Case(fixed("trace", "--config", "configs/wide.yaml", "--out",
                                                              "t.bin"), "--out t.bin: ", ("t.json",)),
    "notebook --out beside a user's .trace.bin": Case(
        fixed("notebook", "--config", "configs/wide.yaml", "--out", "data.ipynb"), "--out data.ipynb: ",
        ("data.trace.bin", "--force")),
    # -- a command's own inputs are never written, even with --force -------------------------------------
    "trace --out the config, even with --force": Case(
        fixed("trace", "--config", GOOD_CONFIG, "--out", GOOD_CONFIG, "--force"), f"--out {GOOD_CONFIG}: ",
        ("the command's --config file", "never writes over its inputs")),
    "trace whose values file would be the config, even with --force": Case(
        fixed("trace", "--config", "configs/wide.bin", "--out", "configs/wide.json", "--force"),
        "--out configs/wide.json: ", ("configs/wide.bin", "the command's --config file")),
    "trace --out in the checkpoint folder, even with --force": Case(
        fixed("trace", "--config", "configs/ckpt.yaml", "--out", "models/tiny/config.json", "--force"),
        "--out models/tiny/config.json: ", ("checkpoint folder", "never writes over its inputs")),
    "notebook whose trace file would be the config, even with --force": Case(
        fixed("notebook", "--config", "configs/nb.trace.json", "--out", "configs/nb.ipynb", "--force"),
        "--out configs/nb.trace.json: ", ("the command's --config file",)),
    "notebook --out the config, even with --force": Case(
        fixed("notebook", "--config", "configs/nb.ipynb", "--out", "configs/nb.ipynb", "--force"),
        "--out configs/nb.ipynb: ", ("the command's --config file",)),
    "diff --html one of the traces, even with --force": Case(
        fixed("diff", "good.json", "good.json", "--html", "good.json", "--force"), "--html good.json: ",
        ("the command's first trace",)),
    # -- names the file system cannot take, or that name a folder ----------------------------------------
    "trace --out ending in /": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "new/"), "handstep trace: ",
                                    ("'new/' names a folder",)),
    "notebook --out ending in /": Case(fixed("notebook", "--config", GOOD_CONFIG, "--out", "s.ipynb/"),
                                       "handstep notebook: ", ("names a folder",)),
    "diff --html ending in /.": Case(fixed("diff", "good.json", "good.json", "--html", "new/."), "handstep diff: ",
                                     ("names a folder",)),
    "trace --out a name too long": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "a" * 300 + ".json"),
                                        "--out " + "a" * 150 + "…", ("too long for the file system",)),
    "trace --out a path too long": Case(fixed("trace", "--config", GOOD_CONFIG, "--out", "d/" * 3000 + "t.json"),
                                        "--out d/d/", ("too long for the file system",)),
    "notebook --out a name too long": Case(fixed("notebook", "--config", GOOD_CONFIG, "--out", "n" * 256 + ".ipynb"),
                                           "--out nnn", ("too long for the file system",)),
    "diff --html a name too long": Case(fixed("diff", "good.json", "good.json", "--html", "h" * 256 + ".html"),
                                        "--html hhh", ("too long for the file system",)),
    "build --out a name too long": Case(build("--out", "s" * 300), "--out sss", ("too long for the file system",)),
    "build --cache a name too long": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "content",
                                                     "--templates", "templates", "--cache", "c" * 300, "--out", "o"],
                                          "--cache ccc", ("too long for the file system",)),
    "trace --config a name too long": Case(fixed("trace", "--config", "c" * 300 + ".yaml", "--out", "t.json"), "ccc",
                                           ("cannot be read (File name too long)",)),
    "build --config a name too long": Case(lambda w: ["build", "--config", "c" * 300, *SITE_FLAGS, "--out", "o"],
                                           "--config ccc", ("too long for the file system",)),
    "build --content a name too long": Case(lambda w: ["build", "--config", GOOD_CONFIG, "--content", "c" * 300,
                                                       "--templates", "templates", "--cache", "cache", "--out", "o"],
                                            "--content ccc", ("too long for the file system",)),
    "notebook --out a name that is not UTF-8": Case(
        fixed("notebook", "--config", GOOD_CONFIG, "--out", os.fsdecode(b"n\xff.ipynb")), "--out n\\udcff.ipynb: ",
        ("its name is not UTF-8 text", "names its trace file")),
    "build --out a name that is not UTF-8": Case(build("--out", os.fsdecode(b"s\xff")), "--out s\\udcff: ",
                                                 ("its path is not UTF-8 text",)),
    "diff a device": Case(fixed("diff", "good.json", "/dev/zero"), "/dev/zero: ", ("not a plain file",)),
    "build --out a name with no room for its working folder": Case(
        build("--out", "s" * 250), "--out sss", ("its name is 250 bytes long", "at most 240")),
}


def make_world(root: Path) -> Path:
    """The fixture inputs plus the things a careless command could destroy."""
    world = make_inputs(root)
    (world / "configs" / "huge.yaml").write_text("model: {d_model: 100000, n_heads: 2}\n")
    (world / "configs" / "long.yaml").write_text("train_steps: 100000000\n")
    (world / "docs").mkdir()
    (world / "docs" / "thesis.md").write_text("years of work\n")
    (world / "notes.txt").write_text("my notes\n")
    (world / "home").mkdir()
    (world / "home" / ".bashrc").write_text("# mine\n")
    (world / "link").symlink_to(world / "docs")
    (world / "filelink").symlink_to(world / "notes.txt")
    (world / "project" / ".git").mkdir(parents=True)
    (world / "project" / "main.py").write_text("print('hello')\n")
    (world / "outer").mkdir()
    (world / "outer" / "keep.txt").write_text("keep\n")
    (world / "configs" / "wide.yaml").write_text(WIDE)
    (world / "configs" / "wide.bin").write_text(WIDE)  # a config named like the values file of configs/wide.json
    shutil.copy(world / GOOD_CONFIG, world / "configs" / "nb.trace.json")  # YAML, named like a notebook's trace
    shutil.copy(world / GOOD_CONFIG, world / "configs" / "nb.ipynb")
    (world / "data.bin").write_bytes(b"my measurements\n")  # a user's files named like a big trace's values file
    (world / "good.bin").write_bytes(b"\0" * 64)
    (world / "data.trace.bin").write_bytes(b"mine too\n")
    (world / "folder.bin").mkdir()
    (world / "folder.bin" / "inside.txt").write_text("inside\n")
    (world / "link.bin").symlink_to(world / "notes.txt")
    (world / "alt").mkdir()
    shutil.copy(world / GOOD_CONFIG, world / "alt" / "compare.yaml")
    # a Hugging Face checkpoint folder (made by the `good` fixture), named relative to the config's folder and to
    # the current folder: both as the engine finds it
    (world / "configs" / "ckpt.yaml").write_text(f"model: {{from: ../models/tiny}}\n{CKPT_REST}")
    (world / "configs" / "ckpt-here.yaml").write_text(f"model: {{from: models/tiny}}\n{CKPT_REST}")
    return world


CKPT_REST = "data: {texts: ['the cat sat on the mat']}\ntrain_steps: 2\n"


def make_checkpoint(folder: Path) -> None:
    """config.json, tokenizer.json and model.safetensors as `save_pretrained` leaves them (8 wide, 1 block), made
    without torch."""
    write_checkpoint(folder)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, Path]:
    """A handstep site and a trace made once from the fixture config, copied into each world."""
    base = tmp_path_factory.mktemp("good")
    world = make_inputs(base / "world")
    result = handstep(world, "build", "--config", GOOD_CONFIG, *SITE_FLAGS, "--out", "site")
    assert result.returncode == 0, result.stderr
    engine.run(engine.load_config(world / GOOD_CONFIG)).save(world / "good.json")
    make_checkpoint(base / "models" / "tiny")
    return world / "site", world / "good.json"


@pytest.fixture
def world(tmp_path: Path, good: tuple[Path, Path]) -> Path:
    world = make_world(tmp_path / "world")
    shutil.copytree(good[0], world / "site")
    (world / "sitelink").symlink_to(world / "site")
    shutil.copy(good[1], world / "good.json")
    shutil.copytree(good[0].parent.parent / "models", world / "models")
    return world


def test_enough_cases():
    assert len(CASES) >= 50


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_stops_cleanly_and_touches_nothing(name: str, world: Path):
    case = CASES[name]
    argv = case.argv(world)
    before = hash_tree(world)
    result = handstep(world, *argv, env={"HOME": str(world / "home")})
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr!r}"
    assert len(lines) == 1, lines
    assert lines[0].startswith(case.prefix), f"{lines[0]!r} should start with {case.prefix!r}"
    for fragment in case.fragments:
        assert fragment in lines[0], f"{fragment!r} missing from {lines[0]!r}"
    after = hash_tree(world)
    # A failed build may only have warmed its own cache; everything else is exactly as it was.
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith("cache/")} == set(), sorted(changed)


def test_build_out_home_is_refused_even_with_force(world: Path):
    result = handstep(world, *build("--out", "home", "--force")(world), env={"HOME": str(world / "home")})
    assert result.returncode == 2 and result.stderr.startswith("--out home: is your home folder")
    assert (world / "home" / ".bashrc").read_text() == "# mine\n"


def test_build_replaces_its_own_site_and_new_or_empty_folders(world: Path):
    (world / "empty").mkdir()
    for out in ("site", "empty", "new/deeper"):
        result = handstep(world, *build("--out", out)(world))
        assert result.returncode == 0, result.stderr
        assert (world / out / ".handstep-site").is_file() and (world / out / "index.html").is_file()


def test_force_replaces_a_users_folder_only_when_asked(world: Path):
    (world / "old").mkdir()
    (world / "old" / "draft.txt").write_text("draft\n")
    refused = handstep(world, *build("--out", "old")(world))
    assert refused.returncode == 2 and (world / "old" / "draft.txt").exists()
    forced = handstep(world, *build("--out", "old", "--force")(world))
    assert forced.returncode == 0, forced.stderr
    assert not (world / "old" / "draft.txt").exists() and (world / "old" / "index.html").is_file()


def test_a_stale_look_alike_folder_is_left_alone(world: Path):
    """A folder named like a killed build's temporary tree, but not one, is never deleted."""
    look_alike = world / ".site.build-999999"
    look_alike.mkdir()
    (look_alike / "mine.txt").write_text("mine\n")
    result = handstep(world, *build("--out", "site")(world))
    assert result.returncode == 0, result.stderr
    assert (look_alike / "mine.txt").read_text() == "mine\n"


def test_trace_writes_and_replaces_only_traces(world: Path):
    first = handstep(world, "trace", "--config", GOOD_CONFIG, "--out", "out/t.json")
    assert first.returncode == 0, first.stderr
    again = handstep(world, "trace", "--config", GOOD_CONFIG, "--seed", "3", "--out", "out/t.json")
    assert again.returncode == 0, again.stderr
    assert engine.load_trace(world / "out" / "t.json").config["seed"] == 3
    assert sorted(p.name for p in (world / "out").iterdir()) == ["t.json"]  # no temporary file left
    forced = handstep(world, "trace", "--config", GOOD_CONFIG, "--out", "notes.txt", "--force")
    assert forced.returncode == 0 and engine.load_trace(world / "notes.txt")


def test_trace_outside_the_checkout_uses_the_built_in_defaults(tmp_path: Path):
    result = handstep(tmp_path, "trace", "--out", "t.json")
    assert result.returncode == 0, result.stderr
    assert engine.load_trace(tmp_path / "t.json").config == engine.Config().to_dict()


def test_diff_html_writes_and_replaces_its_own_page(world: Path):
    for _ in range(2):
        result = handstep(world, "diff", "good.json", "good.json", "--html", "d.html")
        assert result.returncode == 0, result.stderr
    assert "handstep" in (world / "d.html").read_text()


def test_serve_refuses_a_taken_port_before_building(world: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = handstep(world, *serve("--port", str(port), "--out", "newsite")(world), timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"--port {port}: is already in use; pick another, e.g. --port {port + 1}"
    assert not (world / "newsite").exists()


def test_version():
    result = subprocess.run([sys.executable, "-m", "site_build.cli", "--version"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("handstep ") and result.stdout.strip()[9:][0].isdigit()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_build_leaves_the_previous_site_and_nothing_else(world: Path, sig: int):
    good = (world / GOOD_CONFIG).read_text()
    (world / "configs" / "slow.yaml").write_text(re.sub(r"(?m)^train_steps:.*$", "train_steps: 20000", good))
    before = hash_tree(world)
    proc = subprocess.Popen([sys.executable, "-m", "site_build.cli", "build", "--config", "configs/slow.yaml",
                             *SITE_FLAGS, "--out", "site"], cwd=world, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # well inside the training run
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == \
        "handstep: interrupted; nothing was replaced (site/ is as it was)"
    after = hash_tree(world)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith("cache/")} == set(), sorted(changed)


def test_a_big_trace_is_written_with_its_values_file(world: Path):
    """Past two million values the values go to `<name>.bin` beside the JSON, under that name."""
    result = handstep(world, "trace", "--config", "configs/wide.yaml", "--out", "out/wide.json")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (world / "out").iterdir()) == ["wide.bin", "wide.json"]
    trace = engine.load_trace(world / "out" / "wide.json")
    assert trace["L0.mlp.c_fc.weight"].shape == (256, 1024)


def one_line(result: subprocess.CompletedProcess[str], prefix: str, *fragments: str) -> str:
    """The command stopped with exit status 2 and one line on stderr that starts with `prefix`."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), lines
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing from {lines[0]!r}"
    return lines[0]


def unchanged_but_cache(before: dict[str, str], after: dict[str, str]) -> None:
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith("cache/")} == set(), sorted(changed)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trace(world: Path, config: str, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return handstep(world, "trace", "--config", config, "--out", out, *extra)


def test_a_big_traces_values_file_is_replaced_and_a_small_trace_removes_it(world: Path):
    """handstep's own values file (named by the trace it replaces, of its size) is replaced by the next big trace;
    a small trace writes none and removes it, so no stale pair is left."""
    assert trace(world, "configs/wide.yaml", "out/w.json").returncode == 0
    again = trace(world, "configs/wide.yaml", "out/w.json", "--seed", "3")
    assert again.returncode == 0, again.stderr
    assert engine.load_trace(world / "out" / "w.json").config["seed"] == 3
    assert sorted(p.name for p in (world / "out").iterdir()) == ["w.bin", "w.json"]
    small = trace(world, GOOD_CONFIG, "out/w.json")
    assert small.returncode == 0, small.stderr
    assert sorted(p.name for p in (world / "out").iterdir()) == ["w.json"]
    assert engine.load_trace(world / "out" / "w.json").config["seed"] == 5


def test_a_small_trace_leaves_a_users_values_file_alone(world: Path):
    before = sha256(world / "data.bin")
    result = trace(world, GOOD_CONFIG, "data.json")
    assert result.returncode == 0, result.stderr
    assert sha256(world / "data.bin") == before
    assert json.loads((world / "data.json").read_text())["values"] is None


def test_force_replaces_a_users_values_file(world: Path):
    result = trace(world, "configs/wide.yaml", "data.json", "--force")
    assert result.returncode == 0, result.stderr
    assert engine.load_trace(world / "data.json")["L0.mlp.c_fc.weight"].shape == (256, 1024)


def test_a_values_file_of_another_size_is_not_taken_for_handsteps(world: Path):
    """Beside a trace that names it, a values file is handstep's only with the size the trace says."""
    assert trace(world, "configs/wide.yaml", "out/w.json").returncode == 0
    with open(world / "out" / "w.bin", "ab") as f:
        f.write(b"appended")
    before = hash_tree(world)
    one_line(trace(world, "configs/wide.yaml", "out/w.json"), "--out out/w.json: ", "out/w.bin", "--force")
    assert hash_tree(world) == before
    small = trace(world, GOOD_CONFIG, "out/w.json")  # writes no values file: leaves that one alone
    assert small.returncode == 0 and (world / "out" / "w.bin").stat().st_size % 8 == 0
    assert "w.bin" in {p.name for p in (world / "out").iterdir()}


def test_a_notebook_replaces_its_own_trace_files(world: Path):
    big = handstep(world, "notebook", "--config", "configs/wide.yaml", "--out", "nb/s.ipynb")
    assert big.returncode == 0, big.stderr
    assert sorted(p.name for p in (world / "nb").iterdir()) == ["s.ipynb", "s.trace.bin", "s.trace.json"]
    small = handstep(world, "notebook", "--config", GOOD_CONFIG, "--out", "nb/s.ipynb")
    assert small.returncode == 0, small.stderr
    assert sorted(p.name for p in (world / "nb").iterdir()) == ["s.ipynb", "s.trace.json"]


def _full_disk(limit: int) -> Callable[[], None]:
    """Make the command's files unable to grow past `limit` bytes: its writes fail as on a full disk."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


FULL_DISK = {
    "trace --out": (fixed("trace", "--config", GOOD_CONFIG, "--out", "new/t.json"), "--out new/t.json: ", 20_000),
    "notebook --out": (fixed("notebook", "--config", GOOD_CONFIG, "--out", "new/s.ipynb"), "--out new/s.ipynb: ",
                       20_000),
    "notebook --out, a big trace": (fixed("notebook", "--config", "configs/wide.yaml", "--out", "new/s.ipynb"),
                                    "--out new/s.ipynb: ", 2**21),  # the run's values, as they are made
    "diff --html": (fixed("diff", "good.json", "good.json", "--html", "new/d.html"), "--html new/d.html: ", 4_000),
    "build --out": (build("--out", "new/site"), "--out new/site: ", 20_000),
}


@pytest.mark.parametrize("name", list(FULL_DISK))
def test_a_full_disk_is_one_line_and_leaves_nothing(world: Path, name: str):
    argv, prefix, limit = FULL_DISK[name]
    before = hash_tree(world)
    result = subprocess.run([sys.executable, "-m", "site_build.cli", *argv(world)], cwd=world, capture_output=True,
                            text=True, timeout=300, preexec_fn=_full_disk(limit),
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    one_line(result, prefix, "could not be written", "free some space")
    unchanged_but_cache(before, hash_tree(world))


def test_a_read_only_folder_is_one_line(world: Path):
    folder = world / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        try:
            (folder / "probe").touch()
        except PermissionError:
            pass
        else:  # root: permissions do not bind it (/proc stands in for it, in CASES)
            (folder / "probe").unlink()
            pytest.skip("this user may write in a read-only folder")
        before = hash_tree(world)
        for argv, prefix in outputs_under("readonly", "new/s.ipynb"):
            one_line(handstep(world, *argv(world)), prefix.split(" ")[0] + " readonly/", "cannot write in readonly",
                     "permission denied")
        unchanged_but_cache(before, hash_tree(world))
    finally:
        folder.chmod(0o755)


def outputs_under(folder: str, notebook: str = "s.ipynb") -> list[tuple[Callable[[Path], list[str]], str]]:
    """Each command's output (and the build's cache) under `folder`: (argv of the world, the message's start)."""
    return [(fixed("trace", "--config", GOOD_CONFIG, "--out", f"{folder}/t.json"), f"--out {folder}/t.json: "),
            (fixed("notebook", "--config", GOOD_CONFIG, "--out", f"{folder}/{notebook}"),
             f"--out {folder}/{notebook}: "),
            (fixed("diff", "good.json", "good.json", "--html", f"{folder}/d.html"), f"--html {folder}/d.html: "),
            (build("--out", f"{folder}/site"), f"--out {folder}/site: "),
            (lambda w: ["build", "--config", GOOD_CONFIG, "--content", "content", "--templates", "templates",
                        "--cache", f"{folder}/cache", "--out", "out"], f"--cache {folder}/cache: ")]


@pytest.mark.parametrize(("file", "out", "what", "shown"), [
    ("build/verification.json", "build", "verification file", "build/verification.json"),
    ("configs/verification/good.json", "configs/verification", "shipped PyTorch comparisons", "configs/verification"),
])
def test_build_refuses_an_out_folder_holding_the_verification_file(tmp_path: Path, file: str, out: str, what: str,
                                                                    shown: str):
    """`make verify` writes build/verification.json (or, for the default config, configs/verification/default.json),
    which the build reads: an --out holding either is refused."""
    from site_build.build import Builder, Paths
    from site_build.errors import BuildError

    inputs = make_inputs(tmp_path / "root")
    (inputs / "node_modules").symlink_to(ROOT / "node_modules")  # KaTeX
    (inputs / file).parent.mkdir(exist_ok=True)
    (inputs / file).write_text("{}")
    builder = Builder(Paths(root=inputs, content=inputs / "content", templates=inputs / "templates",
                            cache=tmp_path / "cache"))
    try:
        with pytest.raises(BuildError, match=rf"holds the build's {what} \([^)]*/root/{shown}\)"):
            builder.check_outputs(inputs / GOOD_CONFIG, inputs / out, force=True)
    finally:
        builder.close()
    assert (inputs / file).read_text() == "{}"


@pytest.mark.parametrize(("out", "what"), [("templates/assets/out", "templates"), ("content/site", "pages")])
@pytest.mark.parametrize("flag", ["--out", "--cache"])
def test_an_output_inside_an_input_folder_is_refused(world: Path, out: str, what: str, flag: str):
    """A site inside templates/assets would be copied into the next site (one more copy each build), and --force
    would replace the templates' own files: refused in one line, even with --force, and nothing is written."""
    before = hash_tree(world)
    argv = ["build", "--config", GOOD_CONFIG, "--content", "content", "--templates", "templates", "--force",
            *(["--out", out, "--cache", "cache"] if flag == "--out" else ["--cache", out, "--out", "site"])]
    one_line(handstep(world, *argv), f"{flag} {out}: ", f"lies inside the build's {what}", "give a folder outside it")
    unchanged_but_cache(before, hash_tree(world))


def test_a_link_loop_on_the_way_is_one_line(world: Path):
    """A symbolic link that leads back to itself, above --out or --cache: one line, not a traceback."""
    (world / "loop").symlink_to("loop")
    before = hash_tree(world)
    for argv, prefix in outputs_under("loop"):
        one_line(handstep(world, *argv(world)), prefix, "a symbolic link above it leads back to itself")
    unchanged_but_cache(before, hash_tree(world))


@pytest.mark.parametrize("config", [GOOD_CONFIG, "configs/wide.yaml"], ids=["small", "big"])
def test_a_trace_with_the_longest_name_is_written(world: Path, config: str):
    """A name of 255 bytes, the most a file system takes: the temporary files beside it have shorter names."""
    name = "t" * 250 + ".json"
    result = trace(world, config, f"out/{name}")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (world / "out").iterdir())
    assert written == ([name] if config == GOOD_CONFIG else ["t" * 250 + ".bin", name])
    assert engine.load_trace(world / "out" / name)["loss"].shape == ()


def test_what_is_printed_escapes_a_names_control_characters(world: Path):
    result = trace(world, GOOD_CONFIG, "a\x1b[31mb\nc.json")
    assert result.returncode == 0, result.stderr
    assert (world / "a\x1b[31mb\nc.json").is_file()
    assert result.stdout.startswith("wrote a\\x1b[31mb\\nc.json: ") and result.stdout.count("\n") == 1


@pytest.mark.parametrize("command", ["trace", "notebook"])
def test_an_interrupted_trace_or_notebook_leaves_the_previous_files(world: Path, command: str):
    """Ctrl-C during the run: the previous files as they were, no temporary file, and a line that says so."""
    out = "prev.json" if command == "trace" else "prev.ipynb"
    assert handstep(world, command, "--config", "configs/wide.yaml", "--out", out).returncode == 0
    good = (world / GOOD_CONFIG).read_text()
    (world / "configs" / "slow.yaml").write_text(re.sub(r"(?m)^train_steps:.*$", "train_steps: 20000", good))
    before = hash_tree(world)
    proc = subprocess.Popen([sys.executable, "-m", "site_build.cli", command, "--config", "configs/slow.yaml",
                             "--out", out], cwd=world, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # well inside the training run
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == \
        f"handstep: interrupted; nothing was replaced ({out} is as it was)"
    assert hash_tree(world) == before


def test_diff_of_a_pipe_is_one_line_at_once(tmp_path: Path):
    """A FIFO given as a trace would block the read forever: refused at once."""
    os.mkfifo(tmp_path / "p.json")
    result = handstep(tmp_path, "diff", "p.json", "p.json", timeout=60)
    one_line(result, "p.json: ", "not a plain file (a pipe, a socket or a device)")


def test_diff_of_traces_whose_names_are_not_utf8(world: Path):
    """Names made elsewhere (Latin-1 bytes): the comparison is printed and written, the bytes shown as U+FFFD."""
    name = os.fsdecode(b"caf\xe9.json")
    shutil.copy(world / "good.json", world / name)
    result = handstep(world, "diff", name, "good.json", "--html", "d.html")
    assert result.returncode == 0, result.stderr
    assert "caf\ufffd.json" in result.stdout and "caf\ufffd.json" in (world / "d.html").read_text(encoding="utf-8")


def test_a_config_whose_name_is_not_utf8_builds(world: Path):
    """A config named in Latin-1 bytes: the build (and its record that the site is up to date) takes the name's
    bytes as they are."""
    name = os.fsdecode(b"caf\xe9.yaml")
    shutil.copy(world / GOOD_CONFIG, world / "configs" / name)
    argv = ["build", "--config", f"configs/{name}", *SITE_FLAGS, "--out", "new"]
    first = handstep(world, *argv)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    again = handstep(world, *argv)
    assert again.returncode == 0 and "is up to date" in again.stdout, again.stdout + again.stderr


def test_ctrl_c_while_the_command_loads_is_one_line(monkeypatch, capsys):
    """The console script enters through site_build.main, which loads the command: an interrupt before the command's
    own handler is in place (its modules still loading) ends it with one line and status 130, not a traceback."""
    import builtins

    import site_build

    real = builtins.__import__

    def interrupted(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "site_build" and fromlist and "cli" in fromlist:
            raise KeyboardInterrupt
        return real(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert site_build.main() == 130
    assert capsys.readouterr().err == "handstep: interrupted; nothing was done\n"
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["handstep"] == "site_build:main"
