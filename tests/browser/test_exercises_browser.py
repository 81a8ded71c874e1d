"""The exercises in Chromium, for two seeds: the right answer says "Right" and opens the worked arithmetic (typeset
by KaTeX), a wrong one says "Not quite", the keyboard works, progress survives a reload and marks the sidebar.

Screenshots of one exercise before and after answering (1280 px wide) land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser_support import ROOT, serve, url_of

SEEDS = (42, 7)
VIEW = {"width": 1280, "height": 1400}


@pytest.fixture(scope="module")
def seed_sites(site_dir: Path, base_url: str, tmp_path_factory):
    """{seed: base url}: the default site (seed 42) from conftest, and the same pages built with seed 7."""
    out = tmp_path_factory.mktemp("seed7")
    result = subprocess.run([sys.executable, "-m", "site_build.cli", "build", "--seed", "7", "--out", str(out / "site"),
                             "--cache", str(out / "cache")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail("the seed-7 site does not build:\n" + result.stderr, pytrace=False)
    server = serve(out / "site")
    yield {42: (base_url, site_dir), 7: (url_of(server), out / "site")}
    server.shutdown()
    server.server_close()


def attention_page(site: Path) -> str:
    names = [p.name for p in site.glob("*.html") if re.match(r"^(\d+[a-z]?-)?attention\.html$", p.name)]
    assert names, "no attention page"
    return names[0]


def open_page(browser, url: str):
    context = browser.new_context(viewport=VIEW)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load")
    return context, page, errors


def respond(li, right: bool) -> str:
    """Answer one exercise (rightly or not), press Check, return the verdict."""
    kind = li.get_attribute("data-kind")
    if kind in ("value", "drill"):
        answer, tol = float(li.get_attribute("data-answer")), float(li.get_attribute("data-tol"))
        typed = f"{answer:.6g}" if kind == "value" else repr(answer)  # as a learner would: six digits, as the inputs
        li.locator("input[type=text]").fill(typed if right else repr(answer + 10 * tol + 1))
    elif kind == "shape":
        sizes = li.get_attribute("data-shape").split(",")
        li.locator("input[type=text]").fill(" × ".join(sizes) if right else " × ".join(sizes + ["2"]))
    else:
        if kind == "sign":
            want = "positive" if float(li.get_attribute("data-answer")) > 0 else "negative"
        else:
            want = li.get_attribute("data-index").split(",")[-1]
        values = [r.get_attribute("value") for r in li.locator("input[type=radio]").all()]
        pick = want if right else next(v for v in values if v != want)
        li.locator(f'input[type=radio][value="{pick}"]').check()
    li.locator("button[type=submit]").click()
    return li.locator(".exercise-verdict").inner_text()


@pytest.mark.parametrize("seed", SEEDS)
def test_right_and_wrong_answers_and_the_reveal(browser, seed_sites, seed, artifacts):
    base, site = seed_sites[seed]
    name = attention_page(site)
    context, page, errors = open_page(browser, base + name)
    try:
        items = page.locator("section.exercises li.exercise, section.exercises li.drill, "
                             "section.exercises li.shape-question")
        assert items.count() >= 3
        first = page.locator('section.exercises li.exercise[data-kind="value"]').first
        first.evaluate("el => el.scrollIntoView({block: 'center'})")
        if seed == SEEDS[0]:
            first.screenshot(path=str(artifacts / "exercise-before.png"))
        assert "Not quite" in respond(first, right=False)
        assert not first.locator("details.exercise-answer").evaluate("d => d.open")
        verdict = respond(first, right=True)
        assert verdict.startswith("Right"), verdict
        assert first.locator("details.exercise-answer").evaluate("d => d.open")
        lines = first.locator(".exercise-working .calc-line")
        assert lines.count() >= 1 and lines.evaluate_all(  # each line typeset, whole or as its left side and the rest
            "ls => ls.every(l => [...l.children].every(c => c.matches('.katex-display') || c.querySelector('.katex')))")
        assert first.locator(".exercise-working .katex-error").count() == 0
        assert first.locator(".exercise-working").is_visible()
        if seed == SEEDS[0]:
            first.evaluate("el => el.scrollIntoView({block: 'center'})")
            first.screenshot(path=str(artifacts / "exercise-after.png"))
        # every other exercise of the page: wrong, then right
        for k in range(items.count()):
            li = items.nth(k)
            if li.evaluate("el => el.classList.contains('ex-right')"):
                continue
            assert "Not quite" in respond(li, right=False), li.get_attribute("data-kind")
            assert respond(li, right=True).startswith("Right"), li.get_attribute("data-kind")
        n = items.count()
        assert page.locator(".exercise-progress").inner_text() == f"{n} of {n} done: well done."
        assert errors == []
    finally:
        context.close()


def test_keyboard_labels_and_live_verdicts(browser, seed_sites):
    base, site = seed_sites[42]
    context, page, errors = open_page(browser, base + attention_page(site))
    try:
        li = page.locator('section.exercises li.exercise[data-kind="value"]').first
        field = li.locator("input[type=text]")
        field_id = field.get_attribute("id")
        assert li.locator(f'label[for="{field_id}"]').inner_text() == "Your answer"
        verdict = li.locator(".exercise-verdict")
        assert verdict.get_attribute("aria-live") == "polite" and verdict.get_attribute("role") == "status"
        field.focus()
        page.keyboard.type("not a number")
        page.keyboard.press("Enter")  # the form submits from the keyboard
        assert verdict.inner_text().startswith("Type a number")
        assert page.evaluate("document.activeElement.id") == field_id  # focus stays in the answer box
        field.fill("")
        page.keyboard.type(li.get_attribute("data-answer").replace("-", "\u2212"))  # a real minus sign is fine
        page.keyboard.press("Enter")
        assert verdict.inner_text().startswith("Right")
        choice = page.locator("section.exercises li.exercise[data-kind=argmax], "
                              "section.exercises li.exercise[data-kind=sign]").first
        if choice.count():
            legend = choice.locator("fieldset legend")
            assert legend.inner_text() == "Your answer"
            radio = choice.locator("input[type=radio]").first
            radio.focus()
            page.keyboard.press("ArrowRight")  # radios move with the arrow keys (and pick)
            assert choice.locator("input[type=radio]:checked").count() == 1
            page.keyboard.press("Tab")  # the group is one tab stop: next is Check
            assert page.evaluate("document.activeElement.textContent") == "Check"
            page.keyboard.press("Enter")
            assert choice.locator(".exercise-verdict").inner_text() != ""
        assert errors == []
    finally:
        context.close()


def test_progress_is_remembered_and_marks_the_sidebar(browser, seed_sites):
    base, site = seed_sites[42]
    name = attention_page(site)
    context = browser.new_context(viewport=VIEW)
    page = context.new_page()
    try:
        page.goto(base + name)
        items = page.locator("section.exercises li.exercise, section.exercises li.drill, "
                             "section.exercises li.shape-question")
        marker = f'.sidebar li[data-page="{name}"] .ex-done'
        assert page.locator(marker).count() == 0
        for k in range(items.count() - 1):
            respond(items.nth(k), right=True)
        assert page.locator(marker).count() == 0  # not all done yet
        items.nth(items.count() - 1).locator("details.exercise-answer summary").click()  # shown counts as done
        assert page.locator(marker).count() == 1
        page.goto(base + "index.html")  # another page's sidebar knows
        assert page.locator(marker).count() == 1
        assert "exercises done" in page.locator(f'.sidebar li[data-page="{name}"] a').inner_text()
        page.goto(base + name)
        assert page.locator(".exercise-progress").inner_text().startswith(f"{items.count()} of {items.count()}")
        page.locator(".exercise-reset").click()
        assert page.locator(".exercise-progress").inner_text().startswith(f"0 of {items.count()}")
        assert page.locator(marker).count() == 0
    finally:
        context.close()


def test_without_javascript_each_exercise_is_a_question_and_an_answer(browser, seed_sites):
    base, site = seed_sites[42]
    context = browser.new_context(viewport=VIEW, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(base + attention_page(site))
        li = page.locator('section.exercises li.exercise[data-kind="value"]').first
        assert li.locator("form").count() == 0 and li.locator(".exercise-q").is_visible()
        li.locator("details.exercise-answer summary").click()
        assert li.locator(".exercise-working .katex").first.is_visible()  # typeset when the site was built
    finally:
        context.close()
