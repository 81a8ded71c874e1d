"""Tables that fit (the default site in Chromium): a 16-column matrix fits the text column at 1280 and 1366 px
without sideways scrolling; a wider one is a heatmap whose click opens its table, on a page of its own, at that
cell; that page reads at 390 px, from disk and without JavaScript, its table scrolling in its own box."""

from __future__ import annotations

from pathlib import Path

import pytest

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
