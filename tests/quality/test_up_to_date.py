"""`handstep build` of a site that already holds the build of exactly these inputs does nothing, and anything that
could change the site (a page, a template, the config, the seed, a flag, a file of the site itself) builds again."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import py_compile
import queue
import re
import select
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from quality_helpers import GOOD_CONFIG, ROOT, build_command, handstep_build, hash_tree, make_inputs

UP_TO_DATE = "is up to date: nothing changed since it was built"


def mtimes(site: Path) -> dict[str, int]:
    return {p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    inputs = make_inputs(tmp_path_factory.mktemp("stamp") / "inputs")
    result = handstep_build(inputs, GOOD_CONFIG, inputs / "site", inputs / "cache")
    assert result.returncode == 0 and result.stdout.startswith("built "), result.stderr
    return inputs


def again(inputs: Path, *extra: str, config: str = GOOD_CONFIG) -> str:
    result = handstep_build(inputs, config, inputs / "site", inputs / "cache", *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_nothing_changed_means_nothing_done(built: Path):
    before, times = hash_tree(built / "site"), mtimes(built / "site")
    out = again(built)
    assert UP_TO_DATE in out and "records shown: " in out
    assert hash_tree(built / "site") == before and mtimes(built / "site") == times  # not even rewritten


def test_an_edited_page_is_built(built: Path):
    page = sorted((built / "content").glob("*.md"))[0]
    text = page.read_text()
    page.write_text(text + "\nOne more sentence.\n")
    try:
        assert again(built).startswith("built ")
        assert "One more sentence." in "".join(p.read_text() for p in (built / "site").glob("*.html"))
        assert UP_TO_DATE in again(built)
    finally:
        page.write_text(text)
    assert again(built).startswith("built ")  # the edit undone is a change too


def test_a_touched_site_file_is_built_again(built: Path):
    again(built)
    before = hash_tree(built / "site")
    index = built / "site" / "index.html"
    index.write_text("mine now")
    assert again(built).startswith("built ")
    assert hash_tree(built / "site") == before
    (built / "site" / "extra.txt").write_text("added by hand")
    assert again(built).startswith("built ")
    assert not (built / "site" / "extra.txt").exists() and hash_tree(built / "site") == before
    os.remove(built / "site" / "index.html")
    assert again(built).startswith("built ") and hash_tree(built / "site") == before
    st = index.stat()  # an edit of the same size, its modification time set back: its change time shows it
    index.write_bytes(index.read_bytes().replace(b"<html", b"<htmX", 1))
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert again(built).startswith("built ") and hash_tree(built / "site") == before


def test_an_edited_search_index_or_an_added_folder_is_built_again(built: Path):
    """The search index is the site's too: an edit of it is not linked into the next site as it is (a build whose
    pages had not changed used to keep the old index). An empty folder added by hand is a change."""
    again(built)
    before = hash_tree(built / "site")
    ui = built / "site" / "pagefind" / "pagefind-ui.css"
    ui.write_text(ui.read_text() + "/* mine */")
    (built / "site" / "pagefind" / "extra.txt").write_text("added by hand")
    assert again(built).startswith("built ")
    assert hash_tree(built / "site") == before and UP_TO_DATE in again(built)
    for folder in ("mine", "assets/mine"):
        (built / "site" / folder).mkdir()
        assert again(built).startswith("built ")
        assert not (built / "site" / folder).exists() and UP_TO_DATE in again(built)


def test_the_variables_that_choose_numpys_arithmetic_count(built: Path):
    """OPENBLAS_CORETYPE picks another kernel, which rounds the last bits of a sum its own way: the same config gives
    other numbers. Such a build is not up to date, and does not reuse a run made under the other setting."""
    import engine
    from site_build import cache, stamp

    cfg = engine.load_config(str(built / GOOD_CONFIG))
    assert "OPENBLAS_CORETYPE" in stamp.ARITHMETIC_ENV
    again(built)
    env = {**os.environ, "OPENBLAS_CORETYPE": "Prescott"}
    argv = build_command(built, GOOD_CONFIG, built / "site", built / "cache")
    runs = set((built / "cache" / "runs").iterdir())
    result = subprocess.run(argv, cwd=built, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("built "), result.stderr
    assert len(set((built / "cache" / "runs").iterdir()) - runs) == 1  # a run of its own
    result = subprocess.run(argv, cwd=built, capture_output=True, text=True, env=env, timeout=300)
    assert UP_TO_DATE in result.stdout
    assert again(built).startswith("built ")  # and back
    key = cache.run_key(cfg, ())
    os.environ["OPENBLAS_CORETYPE"] = "Prescott"
    try:
        assert cache.run_key(cfg, ()) != key
    finally:
        del os.environ["OPENBLAS_CORETYPE"]


@pytest.mark.parametrize("change", ["seed", "flag", "template", "config"])
def test_other_inputs_count(built: Path, change: str):
    assert UP_TO_DATE in again(built)
    if change == "seed":
        assert again(built, "--seed", "5").startswith("built ")
    elif change == "flag":  # the build runs (and passes or fails on coverage); it is not "up to date"
        result = handstep_build(built, GOOD_CONFIG, built / "site", built / "cache", "--require-coverage")
        assert result.returncode == 2 and "records shown: " in result.stderr, result.stderr  # not all shown
        assert UP_TO_DATE in again(built)  # a failed build leaves the site, and so its stamp, as they were
        return
    elif change == "template":
        css = sorted((built / "templates" / "assets").glob("*.css"))[0]
        text = css.read_text()
        css.write_text(text + "\n/* changed */\n")
        try:
            assert again(built).startswith("built ")
            assert "/* changed */" in (built / "site" / "assets" / css.name).read_text()
        finally:
            css.write_text(text)
    else:
        config = built / GOOD_CONFIG
        text = config.read_text()
        config.write_text(text + "\n# a comment is a change too\n")
        try:
            assert again(built).startswith("built ")
        finally:
            config.write_text(text)
    assert again(built).startswith("built ")  # back to the original inputs: the site changed since
    assert UP_TO_DATE in again(built)


def test_inputs_behind_symbolic_links_count(tmp_path):
    """A templates' folder that is a link to another folder (with a link back to itself inside, and links up to the
    project and to `/` beside: no loop, no walk of the disk), a page that is a link to a file outside the pages, a
    config that is a link retargeted: each edit of what they point to is built, and nothing else is."""
    inputs = make_inputs(tmp_path / "inputs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(inputs / "templates" / "assets", elsewhere / "assets")
    (inputs / "templates" / "assets").symlink_to(elsewhere / "assets")
    (elsewhere / "assets" / "self").symlink_to(".")
    (inputs / "templates" / "up").symlink_to("..")  # links to folders that hold the inputs: not walked
    (inputs / "content" / "root").symlink_to("/")
    page = sorted((inputs / "content").glob("*.md"))[0]
    shutil.move(page, elsewhere / page.name)
    page.symlink_to(elsewhere / page.name)
    (elsewhere / "more").mkdir()  # a folder of pages, and one of assets, behind links: read as the digest reads them
    (elsewhere / "more" / "linked.md").write_text("---\ntitle: Linked\ndescription: A page in a linked folder.\n"
                                                  "section: Reference\norder: 90\n---\nLINKED-PAGE\n")
    (inputs / "content" / "more").symlink_to(elsewhere / "more")
    (elsewhere / "img").mkdir()
    (elsewhere / "img" / "logo.svg").write_text("<svg/>")
    (elsewhere / "assets" / "img").symlink_to(elsewhere / "img")
    assert again(inputs).startswith("built ")
    assert "LINKED-PAGE" in (inputs / "site" / "linked.html").read_text()
    assert (inputs / "site" / "assets" / "img" / "logo.svg").read_text() == "<svg/>"
    assert UP_TO_DATE in again(inputs)
    css = sorted((elsewhere / "assets").glob("*.css"))[0]
    css.write_text(css.read_text() + "\n/* edited behind a link */\n")
    assert again(inputs).startswith("built ")
    assert "/* edited behind a link */" in (inputs / "site" / "assets" / css.name).read_text()
    assert UP_TO_DATE in again(inputs)
    (elsewhere / page.name).write_text((elsewhere / page.name).read_text() + "\nA sentence behind a link.\n")
    assert again(inputs).startswith("built ")
    assert "A sentence behind a link." in "".join(p.read_text() for p in (inputs / "site").glob("*.html"))
    config = inputs / GOOD_CONFIG
    shutil.move(config, elsewhere / "one.yaml")
    (elsewhere / "two.yaml").write_text((elsewhere / "one.yaml").read_text().replace("seed: 5", "seed: 6"))
    config.symlink_to(elsewhere / "one.yaml")
    again(inputs)
    assert UP_TO_DATE in again(inputs)
    config.unlink()
    config.symlink_to(elsewhere / "two.yaml")
    assert again(inputs).startswith("built ")


# -- a checkpoint folder (`model: {from: ...}`), however the config spells the key ----------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny Hugging Face checkpoint (tests/engine/hf_checkpoint.py), copied by each test that changes it."""
    from hf_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def set_weight(folder: Path, value: float, keep_times: bool = True) -> None:
    """Write `value` over the first element of transformer.wte.weight in model.safetensors, in place: the same size,
    the same inode and (with `keep_times`) the same modification time as before."""
    path = folder / "model.safetensors"
    st = path.stat()
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        entry = header.get("transformer.wte.weight") or header["wte.weight"]
        assert entry["dtype"] == "F32"
        f.seek(8 + n + entry["data_offsets"][0])
        f.write(struct.pack("<f", value))
    if keep_times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_ino) == (st.st_size, st.st_ino)
    assert not keep_times or after.st_mtime_ns == st.st_mtime_ns


