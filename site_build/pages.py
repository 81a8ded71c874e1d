"""Find the Markdown pages under `content/` and read their front matter.

Each page starts with a YAML block between `---` lines (title, description, section,
order, optional slug and step). Everything is validated here, with the file and line of each
problem, before any page is rendered.

A slug may name a setting of the run in braces, `slug: 13-{optimizer}`: the page is then written under the name
the config gives it (13-adamw.html, 13-adam.html, 13-sgd.html), and links, the sidebar and search follow, since
they all read the page's url.

A page that works through one transformer block says which in its front matter, `block: last` (or `first`), and
writes that block's records with `L{block}` where the number goes: `matrix("grad.L{block}.mlp.fc")` is block
n_layers − 1's on every config (the backward pages: the backward pass meets the last block first). A record name
such a page types with a block number, or an `L{block}` on a page without `block:`, is an error naming the page,
the line and the name.

A page written for one architecture (`model.arch`) is named for it: `NAME.llama.md` is built only for llama, and
where `NAME.md` exists it takes that page's place in a llama site (the same name, place and links: a page linking
to `NAME.md` reaches whichever the site has); `NAME.gpt2.md` likewise. A page named for no architecture is in
every site.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from engine.config import ARCHS
from engine.errors import cut, echo
from site_build.data.compare import COMPARE_PAGE
from site_build.errors import BuildError, shown_path
from site_build.stamp import tree_files
from site_build.steps import PHASES, STEP_KEYS

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when PyYAML has it: faster

SECTIONS = ("Introduction", *PHASES, "Reference")  # the sidebar's sections: the steps' phases in between
REQUIRED = {"title": str, "description": str, "section": str, "order": int}
OPTIONAL = {"slug": str, "step": str, "block": str}  # step: which box of the architecture map this page explains
BLOCKS = ("first", "last")  # what `block:` may say: the block whose records `L{block}` names
BLOCK = "L{block}"  # where a block page's record names put the block's number
# a record name typed in a macro call with a block number (`"grad.L0.mlp.fc"`), and `L{block}` anywhere
_NUMBERED_RE = re.compile(r"""["']((?:[\w]+\.)*?L(\d+)\.[\w.]+)["']""")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# What a slug may name in braces, and its value when no config is given (the default config's).
SLUG_FIELDS = {"optimizer": "adamw"}
_FIELD_RE = re.compile(r"\{([^{}]*)\}")
MAX_FRONT_MATTER = 64 * 1024  # characters: a page's front matter is a few short lines
# Output files the builder writes itself (render.layout.render_layouts, build --compare): a page with one of
# these slugs would silently replace, or be replaced by, the generated page.
RESERVED_SLUGS = {
    "404": "the generated 404 page",
    COMPARE_PAGE.removesuffix(".html"): "the comparison page that build --compare generates",
}


@dataclass(frozen=True)
class Page:
    """One content page: where it came from, its front matter and its body."""

    source: str  # path shown in error messages (see shown_path), e.g. "content/attention.md"
    title: str
    description: str
    section: str
    order: int
    slug: str  # output file is f"{slug}.html"
    body: str  # Markdown + Jinja, front matter removed
    body_line: int  # line number in the file of the body's first line
    order_line: int = 0  # line of `order:`, for duplicate-order errors
    slug_line: int = 0  # line of `slug:` (0: the name is the file's), for duplicate-name errors
    step: str = ""  # the step this page explains (site_build.steps), highlighted in its map
    block: str = ""  # the block the page works through ("first" or "last"), whose number `L{block}` stands for
    rel: str = ""  # path inside the content folder, e.g. "forward/attention.md" (what `.md` links name)

    @property
    def url(self) -> str:
        """Output path relative to the site root."""
        return f"{self.slug}.html"


@dataclass(frozen=True)
class ExtraPage:
    """A page the build generates, not written in content/ (the comparison summary, the table of a wide matrix),
    laid out like every page but outside prev/next; its body links as a content page's does (from the site root)."""

    title: str
    description: str
    body: str  # HTML
    section: str = "Reference"
    data_of: str = ""  # the content page (url) whose click data its numbers read
    indexed: bool = True  # in the search index (a dump of numbers is not)


