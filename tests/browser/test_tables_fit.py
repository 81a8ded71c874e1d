"""Tables and working that fit (the default site in Chromium): a 16-column matrix fits the text column at 1280 and
1366 px without sideways scrolling; a wider one is a heatmap whose click opens its table, on a page of its own, at
that cell; that page reads at 390 px, from disk and without JavaScript, its table scrolling in its own box. No line of
working (a calc() line, a NumPy line, a displayed formula) is cut off at 1280 or 1366 px, on the page or in the
click panel; at 390 px whatever still scrolls sideways shows a shadow at each edge that has more beyond it."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import png_pixels

# Every matrix table that is shown (not in a closed fold-out): its columns and whether its box scrolls sideways.
OVERFLOW = """() => [...document.querySelectorAll('table.matrix[data-record]')]
  .filter(t => !t.closest('details:not([open])'))
  .map(t => { const w = t.closest('.matrix-wrap');
              return [t.dataset.record, t.tHead.rows[0].cells.length - 1, w.scrollWidth - w.clientWidth]; })"""


def pages(site_dir: Path) -> list[str]:
    return sorted(p.name for p in site_dir.glob("*.html") if p.name != "404.html")


@pytest.mark.parametrize("width", [1280, 1366])
def test_sixteen_columns_fit_the_text_column(browser, base_url, site_dir, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    seen16, scrolling = 0, []
    try:
        for name in pages(site_dir):
            page.goto(base_url + name)
            for record, cols, overflow in page.evaluate(OVERFLOW):
                seen16 += cols == 16
                if cols <= 16 and overflow > 0:
                    scrolling.append(f"{name}: {record} ({cols} columns) scrolls by {overflow} px")
    finally:
        page.close()
    assert seen16 > 0, "the default site should have 16-column matrices (d_model = 16)"
    assert not scrolling


def test_a_wide_matrix_is_a_heatmap_that_opens_its_table(browser, base_url, site_dir, artifacts):
    name = next(n for n in pages(site_dir) if 'class="big wide"' in (site_dir / n).read_text(encoding="utf-8"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(base_url + name)
        fig = page.locator("figure.big.wide").first
        fig.scroll_into_view_if_needed()
        assert fig.locator("table").count() == 0 and fig.locator("details").count() == 0
        href = fig.locator("p.numbers a").get_attribute("href")
        img = fig.locator(".hm img")
        box = img.bounding_box()
        rows, cols = int(img.get_attribute("data-r")), int(img.get_attribute("data-c"))
        # the centre of the cell (row 1, column 40), or of the last column of a one-row vector
        col = min(40, cols - 1)
        row = min(1, rows - 1)
        img.click(position={"x": (col + 0.5) * box["width"] / cols, "y": (row + 0.5) * box["height"] / rows})
        page.wait_for_url(f"**/{href}#cell=*")
        assert page.url.endswith(f"#cell={row if rows > 1 else ''},{col}")
        panel = page.locator(".explain-panel")
        panel.wait_for(state="visible", timeout=10_000)
        page.wait_for_function("() => !document.querySelector('.explain-panel').innerText.includes('Loading')",
                               timeout=10_000)  # the panel loads the data of the page that shows the heatmap
        assert str(col) in panel.inner_text()
        cell = page.locator("table.matrix td[tabindex='0']")
        assert cell.evaluate("c => c.closest('table').tHead.rows[0].cells[c.cellIndex].dataset.j") == str(col)
        page.screenshot(path=str(artifacts / "wide-matrix-table-page-1280.png"))
    finally:
        page.close()


def test_a_table_page_reads_from_disk_without_javascript_at_390px(browser, site_dir, artifacts):
    path = max((site_dir / "numbers").glob("*.html"), key=lambda p: p.stat().st_size)
    context = browser.new_context(viewport={"width": 390, "height": 844}, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(path.as_uri())
        wrap = page.locator(".matrix-wrap")
        assert wrap.evaluate("w => getComputedStyle(w).overflowX") == "auto"  # the site's CSS, found from numbers/
        assert wrap.evaluate("w => w.scrollWidth > w.clientWidth")  # the table scrolls in its box ...
        assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        back = page.locator("p.table-of a").first.evaluate("a => a.href")  # ... and the page links back
        assert back.startswith(site_dir.as_uri() + "/") and (site_dir / back.rsplit("/", 1)[1]).is_file()
        assert page.locator("table.matrix td").count() > 16
        page.screenshot(path=str(artifacts / "table-page-390-no-js.png"), full_page=True)
    finally:
        context.close()


# -- lines of working -------------------------------------------------------------------------------------------------
# A line whose typeset content starts left of its box (cut off where it cannot be scrolled to).
BEFORE = ("(e => [...e.querySelectorAll('.katex')].some(k => k.getBoundingClientRect().left < "
          "e.getBoundingClientRect().left + e.clientLeft - 1))")
# Every line of working on a page, with every fold-out open: the calc() lines, the NumPy lines, the displayed formulas.
# Returns how many calc() and NumPy lines there are, and each line whose content is wider than its box or starts
# left of it.
CUT_LINES = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const lines = [...document.querySelectorAll(
    'main .calc-line, main .calc-step, main .numpy-line pre, main .formula, main .math')];
  const what = e => `${e.closest('[data-record]')?.dataset.record || ''} ${e.className || e.tagName}`;
  const cut = lines.filter(e => e.scrollWidth > e.clientWidth + 1 || BEFORE(e))
    .map(e => `${what(e)}: ${e.scrollWidth - e.clientWidth} px`);
  return [lines.filter(e => e.matches('.calc-line')).length, lines.filter(e => e.matches('pre')).length, cut];
}""".replace("BEFORE", BEFORE)