def site_weight(site: Path) -> float:
    """The first element of the initial token embedding, as the site's trace.json holds it."""
    records = json.loads((site / "trace.json").read_text())["records"]
    return next(r for r in records if r["name"] == "wte")["value"][0][0]


CHECKPOINT_CONFIGS = {
    "quoted.yaml": '# the key in quotes\nmodel:\n  "from": {folder}\ndata:\n  texts: ["the cat sat on the mat"]\n'
                   "train_steps: 1\n",
    "single.yaml": "model: {{'from': {folder}}}\ndata: {{texts: [the cat sat on the mat]}}\ntrain_steps: 1\n",
    "escaped.yaml": 'model:\n  "fr\\x6fm": {folder}\ndata:\n  texts: ["the cat sat on the mat"]\ntrain_steps: 1\n',
    "config.json": '{{"model": {{"from": {folder}}}, "data": {{"texts": ["the cat sat on the mat"]}}, '
                   '"train_steps": 1}}\n',
    "escaped.json": '{{"model": {{"fr\\u006fm": {folder}}}, "data": {{"texts": ["the cat sat on the mat"]}}, '
                    '"train_steps": 1}}\n',
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_CONFIGS))
def test_a_checkpoint_named_in_any_spelling_counts(tmp_path, checkpoint, name):
    """`"from":` in quotes, in a flow mapping, escaped, or a JSON config: the checkpoint is an input like any other.
    The folder is found as the engine finds it: beside the config when the current folder has none."""
    inputs = make_inputs(tmp_path / "inputs")
    folder = inputs / "configs" / "ck"  # relative to the config file (the current folder, inputs/, has no `ck`)
    shutil.copytree(checkpoint, folder)
    config = inputs / "configs" / name
    config.write_text(CHECKPOINT_CONFIGS[name].format(folder=json.dumps("ck")))
    site, cache = inputs / "site", inputs / "cache"

    def build(*extra: str) -> subprocess.CompletedProcess[str]:
        return handstep_build(inputs, config.relative_to(inputs), site, cache, *extra)

    result = build()
    assert result.returncode == 0 and result.stdout.startswith("built "), result.stderr
    before = site_weight(site)
    assert UP_TO_DATE in build().stdout
    set_weight(folder, 0.5, keep_times=False)  # an ordinary edit: new modification time
    result = build()
    assert result.returncode == 0 and result.stdout.startswith("built "), result.stderr
    assert site_weight(site) == 0.5 != before
    assert UP_TO_DATE in build().stdout
    site_files = hash_tree(site)
    shutil.rmtree(folder)  # the checkpoint gone: the build fails (one line), the site stays as it was
    result = build()
    assert result.returncode == 2 and "model.from" in result.stderr and UP_TO_DATE not in result.stdout, result
    assert hash_tree(site) == site_files