def slug_fields(cfg: Any) -> dict[str, str]:
    """The run's settings pages are collected by: `{optimizer}` in a slug is its optimizer's name, and `arch` picks
    the pages named for its architecture."""
    return {"optimizer": cfg.optimizer.name, "arch": cfg.model.arch}


def arch_of(path: Path) -> tuple[str, str]:
    """(the file name without its architecture, the architecture or "") of a page file: `02-norm.llama.md` is
    ("02-norm.md", "llama")."""
    stem, _, arch = path.name.removesuffix(".md").rpartition(".")
    return (f"{stem}.md", arch) if stem and arch in ARCHS else (path.name, "")


def collect_pages(content_dir: Path, fields: Mapping[str, str] | None = None
                  ) -> tuple[list[Page], list[tuple[str, int, str]]]:
    """Every valid page of the site (site order) and every problem (file, line, message) found; a slug's braces are
    filled from `fields` (slug_fields of the run's config; the default config's without one), whose `arch` picks
    the pages of an architecture.

    Paths in messages are as `shown_path` gives them: relative to the current directory when the
    file is under it (`content/x.md`), else as given (`../other/pages/x.md`, `/abs/pages/x.md`).
    Valid pages are returned even when others are broken, so one build reports all.
    """
    content_dir = Path(content_dir)
    pages: list[Page] = []
    problems: list[tuple[str, int, str]] = []
    # every page file, through links to folders too: the files the up-to-date digest hashes (a folder `x.md` holds
    # pages, and is not one)
    # (a hidden name is no page: an editor's lock or backup, `.#x.md` (Emacs: a link to nothing while you edit), a
    # copy's `._x.md` (macOS metadata, not text))
    files = sorted(content_dir / name for name, _ in tree_files(content_dir)
                   if name.endswith(".md") and not any(part.startswith(".") for part in name.split("/")))
    arch = (fields or {}).get("arch", "gpt2")
    variants = {path.with_name(arch_of(path)[0]) for path in files if arch_of(path)[1] == arch}
    for path in files:
        name, its_arch = arch_of(path)
        if its_arch not in ("", arch) or path in variants:  # another architecture's, or replaced by this one's
            continue
        try:
            page = read_page(path, shown_path(path), fields, default_slug=name.removesuffix(".md"))
        except BuildError as err:
            problems.extend(err.problems)
            continue
        pages.append(replace(page, rel=path.with_name(name).relative_to(content_dir).as_posix()))
    problems.extend(_check_unique(pages))
    if not pages and not problems:
        problems.append((shown_path(content_dir), 0, "no pages (*.md) found"))
    return sort_pages(pages), problems


def broken_names(content_dir: Path, pages: list[Page], problems: list[tuple[str, int, str]]) -> list[str]:
    """The names a link gives (`forward/attention.md`) of the page files `collect_pages` refused: a link to one is
    not a second problem (its own problem says what to fix)."""
    valid = {page.source for page in pages}
    top = os.path.abspath(content_dir)
    out = []
    for file in sorted({file for file, _, _ in problems} - valid):
        path = os.path.abspath(file)
        if file.endswith(".md") and path.startswith(os.path.join(top, "")):
            out.append(Path(path).with_name(arch_of(Path(path))[0]).relative_to(top).as_posix())
    return out


