"""The page layout (templates/), the static files every site carries, and what the search index skips."""

from __future__ import annotations

import html
import re
import traceback
from collections.abc import Collection
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from site_build.data.compare import COMPARE_PAGE
from site_build.data.interact import script_files
from site_build.errors import BuildError, shown_path
from site_build.pages import ExtraPage, Page, decode_utf8, group_by_section
from site_build.render.katex import katex_dist
from site_build.render.markdown import Rendered
from site_build.stamp import tree_files

SITE_TITLE = "handstep"


class _Loader(jinja2.FileSystemLoader):
    """The templates' folder; a template that is not UTF-8 is a BuildError naming it and its line."""

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        try:
            return super().get_source(environment, template)
        except UnicodeDecodeError as err:
            path = Path(self.searchpath[0], *jinja2.loaders.split_template_path(template))
            decode_utf8(err.object, shown_path(path))
            raise


def layout_environment(templates: Path) -> jinja2.Environment:
    """Jinja for the page layout (templates/)."""
    return jinja2.Environment(
        loader=_Loader(str(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_layouts(
    templates: Path,
    pages: list[Page],
    bodies: dict[str, Rendered],
    base_url: str,
    data_files: dict[str, str] | None = None,
    extra_pages: dict[str, ExtraPage] | None = None,
    notebook: bool = True,
) -> dict[str, str]:
    """Every page and the 404 page inside the layout; {output path: html}.

    `data_files` maps a page to its click-any-number data script; `extra_pages` are
    generated pages ({url: page}: the comparison summary, the tables of wide matrices in numbers/), outside
    prev/next. `notebook` says whether the site carries notebook.ipynb and trace.json (not for a big run).
    """
    env = layout_environment(templates)
    nav = group_by_section(pages)
    data_files = data_files or {}
    extra_pages = extra_pages or {}
    compare_url = COMPARE_PAGE if COMPARE_PAGE in extra_pages else ""
    common = {"site_title": SITE_TITLE, "nav": nav, "root": base_url, "compare_url": compare_url,
              "notebook": notebook}
    out = {}
    try:
        page_tpl = env.get_template("page.html")
        for url, extra in extra_pages.items():
            page = Page(source=url, title=extra.title, description=extra.description, section=extra.section,
                        order=0, slug=url.removesuffix(".html"), body="", body_line=1)
            up = "../" * url.count("/")  # a page in a subfolder (numbers/) links back up
            out[url] = page_tpl.render(**{**common, "root": base_url or up}, page=page, current=url,
                                       body=Markup(relocate(extra.body, up)), toc=[], prev=None, next=None,
                                       data_file=data_files.get(extra.data_of, ""), indexed=extra.indexed)
        for i, page in enumerate(pages):
            body = bodies[page.source]
            out[page.url] = page_tpl.render(
                **common,
                page=page,
                current=page.url,
                data_file=data_files.get(page.url, ""),
                body=Markup(body.html),
                toc=[{"level": h.level, "id": h.id, "html": Markup(h.html)} for h in body.headings],
                prev=pages[i - 1] if i > 0 else None,
                next=pages[i + 1] if i + 1 < len(pages) else None,
                indexed=True,
            )
        out["404.html"] = env.get_template("404.html").render(**common, page=None, current="")
    except jinja2.TemplateNotFound as err:
        raise BuildError(shown_path(templates / str(err.name)), 0, "template not found") from None
    except BuildError:
        raise
    except Exception as err:  # noqa: BLE001 - a template's error, or a Python error inside one ('a' + 1, 1/0)
        where, line = None, 0
        if isinstance(err, jinja2.TemplateError):  # (an OSError's filename or an ImportError's name is no template)
            where, line = getattr(err, "filename", None) or getattr(err, "name", None), getattr(err, "lineno", 0) or 0
        if not where:  # a runtime error (undefined name, 1/0): the innermost template frame says where
            for frame, lineno in traceback.walk_tb(err.__traceback__):
                if frame.f_code.co_filename.startswith(str(templates)):
                    where, line = frame.f_code.co_filename, lineno
        if isinstance(err, jinja2.UndefinedError):
            message = f"undefined name: {err.message}"
        else:
            message = str(err) if isinstance(err, (jinja2.TemplateError, TypeError)) else f"{type(err).__name__}: {err}"
        raise BuildError(shown_path(where or templates), line, message) from None
    return out


_SITE_LINK = re.compile(r'(\s(?:href|src)=")(?![a-zA-Z][a-zA-Z0-9+.-]*:|/|#)')


def relocate(html: str, up: str) -> str:
    """A body written for the site root (`href="assets/csv/x.csv"`), for a page `up` folders below it
    (`href="../assets/csv/x.csv"`); absolute links, other schemes and #fragments stay as they are."""
    return _SITE_LINK.sub(lambda m: m.group(1) + up, html) if up else html


_SITE_FILE = re.compile(_SITE_LINK.pattern + '([^"#?]+)')  # a link to a file of the site, and its path


def missing_layout_files(templates: Path, html_404: str, files: Collection[str]) -> list[tuple[str, int, str]]:
    """The files the layout links or loads (as its 404 page shows them: the layout around one line) that the site
    does not have: a stylesheet or script removed from templates/assets/ left every page bare without a word."""
    problems = []
    for path in dict.fromkeys(html.unescape(m.group(2)) for m in _SITE_FILE.finditer(html_404)):
        if path not in files:
            problems.append((shown_path(templates), 0, f"the layout links '{path}', which the site does not have: put "
                             "the file back in templates/assets/, or remove the link"))
    return problems


def static_files(root: Path, templates: Path) -> dict[str, Any]:
    """CSS/JS from templates/assets; the click panel's interpreter and the descriptions it reads (the same
    that engine.explain reads); KaTeX's CSS, woff2 fonts and script (the script loads on the first click)."""
    files: dict[str, Any] = {}
    assets = templates / "assets"
    if assets.is_dir():
        for name, path in tree_files(assets):  # through links to folders too, as the up-to-date digest reads them
            if path:
                files["assets/" + name] = Path(path)
    files.update(script_files())
    dist = katex_dist(root)
    files["katex/katex.min.css"] = woff2_only((dist / "katex.min.css").read_text(encoding="utf-8"))
    files["katex/katex.min.js"] = dist / "katex.min.js"
    for font in sorted((dist / "fonts").glob("*.woff2")):
        files[f"katex/fonts/{font.name}"] = font
    return files


def woff2_only(css: str) -> str:
    """Drop KaTeX's woff/ttf fallbacks: every browser that runs KaTeX's CSS reads woff2."""
    return re.sub(r',url\(fonts/[^)]+\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)', "", css)


SEARCH_IGNORED = ('<div class="matrix-wrap"', '<div class="calc-step"', '<span class="katex"', "<svg")


def search_ignores(html: str) -> str:
    """Keep numbers, typeset math and charts out of the search index: people search for words
    ("softmax", "Jacobian"), and indexing thousands of table cells doubled Pagefind's time."""
    for start in SEARCH_IGNORED:
        tag, _, rest = start.partition(" ")
        html = html.replace(start, f'{tag} data-pagefind-ignore="all"' + (f" {rest}" if rest else ""))
    return html
