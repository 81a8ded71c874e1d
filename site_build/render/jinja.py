"""Page bodies through Jinja, then Markdown: the content environment, its compiled-code cache and compile workers.

A page body is compiled by Jinja to Python source once (kept on disk, keyed by the body's hash, and in the
build session's memory), run with the registered macros (site_build.macros) and then rendered by Markdown.
Every problem of every page is collected and raised together, each as `file:line: message`.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import signal
import sys
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from site_build.data.downloads import FileNeed
from site_build.errors import BuildError
from site_build.facts import FactError
from site_build.macros import FILTERS, MacroError, PageContext, page_globals
from site_build.macros.blocks import Block, Group
from site_build.macros.charts import step_map
from site_build.macros.registry import RunContext
from site_build.pages import Page
from site_build.render.markdown import Heading, make_parser
from site_build.render.markdown import render_page as render_markdown
from site_build.render.mathslots import MathSlots

JINJA_CACHE_VERSION = f"jinja {jinja2.__version__}, handstep 2"  # bump when content_environment() changes


def content_environment(compile_only: bool = False) -> jinja2.Environment:
    """Jinja for page bodies: strict about undefined names, HTML-escaping by default. A page's macros, facts, `trace`
    and `config` are given when it renders (`render_jinja`), so one environment serves every page.

    `compile_only` (what the parallel compile workers need) has the filters by name only, since compiling checks
    them."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        # `{#id}` is a Markdown heading id, so Jinja comments are `{## ... ##}` here
        comment_start_string="{##",
        comment_end_string="##}",
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # no constant folding: the pages have little to fold, and generating their code is a cold build's largest
        # cost (folding is about a sixth of it); the output is the same either way
        optimized=False,
    )
    env.filters.update({name: str for name in FILTERS} if compile_only else FILTERS)
    return env


@dataclass
class PageResult:
    """A rendered page as a value: its HTML body (formulas as placeholders named by their hash), its outline and
    in-page links, and what later stages read: its formulas, the records whose numbers it shows, what it put on
    generated pages (a wide matrix's table), its blocks (macros.blocks: what its macros put on it, by number, in page
    order) and its text as the notebook reads it (`prose`: its Jinja output, the blocks as placeholders, each HTML
    block its Markdown found one Group). Rendering a page changes nothing else, so a result from the page cache is
    as good as a fresh one."""

    source: str
    html: str
    headings: list[Heading]
    anchors: list[tuple[int, str, str]]  # (line, target url or "", fragment)
    math: MathSlots  # its formulas, each with the line that first used it
    shown: frozenset[str]
    made: dict[str, Any]
    blocks: dict[int, Block]
    prose: list[str | Group]

    @property
    def files(self) -> list[FileNeed]:
        """The files its blocks link to (data.downloads makes them)."""
        return list(dict.fromkeys(need for block in self.blocks.values() for need in block.files))

    @staticmethod
    def valid(value: Any) -> bool:
        """`value` has the shape of a PageResult (what the page cache hands back is checked before it is used)."""
        return (isinstance(value, PageResult) and isinstance(value.source, str) and isinstance(value.html, str)
                and isinstance(value.headings, list)
                and all(isinstance(h, Heading) and isinstance(h.html, str) for h in value.headings)
                and isinstance(value.anchors, list) and isinstance(value.math, MathSlots)
                and isinstance(value.math.formulas, dict) and value.math.formulas.keys() == value.math.where.keys()
                and isinstance(value.shown, frozenset) and all(isinstance(n, str) for n in value.shown)
                and isinstance(value.made, dict) and all(isinstance(url, str) for url in value.made)
                and isinstance(getattr(value, "blocks", None), dict)
                and all(isinstance(b, Block) for b in value.blocks.values())
                and isinstance(getattr(value, "prose", None), list))


