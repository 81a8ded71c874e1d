"""`handstep serve`: a local server that rebuilds on change and reloads the open page.

Standard library only: a polling watcher (no inotify dependency) with a debounce so
a burst of saves gives one rebuild, a threaded http.server on 127.0.0.1, and a
long-poll endpoint `/__reload` that the pages' injected script waits on. The script
is added to HTML responses by the server, never written into site/. A failed rebuild
prints the error and shows it over the page; the server keeps serving the last good
site. A change to Python code (engine/, site_build/) restarts the process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from site_build.build import EXPECTED_ERRORS, Builder, Paths
from site_build.progress import Progress

WATCHED = ("content", "templates", "configs", "engine", "site_build")
CODE_DIRS = ("engine", "site_build")
POLL_SECONDS = 0.15
QUIET_SECONDS = 0.12  # a burst of saves ends after this long without changes
LONG_POLL_SECONDS = 25

RELOAD_SCRIPT = """<script>(function(){var id=%s;function show(e){var d=document.getElementById("build-error");
if(!e){if(d)d.remove();return}if(!d){d=document.createElement("pre");d.id="build-error";d.className="build-error";
d.setAttribute("role","alert");document.body.append(d)}d.textContent="Build failed\\n\\n"+e}
function poll(){fetch("/__reload?since="+encodeURIComponent(id)).then(function(r){return r.json()}).then(function(s){
if(s.id!==id){if(s.error){id=s.id;show(s.error)}else{location.reload();return}}poll()}).catch(function(){setTimeout(poll,500)})}
show(%s);poll()})()</script>"""


class State:
    """The latest build outcome, shared by the watcher and the request threads."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.id = f"{os.getpid()}-0"
        self.error: str | None = None
        self._n = 0

    def publish(self, error: str | None) -> None:
        """Record a finished build and wake every waiting page."""
        with self.cond:
            self._n += 1
            self.id = f"{os.getpid()}-{self._n}"
            self.error = error
            self.cond.notify_all()

    def wait(self, since: str) -> dict[str, str | None]:
        """Block until a build newer than `since` (or the long-poll timeout)."""
        with self.cond:
            self.cond.wait_for(lambda: self.id != since, timeout=LONG_POLL_SECONDS)
            return {"id": self.id, "error": self.error}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every watched file."""
    files = {}
    for top in WATCHED:
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__"))]
            for name in filenames:
                if name.startswith(".") or name.endswith((".pyc", "~", ".swp")):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                files[path] = (st.st_mtime_ns, st.st_size)
    return files


def changed(old: dict[str, tuple[int, int]], new: dict[str, tuple[int, int]]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))


def make_handler(site: Path, state: State) -> type[SimpleHTTPRequestHandler]:
    """A request handler serving `site` with the reload script injected into HTML."""

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            if url.path == "/__reload":
                since = parse_qs(url.query).get("since", [""])[0]
                return self._send(HTTPStatus.OK, "application/json", json.dumps(state.wait(since)).encode())
            target = Path(self.translate_path(url.path))
            if target.is_dir():
                target = target / "index.html"
            if target.suffix == ".html" and target.is_file():
                return self._send_html(HTTPStatus.OK, target)
            if not target.exists():
                return self._send_html(HTTPStatus.NOT_FOUND, site / "404.html")
            return super().do_GET()

        def _send_html(self, status: HTTPStatus, path: Path) -> None:
            try:
                page = path.read_text(encoding="utf-8")
            except OSError:
                page = "<!doctype html><title>Not built</title><body><p>The site is not built yet.</p></body>"
            script = RELOAD_SCRIPT % (json.dumps(state.id), json.dumps(state.error))
            body = page.replace("</body>", script + "</body>", 1) if "</body>" in page else page + script
            self._send(status, "text/html; charset=utf-8", body.encode("utf-8"))

        def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep the terminal for build results

    return partial(Handler, directory=str(site))  # type: ignore[return-value]


def rebuild(builder: Builder, config: Path, out: Path, seed: int | None, state: State, force: bool = False) -> None:
    """One build; print its summary or its errors, and tell the open pages."""
    try:
        report = builder.build(config, out, seed, force=force)
    except EXPECTED_ERRORS as err:
        _fail(state, str(err))
    except Exception as err:  # noqa: BLE001 - a bug must not stop the server either
        _fail(state, f"{type(err).__name__}: {err}")
    else:
        print(report.summary(), flush=True)
        state.publish(None)


def _fail(state: State, message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    state.publish(message)


def watch(builder: Builder, config: Path, out: Path, seed: int | None, state: State, force: bool = False) -> None:
    """Poll the inputs forever; rebuild once per burst; restart on Python changes."""
    root = builder.paths.root
    seen = snapshot(root)
    while True:
        time.sleep(POLL_SECONDS)
        now = snapshot(root)
        if not changed(seen, now):
            continue
        while True:  # debounce: wait for the burst to end
            time.sleep(QUIET_SECONDS)
            later = snapshot(root)
            if not changed(now, later):
                break
            now = later
        paths = changed(seen, now)
        seen = now
        if any(Path(p).suffix == ".py" and _under(Path(p), root, CODE_DIRS) for p in paths):
            restart(builder)
        rebuild(builder, config, out, seed, state, force)


def _under(path: Path, root: Path, tops: tuple[str, ...]) -> bool:
    try:
        return path.relative_to(root).parts[0] in tops
    except (ValueError, IndexError):
        return False


def restart(builder: Builder) -> None:
    """Re-run this command in a fresh interpreter, so edited engine code is used."""
    print("Python code changed: restarting the server", flush=True)
    builder.close()
    os.execv(sys.executable, [sys.executable, "-m", "site_build.cli", *sys.argv[1:]])


def serve(config: Path, out: Path, sock: socket.socket | int, seed: int | None = None, paths: Paths | None = None,
          force: bool = False) -> int:
    """Build, then serve `out` on `sock` (a bound socket, or a port on 127.0.0.1) until interrupted.

    A bad output folder stops here with one line; a page or config error only shows over the pages."""
    if isinstance(sock, int):
        sock = socket.create_server(("127.0.0.1", sock))
    builder = Builder(paths or Paths(), progress=Progress())
    builder.background_search = True
    state = State()
    server = ThreadingHTTPServer(sock.getsockname()[:2], make_handler(Path(out).absolute(), state),
                                 bind_and_activate=False)
    server.socket.close()
    server.socket = sock  # taken by the caller before the first build, so a busy port fails at once
    server.daemon_threads = True
    try:
        builder.check_outputs(Path(config), Path(out), force)
        rebuild(builder, Path(config), Path(out), seed, state, force)
        out = Path(out).absolute()
        threading.Thread(target=watch, args=(builder, Path(config), out, seed, state, force), daemon=True).start()
        print(f"serving {out.name}/ at http://127.0.0.1:{sock.getsockname()[1]}/ (Ctrl-C to stop)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        builder.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    print("use: handstep serve", file=sys.stderr)
    sys.exit(2)
