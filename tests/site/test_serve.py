"""The dev server: reload script injected (not written to site/), 404 page, long-poll state, change detection."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

from conftest import SMALL

from site_build.build import Builder, build
from site_build.serve import State, changed, make_handler, snapshot


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
    finally:
        server.shutdown()
        server.server_close()


def test_snapshot_sees_edits_additions_and_removals(tmp_path):
    (tmp_path / "content").mkdir()
    page = tmp_path / "content" / "a.md"
    page.write_text("one")
    before = snapshot(tmp_path)
    page.write_text("one two")
    (tmp_path / "content" / "b.md").write_text("new")
    after = snapshot(tmp_path)
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