def test_a_same_size_edit_of_a_checkpoint_with_its_time_restored_counts(tmp_path, checkpoint):
    """model.safetensors changed in place (same size, modification time set back): not "up to date", and the run
    cache holds no stale run either (a forced rebuild shows the new values); the old values again come from the
    cache, by content."""
    inputs = make_inputs(tmp_path / "inputs")
    folder = inputs / "ck"
    shutil.copytree(checkpoint, folder)
    set_weight(folder, 0.25)
    config = inputs / "configs" / "ck.yaml"
    config.write_text('model:\n  from: ck\ndata:\n  texts: ["the cat sat on the mat"]\ntrain_steps: 1\n')
    site, cache = inputs / "site", inputs / "cache"

    def build() -> str:
        result = handstep_build(inputs, "configs/ck.yaml", site, cache)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert build().startswith("built ") and site_weight(site) == 0.25
    assert UP_TO_DATE in build()
    set_weight(folder, 0.75)
    assert build().startswith("built ") and site_weight(site) == 0.75
    assert UP_TO_DATE in build()
    set_weight(folder, 0.25)  # back, and the site deleted: the run of these weights is read from the run cache
    shutil.rmtree(site)
    assert build().startswith("built ") and site_weight(site) == 0.25
    set_weight(folder, 0.75)
    shutil.rmtree(site)
    assert build().startswith("built ") and site_weight(site) == 0.75
    assert UP_TO_DATE in build()
    memo = json.loads((cache / "hashes.json").read_text()) if (cache / "hashes.json").exists() else {"files": {}}
    assert all(len(entry) == 6 for entry in memo["files"].values())


