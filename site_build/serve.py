"""`handstep serve`: a local server that rebuilds on change and reloads the open page.

Standard library only: a polling watcher (no inotify dependency) with a debounce so
a burst of saves gives one rebuild, a threaded http.server on 127.0.0.1, and a
long-poll endpoint `/__reload` that the pages' injected script waits on. The script
is added to HTML responses by the server, never written into site/. A failed rebuild
prints the error and shows it over the page; the server keeps serving the last good
site. Every build runs in the main thread, one at a time (the watcher and the requests
hand theirs over): Ctrl-C or SIGTERM stops it there at once, and it cleans up after
itself, as `handstep build` does.

What is watched is every input a build reads, wherever it lies: the config file and the checkpoint folder it
names (`model.from`), the pages (--content) and templates (--templates) folders, the verification figures
(configs/verification/ and build/verification.json) and handstep's own source (engine/, site_build/). A change to
that source restarts the process in place (exec), handing it the listening socket: the server keeps its address,
and the open pages, whose reload script reconnects to it, reload once the restarted server has built.

Every page it sends also carries the "Try your own sentence" panel (site_build.panel), whose POST (`/__try`) builds
the site from the panel's settings into a folder the server owns, then serves that site; the user's config and
`--out` are never written for it. Later edits rebuild it from the same settings, until "Reset to my config".
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import engine
from site_build import panel, stamp
from site_build.build import EXPECTED_ERRORS, Builder, Paths
from site_build.data.checks import SHIPPED_VERIFICATION, VERIFICATION_FILE
from site_build.errors import shown_path, terminal_line
from site_build.lock import BuildLocks
from site_build.progress import Progress
from site_build.render.layout import relocate

CODE_DIRS = ("engine", "site_build")
CODE_SUFFIXES = (".py", ".yaml", ".js")  # handstep's source (as site_build.stamp counts it): a change restarts
SOCKET_ENV = "HANDSTEP_SERVE_SOCKET"  # the listening socket's descriptor, handed to the restarted server
SETTINGS_ENV = "HANDSTEP_SERVE_SETTINGS"  # the panel's settings in use, handed to the restarted server (JSON)
POLL_SECONDS = 0.15
QUIET_SECONDS = 0.12  # a burst of saves ends after this long without changes
LONG_POLL_SECONDS = 25
ANSWER_SECONDS = 5  # a restart waits this long for a request that is not waiting for a build (a client gone quiet)
T = TypeVar("T")
PANEL_SETTINGS = "the settings of the Try panel"  # how messages name the config the panel's settings make

RELOAD_SCRIPT = """<script>(function(){var id=%s;function show(e){var d=document.getElementById("build-error");
if(!e){if(d)d.remove();return}if(!d){d=document.createElement("pre");d.id="build-error";d.className="build-error";
d.setAttribute("role","alert");document.body.append(d)}d.textContent="Build failed\\n\\n"+e}
function poll(){fetch("/__reload?since="+encodeURIComponent(id)).then(function(r){return r.json()}).then(function(s){
if(s.id!==id){if(s.error){id=s.id;show(s.error)}else if(window.handstepTrying){id=s.id}else{location.reload();return}}
poll()}).catch(function(){setTimeout(poll,500)})}
show(%s);poll()})()</script>"""


class State:
    """The latest build outcome, shared by the watcher and the request threads."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        # A restarted server keeps its process id (exec): the token tells its builds from the ones before.
        self.token = f"{os.getpid()}.{secrets.token_hex(4)}"
        self.id = f"{self.token}-0"
        self.error: str | None = None
        self._n = 0
        # Every build runs in the main thread (`in_main`), one at a time: these wait for it there.
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.building = ""  # what the main thread is building ("the first build", "a rebuild"; "": nothing)
        self.stopping = threading.Event()  # the server is stopping: a rebuild that fails now says nothing
        self.taken = 0  # requests the HTTP server has taken and not yet answered (Server), under `cond`
        self.restarting = False  # a restart waits for them: a long poll answers at once
        # The panel (site_build.panel): its settings, when the site shown is built from them (None: from the user's
        # config), the folder the server owns for their config and site (made when first needed), the site served
        # when it is not --out, what the user's config sets (the panel's first values), and a refused setting to show
        # once on the next page (the form sent without JavaScript comes back by a redirect).
        self.settings: panel.Settings | None = None
        self.workdir: Path | None = None
        self.served: Path | None = None
        self.defaults: panel.Settings | None = None
        self.refused: tuple[panel.Settings | None, str] | None = None

    def publish(self, error: str | None) -> None:
        """Record a finished build and wake every waiting page."""
        with self.cond:
            self._n += 1
            self.id = f"{self.token}-{self._n}"
            self.error = error
            self.cond.notify_all()

    def wait(self, since: str) -> dict[str, str | None]:
        """Block until a build newer than `since` (or the long-poll timeout, or a restart)."""
        with self.cond:
            self.cond.wait_for(lambda: self.id != since or self.restarting, timeout=LONG_POLL_SECONDS)
            return {"id": self.id, "error": self.error}

    def count(self, change: int) -> None:
        with self.cond:
            self.taken += change
            self.cond.notify_all()