def render_page(page: Page, run: RunContext, links: dict[str, str], env: jinja2.Environment | None = None,
                md: Any = None, cache_dir: Path | None = None, compiled: dict[tuple[str, str], Any] | None = None,
                on_formula: Any = None) -> PageResult:
    """One page through Jinja (with the macros, reading `run`) and Markdown; raise BuildError with every problem of
    the page. `env` and `md` may be shared between pages (they keep nothing of a page); `compiled` and `cache_dir`
    keep the page's compiled Jinja code."""
    env = env or content_environment()
    md = md or make_parser()
    ctx = run.page(page.source, page.body_line, MathSlots(on_new=on_formula))
    blocks = ctx.blocks
    assert blocks is not None
    text = ctx.end_page(render_jinja(env, page, ctx, cache_dir, compiled))  # page hooks: macros.scale
    filled, segments, used = blocks.fill(text)  # the blocks' HTML in place: what Markdown reads
    rendered = render_markdown(md, filled, ctx.math, page.source, page.body_line - 1, page.body, links)
    ctx.math.on_new = None  # the result is a value: it holds its formulas, not who was told of them
    if rendered.problems:
        raise BuildError.collect(rendered.problems)
    html = blocks.finish(rendered.html)  # what blocks put in after Markdown: each displayed formula's NumPy line
    if page.step:  # the compact map of the steps on top of every step page, its own step highlighted
        html = step_map(ctx, page.step) + html
    prose = blocks.prose(filled, segments, [(start, end) for start, end, _ in rendered.blocks or []])
    return PageResult(page.source, html, rendered.headings, rendered.anchors, ctx.math, frozenset(ctx.shown),
                      ctx.made, used, prose)


def render_pages(pages: list[Page], run: RunContext, links: dict[str, str], cache: Any = None,
                 problems: list[tuple[str, int, str]] | None = None, key: Any = None,
                 cache_dir: Path | None = None, compiled: dict[tuple[str, str], Any] | None = None,
                 compiling: Compiling | None = None, on_formula: Any = None,
                 on_page: Any = None) -> dict[str, PageResult]:
    """Every page rendered (or taken from `cache`, a PageCache, under its content key: the page's text, `key` (the
    run and whatever else every page reads) and the links); raise every problem (plus `problems`) at the end."""
    env, md = content_environment(), make_parser()
    out: dict[str, PageResult] = {}
    problems = list(problems or [])
    link_key = tuple(sorted(links.items()))
    for page in pages:
        page_key = (page.source, page.body, page.body_line, page.step, key, link_key) if cache is not None else None
        result = cache.get(page_key) if page_key is not None else None
        if result is None:
            if compiling is not None and cache_dir is not None:
                compiling.wait_for(page, cache_dir)
            try:
                result = render_page(page, run, links, env, md, cache_dir, compiled, on_formula)
            except BuildError as err:
                problems.extend(err.problems)
                continue
            if page_key is not None:
                cache.put(page_key, result)
        elif on_formula is not None:
            for tex, display in result.math.formulas.values():
                on_formula(tex, display)
        out[page.source] = result
        if on_page is not None:
            on_page(result)
    problems.extend(missing_anchors(pages, out))
    if problems:
        raise BuildError.collect(problems)
    return out


_ID_RE = re.compile(r'\sid="([^"]+)"')


def missing_anchors(pages: list[Page], bodies: dict[str, Any]) -> list[tuple[str, int, str]]:
    """Every `#fragment` a page links to must be an id on the target page."""
    ids: dict[str, set[str]] = {}
    for p in pages:  # the first page of a URL wins, as links do (a duplicate is reported on its own)
        if p.source in bodies:
            ids.setdefault(p.url, set(_ID_RE.findall(bodies[p.source].html)))
    problems = []
    for page in pages:
        for line, target, frag in bodies[page.source].anchors if page.source in bodies else ():
            url = target or page.url
            if url in ids and frag not in ids[url]:
                where = f"on {url.removesuffix('.html')}" if target else "on this page"
                problems.append((page.source, line, f"link to unknown anchor '#{frag}' {where}"))
    return problems


def link_map(pages: list[Page]) -> dict[str, str]:
    """`attention.md` and `forward/attention.md` both link to `attention.html`."""
    links = {}
    for page in pages:
        links[page.rel] = page.url
        links.setdefault(page.rel.rsplit("/", 1)[-1], page.url)
    return links


# -- compiled page code -----------------------------------------------------------------------------------------
# On disk, a page body's generated Python source is `# handstep <sha256 of the rest>` and the source; its bytecode is
# CODE_MAGIC, the sha256 of the marshalled code, and that code. A file that is missing, damaged (its digest does not
# match), or whose code does not compile or run is a miss: the page is compiled again from its text, and the files
# written anew. So a damaged cache never shows as an error of the page.
SOURCE_HEAD = "# handstep "
CODE_MAGIC = b"handstep code 1\n"