def test_checkpoint_hashes_are_remembered_by_content_and_a_damaged_memo_is_a_miss(tmp_path, monkeypatch):
    """site_build.stamp.checkpoint_digest, the one helper of the stamp and the run cache: a file is read once, again
    after an in-place edit with its modification time set back, and a damaged hashes.json is only a miss."""
    from site_build import stamp, write

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / write.CACHE_MARKER).write_text(write.CACHE_MARKER_TEXT)
    folder = tmp_path / "ck"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(stamp._Hashes, "RACY_NS", 0)  # the files were just written: remember them at once
    reads = []
    real_digest = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda f, name: reads.append(f.name) or real_digest(f, name))

    first = stamp.checkpoint_digest(folder, cache)
    assert len(reads) == 2 and (cache / "hashes.json").is_file()
    assert stamp.checkpoint_digest(folder, cache) == first and len(reads) == 2  # from hashes.json
    time.sleep(0.05)  # past the file system's clock tick
    st = weights.stat()
    with open(weights, "r+b") as f:
        f.write(b"b")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = stamp.checkpoint_digest(folder, cache)
    assert second != first and len(reads) == 3
    for damage in ("{", '{"format": 1}', "[1, 2]", '{"format": "handstep file hashes 1", "files": {"x": 1}}'):
        (cache / "hashes.json").write_text(damage)
        assert stamp.checkpoint_digest(folder, cache) == second
    entries = json.loads((cache / "hashes.json").read_text())["files"]
    assert sorted(Path(p).name for p in entries) == ["config.json", "model.safetensors"]


# -- two builds at once ---------------------------------------------------------------------------------------------
def site_seed(site: Path) -> int:
    return json.loads((site / "trace.json").read_text())["config"]["seed"]


def test_two_builds_at_once_into_one_folder_leave_a_site_and_a_stamp_that_agree(tmp_path):
    """Seeds 1 and 2 built at the same time into the same --out and --cache: one waits for the other; the site is
    the build of one seed, whole, and the stamp says so (that seed is up to date, the other builds)."""
    inputs = make_inputs(tmp_path / "inputs")
    site, cache = inputs / "site", inputs / "cache"
    procs = {seed: subprocess.Popen(build_command(inputs, GOOD_CONFIG, site, cache, "--seed", str(seed)), cwd=inputs,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)}
    outputs = {seed: proc.communicate(timeout=300) for seed, proc in procs.items()}
    for seed, proc in procs.items():
        assert proc.returncode == 0, outputs[seed][1]
        assert outputs[seed][0].startswith("built "), outputs[seed]
    seed = site_seed(site)
    other = 3 - seed
    alone = tmp_path / "alone"
    result = handstep_build(inputs, GOOD_CONFIG, alone, tmp_path / "cache-alone", "--seed", str(seed))
    assert result.returncode == 0, result.stderr
    assert hash_tree(site) == hash_tree(alone)  # the files of one build, not a mix
    assert UP_TO_DATE in again(inputs, "--seed", str(seed))
    assert again(inputs, "--seed", str(other)).startswith("built ") and site_seed(site) == other
    assert UP_TO_DATE in again(inputs, "--seed", str(other))
    assert [p.name for p in inputs.iterdir() if "lock" in p.name] == []  # no lock file left beside the site