class Server(ThreadingHTTPServer):
    """The threaded HTTP server, counting the requests it has taken from the socket and not yet answered (from the
    moment it takes one: none slips past a restart that has stopped it), for a restart to answer them first."""

    daemon_threads = True

    def __init__(self, state: State, handler: type[SimpleHTTPRequestHandler], sock: socket.socket) -> None:
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.state = state

    def process_request(self, request: Any, client_address: Any) -> None:
        self.state.count(1)
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread to answer it
            self.state.count(-1)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.state.count(-1)


def watched(paths: Paths, config: Path) -> list[Path]:
    """Every input of a build (files and folders, wherever they are): the config file and the checkpoint folder it
    names, the pages and templates folders, handstep's source and the verification figures. One that does not
    exist yet is watched for its appearance."""
    config = Path(config).absolute()
    tops = [config, *checkpoint_folders(config), Path(paths.content).absolute(), Path(paths.templates).absolute(),
            *(paths.root / d for d in CODE_DIRS), paths.root / SHIPPED_VERIFICATION, paths.root / VERIFICATION_FILE]
    return list(dict.fromkeys(tops))


def checkpoint_folders(config: Path) -> list[Path]:
    """Where the checkpoint folder a config names (`model: {from: PATH}`) may be: PATH from the current folder, and
    beside the config (engine.config looks in both); none for any other config, or one that does not read."""
    try:
        if not stat.S_ISREG(os.stat(config).st_mode):  # a FIFO would block the watcher for good: the build says why
            return []
        folder = stamp.named_checkpoint(Path(config).read_bytes())  # as the up-to-date check reads it: cheaply
    except Exception:  # noqa: BLE001 - a broken config is the build's to report; its file is watched anyway
        return []
    if not isinstance(folder, str) or not folder.strip():
        return []
    return list(dict.fromkeys([Path(folder).absolute(), (Path(config).parent / folder).absolute()]))