def _read(path: Path, shown: str) -> bytes:
    """The bytes of a page file; a link to nothing, a FIFO (never waited on), a device or a file that cannot be
    read is a BuildError naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        what = "is a link to nothing" if path.is_symlink() and not path.exists() else \
            f"cannot be read ({err.strerror or err})"
        raise BuildError(shown, 0, f"{what}; fix or remove it") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BuildError(shown, 0, "is not a regular file (a FIFO, a socket or a device); give a page file "
                             "or remove it")
        try:
            return f.read()
        except OSError as err:
            raise BuildError(shown, 0, f"cannot be read ({err.strerror or err}); fix or remove it") from None


def read_page(path: Path, shown: str, fields: Mapping[str, str] | None = None, default_slug: str | None = None
              ) -> Page:
    """Parse one page file; `shown` is the path used in error messages."""
    text = decode_utf8(_read(path, shown), shown)
    meta, meta_lines, body, body_line = split_front_matter(text, shown)
    values = validate_front_matter(meta, meta_lines, shown, default_slug=default_slug or path.stem, fields=fields)
    if problems := block_names(body, body_line, shown, values["block"]):
        raise BuildError.collect(problems)
    return Page(source=shown, body=body, body_line=body_line, **values)


def block_number(block: str, n_layers: int) -> int | None:
    """The number `L{block}` stands for on a page whose front matter says `block: first` (0) or `block: last`
    (n_layers − 1); None for a page that works through no one block."""
    return {"first": 0, "last": n_layers - 1}.get(block)


def block_names(body: str, body_line: int, shown: str, block: str) -> list[tuple[str, int, str]]:
    """The wrong uses of a block in a page body: on a page with `block:`, a record name typed with a block number
    (it would stay that block on every config); on one without, `L{block}` (it has no number to stand for)."""
    problems = []
    for k, line in enumerate(body.split("\n")):
        if block:
            for m in _NUMBERED_RE.finditer(line):
                name, number = m.group(1), m.group(2)
                fixed = name[:m.start(2) - m.start(1) - 1] + BLOCK + name[m.end(2) - m.start(1):]
                problems.append((shown, body_line + k, f"record name '{name}' names block {number}, but this page "
                                 f"works through the {block} block (front matter 'block: {block}'): write "
                                 f"'{fixed}'"))
        elif BLOCK in line:
            problems.append((shown, body_line + k, f"'{BLOCK}' on a page without 'block:' in its front matter: add "
                             f"'block: last' (or 'first') to say which block it stands for"))
    return problems


def decode_utf8(data: bytes, shown: str) -> str:
    """Decode strictly as UTF-8, naming the line of the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BuildError(
            shown, line, f"not valid UTF-8 (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")  # Windows' and old Macs' ends