def held(path: Path):
    """Hold the lock file `path` as a build would (an open file with an exclusive flock)."""
    f = open(path, "a+b")  # noqa: SIM115 - closed by the caller
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    return f


def read_stderr_line(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    assert ready, "the build printed nothing"
    assert proc.stderr is not None
    return proc.stderr.readline()


@pytest.mark.parametrize("which", ["out", "cache"])
def test_a_build_waits_for_the_one_holding_its_folders_and_says_so(built: Path, which: str):
    """While another build holds the lock of --out (or of --cache), a build says so in one line and waits; the
    up-to-date check happens once it has the locks."""
    from site_build.lock import CACHE_LOCK, out_lock_path

    assert UP_TO_DATE in again(built)
    path = out_lock_path(built / "site") if which == "out" else built / "cache" / CACHE_LOCK
    lock = held(path)
    try:
        proc = subprocess.Popen(build_command(built, GOOD_CONFIG, built / "site", built / "cache", "--seed", "9"),
                                cwd=built, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = read_stderr_line(proc)
        assert line == ("handstep: another build is writing site, waiting\n" if which == "out" else
                        "handstep: another build is using the cache cache, waiting\n")
        time.sleep(0.5)
        assert proc.poll() is None and site_seed(built / "site") == 5  # still waiting: nothing written
    finally:
        lock.close()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.startswith("built "), err
    assert site_seed(built / "site") == 9
    assert again(built).startswith("built ")
    assert not path.exists() or which == "cache"  # the out lock goes with the build that held it


def test_a_lock_file_replaced_by_a_link_a_folder_or_a_fifo_still_locks(tmp_path):
    """A link where a lock file goes is removed (what it points to is left alone, never opened), a folder is
    locked itself, a FIFO is opened without waiting: the build neither hangs nor writes into a file of the user's,
    and a build that holds the lock is still waited for."""
    from site_build.lock import CACHE_LOCK, out_lock_path

    inputs = make_inputs(tmp_path / "inputs")
    assert again(inputs).startswith("built ")
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes\n")
    out_lock, cache_lock = out_lock_path(inputs / "site"), inputs / "cache" / CACHE_LOCK
    cache_lock.unlink()
    for seed, make in (("7", lambda p: p.symlink_to(mine)), ("6", os.mkfifo)):
        for path in (out_lock, cache_lock):
            make(path)
        result = handstep_build(inputs, GOOD_CONFIG, inputs / "site", inputs / "cache", "--seed", seed, timeout=120)
        assert result.returncode == 0 and result.stdout.startswith("built "), result.stderr
        assert mine.read_text() == "my notes\n" and mine.is_file()
        assert not out_lock.exists() and not os.path.islink(out_lock)
        cache_lock.unlink()
    out_lock.mkdir()
    holder = os.open(out_lock, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen(build_command(inputs, GOOD_CONFIG, inputs / "site", inputs / "cache", "--seed", "8"),
                                cwd=inputs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert read_stderr_line(proc) == "handstep: another build is writing site, waiting\n"
        time.sleep(0.3)
        assert proc.poll() is None
    finally:
        os.close(holder)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.startswith("built "), err
    assert site_seed(inputs / "site") == 8 and out_lock.is_dir()


def test_serve_rebuilds_under_the_same_locks(tmp_path):
    """`handstep serve` waits, like `handstep build`, for a build that holds its output folder, and holds the locks
    only while it rebuilds: a build into the same folder runs while the server is idle."""
    from site_build.lock import out_lock_path

    inputs = make_inputs(tmp_path / "inputs")
    site, cache = inputs / "site", inputs / "cache"
    serve = build_command(inputs, GOOD_CONFIG, site, cache)
    serve[serve.index("build")] = "serve"
    lock = held(out_lock_path(site))
    proc = subprocess.Popen([*serve, "--port", "0"], cwd=inputs, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        try:
            assert read_stderr_line(proc) == "handstep: another build is writing site, waiting\n"
            time.sleep(0.5)
            assert proc.poll() is None and not site.exists()
        finally:
            lock.close()
        said: list[str] = []  # the rest of stderr, read as it comes (a full pipe would stop the server)
        reader = threading.Thread(target=lambda: said.extend(proc.stderr or ()), daemon=True)
        reader.start()
        # stdout's lines as they come, read by a thread: a select() on the pipe after a readline() waits for bytes
        # the readline has already buffered (the build's summary and "serving" come in one read), and timed out
        printed: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=lambda: [*map(printed.put, proc.stdout or ()), printed.put("")], daemon=True).start()
        while True:
            try:
                line = printed.get(timeout=120)
            except queue.Empty:
                raise AssertionError(f"serve printed nothing; its stderr: {''.join(said)!r}") from None
            assert line, "".join(said)
            if line.startswith("serving "):
                break
        assert site_seed(site) == 5
        result = handstep_build(inputs, GOOD_CONFIG, site, cache, "--seed", "6", timeout=120)
        assert result.returncode == 0 and result.stdout.startswith("built "), result.stderr
        assert site_seed(site) == 6
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


# -- handstep's own code: what runs is what is digested -------------------------------------------------------------
def project_copy(tmp_path: Path) -> tuple[Path, dict[str, str], Any]:
    """A copy of the project (its code, the fixture inputs, the installed KaTeX), the environment that runs its code,
    and a function that builds its site and returns what the build printed."""
    copy = make_inputs(tmp_path / "copy")
    for package in ("engine", "site_build"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "node_modules").symlink_to(ROOT / "node_modules")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    env.pop("PYTHONPYCACHEPREFIX", None)

    def build() -> str:
        result = subprocess.run(build_command(copy, GOOD_CONFIG, copy / "site", copy / "cache"), cwd=copy, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return copy, env, build


def test_a_same_size_edit_of_the_engine_with_its_time_restored_runs_the_new_code(tmp_path):
    """An engine file edited in place with the same size and its modification time set back: Python would trust the
    old bytecode (checked by time and size), run it, and the cache would keep that run under the new source's
    digest. handstep's bytecode is checked against the source's hash (site_build/bytecode.py), so the build runs
    the new code. Done on a copy of the project: the checkout is never edited."""
    copy, env, build = project_copy(tmp_path)
    tape = copy / "engine" / "tape.py"

    def epsilons() -> set[str]:  # LayerNorm's, in the records' meta (AdamW's is 1e-08)
        return set(re.findall(r'"eps":([0-9e.+-]+)', (copy / "site" / "trace.json").read_text())) - {"1e-08"}

    def edit(old: str, new: str) -> None:
        """Replace `old` by `new` (the same length) in engine/tape.py, keeping its size and modification time."""
        st = tape.stat()
        text = tape.read_text()
        assert len(old) == len(new) and text.count(old) == 1
        tape.write_text(text.replace(old, new))
        os.utime(tape, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (tape.stat().st_size, tape.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    eps = re.search(r"^EPS = (1e-5)\b", tape.read_text(), re.M)
    assert eps, "engine/tape.py: EPS = 1e-5 (LayerNorm's epsilon) is the constant this test changes"
    assert build().startswith("built ") and epsilons() == {"1e-05"}
    # the worst case: bytecode checked by time, as a plain `python -m compileall` or a first import writes it
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", "--invalidation-mode", "timestamp", "engine",
                    "site_build"], cwd=copy, env=env, capture_output=True, check=True)
    edit("EPS = 1e-5", "EPS = 9e-5")
    assert build().startswith("built ") and epsilons() == {"9e-05"}
    edit("EPS = 9e-5", "EPS = 3e-5")  # now with handstep's own (checked-hash) bytecode
    assert build().startswith("built ") and epsilons() == {"3e-05"}
    assert UP_TO_DATE in build()
    edit("EPS = 3e-5", "EPS = 9e-5")  # a run the cache holds: read from it, by the source's digest
    assert build().startswith("built ") and epsilons() == {"9e-05"}
    pyc = copy / "engine" / "__pycache__" / f"tape.{sys.implementation.cache_tag}.pyc"
    assert pyc.read_bytes()[4:8] == b"\x03\x00\x00\x00"  # hash-based, checked against the source

    # The command's own first modules (site_build/cli.py) are imported before it can look at any bytecode: one that
    # came from stale bytecode checked by time makes the command start again, once, on the current source.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", "--invalidation-mode", "timestamp", "site_build"],
                   cwd=copy, env=env, capture_output=True, check=True)
    cli, old = copy / "site_build" / "cli.py", '"is not a folder" if folder.exists() else "does not exist"'
    st, text = cli.stat(), cli.read_text()
    assert text.count(old) == 1, "site_build/cli.py: _check_folders's message is the text this test changes"
    cli.write_text(text.replace(old, old.replace("does not", "DOES NOT")))
    os.utime(cli, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = subprocess.run([sys.executable, "-m", "site_build.cli", "build", "--content", "nowhere"], cwd=copy,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--content nowhere: DOES NOT exist" in result.stderr, result.stderr


def test_the_bytecode_check_is_cheap_and_compiles_only_what_needs_it(tmp_path):
    """site_build.bytecode.ensure: a few milliseconds when every pyc is checked-hash; a time-based one is compiled
    again as checked-hash, and nothing else is."""
    from site_build import bytecode

    copy = tmp_path / "copy"
    for package in bytecode.PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    root = str(copy)
    assert len(bytecode.ensure(root)) == len(list(copy.rglob("*.py")))
    assert bytecode.ensure(root) == [] and bytecode.stale(root) == []
    py_compile.compile(str(copy / "engine" / "tape.py"), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    assert [Path(s).name for s, _, existed in bytecode.stale(root)] == ["tape.py"]
    assert [Path(s).name for s in bytecode.ensure(root)] == ["tape.py"]
    tape = copy / "engine" / "tape.py"  # edited, as by hand, with nothing importing it since:
    tape.write_text(tape.read_text() + "# x\n")
    assert bytecode.stale(root) == []  # the import checks its hash (and compiles it)
    assert [Path(s).name for s in bytecode.ensure(root, hashes=True)] == ["tape.py"]  # the Makefile's, at once
    assert bytecode.stale(root, hashes=True) == []
    start = time.perf_counter()
    for _ in range(20):
        bytecode.stale(root)
    assert (time.perf_counter() - start) / 20 < 0.02


def test_an_edit_of_the_installed_katex_counts(tmp_path):
    """KaTeX's CSS, fonts and code go into the site: a file of node_modules edited (the same size, its time set
    back), added or removed changes the digest of the inputs, whatever the npm lock file says."""
    from site_build import stamp, write

    root = tmp_path / "root"
    for package in ("engine", "site_build"):
        (root / package).mkdir(parents=True)
    dist = root / "node_modules" / "katex" / "dist"
    dist.mkdir(parents=True)
    (root / "node_modules" / ".package-lock.json").write_text('{"katex": "0.16.0"}')
    css = dist / "katex.min.css"
    css.write_text(".katex{font:1em}")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / write.CACHE_MARKER).write_text("")

    def digest() -> str:
        return stamp.inputs_digest(None, {}, tmp_path / "content", tmp_path / "templates", root=root, cache=cache)

    first = digest()
    assert digest() == first
    st = css.stat()
    css.write_text(".katex{font:2em}")
    os.utime(css, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = digest()
    assert second != first
    (dist / "fonts.woff2").write_bytes(b"font")
    assert digest() not in (first, second)


def test_a_cache_given_through_a_link_is_refused_even_when_the_site_is_up_to_date(built: Path):
    """A build never writes through a link (its lock file, its hashes): one up to date is refused alike."""
    assert UP_TO_DATE in again(built)
    link = built / "cache-link"
    link.symlink_to(built / "cache")
    try:
        result = handstep_build(built, GOOD_CONFIG, built / "site", link)
        assert result.returncode == 2 and "symbolic link" in result.stderr, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        link.unlink()
    assert UP_TO_DATE in again(built)


def test_the_up_to_date_check_refuses_what_the_engine_refuses():
    """The check reads a config for its checkpoint with the engine's limits (it cannot import the engine)."""
    from engine import config
    from site_build import stamp

    assert (stamp.MAX_CONFIG_BYTES, stamp.MAX_CONFIG_NODES) == (config.MAX_CONFIG_BYTES, config.MAX_CONFIG_NODES)


def test_a_run_whose_checkpoint_changed_while_it_ran_is_kept_under_no_key(tmp_path, checkpoint, monkeypatch):
    """The weights are read after the run's key was taken: a checkpoint edited meanwhile gives a run that matches
    neither its old content nor its new one, so it is neither cached on disk nor reused by the next build."""
    import engine
    from site_build import session as session_module
    from site_build.progress import Progress

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint, folder)
    config = tmp_path / "run.yaml"
    config.write_text(CHECKPOINT_CONFIGS["single.yaml"].format(folder=folder))
    cache = tmp_path / "cache"
    real_run = engine.run

    def edited_while_running(*args, **kwargs):
        set_weight(folder, 0.5, keep_times=False)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(session_module.engine, "run", edited_while_running)
    session = session_module.Session(ROOT, cache, Progress())

    def run():  # as a build does: the run's key first (the gather step), then the run
        return session.run(*session.run_key(config, None))

    try:
        first = run()
        assert first.key == "" and not list((cache / "runs").glob("*.pickle"))
        monkeypatch.setattr(session_module.engine, "run", real_run)
        second = run()  # run again, from the checkpoint as it is now
        assert second is not first and second.key and list((cache / "runs").glob("*.pickle"))
        assert run() is second
    finally:
        session.close()


def ship_verification(copy: Path) -> None:
    """A PyTorch comparison shipped in the project copy for its config (configs/verification/good.json, as `make
    verify` writes configs/verification/default.json), with a made-up figure for the loss, which the home page shows."""
    import engine
    from engine.verify import config_digest, digest

    trace = engine.run(engine.load_config(str(copy / GOOD_CONFIG)))
    (copy / "configs" / "verification").mkdir()
    (copy / "configs" / "verification" / "good.json").write_text(json.dumps(
        {"config_sha256": config_digest(trace), "trace_sha256": digest(trace), "oracle": "PyTorch",
         "max_abs_diff": {"loss": 1e-16}}))
    index = copy / "content" / "index.md"
    index.write_text(index.read_text() + '\n{{ check("loss") }}\n')


SAME_SIZE_EDITS = {  # kind of input: (file in the project copy, old text, new text of the same length, site file, seen)
    "config": ("configs/good.yaml", "n_heads: 2", "n_heads: 1", "index.html", "A site with 1 heads."),
    "shipped PyTorch figures": ("configs/verification/good.json", '"loss": 1e-16', '"loss": 2e-16', "index.html",
                                "✓ PyTorch&#58; max &#124;Δ&#124; 2.0e-16"),
    "page": ("content/index.md", "A site with", "A SITE WITH", "index.html", "A SITE WITH 2 heads."),
    "template": ("templates/base.html", "<title>", "<TITLE>", "index.html", "<TITLE>"),
    "macro source": ("site_build/macros/numbers.py", "digits: int = 4) -> Markup:\n    \"\"\"One element inline",
                     "digits: int = 7) -> Markup:\n    \"\"\"One element inline", "index.html", None),
}


@pytest.mark.parametrize("kind", SAME_SIZE_EDITS)
def test_a_same_size_edit_with_its_time_restored_shows_in_the_next_build(tmp_path, kind):
    """Each kind of input (the config, the PyTorch figures shipped for it, a page, a template, a macro's source; a
    checkpoint file has its own test above) edited in place with the same size and its modification time set back:
    the next build is not "up to date", takes nothing stale from its caches (the run, the page, the KaTeX cache are
    keyed by content), and the site shows the edit. Done on a copy of the project: the checkout is never edited."""
    copy, _, build = project_copy(tmp_path)
    if kind == "shipped PyTorch figures":
        ship_verification(copy)

    def loss_digits() -> int:
        shown = re.search(r"The loss is <span[^>]*>([-0-9.]+)</span>", (copy / "site" / "index.html").read_text())
        assert shown, "index.html: the loss's value"
        return len(shown.group(1).partition(".")[2])

    name, old, new, site_file, seen = SAME_SIZE_EDITS[kind]
    path = copy / name
    assert build().startswith("built ") and UP_TO_DATE in build()
    digits = loss_digits()
    st, text = path.stat(), path.read_text()
    assert len(old) == len(new) and text.count(old) == 1, f"{name}: the text this test changes"
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert build().startswith("built ")
    shown = (copy / "site" / site_file).read_text()
    if seen is not None:
        assert seen in shown
    else:  # the loss with seven decimals instead of four
        assert (digits, loss_digits()) == (4, 7)