def snapshot(tops: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """The stat numbers of every watched file (mtime, size, change time, inode: an edit of the same size whose
    modification time is set back still changes the change time): each of `tops` that is a file, every file in
    each that is a folder."""
    files = {}
    for top in tops:
        base = Path(top)
        if base.is_file():
            _stat_into(files, str(base))
            continue
        if not base.is_dir():
            continue
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in stamp.walk(base):  # a linked folder is read by the build
            try:
                st = os.stat(dirpath)
            except OSError:
                st = None
            if st is None or (st.st_dev, st.st_ino) in seen:  # a link back up: each folder once
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            # hidden names too: `content/.draft.md` is a page, and a checkpoint's every file is digested
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", ".git")]
            for name in filenames:
                if not name.endswith((".pyc", "~", ".swp", ".swx")):
                    _stat_into(files, os.path.join(dirpath, name))
    return files


def _stat_into(files: dict[str, tuple[int, ...]], path: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    files[path] = (st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino, st.st_dev)


def changed(old: dict[str, tuple[int, ...]], new: dict[str, tuple[int, ...]]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))


def make_handler(site: Path, state: State, apply: Callable[[panel.Settings | None], str | None] | None = None,
                 config: str = "") -> type[SimpleHTTPRequestHandler]:
    """A request handler serving `site` (or the panel's site, `state.served`) with the reload script injected into
    HTML; with `apply` (what a POST of the panel calls: site_build.serve.try_settings) the panel too, showing the
    user's `config` by name."""

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            self.directory = str(state.served or site)  # the folder served may change between two requests
            return super().translate_path(path)

        head = False  # answering HEAD: GET's headers, no body

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            """The headers GET sends (a page's length with the scripts the server adds), without the body."""
            self.head = True
            try:
                self.do_GET()
            finally:
                self.head = False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            if url.path == "/__reload":
                since = parse_qs(url.query).get("since", [""])[0]
                reply = {"id": state.id, "error": state.error} if self.head else state.wait(since)  # HEAD: no wait
                return self._send(HTTPStatus.OK, "application/json", json.dumps(reply).encode())
            target = Path(self.translate_path(url.path))
            try:
                if target.is_dir():
                    target = target / "index.html"
                page, missing = target.suffix == ".html" and target.is_file(), not target.exists()
            except OSError:  # a name too long for the file system: no such file
                page, missing = False, True
            if page:
                return self._send_html(HTTPStatus.OK, target, url.path)
            if missing:
                return self._send_html(HTTPStatus.NOT_FOUND, Path(self.directory) / "404.html", url.path,
                                       rooted=True)
            return super().do_HEAD() if self.head else super().do_GET()

        def do_POST(self) -> None:  # noqa: N802
            """The panel's form: build from its settings (or the user's config again), then back to the page."""
            if apply is None or urlsplit(self.path).path != panel.ENDPOINT:
                return self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"Not found\n")
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host', '')}":
                return self._send(HTTPStatus.FORBIDDEN, "text/plain; charset=utf-8", b"A form of another site\n")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= panel.MAX_FORM_BYTES:
                return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "text/plain; charset=utf-8",
                                  b"The form is too long: give shorter texts\n")
            try:
                settings, page = panel.parse_form(self.rfile.read(length))
            except panel.FormError as err:  # nothing to build: its line is the answer
                settings, page, error = None, err.page, str(err)
            else:
                error = apply(settings)
            url = panel.landing(Path(state.served or site), page)
            if "application/json" in self.headers.get("Accept", ""):  # the panel's script
                return self._send(HTTPStatus.OK, "application/json", panel.reply(error, url))
            if error is not None:
                state.refused = (settings, error)  # shown in the panel of the page the redirect leads to
            try:
                self.send_response(HTTPStatus.SEE_OTHER)
                self.send_header("Location", url)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the form's page went away while the site was rebuilt

        def _send_html(self, status: HTTPStatus, path: Path, page_path: str, rooted: bool = False) -> None:
            try:
                page = path.read_text(encoding="utf-8")
            except OSError:
                page = "<!doctype html><title>Not built</title><body><p>The site is not built yet.</p></body>"
            if rooted:
                page = rooted_404(page, page_path)
            script = RELOAD_SCRIPT % (json.dumps(state.id), json.dumps(state.error))
            if apply is not None:
                script = self._panel(page_path) + script
            body = page.replace("</body>", script + "</body>", 1) if "</body>" in page else page + script
            self._send(status, "text/html; charset=utf-8", body.encode("utf-8"))

        def _panel(self, page_path: str) -> str:
            refused, state.refused = state.refused, None
            shown = state.settings or state.defaults or panel.settings_of(engine.Config())
            if refused is not None:
                shown = refused[0] or shown
            return panel.panel_html(shown, page_path, refused[1] if refused else None, error=refused is not None,
                                    yours=config if state.settings is not None else None)

        def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if not self.head:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page went away (reloaded, closed) while its long poll waited: no one to answer

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep the terminal for build results

    return partial(Handler, directory=str(site))  # type: ignore[return-value]


def rooted_404(page: str, path: str) -> str:
    """The site's 404 page as the answer for `path`: its links and loads are relative to the site's root folder
    (where 404.html is), so for an address in a folder (/numbers/x.html, /assets/csv/y.csv) they start with / (the
    server's root is the site's) and the page keeps its styles, scripts, menu and search."""
    if "/" not in path.lstrip("/"):
        return page
    return relocate(page, "/").replace(' data-root=""', ' data-root="/"', 1)


def in_main(state: State, job: Callable[[], T], stopped: T) -> T:
    """Run `job` (a build) in the main thread, where serve() takes them one at a time, and return what it returns;
    `stopped` when the server stopped before it ended. Ctrl-C and SIGTERM (site_build.cli) raise KeyboardInterrupt
    in the main thread alone: a build there stops at once and cleans up after itself (its temporary folders, its
    compile workers), exactly as `handstep build` does; one in another thread went on, for up to a minute, and was
    cut off with the process, leaving its folders."""
    if threading.current_thread() is threading.main_thread():
        return job()
    done = threading.Event()
    outcome: list[tuple[T | None, Exception | None]] = []

    def run() -> None:
        try:
            outcome.append((job(), None))
        except Exception as err:  # noqa: BLE001 - raised again in the thread that asked
            outcome.append((None, err))
        finally:
            done.set()

    state.jobs.put(run)
    done.wait()
    if not outcome:
        return stopped
    value, error = outcome[0]
    if error is not None:
        raise error
    return value  # type: ignore[return-value]


