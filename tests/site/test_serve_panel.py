"""The "Try your own sentence" panel of `handstep serve` (site_build.panel): its settings laid over the user's config
and checked by the engine's own loader, and the panel on every page the server sends, never in a built site."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import digest_tree
from serve_support import Server
from test_serve import QUALITY, _edit
from tiny_checkpoint import write_checkpoint

import engine
from engine.config import DataConfig
from site_build import panel
from site_build.build import ROOT
from site_build.serve import SETTINGS_ENV, inherited_settings

GOOD = QUALITY / "configs" / "good.yaml"  # sizes only: the default vocabulary and text


def _settings(config: Path, **change) -> panel.Settings:
    return dataclasses.replace(panel.settings_of(engine.load_config(config)), **change)


# -- the settings → config overlay ---------------------------------------------------------------------------------
def test_a_configs_own_settings_make_the_same_config(tmp_path):
    """Laid over a config, its own settings change nothing the engine reads: with the default vocabulary left
    implied, with a vocabulary made from the config's texts, and with --seed."""
    texts_only = tmp_path / "texts.yaml"
    texts_only.write_text("data:\n  texts: [the cat sat, a dog ran far]\nmodel:\n  d_model: 8\n", encoding="utf-8")
    for config in (ROOT / "configs" / "default.yaml", GOOD, texts_only):
        folder = tmp_path / config.stem
        folder.mkdir()
        want = engine.load_config(config)
        assert engine.load_config(panel.derive(config, None, panel.settings_of(want), folder)) == want
    seeded = engine.load_config(GOOD, seed=7)
    derived = panel.derive(GOOD, 7, panel.settings_of(seeded), tmp_path)
    assert engine.load_config(derived).seed == 7


def test_settings_change_what_they_set_and_nothing_else(tmp_path):
    cfg = engine.load_config(GOOD)
    settings = _settings(GOOD, texts=("the dog ran", "the mat"), seed=9, n_heads=4, n_layers=2, optimizer="sgd",
                         lr=0.5)
    got = engine.load_config(panel.derive(GOOD, None, settings, tmp_path))
    assert got == dataclasses.replace(cfg, seed=9, model=dataclasses.replace(cfg.model, n_heads=4, n_layers=2),
                                      data=DataConfig(texts=("the dog ran", "the mat")),
                                      optimizer=dataclasses.replace(cfg.optimizer, name="sgd", lr=0.5))
    assert got.model.vocab == cfg.model.vocab  # the default vocabulary, not one made of the new texts


@pytest.mark.parametrize("change, line", [
    ({"n_heads": 3}, "model.n_heads: 3 does not divide d_model 8"),
    ({"texts": ("the zebra ran",)}, "model.vocab: missing words used in data.texts: zebra (add them to the vocab)"),
    ({"lr": 0}, "optimizer.lr: must be > 0, got 0.0"),
    ({"lr": "fast"}, "optimizer.lr: must be a number, got a string 'fast'"),
    ({"optimizer": "rmsprop"}, "optimizer.name: unknown optimizer 'rmsprop' (choose one of: adamw, adam, sgd)"),
    ({"texts": ()}, "data.texts: must be a non-empty list of strings"),
])
def test_refused_settings_give_the_engines_line_and_write_nothing(tmp_path, change, line):
    config = tmp_path / "run.yaml"
    shutil.copy(GOOD, config)
    before = config.read_bytes()
    folder = tmp_path / "own"
    folder.mkdir()
    with pytest.raises(panel.SettingsError) as err:
        panel.derive(config, None, _settings(config, **change), folder)
    assert str(err.value) == line
    assert config.read_bytes() == before and list(folder.iterdir()) == []


