"""Markdown to HTML: markdown-it-py with math, attributes, callouts and heading anchors.

Math is not typeset here: each `$…$` / `$$…$$` becomes a placeholder from MathSlots,
filled after the one KaTeX batch. Links to other pages are written as `page.md` and
checked; headings h2–h3 get ids and a `#` anchor and feed the "on this page" outline.
"""

from __future__ import annotations

import html
import posixpath
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.anchors.index import slugify
from mdit_py_plugins.attrs import attrs_block_plugin, attrs_plugin
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.front_matter import front_matter_plugin

from site_build.mathslots import MathSlots

CALLOUTS = {"why": "Why?", "check": "Check", "note": "Note", "warmup": "Warm-up"}  # warmup: made-up numbers
TOC_LEVELS = (2, 3)
_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")


@dataclass
class Heading:
    """One entry of the "on this page" outline."""

    level: int
    id: str
    html: str


@dataclass
class Rendered:
    """A page body as HTML, its outline and any problems (file, line, message)."""

    html: str
    headings: list[Heading] = field(default_factory=list)
    problems: list[tuple[str, int, str]] = field(default_factory=list)
    # its links within the site: (line, target page or file, or "" for this page; fragment, or "" for none)
    anchors: list[tuple[int, str, str]] = field(default_factory=list)
    blocks: list[tuple[int, int, str]] | None = None  # its HTML blocks (html_blocks), for the notebook; not cached


def make_parser() -> MarkdownIt:
    """The one Markdown dialect of the site."""
    md = MarkdownIt("commonmark", {"html": True})
    md.enable(["table", "strikethrough"])
    md.use(front_matter_plugin)
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    md.use(attrs_plugin)
    md.use(attrs_block_plugin)
    for name in CALLOUTS:
        container_plugin_named(md, name)
    md.use(anchors_plugin, min_level=2, max_level=4, permalink=False)
    md.core.ruler.before("anchor", "heading_ids", _check_heading_ids)
    for rule in ("math_inline", "math_inline_double", "math_block", "math_block_label"):
        md.add_render_rule(rule, _render_math)
    md.add_render_rule("heading_open", _render_heading_open)
    md.add_render_rule("heading_close", _render_heading_close)
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("image", _render_image)
    md.core.ruler.before("text_join", "stray_markup", _check_stray_markup)
    return md


def _check_stray_markup(state: Any) -> None:
    """A `$` or `:::` left in plain text is math that never closed or a callout kind that does not exist;
    a callout whose closing `:::` never comes would swallow the rest of the page.

    Runs before text_join, so an escaped `\\$` or a config word written as `&#36;` (text_special) is fine.
    """
    env = state.env
    if "problems" not in env:
        return
    _check_unclosed_callouts(state)
    for token in state.tokens:
        if token.type != "inline" or not token.children:
            continue
        for child in token.children:
            if child.type != "text":
                continue
            text = child.content
            if "$" in text:
                what = "$$" if "$$" in text else "$"
                line = _source_line(env, text.strip().split("\n", 1)[0], token.map[0] if token.map else 0)
                env["problems"].append((env["source"], line, f"unclosed math: '{what}' without its closing '{what}' "
                                        "(write \\$ for a dollar sign)"))
                return
        if token.content.startswith(":::"):
            first = token.content.split("\n", 1)[0]
            if _FENCE_RE.match(first):  # a closing `:::` with no callout open
                line = _nth_line(env, state.src.split("\n"), token.map[0] if token.map else 0, _FENCE_RE.match)
                env["problems"].append((env["source"], line, "':::' closes no callout (callouts do not nest): "
                                        "remove it, or open a callout above it"))
                continue
            kind = (token.content[3:].split() or ["(none)"])[0]
            line = _source_line(env, first, token.map[0] if token.map else 0)
            message = (f"unknown callout '{kind}' (one of: {', '.join(CALLOUTS)})" if kind not in CALLOUTS
                       else f"unclosed callout '{kind}': add a line ':::' after it")
            env["problems"].append((env["source"], line, message))


