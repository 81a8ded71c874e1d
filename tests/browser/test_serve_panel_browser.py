"""The "Try your own sentence" panel of `handstep serve`, in Chromium at 390 px: used from the keyboard, a refused
setting shows its line in place, and a new text brings the page back at the same heading, built from it."""

from __future__ import annotations

from browser_support import ROOT
from serve_support import Server

PHONE = {"width": 390, "height": 844}
HEADING_TOP = "(id) => document.getElementById(id).getBoundingClientRect().top"


def test_the_panel_rebuilds_and_comes_back_at_the_same_heading_at_390px(browser, tmp_path):
    server = Server(["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "site")], cwd=ROOT)
    base = f"http://127.0.0.1:{server.port}"
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(base + "/")
        links = page.eval_on_selector_all(".sidebar a", "links => links.map(a => a.getAttribute('href'))")
        anchor = ""
        # the attention page first: a table per head above its later sections, which more heads move down
        for href in sorted(links, key=lambda href: "04-attention" not in href):
            page.goto(f"{base}/{href}")
            ids = page.eval_on_selector_all("main h2[id]", "hs => hs.map(h => h.id)")
            if len(ids) >= 4:  # a fourth section: far enough down to scroll to
                anchor = ids[3]
                break
        assert anchor, "no page has four sections"
        page.goto(f"{base}/{href}#{anchor}")
        page.wait_for_load_state("load")
        page.mouse.wheel(0, 100)  # a little past the heading, where the reader is
        page.wait_for_function("(id) => document.getElementById(id).getBoundingClientRect().top < 0", arg=anchor)
        top = page.evaluate(HEADING_TOP, anchor)
        assert page.evaluate("scrollY") > 500

        page.focus("#try-panel > summary")  # from the keyboard
        page.keyboard.press("Enter")
        assert page.is_visible("#try-texts")
        box = page.locator("#try-form").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        page.fill("#try-n_heads", "3")
        page.click("#try-form button[value=build]")
        page.wait_for_selector("#try-status.try-error")
        assert page.text_content("#try-status") == "model.n_heads: 3 does not divide d_model 16"

        page.fill("#try-n_heads", "4")  # more heads: the tables above the heading grow
        page.fill("#try-texts", "the dog ran")
        page.evaluate("window.beforeTrying = true")
        with page.expect_navigation(timeout=300_000):
            page.click("#try-form button[value=build]")
        page.wait_for_load_state("load")
        page.wait_for_function("document.getElementById('try-panel').open")
        assert page.evaluate("window.beforeTrying") is None  # a new page
        assert page.url == f"{base}/{href}#{anchor}"
        assert abs(page.evaluate(HEADING_TOP, anchor) - top) <= 4, (top, page.evaluate(HEADING_TOP, anchor))
        assert page.input_value("#try-texts") == "the dog ran"
        assert "built from these settings" in page.text_content(".try-note")
        assert errors == []
    finally:
        context.close()
        server.stop()
    assert not any("Traceback" in line for line in server.lines), "\n".join(server.lines)