def split_front_matter(text: str, shown: str) -> tuple[dict, dict[str, int], str, int]:
    """Split `---` YAML `---` from the body; return (meta, key -> line, body, body_line)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise BuildError(
            shown, 1, "missing front matter: the file must start with a '---' line, "
            "then title, description, section and order, then '---'"
        )
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise BuildError(shown, 1, "front matter is not closed: add a '---' line after it")
    block = "\n".join(lines[1:end])
    if len(block) > MAX_FRONT_MATTER:
        raise BuildError(shown, 1, f"front matter is {len(block):,} characters long, more than the "
                         f"{MAX_FRONT_MATTER:,} a page's few keys need; move the text into the page's body")
    try:
        try:
            node = yaml.compose(block, Loader=LOADER)
            meta = yaml.load(block, Loader=LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError:  # the pure-Python parser again, for its wording of the error
            node = yaml.compose(block, Loader=yaml.SafeLoader)
            meta = yaml.safe_load(block)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = cut(getattr(err, "problem", None) or str(err).splitlines()[0])
        raise BuildError(shown, line, f"front matter is not valid YAML: {problem}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BuildError(shown, 2, "front matter must be a mapping of 'key: value' lines")
    key_lines = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):  # the str() of a collection's nodes could be gigabytes
                line = key_node.start_mark.line + 2
                if key_node.value in key_lines:  # YAML would keep the last value without a word
                    raise BuildError(shown, line, f"duplicate front matter key {echo(key_node.value)} (first given "
                                     f"at line {key_lines[key_node.value]}); keep one")
                key_lines[key_node.value] = line
    body = "\n".join(lines[end + 1 :])
    return meta, key_lines, body, end + 2


def validate_front_matter(
    meta: dict, key_lines: dict[str, int], shown: str, default_slug: str, fields: Mapping[str, str] | None = None
) -> dict:
    """Check keys, types and values; return the Page fields (without body)."""
    problems = []
    first_line = min(key_lines.values(), default=2)
    if isinstance(meta.get("slug"), int) and not isinstance(meta["slug"], bool):
        meta = {**meta, "slug": str(meta["slug"])}  # YAML reads `slug: 404` as a number; it names a file all the same
    for key in meta:
        if key not in REQUIRED and key not in OPTIONAL:
            known = ", ".join([*REQUIRED, *OPTIONAL])
            problems.append(
                (shown, key_lines.get(str(key), first_line), f"unknown front matter key {echo(key)} (known: {known})")
            )
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        line = key_lines.get(key, first_line)
        if key not in meta:
            if key in REQUIRED:
                problems.append((shown, first_line, f"front matter is missing '{key}'"))
            continue
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            problems.append(
                (shown, line, f"front matter '{key}' must be {_kind_name(kind)}, not {echo(value)}")
            )
        elif kind is str and not value.strip():
            problems.append((shown, line, f"front matter '{key}' is empty"))
    section = meta.get("section")
    if isinstance(section, str) and section not in SECTIONS:
        problems.append(
            (shown, key_lines.get("section", first_line),
             f"unknown section {echo(section)} (one of: {', '.join(SECTIONS)})")
        )
    slug = meta.get("slug", default_slug)
    unknown = [name for name in _FIELD_RE.findall(slug) if name not in SLUG_FIELDS] if isinstance(slug, str) else []
    if unknown:
        problems.append((shown, key_lines.get("slug", 1), f"slug {echo(slug)} names {echo(unknown[0])} in braces; "
                         f"a slug may name only {', '.join('{' + f + '}' for f in SLUG_FIELDS)}"))
    elif isinstance(slug, str):
        slug = _FIELD_RE.sub(lambda m: {**SLUG_FIELDS, **(fields or {})}[m.group(1)], slug)
    if isinstance(slug, str) and not unknown and not SLUG_RE.match(slug):
        problems.append(
            (shown, key_lines.get("slug", 1),
             f"slug {echo(slug)} must be lowercase letters, digits and '-' (rename the file or set slug)")
        )
    if isinstance(slug, str) and slug in RESERVED_SLUGS:
        problems.append((shown, key_lines.get("slug", 1),
                         f"slug '{slug}' is reserved for {RESERVED_SLUGS[slug]}; choose another"))
    step = meta.get("step", "")
    if isinstance(step, str) and step and step not in STEP_KEYS:
        problems.append((shown, key_lines.get("step", 1),
                         f"unknown step {echo(step)} (one of: {', '.join(STEP_KEYS)})"))
    block = meta.get("block", "")
    if isinstance(block, str) and block and block not in BLOCKS:
        problems.append((shown, key_lines.get("block", 1),
                         f"unknown block {echo(block)} (one of: {', '.join(BLOCKS)})"))
    if problems:
        raise BuildError.collect(problems)
    return {
        "step": step,
        "block": block,
        "title": meta["title"].strip(),
        "description": meta["description"].strip(),
        "section": section,
        "order": meta["order"],
        "slug": slug,
        "order_line": key_lines.get("order", first_line),
        "slug_line": key_lines.get("slug", 0),
    }


def _kind_name(kind: type) -> str:
    return {str: "text", int: "a whole number"}.get(kind, kind.__name__)


def _check_unique(pages: list[Page]) -> list[tuple[str, int, str]]:
    problems = []
    seen_order: dict[tuple[str, int], Page] = {}
    seen_slug: dict[str, Page] = {}
    for page in sorted(pages, key=lambda p: p.source):
        other = seen_order.setdefault((page.section, page.order), page)
        if other is not page:
            problems.append(
                (page.source, page.order_line, f"order {page.order} in section '{page.section}' "
                 f"is already used by {other.source}")
            )
        other = seen_slug.setdefault(page.slug, page)
        if other is not page:
            if other.slug_line and not page.slug_line:  # the page whose front matter chose the name is the one to fix
                page, other = other, page
            problems.append(
                (page.source, page.slug_line, f"page name '{page.slug}' is already used by {other.source}")
            )
    return problems


def sort_pages(pages: list[Page]) -> list[Page]:
    """Site order: sections in SECTIONS order, then by `order`."""
    return sorted(pages, key=lambda p: (SECTIONS.index(p.section), p.order, p.slug))


def group_by_section(pages: list[Page]) -> list[tuple[str, list[Page]]]:
    """[(section, pages)] for the sidebar, skipping empty sections."""
    return [(s, [p for p in pages if p.section == s]) for s in SECTIONS if any(p.section == s for p in pages)]