def _check_heading_ids(state: Any) -> None:
    """An id given twice (`{#x}` on two headings), or one a heading's words already give it (`{#the-mask}` over
    another heading than "The mask": the anchors plugin renames the first to `the-mask-1`, and every link to
    `#the-mask` then reaches the other one), or a heading with no words (an empty id): at the line that sets it.
    A line is looked for only once there is a problem to name (each search reads the whole page)."""
    env = state.env
    if "problems" not in env:
        return
    lines = state.src.split("\n")

    def id_line(heading_id: str, at: int) -> int:
        needle = "{#" + heading_id
        return _nth_line(env, lines[: at + 1], at, lambda text: needle in text, last=True)

    def heading_line(at: int) -> int:
        heading = lines[at].strip()
        return _nth_line(env, lines, at, lambda text: text.strip() == heading)

    given: dict[str, int] = {}  # id -> the rendered line of the heading that gives it
    derived: dict[str, int] = {}  # id -> the rendered line of the first heading whose words make it
    for i, token in enumerate(state.tokens):
        if token.type != "heading_open" or not token.map:
            continue
        at = token.map[0]
        heading_id = token.attrGet("id")
        if heading_id:
            heading_id = str(heading_id)
            if heading_id in given:
                env["problems"].append((env["source"], id_line(heading_id, at), f"heading id '{heading_id}' is given "
                                        f"twice (first at line {id_line(heading_id, given[heading_id])}); give this "
                                        "heading another id"))
            given.setdefault(heading_id, at)
            continue
        if int(token.tag[1]) < 2:
            continue
        children = state.tokens[i + 1].children or []
        title = "".join(child.content for child in children if child.type in ("text", "code_inline"))
        if not title.strip() and not any(child.type.startswith("math") for child in children):
            env["problems"].append((env["source"], heading_line(at), "empty heading: give it words or remove it"))
        derived.setdefault(slugify(title), at)
    for heading_id, at in given.items():
        if heading_id in derived:
            env["problems"].append((env["source"], id_line(heading_id, at), f"heading id '{heading_id}' is the id the "
                                    f"heading at line {heading_line(derived[heading_id])} takes from its words: links "
                                    f"to #{heading_id} would reach this heading instead; choose another id"))


_FENCE_RE = re.compile(r"^\s*:{3,}\s*$")  # a closing `:::` line
_OPEN_RE = re.compile(r"^\s*:{3,}\s*(\S+)")  # an opening `::: kind [title]` line


def _check_unclosed_callouts(state: Any) -> None:
    """The container plugin closes a callout that has no closing `:::` at the end of the document, or at the
    closing `:::` of the next callout (which it then holds), silently putting the rest of the page, or the next
    callout, inside it: report it at the opening line instead."""
    env = state.env
    lines = state.src.split("\n")
    open_: list[Token] = []  # the callouts open around the current token
    for token in state.tokens:
        if token.type.startswith("container_") and token.type.endswith("_close"):
            open_.pop()
            continue
        if not (token.type.startswith("container_") and token.type.endswith("_open") and token.map):
            continue
        start, end = token.map
        if open_ and open_[-1].map and open_[-1].map[1] == end:  # the one around it ends at its `:::`
            _unclosed(env, lines, open_[-1])
        open_.append(token)
        if end < len(lines) and _FENCE_RE.match(lines[end]):
            continue
        _unclosed(env, lines, token)


def _unclosed(env: dict[str, Any], lines: list[str], token: Token) -> None:
    kind = token.type[len("container_") : -len("_open")]
    line = _opening_line(env, lines, token.map[0] if token.map else 0, kind)
    problem = (env["source"], line, f"unclosed callout '{kind}': add a line ':::' after it")
    if problem not in env["problems"]:
        env["problems"].append(problem)


def _opening_line(env: dict[str, Any], rendered: list[str], at: int, kind: str) -> int:
    """File line of the callout opened on rendered line `at`: the same occurrence (first, second, ...)
    of a `::: kind` line in the raw page, since Jinja may have changed the text and the line count."""

    def is_open(line: str) -> bool:
        match = _OPEN_RE.match(line)
        return bool(match and match.group(1) == kind)

    return _nth_line(env, rendered, at, is_open)


