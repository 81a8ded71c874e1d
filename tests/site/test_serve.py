"""The dev server: reload script injected (not written to site/), 404 page, long-poll state, change detection."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import SMALL
from serve_support import Server
from tiny_checkpoint import write_checkpoint

from site_build.build import ROOT, Builder, Paths, build
from site_build.serve import State, changed, checkpoint_folders, make_handler, snapshot, watched


def test_server_injects_reload_script_and_serves_404(site, tmp_path):
    out = tmp_path / "site"
    build(SMALL, out, paths=site)
    state = State()
    state.publish("content/x.md:3: broken")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(out, state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = urllib.request.urlopen(base + "/").read().decode()
        assert "/__reload?since=" in page and "content/x.md:3: broken" in page
        assert "__reload" not in (out / "index.html").read_text()
        try:
            urllib.request.urlopen(base + "/missing.html")
            raise AssertionError("expected 404")
        except urllib.error.HTTPError as err:
            assert err.code == 404 and "Page not found" in err.read().decode()
        reply = json.loads(urllib.request.urlopen(base + "/__reload?since=old").read())
        assert reply == {"id": state.id, "error": "content/x.md:3: broken"}
        def head(path: str) -> tuple[int, Any, bytes]:  # HEAD: GET's headers, no body
            try:
                reply = urllib.request.urlopen(urllib.request.Request(base + path, method="HEAD"), timeout=10)
            except urllib.error.HTTPError as err:
                reply = err
            with reply:
                return reply.status, reply.headers, reply.read()

        status, headers, body = head("/")
        assert status == 200 and body == b"" and headers["Cache-Control"] == "no-store"
        assert int(headers["Content-Length"]) == len(urllib.request.urlopen(base + "/").read())  # with the script
        assert head("/missing.html")[0] == 404
        assert head("/__reload?since=" + state.id)[0] == 200  # the long poll does not wait for a HEAD
    finally:
        server.shutdown()
        server.server_close()


def test_404_page_in_a_folder_keeps_its_styles_scripts_and_links(site, tmp_path):
    """404.html's links are relative to the site's root; answered for /numbers/x.html or /assets/csv/y.csv they went
    to /numbers/assets/style.css and so on (each a 404 again): the page lost its styles, scripts and menu."""
    out = tmp_path / "site"
    build(SMALL, out, paths=site)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(out, State()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def get(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return reply.status, reply.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")

    try:
        for path in ["/missing.html", "/numbers/missing.html", "/assets/csv/none.csv", "/a/b/"]:
            status, page = get(base + path)
            assert status == 404 and "Page not found" in page
            urls = re.findall(r'\s(?:href|src)="([^"#][^"]*)"', page)
            urls = [u for u in urls if not u.startswith("data:")]
            assert any(u.endswith("style.css") for u in urls) and any(u.endswith("index.html") for u in urls)
            for url in urls:
                assert get(urllib.parse.urljoin(base + path, url))[0] == 200, (path, url)
            root = re.search(r'<html[^>]* data-root="([^"]*)"', page).group(1)
            assert urllib.parse.urljoin(base + path, root or "./") == base + "/", (path, root)
            assert 'href="#content"' in page  # the skip link stays on the page
        assert get(base + "/missing.html")[1].startswith((out / "404.html").read_text()[:2000])  # unchanged
    finally:
        server.shutdown()
        server.server_close()


def test_snapshot_sees_edits_additions_and_removals(tmp_path):
    (tmp_path / "content").mkdir()
    page = tmp_path / "content" / "a.md"
    page.write_text("one")
    before = snapshot([tmp_path / "content"])
    page.write_text("one two")
    (tmp_path / "content" / "b.md").write_text("new")
    after = snapshot([tmp_path / "content"])
    assert changed(before, after) == sorted([str(page), str(tmp_path / "content" / "b.md")])
    assert changed(after, after) == []


def _zombie_children() -> list[int]:
    """Child processes of this one that have ended but were never waited for (state Z)."""
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] == "Z":
            out.append(int(stat.parent.name))
    return out


def test_background_search_index_leaves_no_defunct_child(site, tmp_path):
    """The dev server indexes search after the swap; the finished Pagefind process is reaped at once."""
    builder = Builder(site)
    builder.background_search = True
    out = tmp_path / "site"
    try:
        builder.build(SMALL, out)
        builder.build(SMALL, out)  # reuses the index, then builds a fresh one in the background
        deadline = time.monotonic() + 60
        indexer = builder.session.indexer
        while indexer is not None and indexer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert _zombie_children() == []
        assert (out / "pagefind" / "pagefind.js").is_file()
    finally:
        builder.close()


# -- what the server watches, and its restart ----------------------------------------------------------------------
QUALITY = Path(__file__).resolve().parents[1] / "quality" / "fixtures"  # a tiny config and two pages


def test_watched_inputs_are_wherever_the_build_reads_them(tmp_path):
    """The config file, the checkpoint folder it names (looked for from the current folder and beside the config),
    the pages and templates folders, handstep's source and the verification figures: an edit of any shows."""
    (tmp_path / "elsewhere" / "ckpt").mkdir(parents=True)
    config = tmp_path / "elsewhere" / "gpt.yaml"
    config.write_text("model:\n  from: ckpt\n")
    paths = Paths(content=tmp_path / "pages", templates=tmp_path / "layout", cache=tmp_path / "cache")
    tops = watched(paths, config)
    assert config in tops and tmp_path / "elsewhere" / "ckpt" in tops and Path("ckpt").absolute() in tops
    assert {paths.content, paths.templates, ROOT / "engine", ROOT / "site_build",
            ROOT / "configs" / "verification", ROOT / "build" / "verification.json"} <= set(tops)
    assert watched(paths, tmp_path / "no-such.yaml")[0] == tmp_path / "no-such.yaml"  # watched for its appearance
    before = snapshot(tops)
    (tmp_path / "elsewhere" / "ckpt" / "model.safetensors").write_bytes(b"weights")
    config.write_text("model:\n  from: ckpt\n# edited\n")
    assert changed(before, snapshot(tops)) == sorted([str(config),
                                                      str(tmp_path / "elsewhere" / "ckpt" / "model.safetensors")])
    assert checkpoint_folders(config) == [Path("ckpt").absolute(), tmp_path / "elsewhere" / "ckpt"]
    config.write_text("model: [not, a, mapping")
    assert checkpoint_folders(config) == []


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, path
    time.sleep(0.05)  # a new modification time, even on a coarse clock
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_serve_rebuilds_when_a_config_pages_or_templates_outside_the_project_change(tmp_path):
    work = tmp_path / "elsewhere"
    shutil.copytree(QUALITY / "content", work / "pages")
    shutil.copytree(ROOT / "templates", work / "layout")
    shutil.copy(QUALITY / "configs" / "good.yaml", work / "run.yaml")
    server = Server(["--config", str(work / "run.yaml"), "--content", str(work / "pages"), "--templates",
                     str(work / "layout"), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "site")],
                    cwd=tmp_path)
    try:
        assert "A site with 2 heads." in server.get("/")
        _edit(work / "pages" / "index.md", "## The loss", "A sentence added while serving.\n\n## The loss")
        server.poll_page("A sentence added while serving.")
        _edit(work / "run.yaml", "n_heads: 2", "n_heads: 4")
        server.poll_page("A site with 4 heads.")
        _edit(work / "layout" / "page.html", "</main>", "<p>A template edited while serving.</p></main>")
        server.poll_page("A template edited while serving.")
        assert not any("Traceback" in line for line in server.lines), server.lines
    finally:
        server.stop()


