"""The "Try your own sentence" panel of `handstep serve`: a form on every page the server sends (never written into
a built site) that rebuilds the site from a few settings: the texts, seed, heads, layers, optimizer and learning rate.

The settings are laid over the user's config (`overlay`) and checked by the engine's own config loader; the config
they make is written into a folder the server owns (`derive`), and its site is built beside it: the user's config
file and `--out` are never written. The form works without JavaScript (a POST, then a redirect back); the script only
keeps the reader's place and shows a refused setting without leaving the page.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

from engine import Config, ConfigError
from engine.config import OPTIMIZERS, config_from_dict, read_mapping
from site_build.errors import shown_path

ENDPOINT = "/__try"
CONFIG_NAME = "config.yaml"  # the derived config, in the server's own folder
MAX_FORM_BYTES = 64 * 1024  # texts of a few hundred words, with room to spare
FIELDS = ("texts", "seed", "n_heads", "n_layers", "optimizer", "lr")  # what the panel's form sends to build


class SettingsError(ConfigError):
    """Settings of the panel that the engine refuses: its one line, without a file name (the file is unchanged)."""


class FormError(SettingsError):
    """A form the panel cannot read at all (fields missing, a number of more digits than Python reads): one line, and
    the page the form was sent from, to go back to."""

    def __init__(self, message: str, page: str) -> None:
        super().__init__(message)
        self.page = page


@dataclass(frozen=True)
class Settings:
    """What the panel sets. A value the form gave that is not a number stays the text typed, for the engine to name
    it in its message (`seed: must be an integer, got a string 'x'`)."""

    texts: tuple[str, ...]
    seed: Any
    n_heads: Any
    n_layers: Any
    optimizer: Any
    lr: Any


def settings_of(cfg: Config) -> Settings:
    """The settings a config has: what the panel shows before it is used."""
    return Settings(tuple(cfg.data.texts), cfg.seed, cfg.model.n_heads, cfg.model.n_layers, cfg.optimizer.name,
                    cfg.optimizer.lr)


def parse_form(body: bytes) -> tuple[Settings | None, str]:
    """The panel's POST body: its settings (None for "Reset to my config": the user's config again) and the path of
    the page it was sent from. A form without the panel's fields (an empty body: not sent by the panel) raises
    FormError naming them, rather than the engine's complaint about the first one (`seed: must be an integer`)."""
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)

    def one(name: str) -> str:
        return fields.get(name, [""])[0]

    page = one("page")
    if one("action") == "reset":
        return None, page
    missing = [name for name in FIELDS if name not in fields]  # a field the reader emptied is sent, blank
    if len(missing) == len(FIELDS):
        raise FormError(f"the form was empty: none of its fields ({', '.join(FIELDS)}) came; send it from the "
                        "panel", page)
    if missing:
        raise FormError(f"the form is incomplete: {', '.join(missing)} did not come; send it from the panel", page)

    def integer(name: str, key: str) -> Any:
        try:
            return _integer(one(name))
        except ValueError:  # more digits than Python converts (4300): as the engine says of such a YAML integer
            raise FormError(f"{key}: this integer has too many digits", page) from None

    # one text a line of the box (a browser sends CR LF): not str.splitlines, which also splits at U+2028 or U+001C and
    # would make three texts of one without a word; such a character stays in its text, for the engine to refuse
    texts = tuple(line.strip() for line in one("texts").replace("\r\n", "\n").split("\n") if line.strip())
    return Settings(texts, integer("seed", "seed"), integer("n_heads", "model.n_heads"),
                    integer("n_layers", "model.n_layers"), one("optimizer").strip(), _number(one("lr"))), page


def _integer(text: str) -> Any:
    """An integer of any length, as YAML reads one (a long one is the engine's to call too large, not a string); a
    ValueError beyond Python's limit of digits."""
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else text


def _number(text: str) -> Any:
    """A number as YAML reads one. float() also reads `1_0` as 10 and other scripts' digits (`１`), which are typing
    slips here: they stay text, for the engine to refuse. An integer of more than 30 digits is read as a float: the
    engine's check of a number overflows on an int past 10**308 (a float is inf there, which it refuses)."""
    text = text.strip()
    if re.fullmatch(r"[+-]?[0-9]{1,30}", text):
        return int(text)
    if not text.isascii() or "_" in text:
        return text
    try:
        return float(text)
    except ValueError:
        return text