def _nth_line(env: dict[str, Any], rendered: list[str], at: int, matches: Any, last: bool = False) -> int:
    """File line of the line `matches` picks on rendered line `at` (or, `last`, the last it picks in `rendered`): the
    same occurrence in the raw page."""
    nth = sum(1 for line in rendered[:at] if matches(line)) - (1 if last else 0)
    raw = [i for i, line in enumerate(env["raw_lines"]) if matches(line)]
    if nth < len(raw):
        return env["offset"] + raw[nth] + 1
    return _source_line(env, rendered[at] if at < len(rendered) else "", at)


def container_plugin_named(md: MarkdownIt, name: str) -> None:
    """A `::: name [title]` callout rendered as an <aside>."""

    def render(self: Any, tokens: list[Token], idx: int, _options: Any, _env: Any) -> str:
        token = tokens[idx]
        if token.nesting != 1:
            return "</aside>\n"
        title = token.info.strip()[len(name) :].strip() or CALLOUTS[name]
        return f'<aside class="callout callout-{name}"><p class="callout-title">{html.escape(title)}</p>\n'

    container_plugin(md, name, render=render)


def render_page(
    md: MarkdownIt,
    text: str,
    slots: MathSlots,
    source: str,
    line_offset: int,
    raw_body: str,
    links: dict[str, str],
    macro: list[tuple[int, int]] | None = None,
) -> Rendered:
    """Render one page body (already through Jinja) to HTML with math placeholders.

    `raw_body` is the page text before Jinja, used to find the source line of a
    formula; `links` maps linkable `.md` paths to output URLs; `macro` says where in `text` the HTML of the page's
    macros is ((start, end) of each block's HTML: it is theirs, and its links are not checked as the page's).
    """
    env: dict[str, Any] = {
        "slots": slots,
        "source": source,
        "offset": line_offset,
        "raw_lines": raw_body.split("\n"),
        "links": links,
        "problems": [],
    }
    tokens = md.parse(text, env)
    _check_raw_html(tokens, env, text, raw_body, macro or [])
    _attach_lines(tokens)
    body = md.renderer.render(tokens, md.options, env)
    return Rendered(body, _outline(md, tokens, env), env["problems"], env.get("anchors", []), html_blocks(tokens))


BLOCK_RE = re.compile(r"\s*<(svg|figure|div|details|table|section)\b")


def html_blocks(tokens: list[Token]) -> list[tuple[int, int, str]]:
    """(first line, end line, HTML) of each block of raw HTML in a page's Markdown: an HTML block, or a paragraph
    that starts with an element (an <svg> chart is not an HTML block to Markdown, but is one to the notebook)."""
    out = []
    for k, token in enumerate(tokens):
        block = token.content if token.type == "html_block" else ""
        if token.type == "paragraph_open" and k + 1 < len(tokens) and BLOCK_RE.match(tokens[k + 1].content):
            block = tokens[k + 1].content
        if block and token.map:
            out.append((token.map[0], token.map[1], block))
    return out


def _attach_lines(tokens: list[Token]) -> None:
    """Give inline math and links the (0-based) line they sit on."""
    for token in tokens:
        if token.type != "inline" or not token.map or not token.children:
            continue
        pos = 0
        for child in token.children:
            needle = child.content if child.type.startswith("math") else child.attrGet("href")
            if needle:
                found = token.content.find(str(needle), pos)
                if found >= 0:
                    pos = found
            child.meta["line"] = token.map[0] + token.content.count("\n", 0, pos)


def _source_line(env: dict[str, Any], needle: str, rendered_line: int) -> int:
    """File line of `needle` in the raw page, else of the rendered line."""
    first = needle.strip().split("\n", 1)[0]
    if first:
        for i, line in enumerate(env["raw_lines"]):
            if first in line:
                return env["offset"] + i + 1
    return env["offset"] + rendered_line + 1


def _token_line(token: Token) -> int:
    if token.map:
        return token.map[0]
    return int(token.meta.get("line", 0))