def test_a_checkpoint_config_keeps_its_folder_and_refuses_new_sizes(tmp_path, monkeypatch):
    """A config beside its checkpoint (`from: ckpt`, found beside the config, not from the current folder): the
    derived config, written elsewhere, reads the same checkpoint; heads are the checkpoint's to set."""
    write_checkpoint(tmp_path / "project" / "ckpt")
    config = tmp_path / "project" / "run.yaml"
    config.write_text("model:\n  from: ckpt\ndata:\n  texts: [the cat sat]\n", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = engine.load_config(config)
    got = engine.load_config(panel.derive(config, None, _settings(config, texts=("the dog ran",)), tmp_path))
    assert dataclasses.replace(got.model, checkpoint="ckpt") == cfg.model and got.data.texts == ("the dog ran",)
    assert Path(got.model.checkpoint_dir).resolve() == Path(cfg.model.checkpoint_dir).resolve()
    with pytest.raises(panel.SettingsError, match=r"^model\.n_heads: is given beside model\.from"):
        panel.derive(config, None, _settings(config, n_heads=1), tmp_path)


FORM = {"texts": "the cat sat", "seed": "5", "n_heads": "2", "n_layers": "1", "optimizer": "adamw", "lr": "0.01",
        "page": "/a.html", "action": "build"}


def test_the_form_reads_numbers_and_keeps_what_is_not_one():
    body = urllib.parse.urlencode({"texts": " the cat sat \r\n\r\nthe dog ran\n", "seed": "12", "n_heads": "x",
                                   "n_layers": " 2 ", "optimizer": "adam", "lr": "1e-3", "page": "/a.html",
                                   "action": "build"}).encode()
    assert panel.parse_form(body) == (panel.Settings(("the cat sat", "the dog ran"), 12, "x", 2, "adam", 0.001),
                                      "/a.html")
    assert panel.parse_form(b"action=reset&page=%2F&seed=3") == (None, "/")
    odd = urllib.parse.urlencode({**FORM, "texts": "the cat\u2028sat on\x1cthe mat"}).encode()
    assert panel.parse_form(odd)[0].texts == ("the cat\u2028sat on\x1cthe mat",)  # one text: the engine refuses it


def test_the_form_reads_no_typing_slip_as_a_number_and_a_long_integer_as_one(tmp_path):
    """float() reads `1_0` as 10 and other scripts' digits as numbers: slips, refused as any other text is. An integer
    of 31 digits is a number, too large for the engine's budget as it is in a YAML config (it was a string); one of
    more digits than Python reads is refused in one line, as the engine refuses it in YAML."""
    def parsed(**change: str) -> panel.Settings:
        return panel.parse_form(urllib.parse.urlencode({**FORM, **change}).encode())[0]

    config = tmp_path / "run.yaml"
    shutil.copy(GOOD, config)
    for typed in ("1_0", "1_0e-3", "\uff11"):  # the last a fullwidth 1
        with pytest.raises(panel.SettingsError) as err:
            panel.derive(config, None, parsed(lr=typed), tmp_path)
        assert str(err.value) == f"optimizer.lr: must be a number, got a string {typed!r}"
    long = parsed(n_layers="1" * 31)
    assert long.n_layers == int("1" * 31)
    with pytest.raises(engine.BudgetError) as err:
        engine.check_budget(engine.load_config(panel.derive(config, None, long, tmp_path)))
    assert ": model.n_layers: 1.1e+30 needs about " in str(err.value)
    with pytest.raises(panel.FormError) as err:
        parsed(seed="-" + "9" * 5000)
    assert str(err.value) == "seed: this integer has too many digits" and err.value.page == "/a.html"


def test_a_form_without_the_panels_fields_says_which_did_not_come():
    """Not the engine's complaint about the first field (`seed: must be an integer, got a string ''`)."""
    with pytest.raises(panel.FormError) as err:
        panel.parse_form(b"")
    assert str(err.value) == ("the form was empty: none of its fields (texts, seed, n_heads, n_layers, optimizer, lr) "
                              "came; send it from the panel")
    with pytest.raises(panel.FormError) as err:
        panel.parse_form(b"texts=the+cat&seed=1&n_heads=&page=%2Fa.html")
    assert str(err.value) == "the form is incomplete: n_layers, optimizer, lr did not come; send it from the panel"
    assert err.value.page == "/a.html"  # a field the reader emptied came: the engine names what is wrong with it


def test_back_to_the_page_when_the_new_site_has_it_else_home(tmp_path):
    (tmp_path / "guide").mkdir()
    for name in ("index.html", "a.html", "guide/index.html"):
        (tmp_path / name).write_text("<p>page</p>", encoding="utf-8")
    for page, want in [("/a.html", "/a.html"), ("/guide/", "/guide/"), ("/13-adamw.html", "/"), ("/", "/"),
                       ("//elsewhere.example/a.html", "/"), ("/../a.html", "/"), ("https://x.example/", "/"),
                       ("", "/"), ("/?\r\nSet-Cookie: x=1", "/"), ("/a.html\nRefresh: 0", "/"),
                       ("/" + "a" * 300, "/"), ("/guide/" + "a" * 300 + ".html", "/")]:
        assert panel.landing(tmp_path, page) == want, page  # no header of its own, no traceback


def test_a_restarted_server_gets_the_panels_settings(monkeypatch):
    """A code edit restarts the server (exec): the settings in use go along, as JSON in its environment."""
    settings = panel.Settings(("the cat sat", "the dog"), 3, 4, "x", "sgd", 0.5)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps(dataclasses.asdict(settings)))
    assert inherited_settings() == settings and inherited_settings() is None  # taken once
    for given in ("{", "[1]", '{"texts": ["a"]}', "null"):
        monkeypatch.setenv(SETTINGS_ENV, given)
        assert inherited_settings() is None


