"""Every page of the real site in Chromium: clean loads, working links, phone layout, theme, search.

Pages are discovered from the built site (every HTML file outside pagefind/), so pages added
to content/ are checked without touching this file. Each page is loaded once at desktop width
and once at phone width; the tests below read what those visits saw.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from browser_support import ROOT, serve, url_of

import engine

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Pages that must exist and get screenshots (light and dark) in test-artifacts/screenshots/.
# Each is found by its file name; the AdamW page by its title too ("The optimizer step").
SCREENSHOT_PAGES = {
    "introduction": (r"^index$", r"introduction|training step"),
    "attention": (r"^(\d+[a-z]?-)?attention$", r"^attention$"),
    "adamw": (r"^(\d+[a-z]?-)?(adamw|optimizer|optimiser)$", r"adamw|optimizer step"),
}
# Pages whose absence fails the suite (rather than skipping their screenshots). All three exist
# now; remove a name here only while its page is being written.

# The JavaScript a visit runs once the page has loaded.
COLLECT = """() => {
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id)
    .concat([...document.querySelectorAll('a[name]')].map(e => e.getAttribute('name')));
  const explain = document.evaluate("count(//*[@*[starts-with(name(), 'data-explain')]])", document, null,
                                    XPathResult.NUMBER_TYPE, null).numberValue;
  return {
    title: document.title,
    ids: ids,
    // HTML and SVG links alike (an SVG <a>'s .href is not a string, so resolve the attribute)
    links: [...document.querySelectorAll('a[href], a[*|href]')].map(a => {
      const raw = a.getAttribute('href') || a.getAttributeNS('http://www.w3.org/1999/xlink', 'href');
      return [raw, new URL(raw, document.baseURI).href];
    }),
    katexErrors: document.querySelectorAll('.katex-error').length,
    icons: [...document.querySelectorAll('link[rel~="icon"]')].map(l => l.href),
    matrixCells: document.querySelectorAll('table.matrix td').length,
    explainAttributes: explain,
    scripts: [...document.scripts].map(s => s.src || s.textContent),
  };
}"""


@dataclass
class Visit:
    """What one page load showed."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def page_urls(site_dir: Path) -> list[str]:
    """Every HTML page of the built site, relative to its root (pagefind/ excluded)."""
    pages = [p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*.html")]
    return sorted(p for p in pages if not p.startswith("pagefind/"))


def watch(page, visit_ref: list[Visit]) -> None:
    """Send console errors, page errors and failed requests to the visit in progress."""

    def current() -> Visit:
        return visit_ref[-1]

    page.on("console", lambda msg: msg.type == "error" and current().console_errors.append(
        f"{msg.text} ({msg.location.get('url', '')})"))
    page.on("pageerror", lambda err: current().page_errors.append(str(err)))
    # net::ERR_ABORTED is a request the next navigation cancelled (a lazy image, a deferred script), not a broken
    # link: a missing file answers 404, which the response handler below reports.
    page.on("requestfailed", lambda req: "ERR_ABORTED" not in (req.failure or "") and current().failed_requests.append(
        f"{req.url}: {req.failure}"))
    page.on("response", lambda res: res.status >= 400 and current().failed_requests.append(
        f"{res.url}: HTTP {res.status}"))


def visit_all(browser, base_url: str, urls: list[str], viewport: dict, extra=None) -> dict[str, Visit]:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    visits: list[Visit] = []
    watch(page, visits)
    try:
        for rel in urls:
            visits.append(Visit(rel))
            page.goto(base_url + rel, wait_until="load")
            visits[-1].info = page.evaluate(COLLECT)
            if extra:
                visits[-1].info.update(extra(page))
    finally:
        context.close()
    return {v.url: v for v in visits}


@pytest.fixture(scope="session")
def urls(site_dir: Path) -> list[str]:
    found = page_urls(site_dir)
    assert "index.html" in found and "404.html" in found
    return found


@pytest.fixture(scope="session")
def desktop(browser, base_url, urls) -> dict[str, Visit]:
    return visit_all(browser, base_url, urls, DESKTOP)


def _phone_checks(page) -> dict:
    """At 390 px: sideways scrolling, and whether the menu button opens the page list."""
    out = page.evaluate("""() => ({
      scrollWidth: document.documentElement.scrollWidth,
      clientWidth: document.documentElement.clientWidth,
      bodyScrollWidth: document.body.scrollWidth,
    })""")
    button = page.locator(".menu-button")
    sidebar = page.locator("nav.sidebar")
    out["menuButtonVisible"] = button.count() == 1 and button.is_visible()
    out["sidebarHiddenBefore"] = not sidebar.is_visible()
    if out["menuButtonVisible"]:
        button.click()
        out["sidebarVisibleAfter"] = sidebar.is_visible() and sidebar.locator("a").first.is_visible()
        box = sidebar.bounding_box()
        out["sidebarOnScreen"] = bool(box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1)
    return out


@pytest.fixture(scope="session")
def phone(browser, base_url, urls) -> dict[str, Visit]:
    return visit_all(browser, base_url, urls, PHONE, extra=_phone_checks)


def find_page(urls: list[str], desktop: dict[str, Visit], key: str) -> str | None:
    """The page for a SCREENSHOT_PAGES key: by file name, else by title."""
    name_re, title_re = SCREENSHOT_PAGES[key]
    for rel in urls:
        if re.search(name_re, Path(rel).stem):
            return rel
    for rel in urls:
        title = desktop[rel].info.get("title", "").split(" · ")[0]
        if re.search(title_re, title, re.IGNORECASE):
            return rel
    return None


def required_page(urls, desktop, key: str) -> str:
    rel = find_page(urls, desktop, key)
    if rel is None:
        pytest.fail(f"no {key} page in the built site")
    return rel


def _report(problems: list[str]) -> str:
    return "\n".join(problems[:60]) + (f"\n... and {len(problems) - 60} more" if len(problems) > 60 else "")


# -- every page -----------------------------------------------------------------------------------
def test_every_page_loads_without_console_or_page_errors(desktop, phone):
    # Chromium asks for /favicon.ico on its own, and only sometimes logs the 404 in time to be
    # seen; test_every_page_has_an_icon checks that deterministically.
    problems = [f"{v.url} ({label}): {e}" for label, visits in (("desktop", desktop), ("390 px", phone))
                for v in visits.values() for e in v.console_errors + v.page_errors if "/favicon.ico" not in e]
    assert not problems, _report(problems)


def test_every_page_has_an_icon(desktop, site_dir):
    """A declared icon that exists (or /favicon.ico), so browsers log no 404 for it."""
    problems = []
    for rel, v in desktop.items():
        icons = v.info["icons"]
        if not icons and not (site_dir / "favicon.ico").is_file():
            problems.append(f"{rel}: no <link rel=icon> and no favicon.ico")
        for href in icons:
            path = urlsplit(href)
            if path.scheme == "data":
                continue
            if not (site_dir / unquote(path.path).lstrip("/")).is_file():
                problems.append(f"{rel}: icon {href} is missing")
    assert not problems, _report(problems)


def test_every_request_succeeds(desktop, phone):
    problems = [f"{v.url}: {e}" for visits in (desktop, phone) for v in visits.values() for e in v.failed_requests]
    assert not problems, _report(problems)


def test_no_katex_errors(desktop):
    problems = [f"{v.url}: {v.info['katexErrors']} .katex-error" for v in desktop.values() if v.info["katexErrors"]]
    assert not problems, _report(problems)


def test_every_internal_link_and_anchor_resolves(desktop, site_dir, base_url):
    origin = urlsplit(base_url)
    ids_cache: dict[str, set[str]] = {rel: set(v.info["ids"]) for rel, v in desktop.items()}
    problems = []
    checked = 0
    for rel, v in desktop.items():
        for raw, absolute in v.info["links"]:
            target = urlsplit(absolute)
            if target.scheme not in ("http", "https") or target.netloc != origin.netloc:
                continue  # mailto:, external sites: not ours to check here
            checked += 1
            path = unquote(target.path).lstrip("/")
            if path == "" or path.endswith("/"):
                path += "index.html"
            file = site_dir / path
            if not file.is_file():
                problems.append(f"{rel}: link {raw!r} -> missing file {path}")
                continue
            fragment = unquote(target.fragment)
            if not fragment:
                continue
            if path not in ids_cache:
                ids_cache[path] = set(re.findall(r'\sid="([^"]+)"', file.read_text(encoding="utf-8", errors="replace")))
            if fragment not in ids_cache[path]:
                problems.append(f"{rel}: link {raw!r} -> no id {fragment!r} in {path}")
    assert checked > len(desktop), "too few internal links found: is the sidebar there?"
    assert not problems, _report(problems)


def test_no_sideways_scrolling_at_390px(phone):
    problems = [f"{v.url}: scrollWidth {v.info['scrollWidth']} > clientWidth {v.info['clientWidth']}"
                for v in phone.values() if v.info["scrollWidth"] > v.info["clientWidth"]]
    assert not problems, _report(problems)


def test_menu_opens_at_390px(phone):
    problems = []
    for v in phone.values():
        i = v.info
        if not i["menuButtonVisible"]:
            problems.append(f"{v.url}: no visible menu button")
        elif not i["sidebarHiddenBefore"]:
            problems.append(f"{v.url}: the page list shows before the menu is opened")
        elif not (i["sidebarVisibleAfter"] and i["sidebarOnScreen"]):
            problems.append(f"{v.url}: the menu button does not open the page list on screen")
    assert not problems, _report(problems)


# -- theme ------------------------------------------------------------------------------------------
THEME_STATE = """() => ({
  theme: document.documentElement.dataset.theme || null,
  select: document.getElementById('theme-select') && document.getElementById('theme-select').value,
  bg: getComputedStyle(document.body).backgroundColor,
})"""


def _dark(rgb: str) -> bool:
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return (r + g + b) / 3 < 128


def test_theme_switch_changes_theme_and_persists(browser, base_url):
    context = browser.new_context(viewport=DESKTOP, color_scheme="light")
    page = context.new_page()
    try:
        page.goto(base_url + "index.html")
        start = page.evaluate(THEME_STATE)
        assert start["theme"] is None and start["select"] == "auto" and not _dark(start["bg"])

        page.select_option("#theme-select", "dark")
        dark = page.evaluate(THEME_STATE)
        assert dark["theme"] == "dark" and _dark(dark["bg"]), dark
        page.reload()
        assert page.evaluate(THEME_STATE) == dark, "dark theme was not remembered across a reload"
        page.goto(base_url + "404.html")
        assert page.evaluate(THEME_STATE)["theme"] == "dark", "the theme should hold on every page"

        page.emulate_media(color_scheme="dark")  # a dark system: "light" must still win
        page.select_option("#theme-select", "light")
        light = page.evaluate(THEME_STATE)
        assert light["theme"] == "light" and not _dark(light["bg"]), light
        page.reload()
        assert page.evaluate(THEME_STATE) == light, "light theme was not remembered across a reload"

        page.select_option("#theme-select", "auto")  # auto follows the (dark) system again
        page.reload()
        auto = page.evaluate(THEME_STATE)
        assert auto["theme"] is None and auto["select"] == "auto" and _dark(auto["bg"]), auto
    finally:
        context.close()


# -- search -----------------------------------------------------------------------------------------
def test_search_for_softmax_lists_the_attention_page(browser, base_url, urls, desktop):
    attention = required_page(urls, desktop, "attention")
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    visit: list[Visit] = [Visit("search")]
    watch(page, visit)
    try:
        page.goto(base_url + "index.html")
        page.fill("#search-input", "softmax")
        page.wait_for_selector("#search-results a", state="visible", timeout=15_000)
        hrefs = page.eval_on_selector_all("#search-results a", "els => els.map(a => a.href)")
    finally:
        context.close()
    found = [Path(urlsplit(h).path).name for h in hrefs]
    assert attention in found, f"search for 'softmax' listed {found}, not {attention}"
    assert not (visit[0].console_errors + visit[0].page_errors + visit[0].failed_requests), visit[0]


# -- screenshots --------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("key", list(SCREENSHOT_PAGES))
def test_screenshot(browser, base_url, urls, desktop, artifacts, key, scheme):
    rel = required_page(urls, desktop, key)
    context = browser.new_context(viewport=DESKTOP, color_scheme=scheme)
    page = context.new_page()
    try:
        page.goto(base_url + rel, wait_until="load")
        page.evaluate("document.fonts.ready")
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        target = artifacts / f"{key}-{scheme}.png"
        page.screenshot(path=str(target), full_page=True)
    finally:
        context.close()
    assert _dark(bg) == (scheme == "dark"), f"{rel} in {scheme}: background {bg}"
    assert target.stat().st_size > 10_000


# -- click any number -----------------------------------------------------------------------------------


def test_clicking_a_matrix_cell_opens_its_explanation(browser, base_url, urls, desktop):
    """Click the first matrix cell of the first page that has one: a [data-explain-panel] opens."""
    rel = next((u for u in urls if desktop[u].info["matrixCells"]), None)
    assert rel is not None, "no page has a table.matrix"
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    visit: list[Visit] = [Visit(rel)]
    watch(page, visit)
    try:
        page.goto(base_url + rel, wait_until="load")
        page.locator("table.matrix td").first.click()
        page.wait_for_selector("[data-explain-panel]", state="visible", timeout=3_000)
        panel = page.locator("[data-explain-panel]").first.inner_text()
    finally:
        context.close()
    assert panel.strip(), "the explanation panel is empty"
    assert not (visit[0].console_errors + visit[0].page_errors), visit[0]


def test_the_panel_shows_what_the_pages_calc_blocks_show(browser, base_url):
    """On the attention page, the panel of one attention weight typesets exactly engine.explain's lines."""
    trace = engine.run(engine.load_config(ROOT / "configs" / "default.yaml"))
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    visit: list[Visit] = [Visit("04-attention.html")]
    watch(page, visit)
    try:
        page.goto(base_url + "04-attention.html", wait_until="load")
        table = page.locator('table.matrix[data-record="L0.attn.weights"]').first
        table.evaluate("t => { for (let d = t.closest('details'); d; d = d.parentElement.closest('details')) "
                       "d.open = true; }")  # a table after the page's first is folded: the reader opens it
        at = [int(k) for k in table.get_attribute("data-at").split(",")]
        cell = table.locator("tbody tr").nth(2).locator("td").nth(1)
        i = int(table.locator("tbody tr").nth(2).get_attribute("data-i"))
        j = int(table.locator("thead th").nth(2).get_attribute("data-j"))
        cell.click()
        page.wait_for_selector("[data-explain-panel] .explain-line .katex", timeout=5_000)
        lines = page.locator("[data-explain-panel] .explain-line").evaluate_all(
            "els => els.map(e => e.dataset.tex)")
        title = page.locator("#explain-title .katex").count()
    finally:
        context.close()
    assert lines == engine.explain(trace, "L0.attn.weights", (*at, i, j)).latex
    assert title == 1
    assert not (visit[0].console_errors + visit[0].page_errors), visit[0]


# -- hostile config text in the browser ----------------------------------------------------------------
HOSTILE_WORDS = ["<script>alert(1)</script>", "<img/src=x/onerror=alert(2)>", '"', "'", "&", "$", "\\", "{}",
                 "</script>", "café", "日本"]


def _yaml_str(word: str) -> str:
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_hostile_config_runs_no_script(browser, tmp_path):
    """The real pages built from a config whose words are markup: no dialog, no error, on any page or panel."""
    config = tmp_path / "hostile.yaml"
    config.write_text(
        "seed: 2\nmodel:\n  vocab: [" + ", ".join(_yaml_str(w) for w in ["<pad>", "<bos>", "<eos>", *HOSTILE_WORDS])
        + "]\n  d_model: 8\n  n_heads: 2\n  d_ff: 16\n  n_positions: 12\n"
        "data:\n  texts: [" + _yaml_str(" ".join(HOSTILE_WORDS)) + "]\ntrain_steps: 2\n", encoding="utf-8")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "site_build.cli", "build", "--config", str(config),
                             "--out", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    server = serve(site)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(f"{page.url}: {d.message}"), d.dismiss()))
    visits: list[Visit] = []
    watch(page, visits)
    try:
        for rel in page_urls(site):
            visits.append(Visit(rel))
            page.goto(url_of(server) + rel, wait_until="load")
            cells = page.locator("table.matrix td:visible")  # a wide matrix's table is folded behind its heatmap
            if cells.count():
                cells.first.click()  # opens the explanation panel where that feature exists
                page.wait_for_timeout(50)
            assert page.locator(".katex-error").count() == 0, f"{rel}: KaTeX error"
    finally:
        context.close()
        server.shutdown()
        server.server_close()
    assert not dialogs, dialogs
    problems = [f"{v.url}: {e}" for v in visits for e in v.page_errors + v.failed_requests]
    problems += [f"{v.url}: {e}" for v in visits for e in v.console_errors if "favicon.ico" not in e]
    assert not problems, _report(problems)