def overlay(raw: dict[str, Any], settings: Settings, current: Config) -> dict[str, Any]:
    """The config mapping `raw` (as the file holds it; `current` is what it reads as) with the panel's settings laid
    over it. What the file leaves implied stays as it read: the vocabulary (a config that gives no texts has the
    default one, which texts given alone would replace), and the checkpoint folder (written out whole when it lies
    beside the config, as the new file lies elsewhere). The sizes are set only when they change: a config that reads
    a checkpoint may not give them."""
    new = copy.deepcopy(raw)
    model, data, optimizer = (dict(new.get(name) or {}) for name in ("model", "data", "optimizer"))
    if "from" in model and not Path(model["from"]).exists():  # found beside the config: not beside the new file
        model["from"] = os.path.abspath(current.model.checkpoint_dir or model["from"])
    elif "vocab" not in model and "texts" not in data:
        model["vocab"] = list(current.model.vocab or ())
    new["seed"] = settings.seed
    data["texts"] = list(settings.texts)
    if settings.n_heads != current.model.n_heads:
        model["n_heads"] = settings.n_heads
    if settings.n_layers != current.model.n_layers:
        model["n_layers"] = settings.n_layers
    optimizer.update(name=settings.optimizer, lr=settings.lr)
    new.update(model=model, data=data, optimizer=optimizer)
    return new


def current_config(config: Path, seed: int | None) -> tuple[dict[str, Any], Config]:
    """The user's config as its file holds it and as it reads (with `--seed`); a ConfigError names the file."""
    raw = read_mapping(config)
    return raw, config_from_dict(copy.deepcopy(raw), str(config), seed=seed)


def derive(config: Path, seed: int | None, settings: Settings, folder: Path) -> Path:
    """Write the config that `settings` make of the user's `config` into `folder` (the server's own) and return its
    path. Settings the engine refuses raise SettingsError; a user's config that does not read, ConfigError."""
    raw, current = current_config(config, seed)
    new = overlay(raw, settings, current)
    label = str(config)  # a relative checkpoint folder is found beside the user's config, as the engine finds it
    try:
        config_from_dict(copy.deepcopy(new), label)
    except ConfigError as err:
        raise SettingsError(str(err).removeprefix(f"{label}: ")) from None
    path = folder / CONFIG_NAME
    text = (f"# Made by `handstep serve` from {shown_path(config)} and the settings of its panel; rewritten on every "
            "rebuild, removed when the server stops.\n" + yaml.safe_dump(new, sort_keys=False, allow_unicode=True))
    partial = path.with_name(f".{CONFIG_NAME}.new")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def landing(site: Path, page: str) -> str:
    """Where the reader goes back to after a rebuild: the page the form was sent from, when the site being served
    still has it (a page's file may be named after the optimizer), else the home page. Only a path on this server."""
    if not page.startswith("/") or page.startswith("//") or "\\" in page or not page.isprintable():
        return "/"  # a control character (CR, LF) would end the Location header and start another
    parts = [p for p in page.split("?", 1)[0].split("#", 1)[0].split("/") if p]
    if any(p in (".", "..") for p in parts):
        return "/"
    target = site.joinpath(*parts)
    try:
        if target.is_dir():
            target = target / "index.html"
        return page if target.is_file() else "/"
    except OSError:  # a name too long for the file system: no such page
        return "/"


def panel_html(settings: Settings, page: str, message: str | None = None, error: bool = False,
               yours: str | None = None) -> str:
    """The panel, as it is added to every HTML page the server sends. `yours`: the user's config when the site shown
    is built from the panel's settings (None when it is built from that config itself); `message` a line to show
    (opened), an `error` or what was done."""
    esc = html.escape

    def field(name: str, label: str, value: Any, kind: str = "numeric") -> str:
        return (f'<label for="try-{name}">{label}</label><input id="try-{name}" name="{name}" '
                f'inputmode="{kind}" autocomplete="off" spellcheck="false" value="{esc(str(value))}">')

    choices = "".join(f'<option{" selected" if name == settings.optimizer else ""}>{name}</option>'
                      for name in OPTIMIZERS)
    built = (f"This site is built from these settings laid over {esc(yours)}, which is unchanged."
             if yours is not None else "This site is built from your config.")
    status = f' class="try-status{" try-error" if error else ""}"'
    return f"""<details class="try-panel" id="try-panel"{" open" if message else ""} data-pagefind-ignore>
<summary>Try your own sentence</summary>
<form id="try-form" method="post" action="{ENDPOINT}">
<input type="hidden" name="page" value="{esc(page)}">
<label for="try-texts" class="try-wide">Texts, one per line</label>
<textarea id="try-texts" name="texts" class="try-wide" rows="2" spellcheck="false">{esc(chr(10).join(
        " ".join(t.split()) for t in settings.texts))}</textarea>
{field("seed", "Seed", settings.seed)}
{field("lr", "Learning rate", settings.lr, "decimal")}
{field("n_heads", "Heads", settings.n_heads)}
{field("n_layers", "Layers", settings.n_layers)}
<label for="try-optimizer">Optimizer</label><select id="try-optimizer" name="optimizer">{choices}</select>
<p id="try-status" role="status"{status}>{esc(message or "")}</p>
<p class="try-note try-wide">{built}</p>
<div class="try-buttons try-wide"><button type="submit" name="action" value="build">Build</button>
<button type="submit" name="action" value="reset">Reset to my config</button></div>
</form>
</details>
<style>{PANEL_CSS}</style>
<script>{PANEL_SCRIPT}</script>"""