# The table cell of the page's calc() block k (on a page, not in its exercises), marked data-probe; false if no
# table on the page shows it (a wide matrix's table is on a page of its own).
CALC_CELL = """k => {
  document.querySelectorAll('[data-probe]').forEach(c => c.removeAttribute('data-probe'));
  const calc = [...document.querySelectorAll('main .calc-step:not(.exercise-working)')][k];
  const idx = calc.dataset.at ? calc.dataset.at.split(',').map(Number) : [];
  for (const t of document.querySelectorAll('table.matrix[data-record]')) {
    if (t.dataset.record !== calc.dataset.record) continue;
    const at = t.dataset.at ? t.dataset.at.split(',').map(Number) : [];
    if (at.some((v, n) => v !== idx[n])) continue;
    const rest = idx.slice(at.length), th = t.tHead.querySelector(`th[data-j="${rest[rest.length - 1]}"]`);
    const tr = rest.length === 2 ? t.querySelector(`tr[data-i="${rest[0]}"]`)
      : th ? t.tBodies[0].rows[0] : t.querySelector(`tr[data-i="${rest[0]}"]`);
    const cell = tr && (th ? tr.cells[th.cellIndex] : tr.cells[1]);
    if (cell) { cell.setAttribute('data-probe', ''); return calc.dataset.record; }
  }
  return false;
}"""

PANEL_CUT = """() => {
  const p = document.querySelector('.explain-panel'), lines = [...p.querySelectorAll('.explain-line')];
  return [lines.length, p.scrollWidth - p.clientWidth,
          lines.filter(e => e.scrollWidth > e.clientWidth + 1 || BEFORE(e)).map(e => e.dataset.tex.slice(0, 60))];
}""".replace("BEFORE", BEFORE)