def _render_math(self: Any, tokens: list[Token], idx: int, _options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    display = token.type != "math_inline"
    line = _source_line(env, token.content, _token_line(token))
    slot = env["slots"].slot(token.content, display, env["source"], line)
    if token.type in ("math_block", "math_block_label"):
        return f'<div class="math">{slot}</div>\n'
    return slot


def _render_heading_open(self: Any, tokens: list[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    env.setdefault("heading_ids", []).append(tokens[idx].attrGet("id"))
    return self.renderToken(tokens, idx, options, env)


def _render_heading_close(self: Any, tokens: list[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    heading_id = env["heading_ids"].pop()
    anchor = ""
    if heading_id:
        anchor = f' <a class="anchor" href="#{html.escape(str(heading_id))}" aria-label="Link to this section">#</a>'
    return anchor + self.renderToken(tokens, idx, options, env)


def _render_link_open(self: Any, tokens: list[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    href = str(token.attrGet("href") or "")
    if href.startswith("#") and len(href) > 1:  # an anchor on this page: checked once the page is rendered
        env.setdefault("anchors", []).append((_source_line(env, f"({href}", _token_line(token)), "", href[1:]))
    elif href and not _SCHEME_RE.match(href):
        path, _, frag = href.partition("#")
        line = _source_line(env, f"({href}", _token_line(token))
        if path.endswith(".md"):
            target = _page_url(env, path)
            if target is None:
                env["problems"].append((env["source"], line, f"link to unknown page '{path}'"))
            elif target:  # "" is a page the build refused: its own problem is reported
                token.attrSet("href", target + (f"#{frag}" if frag else ""))
                if frag:
                    env.setdefault("anchors", []).append((line, target, frag))
        else:
            _link_to_file(env, line, path, frag)
    return self.renderToken(tokens, idx, options, env)


def _page_url(env: dict[str, Any], path: str) -> str | None:
    """The site's name of the page a link's `.md` path names (`forward/attention.md`, or `attention.md` alone): its
    `.html`, "" for a page the build refused (its own problem is reported), None for no page."""
    key = posixpath.normpath(path).lstrip("./")
    target = env["links"].get(key)
    return env["links"].get(posixpath.basename(key)) if target is None else target


def _render_image(self: Any, tokens: list[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    if src and not _SCHEME_RE.match(src):
        _link_to_file(env, _source_line(env, f"({src}", _token_line(token)), src.partition("#")[0], "")
    return str(self.image(tokens, idx, options, env))


def _link_to_file(env: dict[str, Any], line: int, path: str, frag: str) -> None:
    """A link or image to a file of the site (`assets/x.png`, a page's `.html`): noted with its line, for the build
    to check once it knows every file of the site (`anchors`: (line, its path in the site, fragment)). Pages lie at
    the site's top, so a relative path is read from there."""
    path = unquote(path.partition("?")[0])
    if not path:  # `?x` alone: this page
        return
    if path.startswith("/"):
        env["problems"].append((env["source"], line, f"link to '{path}' from the server's root: write it relative "
                                "to the page (without the leading '/'), so the site works in any folder"))
        return
    target = posixpath.normpath(path) + ("/index.html" if path.endswith("/") else "")
    if target == ".." or target.startswith("../"):
        env["problems"].append((env["source"], line, f"link to '{path}', outside the site"))
        return
    env.setdefault("anchors", []).append((line, target.removeprefix("./"), frag))


_LINK_HINT = re.compile(r"\b(?:href|src|poster)\s*=", re.IGNORECASE)  # raw HTML that may link
_RAW_LINKS = {"a": ("href",), "area": ("href",), "link": ("href",), "img": ("src",), "source": ("src",),
              "track": ("src",), "script": ("src",), "iframe": ("src",), "embed": ("src",), "video": ("src", "poster"),
              "audio": ("src",)}  # the attributes of raw HTML that link to a page, a file or an anchor


class _RawLinks(HTMLParser):
    """The links of a piece of raw HTML (`_RAW_LINKS`), each as (its line in the piece, from 1; the tag as written;
    the attribute; its value, unescaped)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[int, str, str, str]] = []

    def links(self, piece: str) -> list[tuple[int, str, str, str]]:
        self.reset()
        self.found = []
        self.feed(piece)
        self.close()
        return self.found

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = _RAW_LINKS.get(tag, ())
        for name, value in attrs:
            if name in names and value and value.strip():
                self.found.append((self.getpos()[0], self.get_starttag_text() or "", name, value.strip()))


def _check_raw_html(tokens: list[Token], env: dict[str, Any], text: str, raw: str,
                    macro: list[tuple[int, int]]) -> None:
    """The links of the raw HTML the page writes (`<a href>`, `<img src>`, ...: its HTML blocks and inline tags),
    checked as Markdown links are (`_raw_link`). Only what the page wrote: Markdown reads `text` with the HTML of the
    page's macros in place (`macro`: where it is), which is theirs. A page whose file (`raw`) has no `href`, `src`
    or `poster` (every page of the site, so far) costs one look at it."""
    raw = raw.lower()
    if "href" not in raw and "src" not in raw and "poster" not in raw:
        return
    gaps, at = [], 0  # the page's own parts of `text`
    for start, end in macro:
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    if at < len(text):
        gaps.append((at, len(text)))
    starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def own(first: int, stop: int) -> str | None:
        """The page's own text on lines first..stop-1, or None when no macro wrote any of it."""
        lo, hi = starts[first], starts[stop] if stop < len(starts) else len(text)
        if not any(a < hi and b > lo for a, b in macro):
            return None
        return "".join(text[max(a, lo) : min(b, hi)] for a, b in gaps if a < hi and b > lo)

    parser = _RawLinks()
    found: list[tuple[int, str, str, str]] = []  # (line in `text`, tag, attribute, value)
    for token in tokens:
        if not token.map:
            continue
        first, end = token.map
        if token.type == "html_block":
            piece = own(first, end)
            piece = token.content if piece is None else piece  # a block a macro drew: what the page wrote around it
            if _LINK_HINT.search(piece):
                found += [(first + n - 1, *link) for n, *link in parser.links(piece)]
        elif token.type == "inline" and token.children and "<" in token.content:
            mine: Any = False  # the page's own text of the paragraph (own), once a tag needs it
            pos = 0
            for child in token.children:
                if child.type != "html_inline" or not _LINK_HINT.search(child.content):
                    continue
                pos = max(pos, token.content.find(child.content, pos))
                mine = own(first, end) if mine is False else mine
                if mine is None or child.content in mine:
                    line = first + token.content.count("\n", 0, pos)
                    found += [(line + n - 1, *link) for n, *link in parser.links(child.content)]
    lines = text.split("\n") if found else []
    for at, tag, name, value in found:
        tag_lines = tag.split("\n")
        k = next((k for k, line in enumerate(tag_lines) if value in html.unescape(line)), 0)
        needle = tag_lines[k].strip()  # the tag's line that holds the link, as the page writes it
        _raw_link(env, _nth_line(env, lines, at + k, lambda line, needle=needle: needle in line), name, value)


def _raw_link(env: dict[str, Any], line: int, name: str, value: str) -> None:
    """One link of raw HTML (`name`: href, src or poster), checked as a Markdown link or image is. A link to a page's
    `.md` file is refused: the build rewrites Markdown links only, so the site would link a file it does not have."""
    if _SCHEME_RE.match(value):
        return
    if value.startswith("#"):
        if name == "href" and len(value) > 1:
            env.setdefault("anchors", []).append((line, "", value[1:]))
        return
    path, _, frag = value.partition("#")
    if name == "href" and (page := unquote(path.partition("?")[0])).endswith(".md"):
        target = _page_url(env, page)
        html_name = f" ('{target}#{frag}')" if target and frag else f" ('{target}')" if target else ""
        env["problems"].append((env["source"], line, f"link to '{value}' in raw HTML: the build rewrites Markdown "
                                "links only, so the site would link a file it does not have; write it as a Markdown "
                                f"link, [text]({value}), or link the page's .html{html_name}"))
        return
    _link_to_file(env, line, path, frag if name == "href" else "")


def _outline(md: MarkdownIt, tokens: list[Token], env: dict[str, Any]) -> list[Heading]:
    """h2/h3 headings with their ids and inline HTML (math placeholders included)."""
    out = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and int(token.tag[1]) in TOC_LEVELS and token.attrGet("id"):
            inline = tokens[i + 1]
            text = md.renderer.renderInline(inline.children or [], md.options, dict(env, problems=[]))
            out.append(Heading(int(token.tag[1]), str(token.attrGet("id")), _strip_links(text)))
    return out


def _strip_links(fragment: str) -> str:
    return re.sub(r"</?a\b[^>]*>", "", fragment)