class _Controls(HTMLParser):
    """The form controls of a page (but hidden ones) by id, and the ids its labels name."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[str] = []
        self.labelled: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a.get("id") or f"<{tag} name={a.get('name')} without an id>")
        if tag == "label":
            self.labelled.append(a.get("for") or "<label without for>")


def test_every_field_of_the_panel_has_its_label_and_config_text_stays_text():
    settings = panel.Settings(("the <b>cat</b>", 'a "dog"'), 1, 2, 1, "adam", 0.01)
    html = panel.panel_html(settings, '/a.html"><script>', "model.vocab: missing words: <x>", error=True)
    parsed = _Controls()
    parsed.feed(html)
    assert len(parsed.controls) == 6 and sorted(parsed.controls) == sorted(parsed.labelled)
    assert "the &lt;b&gt;cat&lt;/b&gt;\na &quot;dog&quot;</textarea>" in html
    assert '<option selected>adam</option>' in html and "<b>" not in html and '"><script>' not in html
    assert "model.vocab: missing words: &lt;x&gt;</p>" in html and " open " in html


# -- the panel in `handstep serve` ---------------------------------------------------------------------------------
def _post(server: Server, fields: dict[str, str], json_reply: bool = False,
          origin: str | None = None) -> tuple[str, str]:
    """POST the panel's form; (the URL the reply ends at, its body): a redirect back to the page, or the JSON."""
    headers = {"Accept": "application/json"} if json_reply else {}
    if origin is not None:
        headers["Origin"] = origin
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{panel.ENDPOINT}", method="POST",
                                     data=urllib.parse.urlencode(fields).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=120) as reply:
        return reply.url, reply.read().decode()


def _loss(config_text: str, folder: Path) -> str:
    """The loss of the run of a config, through the engine's public entry point, as a page shows it."""
    path = folder / "expected.yaml"
    path.write_text(config_text, encoding="utf-8")
    return f"{float(engine.run(engine.load_config(path))['loss']):.4f}"


def test_serve_builds_the_panels_settings_into_its_own_folder(tmp_path):
    """The panel is on every page served, in no built site. Its settings rebuild the site, served from the
    server's own folder; a refused setting is one line and the site stays; an edit of the pages rebuilds from the
    same settings; "reset" goes back. The user's config and --out are never written; the folder goes with the
    server."""
    work = tmp_path / "work"
    shutil.copytree(QUALITY / "content", work / "pages")
    user_text = GOOD.read_text(encoding="utf-8") + "data:\n  texts: [the cat sat on the mat]\n"
    config, out = work / "run.yaml", tmp_path / "site"
    config.write_text(user_text, encoding="utf-8")
    tried = user_text.replace("n_heads: 2", "n_heads: 4").replace("the cat sat on the mat", "the mat sat on the cat")
    old_loss, new_loss = _loss(user_text, tmp_path), _loss(tried, tmp_path)
    assert old_loss != new_loss
    fields = {"texts": "the mat sat on the cat", "seed": "5", "n_heads": "4", "n_layers": "1", "optimizer": "adamw",
              "lr": "0.01", "page": "/attention.html", "action": "build"}

    server = Server(["--config", str(config), "--content", str(work / "pages"), "--cache", str(tmp_path / "cache"),
                     "--out", str(out)], cwd=tmp_path)
    try:
        page = server.get("/")
        assert 'id="try-form"' in page and "the cat sat on the mat</textarea>" in page and old_loss in page
        assert not any("try-form" in p.read_text(encoding="utf-8") for p in out.rglob("*.html"))
        user_site = digest_tree(out)  # what `build` wrote, without the panel

        with pytest.raises(urllib.error.HTTPError) as missing:  # a name too long for the file system: no such page
            server.get("/" + "a" * 300)
        assert missing.value.code == 404

        with pytest.raises(urllib.error.HTTPError) as refused:  # a form sent from another site's page
            _post(server, fields, origin="http://elsewhere.example")
        assert refused.value.code == 403 and "A site with 2 heads." in server.get("/")

        url, page = _post(server, fields)  # without JavaScript: a redirect back to the page
        assert url.endswith("/attention.html") and "This site is built from these settings" in page
        page = server.get("/")
        assert new_loss in page and "A site with 4 heads." in page and "the mat sat on the cat</textarea>" in page
        workdir = Path(server.wait_for(r"-> (/\S*handstep-serve-\S+)/site$").group(1))

        reply = json.loads(_post(server, {**fields, "n_heads": "3"}, json_reply=True)[1])
        assert reply["error"] == "model.n_heads: 3 does not divide d_model 8"
        assert new_loss in server.get("/")  # the previous site is still served
        # errors of the build name no file in the server's own folder, which the user never saw
        reply = json.loads(_post(server, {**fields, "n_layers": "1" * 22}, json_reply=True)[1])
        assert reply["error"].startswith("model.n_layers: 1.1e+21 needs about "), reply
        _, page = _post(server, {**fields, "lr": "1e300", "page": "/"})
        assert "try-error\">optimizer.lr: a NaN or Inf appeared in record " in page
        assert "handstep-serve-" not in page and new_loss in page
        reply = json.loads(_post(server, {}, json_reply=True)[1])  # an empty form: no complaint about its seed
        assert reply["error"].startswith("the form was empty: none of its fields") and reply["url"] == "/"
        _, page = _post(server, {"page": "/attention.html", "seed": "5"})
        assert "try-error\">the form is incomplete: texts, n_heads, n_layers, optimizer, lr did not come" in page
        _, page = _post(server, {**fields, "lr": "-1", "page": "/"})
        assert '<p id="try-status" role="status" class="try-status try-error">optimizer.lr: must be &gt; 0, got ' \
               "-1.0</p>" in page and 'id="try-panel" open' in page and new_loss in page
        assert 'class="try-status">' in server.get("/")  # the line is shown once

        _edit(work / "pages" / "index.md", "## The loss", "A sentence added while trying.\n\n## The loss")
        page = server.poll_page("A sentence added while trying.")
        assert "A site with 4 heads." in page and new_loss in page
        assert digest_tree(out) == user_site  # the panel's builds never wrote --out

        url, page = _post(server, {"action": "reset", "page": "/attention.html"})
        assert url.endswith("/attention.html") and "This site is built from your config." in page
        page = server.get("/")
        assert old_loss in page and "A site with 2 heads." in page and "A sentence added while trying." in page
        assert config.read_text(encoding="utf-8") == user_text
    finally:
        server.stop()
    assert not workdir.exists()
    assert not any("Traceback" in line for line in server.lines), server.lines