# Colours are the site's (light and dark); the fallbacks are the browser's, for a --templates without them.
PANEL_CSS = """
.try-panel { position: fixed; left: 1rem; bottom: 1rem; z-index: 25; font: .9rem/1.4 system-ui, sans-serif;
  color: var(--fg, CanvasText); }
.try-panel > summary { display: inline-block; list-style: none; cursor: pointer; padding: .45rem .9rem;
  border-radius: 999px; background: var(--accent, LinkText); color: var(--on-fill, Canvas);
  box-shadow: 0 1px 4px rgb(0 0 0 / .35); }
.try-panel > summary::-webkit-details-marker { display: none; }
.try-panel form { display: grid; grid-template-columns: max-content 1fr; gap: .4rem .6rem; align-items: center;
  margin-top: .4rem; width: min(24rem, calc(100vw - 2rem)); max-height: calc(100vh - 8rem); overflow: auto;
  padding: .75rem; background: var(--panel, Canvas); border: 1px solid var(--line, GrayText); border-radius: 8px;
  box-shadow: 0 2px 10px rgb(0 0 0 / .3); }
.try-panel .try-wide, .try-panel .try-status { grid-column: 1 / -1; margin: 0; }
.try-panel input, .try-panel select, .try-panel textarea, .try-panel button { font: inherit; color: inherit;
  background: var(--bg, Field); border: 1px solid var(--line, GrayText); border-radius: 6px; padding: .3rem .45rem;
  min-width: 0; }
.try-panel textarea { resize: vertical; }
.try-panel button { cursor: pointer; }
.try-panel button[value="build"] { background: var(--accent, LinkText); color: var(--on-fill, Canvas); }
.try-panel .try-buttons { display: flex; flex-wrap: wrap; gap: .5rem; }
.try-panel .try-status:empty { display: none; }
.try-panel .try-error { color: var(--neg, #c00); font-weight: 600; overflow-wrap: anywhere; }
.try-panel .try-note { color: var(--muted, GrayText); font-size: .85em; }
@media (max-width: 30rem) { .try-panel { left: .5rem; bottom: .5rem; }
  .try-panel form { width: calc(100vw - 1rem); max-height: calc(100vh - 6rem); } }
@media print { .try-panel { display: none; } }
"""

# Sent with fetch, the form keeps the reader on the page: a refused setting shows in the panel; a new site is shown
# at the same place (the heading nearest above the top of the window, at the same height, even when the tables
# above it changed size: the browser's own restoring of the scroll position is off until the page is left), on the
# same page when the new site has it. The reload script (site_build.serve) waits while `handstepTrying` is set.
PANEL_SCRIPT = """(function(){var f=document.getElementById("try-form"),KEY="handstep-try-place";
if(!f||!window.fetch)return;var s=document.getElementById("try-status"),d=document.getElementById("try-panel");
function place(){var hs=document.querySelectorAll("main h1[id],main h2[id],main h3[id],main h4[id]"),best=null;
for(var i=0;i<hs.length;i++){if(hs[i].getBoundingClientRect().top<=80)best=hs[i]}
return{path:location.pathname,y:scrollY,id:best?best.id:"",top:best?best.getBoundingClientRect().top:0}}
function back(){var p=null;
try{p=JSON.parse(sessionStorage.getItem(KEY)||"null");sessionStorage.removeItem(KEY)}catch(e){}
if(!p)return;d.open=true;if(p.path!==location.pathname)return;var el=p.id&&document.getElementById(p.id);
scrollTo(0,el?el.getBoundingClientRect().top+scrollY-p.top:p.y);
addEventListener("pagehide",function(){history.scrollRestoration="auto"})}
if(document.readyState==="complete")back();else addEventListener("load",back);
f.addEventListener("submit",function(ev){ev.preventDefault();var data=new URLSearchParams(new FormData(f));
var b=ev.submitter;data.set("action",b&&b.value?b.value:"build");var bs=f.querySelectorAll("button");
function busy(on){for(var i=0;i<bs.length;i++)bs[i].disabled=on;window.handstepTrying=on}
busy(true);s.className="try-status";s.textContent="Building\\u2026";
fetch(f.getAttribute("action"),{method:"POST",body:data,headers:{Accept:"application/json"}})
.then(function(r){return r.json()}).then(function(r){
if(r.error){busy(false);s.className="try-status try-error";s.textContent=r.error;return}
try{sessionStorage.setItem(KEY,JSON.stringify(place()));history.scrollRestoration="manual"}catch(e){}
if(r.url===location.pathname)location.reload();else location.href=r.url})
.catch(function(){busy(false);s.className="try-status try-error";
s.textContent="No answer from the server: is handstep serve still running?"})})})()"""


def reply(error: str | None, url: str) -> bytes:
    """The JSON answer to the script's POST."""
    return json.dumps({"error": error, "url": url}).encode()
