"""The dev server: reload script injected (not written to site/), 404 page, long-poll state, change detection."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from conftest import SMALL

from site_build.build import build
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