def test_an_error_of_the_panels_build_names_its_settings_not_the_servers_folder(tmp_path):
    """The config the panel's settings make lies in the server's own folder, which the user never saw: an error of
    its build (the budget, a NaN) names the settings of the panel instead, or nothing in the panel itself, as a
    refused setting does. It named the folder's config.yaml."""
    from site_build import serve
    from site_build.build import Builder, Paths

    state = serve.State()
    builder = Builder(Paths(content=QUALITY / "content", cache=tmp_path / "cache"))
    try:
        for change, line in [({"n_layers": 10**22}, "model.n_layers: 1e+22 needs about "),
                             ({"n_layers": 10**400}, "model.n_layers: about 2^1328 needs about "),  # not OverflowError
                             ({"lr": 1e300}, "optimizer.lr: a NaN or Inf appeared in record ")]:
            state.settings = _settings(GOOD, **change)
            for prefix, said in ((True, f"the settings of the Try panel: {line}"), (False, line)):
                error = serve._build(builder, GOOD, tmp_path / "site", None, state, False, prefix=prefix)
                assert error is not None and error.startswith(said) and "handstep-serve-" not in error, error
    finally:
        builder.close()
        serve.remove_workdir(state)


def test_the_panels_folder_is_made_again_when_a_cleaner_took_it(tmp_path):
    """The server's own folder for the panel's config and site (in /tmp) may be removed while it runs (a cleaner of
    /tmp): the next build of the panel's settings makes it again (it was a traceback and no reply, for good)."""
    from site_build import serve

    state = serve.State()
    state.settings = panel.settings_of(engine.Config())
    config, out = ROOT / "configs" / "default.yaml", tmp_path / "site"
    try:
        first = serve.target(state, config, out, None)
        shutil.rmtree(state.workdir)
        again = serve.target(state, config, out, None)
        assert again[0].is_file() and again[1].parent == state.workdir != first[1].parent
    finally:
        shutil.rmtree(state.workdir, ignore_errors=True)