PROBE = '''

@macro(context=False)
def restart_probe() -> str:
    """What this copy of handstep says (the restart test edits it)."""
    return "probe one"
'''


def test_serve_restarts_on_a_code_edit_on_the_same_port(tmp_path):
    """An edit of handstep's source restarts the server in place, on the same port (even one the system picked),
    and the page shows what the new code makes; an edit that does not compile is shown, and the server waits."""
    project = tmp_path / "project"  # a copy: the real checkout is never edited
    for name in ("engine", "site_build", "templates", "content", "configs"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "node_modules").symlink_to(ROOT / "node_modules")
    text_macros = project / "site_build" / "macros" / "text.py"
    text_macros.write_text(text_macros.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
    pages = tmp_path / "pages"
    shutil.copytree(QUALITY / "content", pages)
    index = pages / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + "\nProbe: {{ restart_probe() }}.\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(project)}
    server = Server(["--config", str(QUALITY / "configs" / "good.yaml"), "--content", str(pages),
                     "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "site")], cwd=project, env=env)
    try:
        page = server.get("/")
        assert "Probe: probe one." in page
        old_id = re.search(r"var id=(\"[^\"]*\")", page).group(1)

        _edit(text_macros, 'return "probe one"', 'return "probe one" +')  # a syntax error: no restart
        server.wait_for(r"text\.py:\d+: invalid syntax")
        assert json.loads(server.get(f"/__reload?since={old_id.strip(chr(34))}"))["error"]
        assert "Probe: probe one." in server.get("/")  # still serving the last good site

        seen = len(server.lines)
        _edit(text_macros, 'return "probe one" +', 'return "probe two"')
        server.wait_for("restarting the server", after=seen)
        page = server.poll_page("Probe: probe two.")
        assert server.wait_for(r"serving \S+ at http://127\.0\.0\.1:(\d+)/", after=seen).group(1) == str(server.port)
        # A page opened before the restart asks the same address and is told to reload.
        reply = json.loads(server.get(f"/__reload?since={old_id.strip(chr(34))}"))
        assert reply["error"] is None and reply["id"] != old_id.strip('"')
        assert not any("Traceback" in line for line in server.lines), server.lines
    finally:
        server.stop()


def _edit_keeping_times(path: Path, old: str, new: str) -> None:
    """Replace `old` by `new` (of the same length) and set the modification time back, as a restored backup does."""
    assert len(old) == len(new)
    st = path.stat()
    text = path.read_text(encoding="utf-8")
    assert old in text, path
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_serve_rebuilds_from_a_checkpoint_edited_in_place(tmp_path):
    """The checkpoint a served config names is edited (the same size, its modification time set back), and then its
    folder is swapped for another through a symbolic link: each rebuild shows the checkpoint as it is now, never the
    one the server read before (nothing is kept by path or by modification time)."""
    work = tmp_path / "work"
    shutil.copytree(QUALITY / "content", work / "pages")
    write_checkpoint(work / "models" / "a")
    shutil.copytree(work / "models" / "a", work / "models" / "b")
    _edit_keeping_times(work / "models" / "b" / "config.json", '"n_head": 2', '"n_head": 1')
    (work / "ckpt").symlink_to(work / "models" / "a")
    config = work / "run.yaml"
    config.write_text(f"model: {{from: {work / 'ckpt'}}}\ndata: {{texts: ['the cat sat on the mat']}}\n"
                      "train_steps: 2\n")
    time.sleep(2.1)  # older than the tick within which an edit could keep every stat number
    server = Server(["--config", str(config), "--content", str(work / "pages"), "--cache", str(tmp_path / "cache"),
                     "--out", str(tmp_path / "site")], cwd=tmp_path)
    try:
        assert "A site with 2 heads." in server.get("/")
        _edit_keeping_times(work / "models" / "a" / "config.json", '"n_head": 2', '"n_head": 4')
        server.poll_page("A site with 4 heads.")
        (work / "ckpt").unlink()
        (work / "ckpt").symlink_to(work / "models" / "b")
        server.poll_page("A site with 1 heads.")
        assert not any("Traceback" in line for line in server.lines), server.lines
    finally:
        server.stop()


def test_serve_stopped_during_a_rebuild_says_so_and_leaves_the_site_whole(tmp_path):
    """SIGTERM while a rebuild is under way: the server stops, says in one line that the rebuild was abandoned and
    what the site is, prints no error of the build it cut short, and leaves no temporary folder or lock."""
    shutil.copytree(ROOT / "content", tmp_path / "pages")
    config = tmp_path / "run.yaml"
    shutil.copy(ROOT / "configs" / "default.yaml", config)
    site = tmp_path / "out" / "site"
    server = Server(["--config", str(config), "--content", str(tmp_path / "pages"), "--cache", str(tmp_path / "cache"),
                     "--out", str(site)], cwd=tmp_path)
    try:
        before = sorted(p.relative_to(site).as_posix() for p in site.rglob("*"))
        index = (site / "index.html").read_bytes()
        lock = tmp_path / "out" / ".site.handstep-lock"
        _edit(config, "seed: 42", "seed: 43")
        deadline = time.monotonic() + 60
        while not lock.exists():  # the rebuild holds it
            assert time.monotonic() < deadline, "\n".join(server.lines)
            time.sleep(0.01)
        time.sleep(0.3)
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=120)
        time.sleep(0.2)
        serving = next(i for i, line in enumerate(server.lines) if line.startswith("serving "))
        said = [line for line in server.lines[serving + 1:] if not line.startswith("  ")]
        kept = "handstep: stopped during a rebuild, which was abandoned; out/site/ is as it was"
        new = "handstep: stopped during a rebuild, after it had replaced out/site/: it holds the new site, whole"
        # either way, no error of the build it cut short (one that had formulas left to typeset ends; one that had
        # none finishes, says so and swaps its site in)
        assert said == [kept] or (len(said) == 2 and said[0].startswith("built ") and said[1] == new), said
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["site"]
        assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*")) == before or said != [kept]
        assert ((site / "index.html").read_bytes() == index) == (said == [kept])
        assert not any("Error" in line or "Traceback" in line for line in server.lines), server.lines
    finally:
        server.stop()


def test_serve_stopped_during_its_first_build_says_so(tmp_path):
    """SIGTERM during the first build (a cold cache: seconds): the server says in one line that it was abandoned,
    as it does for a rebuild (it ended without a word), and leaves no site, temporary folder or lock."""
    site = tmp_path / "out" / "site"
    proc = subprocess.Popen([sys.executable, "-m", "site_build.cli", "serve", "--port", "0", "--config",
                             str(ROOT / "configs" / "default.yaml"), "--cache", str(tmp_path / "cache"), "--out",
                             str(site)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "out" / ".site.handstep-lock").exists():  # the first build holds it
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert out.splitlines() == ["handstep: stopped during the first build, which was abandoned; out/site/ is as it "
                                "was"], out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # made for the lock, if left


def test_a_rebuild_refused_for_a_users_cache_folder_leaves_no_lock_file_in_it(tmp_path):
    """A --cache replaced while serving by a folder of the user's own: the rebuild is refused in one line (as
    `handstep build` refuses it) and writes nothing there, not even its lock file (it did)."""
    from site_build import serve

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious\n")
    builder = Builder(Paths(content=QUALITY / "content", cache=mine))
    try:
        error = serve._build(builder, QUALITY / "configs" / "good.yaml", tmp_path / "site", None, State(), False)
    finally:
        builder.close()
    assert error is not None and "not a handstep cache" in error
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and not (tmp_path / "site").exists()