@pytest.mark.parametrize("width", [1280, 1366])
def test_no_line_of_working_is_cut_off(browser, base_url, site_dir, width):
    """Long sums and lists wrap onto aligned lines, NumPy lines wrap at a space: nothing is cut off in a scroll box,
    on any page with its fold-outs open, nor in the click panel of any calc() block whose table is on its page."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    calc_lines, numpy_lines, panels, cut = 0, 0, set(), []
    try:
        for name in pages(site_dir):
            page.goto(base_url + name)
            n_calc, n_numpy, lines = page.evaluate(CUT_LINES)
            calc_lines, numpy_lines = calc_lines + n_calc, numpy_lines + n_numpy
            cut += [f"{name}: {line}" for line in lines]
            for k in range(page.locator("main .calc-step:not(.exercise-working)").count()):
                record = page.evaluate(CALC_CELL, k)
                if not record:
                    continue
                page.evaluate("() => { const b = document.querySelector('.explain-panel .explain-body');"
                              " if (b) b.innerHTML = ''; document.querySelector('[data-probe]').click(); }")
                page.wait_for_selector(".explain-panel .explain-line .katex", timeout=10_000)
                n_lines, wider, lines = page.evaluate(PANEL_CUT)
                assert n_lines > 0
                panels.add(record)
                cut += [f"{name}: panel of {record}: {line}" for line in lines]
                if wider > 0:
                    cut.append(f"{name}: the panel of {record} scrolls sideways by {wider} px")
    finally:
        page.close()
    assert calc_lines >= 100 and numpy_lines >= 50, (calc_lines, numpy_lines)
    assert {"L0.attn.weights", "probs", "L0.ln_1.var"} <= panels and len(panels) >= 20, sorted(panels)
    assert not cut, f"{len(cut)} lines cut off at {width} px:\n" + "\n".join(cut)


# -- the scroll cue at 390 px -----------------------------------------------------------------------------------------
# Every box in the page that scrolls sideways, with every fold-out open: marked data-cue, with what it is.
SCROLLERS = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const boxes = [...document.querySelectorAll('main *')].filter(e => {
    const x = getComputedStyle(e).overflowX;
    return (x === 'auto' || x === 'scroll') && e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1;
  });
  boxes.forEach((e, k) => e.setAttribute('data-cue', k));
  return boxes.map(e => `${e.closest('[data-record]')?.dataset.record || ''} ${e.tagName.toLowerCase()}.${
    e.className}`);
}"""

# Box k with its content hidden (the cue is what is left), scrolled to its start or its end, in the middle of the
# window: where to take a picture of one row of it, border to border.
EMPTY_BOX = """([k, end]) => {
  const e = document.querySelector(`[data-cue="${k}"]`);
  for (const c of e.children) c.style.visibility = 'hidden';
  e.scrollLeft = end ? e.scrollWidth : 0;
  e.scrollIntoView({block: 'center'});
  const r = e.getBoundingClientRect(), y = r.top + e.clientTop + Math.min(e.clientHeight / 2, 40);
  return {x: r.left + e.clientLeft, y: Math.floor(Math.min(Math.max(y, 70), innerHeight - 10)), width: e.clientWidth,
          height: 1};
}"""

EDGE, SHADE, PLAIN = 3, 6, 2  # px looked at beside each edge; the least a cue differs from the box, the most none does


def edges(page, k: int, end: bool) -> tuple[float, float]:
    """How much the row beside the left and the right edge of box k differs from its middle (0..255)."""
    row = png_pixels(page.screenshot(clip=page.evaluate(EMPTY_BOX, [k, end]))).mean(axis=(0, 2))
    middle = row[len(row) // 2 - 1:len(row) // 2 + 2].mean()
    return abs(row[1:1 + EDGE].mean() - middle), abs(row[-1 - EDGE:-1].mean() - middle)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_what_scrolls_sideways_shows_it_at_390px(browser, base_url, site_dir, scheme):
    """Without JavaScript, in light and dark: every box that scrolls sideways (a wide matrix, a table, a formula)
    shows a shadow at the edge with more beyond it, and none at an edge it has reached."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme,
                                  java_script_enabled=False)
    page = context.new_page()
    names = pages(site_dir) + sorted(f"numbers/{p.name}" for p in (site_dir / "numbers").glob("*.html"))
    seen, missing = {}, []
    try:
        for name in names:
            page.goto(base_url + name)
            for k, what in enumerate(page.evaluate(SCROLLERS)):
                seen.setdefault(name, []).append(what)
                start, end = edges(page, k, False), edges(page, k, True)
                if not (start[1] >= SHADE and start[0] <= PLAIN and end[0] >= SHADE and end[1] <= PLAIN):
                    missing.append(f"{name}: {what}: left/right at its start {start}, at its end {end}")
    finally:
        context.close()
    assert sum(map(len, seen.values())) >= 50, seen
    assert any(w.endswith("table.") for w in seen.get("index.html", [])), "the index's model table should scroll"
    assert not missing, f"{len(missing)} boxes scroll without a cue ({scheme}):\n" + "\n".join(missing)