def rebuild(builder: Builder, config: Path, out: Path, seed: int | None, state: State, force: bool = False) -> None:
    """One build of what the server shows (`target`); print its summary or its errors, and tell the open pages."""
    def build() -> None:
        error = _build(builder, config, out, seed, state, force)
        if error is not None:
            _fail(state, error)

    in_main(state, build, None)


def _fail(state: State, message: str) -> None:
    print("\n".join(map(terminal_line, message.splitlines())), file=sys.stderr, flush=True)
    state.publish(message)


def try_settings(builder: Builder, config: Path, out: Path, seed: int | None, state: State,
                 settings: panel.Settings | None, force: bool = False) -> str | None:
    """The panel's POST: show the site `settings` make of the user's config (None, or the config's own settings:
    the user's site again). Settings the engine refuses, or a build that fails, give one line, and the site served
    stays the one before."""
    def build() -> str | None:
        previous = state.settings
        state.settings = None if settings == state.defaults else settings
        error = _build(builder, config, out, seed, state, force, prefix=False)
        if error is not None:
            state.settings = previous
            return error.splitlines()[0]
        return None

    return in_main(state, build, "the server stopped before this build ended")


def target(state: State, config: Path, out: Path, seed: int | None) -> tuple[Path, Path, int | None]:
    """What a build builds (config, output folder, seed): the user's config into --out, or the config the panel's
    settings make of it (made again each time: the user's config may have changed) into the server's own folder."""
    if state.settings is None:
        return config, out, seed
    if state.workdir is None or not state.workdir.is_dir():  # made again if a cleaner of /tmp took it
        state.workdir = Path(tempfile.mkdtemp(prefix="handstep-serve-"))
    return panel.derive(config, seed, state.settings, state.workdir), state.workdir / "site", None


def _build(builder: Builder, config: Path, out: Path, seed: int | None, state: State, force: bool,
           prefix: bool = True) -> str | None:
    """Build what the server shows (in the main thread: `in_main`): on success serve it, print its summary and tell
    the open pages; else return the error (None when the server is stopping). It holds the locks of the output and
    cache folders, as `handstep build` does (site_build.lock), until its search index is in place. `prefix`: a
    refused panel setting says where it comes from."""
    if state.stopping.is_set():
        return None
    try:
        state.defaults = panel.settings_of(panel.current_config(config, seed)[1])
    except engine.ConfigError:
        pass  # the build says why
    try:
        config_used, dest, seed_used = target(state, config, out, seed)
    except panel.SettingsError as err:
        return f"{PANEL_SETTINGS}: {err}" if prefix else str(err)
    except engine.ConfigError as err:
        return str(err)
    except OSError as err:  # the server's own folder could not be written
        return f"the Try panel's folder {state.workdir}: {err.strerror or err}"
    with BuildLocks(dest, builder.paths.cache) as locks:
        try:  # the folders first, as `handstep build` checks them: a lock file goes only where a build may write
            builder.check_outputs(config_used, dest, force)
        except EXPECTED_ERRORS as err:
            return None if state.stopping.is_set() else _named(str(err), config_used, config, prefix)
        locks.acquire()
        try:
            report = builder.build(config_used, dest, seed_used, force=force)
        except EXPECTED_ERRORS as err:
            error = None if state.stopping.is_set() else _named(str(err), config_used, config, prefix)
        except Exception as err:  # noqa: BLE001 - a bug must not stop the server either
            # (when stopping, the server closed what the build was using)
            error = None if state.stopping.is_set() else _named(f"{type(err).__name__}: {err}", config_used, config,
                                                                prefix)
        else:
            error = None
            state.served = dest if dest != out else None
            print(report.summary(), flush=True)
            state.publish(None)
        builder.finish_search()  # the index of the new pages is written into `dest` after the swap
    return error