def compiled_page(env: jinja2.Environment, page: Page, cache_dir: Path | None,
                  memory: dict[tuple[str, str], Any] | None = None, fresh: bool = False) -> Any:
    """The page body compiled by Jinja: from `memory`, else from the on-disk cache (the Python bytecode, else the
    generated Python source, keyed by the body's hash), else compiled now; generating the source is most of
    Jinja's cost, compiling it to bytecode most of the rest. With `fresh`, compiled now whatever is cached (and the
    cache overwritten)."""
    key = (page.source, page.body)
    code = memory.get(key) if memory is not None and not fresh else None
    if code is not None:
        return code
    path = compiled_path(cache_dir, page.source, page.body) if cache_dir is not None else None
    code = _read_code(path) if path is not None and not fresh else None
    if code is None:
        source = _read_source(path) if path is not None and not fresh else None
        code = _compile(source, page.source) if source is not None else None
        if code is None:  # nothing cached, or nothing usable
            source = env.compile(page.body, name=page.source, filename=page.source, raw=True)
            if path is not None:
                _write_source(path, source)
            code = compile(source, page.source, "exec")
        if path is not None:
            _write_code(path, code)
    if memory is not None:
        memory[key] = code
    return code


def compiled_path(cache_dir: Path, source: str, body: str) -> Path:
    """Where the generated Python source of a page body is kept (its bytecode beside it: `_code_path`)."""
    digest = hashlib.sha256(f"{JINJA_CACHE_VERSION}\0{source}\0{body}".encode()).hexdigest()
    return cache_dir / f"{digest}.py"


def _code_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.{sys.implementation.cache_tag}.code")  # marshal is per Python version


def _compile(source: str, name: str) -> Any:
    """Python source from the cache compiled, or None when it does not compile."""
    try:
        return compile(source, name, "exec")
    except Exception:  # noqa: BLE001 - a cached source that does not compile is a miss
        return None