def test_a_config_that_is_a_fifo_does_not_block_the_watcher(tmp_path):
    """The watcher reads the config for the checkpoint folder it names; a FIFO put in its place would block it for
    good (no edit rebuilt after): it is not read, and the build says what it is."""
    import os
    import threading

    from site_build import serve

    fifo = tmp_path / "run.yaml"
    os.mkfifo(fifo)
    found: list = []
    reader = threading.Thread(target=lambda: found.append(serve.checkpoint_folders(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert found == [[]]


def _post_in_background(server: Server, fields: dict[str, str]) -> list:
    """POST the panel's form (for the JSON) in a thread of its own: [the reply] once it came, [the error] if none."""
    got: list = []

    def post() -> None:
        try:
            got.append(json.loads(_post(server, fields, json_reply=True)[1]))
        except OSError as err:
            got.append(err)

    threading.Thread(target=post, daemon=True).start()
    return got


def _long_panel_build(tmp_path: Path, layers: int = 40, env: dict[str, str] | None = None,
                      cwd: Path | None = None) -> tuple:
    """A server of the real pages (enough for the build's compile workers and their folder) with its temporary
    folders in a folder of the test's own, and a panel build of `layers` layers under way (40: half a minute and
    more)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    shutil.copytree(ROOT / "content", tmp_path / "pages")
    config = tmp_path / "run.yaml"
    shutil.copy(ROOT / "configs" / "default.yaml", config)
    server = Server(["--config", str(config), "--content", str(tmp_path / "pages"), "--cache", str(tmp_path / "cache"),
                     "--out", str(tmp_path / "site")], cwd=cwd or tmp_path,
                    env={**(env or os.environ), "TMPDIR": str(temp)})
    fields = {"texts": "the cat sat on the mat", "seed": "42", "n_heads": "2", "n_layers": str(layers),
              "optimizer": "adamw", "lr": "0.01", "page": "/", "action": "build"}
    reply = _post_in_background(server, fields)
    deadline = time.monotonic() + 60
    while not list(temp.glob("handstep-jinja-*")):  # the build's compile workers are at work
        assert time.monotonic() < deadline and server.proc.poll() is None, "\n".join(server.lines)
        time.sleep(0.02)
    return server, temp, reply


def test_serve_stopped_during_a_panel_build_stops_at_once_and_leaves_no_folder(tmp_path):
    """SIGTERM (a `kill`, to the server alone) while a panel build is under way: the build stops where it is, as
    `handstep build` stops, and cleans up after itself; the server leaves no temporary folder. It waited up to a
    minute for the build (in another thread, which no signal stops), then left the panel's folder and the
    build's compile folder behind."""
    server, temp, reply = _long_panel_build(tmp_path)
    try:
        time.sleep(0.5)
        start = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=15)
        assert time.monotonic() - start < 5
        time.sleep(0.2)
        assert sorted(p.name for p in temp.iterdir()) == []
        assert not any("Traceback" in line or "Error" in line for line in server.lines), server.lines
        assert reply in ([], [{"error": "the server stopped before this build ended", "url": "/"}]) or \
            isinstance(reply[0], OSError), reply
    finally:
        server.stop()


def test_a_code_edit_during_a_panel_build_restarts_once_its_form_is_answered(tmp_path):
    """An edit of handstep's code while a panel build is under way: the server restarts once the build has ended
    and its form has its answer, and no compile folder is left. The restart cut the build off: the form had no
    answer ("No answer from the server") and the compile folder stayed in /tmp."""
    project = tmp_path / "project"  # a copy: the real checkout is never edited
    for name in ("engine", "site_build", "templates", "configs"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "node_modules").symlink_to(ROOT / "node_modules")
    server, temp, reply = _long_panel_build(tmp_path, 10, env={**os.environ, "PYTHONPATH": str(project)}, cwd=project)
    try:
        seen = len(server.lines)
        _edit(project / "site_build" / "panel.py", '"""The "Try your own sentence"', '"""The "Try your sentence"')
        server.wait_for("restarting the server", after=seen)
        deadline = time.monotonic() + 120
        while not reply:
            assert time.monotonic() < deadline, "\n".join(server.lines)
            time.sleep(0.05)
        assert reply == [{"error": None, "url": "/"}], (reply, server.lines)
        built = next(i for i, line in enumerate(server.lines) if i >= seen and line.startswith("built "))
        assert "handstep-serve-" in server.lines[built]  # the panel's build ended, then the server restarted
        server.wait_for(r"serving \S+ at http://127\.0\.0\.1:(\d+)/", after=built)  # built the settings again
        page = server.get("/")
        assert 'name="n_layers" inputmode="numeric" autocomplete="off" spellcheck="false" value="10">' in page
        assert "This site is built from these settings" in page
        assert [p.name.startswith("handstep-serve-") for p in temp.iterdir()] == [True]  # the new server's own
        assert not any("Traceback" in line for line in server.lines), server.lines
    finally:
        server.stop()