def _named(error: str, used: Path, config: Path, prefix: bool) -> str:
    """An error of the build of `used`: when that is the config the panel's settings make (not the user's `config`),
    the engine named it by its path in the server's own folder, which the user never saw. It is named as the panel's
    settings instead (a line in the panel itself, as a setting the engine refuses, names nothing: `prefix`)."""
    if used == config:
        return error
    for path in dict.fromkeys((str(used), shown_path(used))):
        if not prefix:
            error = "\n".join(line.removeprefix(f"{path}: ") for line in error.split("\n"))
        error = error.replace(path, PANEL_SETTINGS)
    return error


def watch(builder: Builder, config: Path, out: Path, seed: int | None, state: State, force: bool = False,
          sock: socket.socket | None = None, seen: dict[str, tuple[int, ...]] | None = None,
          server: Server | None = None) -> None:
    """Poll the inputs forever (from the snapshot `seen`, else from now); rebuild once per burst; restart on a change
    to handstep's source."""
    tops = watched(builder.paths, config)
    seen = snapshot(tops) if seen is None else seen
    broken: dict[str, str] = {}  # source files that do not compile, and why: no restart until they do
    while True:
        time.sleep(POLL_SECONDS)
        now = snapshot(tops)
        if not changed(seen, now):
            continue
        while True:  # debounce: wait for the burst to end
            time.sleep(QUIET_SECONDS)
            later = snapshot(tops)
            if not changed(now, later):
                break
            now = later
        paths = changed(seen, now)
        inputs = watched(builder.paths, config)
        if inputs != tops:  # the config names another checkpoint folder now
            tops, now = inputs, snapshot(inputs)
        seen = now
        code = [p for p in paths if is_code(Path(p), builder.paths.root)]
        if code or broken:
            broken = {p: why for p in sorted({*code, *broken}) if (why := compile_error(p))}
            if broken:  # a restart would end the server: wait for the next save
                _fail(state, "\n".join(broken.values()) + "\n(the server restarts once handstep's code compiles)")
                continue
            if code:
                restart(builder, sock, state, server)
        try:
            rebuild(builder, config, out, seed, state, force)
        except Exception as err:  # noqa: BLE001 - a bug must not stop the watching: said, and the next edit rebuilds
            _fail(state, f"{type(err).__name__}: {err}")


def is_code(path: Path, root: Path) -> bool:
    """A file of handstep's own source (what a running server has loaded)."""
    try:
        return (path.suffix in CODE_SUFFIXES and path.relative_to(root).parts[0] in CODE_DIRS
                and not path.name.startswith("."))  # an editor's hidden copy is no module
    except (ValueError, IndexError):
        return False


def compile_error(path: str) -> str | None:
    """Why the Python file `path` does not compile (`file:line: message`), or None (also for a file that is gone)."""
    if not path.endswith(".py"):
        return None
    try:
        source = Path(path).read_bytes()
    except OSError:
        return None
    try:
        compile(source, path, "exec")
    except SyntaxError as err:
        return f"{shown_path(path)}:{err.lineno or 0}: {err.msg}"
    except ValueError as err:  # a NUL byte
        return f"{shown_path(path)}:0: {err}"
    return None


def restart(builder: Builder, sock: socket.socket | None = None, state: State | None = None,
            server: Server | None = None) -> None:
    """Re-run this command in a fresh interpreter, so edited code is used, in this same process (exec) and on the
    same listening socket: the address stays, and requests wait in its queue until the new server answers them.
    The requests `server` has taken are answered first (`answer_taken`). The panel's settings go along (its folder
    is removed: the new server builds them into one of its own). Should exec fail, the server goes on with the
    code it has."""
    print("handstep's code changed: restarting the server", flush=True)
    if state is not None and server is not None:
        answer_taken(state, server)
    builder.close()
    env = dict(os.environ)
    if sock is not None:
        sock.set_inheritable(True)
        env[SOCKET_ENV] = str(sock.fileno())
    if state is not None:
        if state.settings is not None:
            env[SETTINGS_ENV] = json.dumps(asdict(state.settings))
        remove_workdir(state)
    try:
        os.execve(sys.executable, [sys.executable, "-m", "site_build.cli", *sys.argv[1:]], env)
    except OSError as err:
        if sock is not None:
            sock.set_inheritable(False)
        print(f"could not restart ({err.strerror or err}); rebuilding with the code already loaded", file=sys.stderr,
              flush=True)
        if state is not None and server is not None:
            state.restarting = False
            threading.Thread(target=server.serve_forever, daemon=True).start()