def _read_source(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    head, _, source = text.partition("\n")
    if head != SOURCE_HEAD + hashlib.sha256(source.encode()).hexdigest():
        return None
    return source


def _write_source(path: Path, source: str) -> None:
    _write_atomic(path, f"{SOURCE_HEAD}{hashlib.sha256(source.encode()).hexdigest()}\n{source}")


def _read_code(path: Path) -> Any:
    try:
        data = _code_path(path).read_bytes()
        digest, body = data[len(CODE_MAGIC):len(CODE_MAGIC) + 32], data[len(CODE_MAGIC) + 32:]
        if not data.startswith(CODE_MAGIC) or hashlib.sha256(body).digest() != digest:
            return None
        code = marshal.loads(body)
    except Exception:  # noqa: BLE001 - whatever a damaged file raises, it is a miss
        return None
    return code if isinstance(code, types.CodeType) else None


def _write_code(path: Path, code: Any) -> None:
    try:
        body = marshal.dumps(code)
    except ValueError:
        return
    _write_atomic(_code_path(path), CODE_MAGIC + hashlib.sha256(body).digest() + body)


def _write_atomic(path: Path, data: str | bytes) -> None:
    """Write a cache file whole, or not at all (a cache that cannot be written is only a slower next build)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        _unlink(tmp)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


class Compiling:
    """Two forked workers compiling the pages missing from the caches, while the engine runs and then the pages
    render: each page's code is written to the disk cache (`compiled_page` finds it there), and `wait_for(page)`
    holds the build until the page it is about to render is there, so rendering starts with the first page
    compiled rather than the last.

    Plain forks, each given its pages up front: nothing is shared between them and the build, so there is no
    lock a worker could die holding. A worker takes the default action on SIGTERM and ignores Ctrl-C (the build
    handles that): the build's own SIGTERM handler, which turns the signal into KeyboardInterrupt, would be racy
    in a process blocked in a system call. A worker that dies or hangs only costs time: whatever it did not
    write, the build compiles itself.
    """

    def __init__(self, owners: dict[Path, int]) -> None:
        self.owner = owners  # the code file of each page -> the pid of the worker writing it
        self.running = set(owners.values())
        self.deadline = time.monotonic() + COMPILE_TIMEOUT_S

    @property
    def workers(self) -> list[int]:
        return sorted(set(self.owner.values()))

    def wait_for(self, page: Page, cache_dir: Path) -> None:
        """Return once the page's code is on disk, or its worker has ended (or is past the time limit)."""
        code = _code_path(compiled_path(cache_dir, page.source, page.body))
        pid = self.owner.get(code)
        while pid in self.running and not code.is_file():
            if _reaped(pid, os.WNOHANG):
                self.running.discard(pid)
            elif time.monotonic() > self.deadline:
                self.stop()
            else:
                time.sleep(0.002)

    def finish(self) -> None:
        """Wait for the workers to end (they have written everything once each page was waited for), never past
        the time limit."""
        while self.running and time.monotonic() < self.deadline:
            self.running -= {pid for pid in self.running if _reaped(pid, os.WNOHANG)}
            if self.running:
                time.sleep(0.002)
        self.stop()

    def stop(self) -> None:
        """End the workers now (a failed or interrupted build, or one past the time limit): kill and reap them.
        Only workers not yet reaped are signalled: a reaped worker's pid may belong to another process by now."""
        for pid in sorted(self.running):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _reaped(pid, 0)
        self.running.clear()


COMPILE_TIMEOUT_S = 30.0


def start_compiling(pages: list[Page], cache_dir: Path, memory: dict[tuple[str, str], Any] | None = None
                    ) -> Compiling:
    """Compile the pages missing from the caches in two forked workers (see Compiling); none when there is
    little to do. Call it before any thread starts (a fork copies only the calling thread).

    The pages are dealt out in the order they render, each to the worker with less text so far, so that both
    stay ahead of the rendering."""
    memory = memory or {}
    todo = [(p.source, p.body, compiled_path(cache_dir, p.source, p.body)) for p in pages
            if (p.source, p.body) not in memory and not compiled_path(cache_dir, p.source, p.body).is_file()]
    if len(todo) < 4 or not hasattr(os, "fork"):
        return Compiling({})
    shares: list[list[tuple[str, str, Path]]] = [[], []]
    sizes = [0, 0]
    for item in todo:
        k = sizes.index(min(sizes))
        shares[k].append(item)
        sizes[k] += len(item[1])
    sys.stdout.flush()
    sys.stderr.flush()
    owners = {}
    for share in shares:
        pid = _fork_worker(share)
        if pid:
            owners.update({_code_path(path): pid for _, _, path in share})
    return Compiling(owners)


def _fork_worker(items: list[tuple[str, str, Path]]) -> int:
    """Fork a process that compiles `items` and exits; the child's pid (0 when fork failed)."""
    try:
        pid = os.fork()
    except OSError:
        return 0  # the build compiles these pages itself
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for item in items:
            _compile_one(item)
        code = 0
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the build's buffers: they are the parent's


def _reaped(pid: int, flags: int) -> bool:
    try:
        done, _ = os.waitpid(pid, flags)
    except ChildProcessError:
        return True  # reaped already
    return done == pid


def _compile_one(item: tuple[str, str, Path]) -> None:
    source, body, path = item
    try:
        text = content_environment(compile_only=True).compile(body, name=source, filename=source, raw=True)
        _write_source(path, text)
        _write_code(path, compile(text, source, "exec"))
    except Exception:  # noqa: BLE001 - the main process compiles it again and reports the error with its line
        pass


def render_jinja(env: jinja2.Environment, page: Page, ctx: PageContext, cache_dir: Path | None = None,
                 memory: dict[tuple[str, str], Any] | None = None, extra: dict[str, Any] | None = None) -> str:
    """Render a page body with the macros bound to `ctx` (and `extra` names over them); any error becomes
    `file:line: message` with the source line."""
    offset = page.body_line - 1
    try:
        return page_template(env, page, cache_dir, memory).render({**page_globals(ctx), **(extra or {})})
    except jinja2.TemplateSyntaxError as err:
        raise BuildError(page.source, offset + (err.lineno or 1), f"template error: {err.message}") from None
    except Exception as err:  # noqa: BLE001 - every page error is reported, never a traceback
        line = _template_line(err, page.source)
        message = str(err) if isinstance(err, (MacroError, FactError)) else _describe(err)
        raise BuildError(page.source, offset + line if line else 0, message) from None


def page_template(env: jinja2.Environment, page: Page, cache_dir: Path | None = None,
                  memory: dict[tuple[str, str], Any] | None = None) -> jinja2.Template:
    """The page's Jinja template from its compiled code. Code from a cache that does not load as the page's
    template (a damaged entry) is compiled again from the page's text, and the cache overwritten."""
    code = compiled_page(env, page, cache_dir, memory)
    try:
        template = env.template_class.from_code(env, code, env.globals, None)
        if template.name == page.source:
            return template
    except Exception:  # noqa: BLE001 - a page's own errors are raised by compiling and rendering it, not here
        pass
    code = compiled_page(env, page, cache_dir, memory, fresh=True)
    return env.template_class.from_code(env, code, env.globals, None)


def _template_line(err: BaseException, source: str) -> int:
    """The page line of the innermost template frame in the traceback (Jinja rewrites it)."""
    line = 0
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_filename == source:
            line = lineno
    return line


def _describe(err: BaseException) -> str:
    if isinstance(err, jinja2.UndefinedError):
        return f"undefined name: {err.message}"
    return f"{err}" if isinstance(err, TypeError) else f"{type(err).__name__}: {err}"