def answer_taken(state: State, server: Server) -> None:
    """Before a restart: take no more requests (they wait in the socket's queue for the new server) and answer the
    ones taken. A panel build under way (in the main thread) ends, and its form gets its answer; a page's long poll
    answers at once. Exec cut them off: the form had no answer ("No answer from the server") and the build left its
    compile folder. A request that waits for no build (a client that sends nothing) is waited for ANSWER_SECONDS."""
    with state.cond:
        state.restarting = True
        state.cond.notify_all()
    server.shutdown()
    quiet = time.monotonic() + ANSWER_SECONDS
    with state.cond:
        while state.taken:
            if state.building:
                quiet = time.monotonic() + ANSWER_SECONDS
            elif time.monotonic() > quiet:
                break
            state.cond.wait(0.1)


def remove_workdir(state: State) -> None:
    """Remove the folder the server made for the panel's config and site; the user's --out is served again."""
    if state.workdir is not None:
        state.served = None
        shutil.rmtree(state.workdir, ignore_errors=True)
        state.workdir = None


def inherited_settings() -> panel.Settings | None:
    """The panel's settings a restarting server handed to this process (`restart`), or None."""
    try:
        given = json.loads(os.environ.pop(SETTINGS_ENV, "null"))
        return panel.Settings(**{**given, "texts": tuple(given["texts"])}) if given is not None else None
    except (ValueError, TypeError, KeyError):
        return None


def inherited_socket() -> socket.socket | None:
    """The listening socket a restarting server handed to this process (`restart`), or None."""
    fd = os.environ.pop(SOCKET_ENV, "")
    if not fd.isdigit():
        return None
    try:
        sock = socket.socket(fileno=int(fd))
    except OSError:
        return None
    try:
        ours = (sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
                and sock.getsockname()[0] == "127.0.0.1")
    except OSError:
        ours = False
    if not ours:
        sock.detach()  # not a server's socket: leave the descriptor alone
        return None
    sock.set_inheritable(False)
    return sock


def serve(config: Path, out: Path, sock: socket.socket | int, seed: int | None = None, paths: Paths | None = None,
          force: bool = False) -> int:
    """Build, then serve `out` on `sock` (a bound socket, or a port on 127.0.0.1) until interrupted.

    A bad output folder stops here with one line; a page or config error only shows over the pages."""
    if isinstance(sock, int):
        sock = socket.create_server(("127.0.0.1", sock))
    builder = Builder(paths or Paths(), progress=Progress())
    builder.background_search = True
    state = State()
    state.settings = inherited_settings()
    out = Path(out).absolute()

    def apply(settings: panel.Settings | None) -> str | None:
        return try_settings(builder, Path(config), out, seed, state, settings, force)

    # the socket is taken by the caller before the first build, so a busy port fails at once
    server = Server(state, make_handler(out, state, apply, shown_path(config)), sock)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        builder.check_outputs(Path(config), Path(out), force)
        first = snapshot(watched(builder.paths, Path(config)))  # before the first build: an edit during it shows
        state.building = "the first build"
        rebuild(builder, Path(config), out, seed, state, force)
        state.building = ""
        threading.Thread(target=watch, args=(builder, Path(config), out, seed, state, force, sock, first, server),
                         daemon=True).start()
        print(f"serving {out.name}/ at http://127.0.0.1:{sock.getsockname()[1]}/ (Ctrl-C to stop)", flush=True)
        serving.start()
        while True:  # every later build, in this thread (in_main), where Ctrl-C and SIGTERM stop it at once
            job = state.jobs.get()
            state.building = "a rebuild"
            job()
            state.building = ""
    except KeyboardInterrupt:
        pass
    finally:
        state.stopping.set()
        if serving.ident is not None:  # started (serve_forever may run in another thread since: restart)
            server.shutdown()
        server.server_close()
        ours = state.settings is not None  # a rebuild cut short wrote the panel's site, not --out
        builder.close()  # once a site just swapped in has its search index
        if state.building and not ours:  # the build stopped where it was, and cleaned up, as `handstep build` does
            site = f"{shown_path(out)}/"
            if builder.replaced:
                said = f"stopped during {state.building}, after it had replaced {site}: it holds the new site, whole"
            else:
                said = f"stopped during {state.building}, which was abandoned; {site} is as it was"
            print(f"handstep: {said}", file=sys.stderr, flush=True)
        remove_workdir(state)  # no build writes in the panel's folder any more
    return 0


if __name__ == "__main__":  # pragma: no cover
    print("use: handstep serve", file=sys.stderr)
    sys.exit(2)
