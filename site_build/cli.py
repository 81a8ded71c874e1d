"""The `handstep` command: `trace`, `diff`, `build`, `serve` and `notebook`, one parser for all of them.

Every expected failure (a bad argument, config, page, trace file or output path) prints one line per
problem to stderr and exits with status 2; a traceback would mean a bug in handstep itself. Nothing is
written where handstep did not write before (see site_build.write), and Ctrl-C leaves the previous
outputs as they were (exit status 130).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from site_build import bytecode, lock, stamp, write
from site_build.errors import BuildError, shown_path, terminal_line

if TYPE_CHECKING:
    import engine
    from site_build.build import Paths

# The engine, NumPy and the renderer are imported by the commands that use them, so that `handstep build` of a
# site that is up to date (site_build.stamp) answers in a few milliseconds.

# One BLAS thread, set before NumPy loads OpenBLAS (a value the user set too: the same inputs must give the same
# bytes whatever the environment; the variables that pick another kernel, such as OPENBLAS_CORETYPE, are part of a
# run's key instead: site_build.stamp.ARITHMETIC_ENV). With one thread per core,
# OpenBLAS may split a sum of products between threads, so the last bit of a GPT-2-sized gradient depended on the
# machine's number of cores; with one, the same inputs give the same trace everywhere. It is also faster here: the
# products of 64 tokens are small, and idle BLAS threads spin on the cores the build's own threads need (a
# GPT-2-small-shaped run: 30 s with two threads, 17 s with one).
for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_blas] = "1"
ROOT = stamp.ROOT
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
DEFAULT_OUT = ROOT / "site"
DEFAULT_CONTENT, DEFAULT_TEMPLATES, DEFAULT_CACHE = ROOT / "content", ROOT / "templates", ROOT / ".cache"
TRACE_PREFIX = write.TRACE_PREFIX


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("handstep")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


class VersionAction(argparse.Action):
    """`--version`, looked up only when asked for (reading the package metadata costs 50 ms)."""

    def __init__(self, option_strings: list[str], dest: str) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        print(f"handstep {version()}")
        parser.exit(0)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`handstep serve: --port: ...`) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, terminal_line(f"{self.prog}: {message} (see {self.prog} --help)") + "\n")


def port_number(text: str) -> int:
    give = "give 1 to 65535, or 0 for any free port"
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number ({give})") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number ({give})")
    return port


def seed_number(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"{seed} is negative; give a whole number ≥ 0")
    return seed


def file_path(text: str) -> Path:
    """An output file's name: one that ends in `/` (or `.`, `..`) names a folder, which Path would silently drop."""
    if text.endswith(("/", os.sep)) or os.path.basename(text) in (".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r} names a folder; give a file name in it")
    return Path(text)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = Parser(prog="handstep", description="One training step of a tiny GPT-2, by hand, as a website.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("trace", help="run one training step and write its trace as JSON")
    _add_run_options(p)
    p.add_argument("--out", type=file_path, default=Path("trace.json"), help="output file (default: trace.json)")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a handstep trace")
    p.set_defaults(func=run_trace)

    p = sub.add_parser("diff", help="compare two trace files record by record (exit 0 same, 1 different, 2 error)")
    p.add_argument("a", type=Path, help="first trace file")
    p.add_argument("b", type=Path, help="second trace file")
    p.add_argument("--all", action="store_true", help="list every differing record (default: the first 40)")
    p.add_argument("--html", type=file_path, default=None, metavar="OUT.html",
                   help="also write the comparison as a standalone HTML page")
    p.add_argument("--force", action="store_true", help="replace --html even if handstep did not write it")
    p.set_defaults(func=run_diff)

    p = sub.add_parser("build", help="compute the trace and build the site")
    _add_site_options(p)
    p.add_argument("--require-coverage", action="store_true",
                   help="fail unless every trace record is shown on some page")
    p.add_argument("--compare", type=Path, default=None, metavar="OTHER.yaml",
                   help="also run OTHER.yaml and show its numbers beside every matrix, plus compare.html")
    p.add_argument("--compare-seed", type=seed_number, default=None, metavar="N",
                   help="compare with a run of the same config (or of --compare) with seed N")
    p.set_defaults(func=run_build)

    p = sub.add_parser("notebook", help="write a Jupyter notebook that recomputes the step in NumPy, page by page")
    _add_run_options(p)
    p.add_argument("--out", type=file_path, required=True, metavar="FILE.ipynb",
                   help="the notebook; its trace file is written beside it (FILE.trace.json)")
    p.add_argument("--content", type=Path, default=DEFAULT_CONTENT, help="pages folder (default: content/)")
    p.add_argument("--force", action="store_true", help="replace --out even if handstep did not write it")
    p.set_defaults(func=run_notebook)

    p = sub.add_parser("serve", help="build, serve on 127.0.0.1 and rebuild on changes")
    _add_site_options(p)
    p.add_argument("--port", type=port_number, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.set_defaults(func=run_serve)
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="YAML config (default: configs/default.yaml; its values are also built in)")
    p.add_argument("--seed", type=seed_number, default=None, help="override the config's seed")


def _add_site_options(p: argparse.ArgumentParser) -> None:
    _add_run_options(p)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder (default: site/); only a new, empty or handstep-built folder is replaced")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out folder that handstep did not build (never /, home, a checkout)")
    p.add_argument("--content", type=Path, default=DEFAULT_CONTENT, help="pages folder (default: content/)")
    p.add_argument("--templates", type=Path, default=DEFAULT_TEMPLATES,
                   help="templates folder (default: templates/)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help="cache of rendered math and compiled pages (default: .cache/)")


def _config(args: argparse.Namespace) -> engine.Config:
    """The config named by --config, or the built-in defaults (equal to configs/default.yaml)."""
    import engine

    path = args.config
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    return engine.load_config(path if path is None else str(path), seed=args.seed)


def run_trace(args: argparse.Namespace) -> int:
    """`handstep trace`: one recorded step, written as JSON (plus a .bin sidecar for a big trace)."""
    import engine
    from site_build.progress import Progress

    start = time.perf_counter()
    out: Path = args.out
    ours = write.file_starts_with(TRACE_PREFIX)
    write.check_output_file(out, "--out", ours, "a handstep trace", args.force, "trace.json", _inputs(args))
    cfg = _config(args)
    files = write.TraceFiles(out, "--out", out, args.force, _inputs(args, cfg))
    args.interrupted = lambda: _interrupted_files(files, out)
    files.check(_big(cfg))  # its values file too, before the run
    with write.writing("--out", out):  # the run's values go to a temporary file there as they are made
        trace = engine.run(cfg, progress=Progress(), spill_dir=out.parent if out.parent.is_dir() else None)
    wrote = shown_path(out) + (f" and {shown_path(files.values)}" if files.save(trace) else "")
    print(terminal_line(f"wrote {wrote}: {len(trace)} records, loss {trace['loss']:.6f} -> "
                        f"{trace['after.loss']:.6f} after one {cfg.optimizer.name} step, "
                        f"{time.perf_counter() - start:.2f} s"))
    return 0


def run_notebook(args: argparse.Namespace) -> int:
    """`handstep notebook`: FILE.ipynb and the trace it reads, FILE.trace.json (+ FILE.trace.bin for a big trace)."""
    import engine
    from site_build.notebook import is_notebook, make_notebook
    from site_build.pages import collect_pages, slug_fields
    from site_build.progress import Progress

    start = time.perf_counter()
    out: Path = args.out
    if out.suffix != ".ipynb":
        raise BuildError(f"--out {shown_path(out)}", 0, "give a notebook file name ending in .ipynb, e.g. step.ipynb")
    trace_path = out.with_suffix(".trace.json")
    write.check_utf8("--out", out, f"the notebook names its trace file {trace_path.name} in its code",
                     name_only=True)
    write.check_output_file(out, "--out", is_notebook, "a notebook handstep wrote", args.force, "step.ipynb",
                            _inputs(args))
    write.check_output_file(trace_path, "--out", write.file_starts_with(TRACE_PREFIX), "a handstep trace",
                            args.force, "step.ipynb", _inputs(args))
    if not args.content.is_dir():
        what = "is not a folder" if args.content.exists() else "does not exist"
        raise BuildError(f"--content {shown_path(args.content)}", 0, f"{what}; give the folder of the site's pages")
    cfg = _config(args)
    pages, problems = collect_pages(args.content, slug_fields(cfg))
    if problems:
        raise BuildError.collect(problems)
    write.check_output_file(out, "--out", is_notebook, "a notebook handstep wrote", args.force, "step.ipynb",
                            _inputs(args, cfg))  # the checkpoint folder is known now
    files = write.TraceFiles(trace_path, "--out", out, args.force, _inputs(args, cfg))
    args.interrupted = lambda: _interrupted_files(files, out)
    files.check(_big(cfg))  # its values file too, before the run
    with write.writing("--out", out):  # the run's values go to a temporary file there as they are made
        trace = engine.run(cfg, progress=Progress(),
                           spill_dir=trace_path.parent if trace_path.parent.is_dir() else None)
    text = make_notebook(trace, pages, trace_path.name)
    with write.writing("--out", out), write.staged(out, lambda tmp: tmp.write_text(text, encoding="utf-8")) as move:
        big = files.save(trace, also=move)  # the notebook moves into place with its trace files, not apart
    cells = text.count('"cell_type": "code"')
    print(terminal_line(f"wrote {shown_path(out)} ({cells} code cells), reading {shown_path(trace_path)}"
                        f"{' and ' + shown_path(files.values) if big else ''}; {time.perf_counter() - start:.2f} s"))
    return 0


def _interrupted_files(files: write.TraceFiles, out: Path) -> str:
    """What an interrupted `trace` or `notebook` left: its new files, all in place, or the previous ones as they were
    (the moves into place hold Ctrl-C: write.save_trace_beside)."""
    if files.written:
        return f"interrupted after {shown_path(out)} was written, whole; nothing is missing"
    left = "is as it was" if out.exists() else "was not written"
    return f"interrupted; nothing was replaced ({shown_path(out)} {left})"


def _inputs(args: argparse.Namespace, cfg: engine.Config | None = None) -> dict[str, Path]:
    """What `trace` and `notebook` read, which they never write over, even with --force: the config file and (once
    the config is read) the checkpoint folder it names."""
    found = {"--config file": Path(args.config) if args.config is not None else DEFAULT_CONFIG}
    if cfg is not None and cfg.model.checkpoint_dir:
        found["checkpoint folder"] = Path(cfg.model.checkpoint_dir)
    return found


def _big(cfg: engine.Config) -> bool:
    """Will the run's trace keep its values in a file beside it (engine.trace.save_trace)? From the sizes alone."""
    from engine import trace
    from engine.budget import count_values

    return count_values(cfg) > trace.INLINE_MAX_VALUES


def run_diff(args: argparse.Namespace) -> int:
    """`handstep diff`: 0 identical, 1 different, 2 when a file cannot be read (never 1 for a damaged file)."""
    import engine
    from engine.diff import diff_traces, format_diff
    from site_build.data.compare import DIFF_HTML_HEAD, write_diff_html

    if args.html is not None:
        from engine.trace import own_values_file

        ours = write.file_starts_with(DIFF_HTML_HEAD.encode())
        inputs = {"first trace": args.a, "second trace": args.b}
        for name, given in (("first", args.a), ("second", args.b)):
            if (values := own_values_file(given)) is not None:
                inputs[f"{name} trace's values file"] = values
        write.check_output_file(args.html, "--html", ours, "a page handstep wrote", args.force, "diff.html", inputs)
    a, b = engine.load_trace(args.a), engine.load_trace(args.b)
    d = diff_traces(a, b)
    # A name's bytes that are not UTF-8 (kept by Python as lone surrogates) are shown as U+FFFD, on a page and here.
    label_a, label_b = (os.fsencode(p).decode("utf-8", "replace") for p in (args.a, args.b))
    print(format_diff(d, label_a, label_b, limit=0 if args.all else 40))
    if args.html is not None:
        with write.writing("--html", args.html):
            write.write_file_atomic(args.html, lambda tmp: write_diff_html(a, b, d, tmp, label_a, label_b))
        print(terminal_line(f"wrote {shown_path(args.html)}"))
    return 0 if d.identical else 1


def _check_folders(args: argparse.Namespace) -> None:
    for flag, folder in (("--content", args.content), ("--templates", args.templates)):
        write.check_usable(flag, folder)
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise BuildError(f"{flag} {shown_path(folder)}", 0, f"{what}; give the folder of the site's "
                             + ("pages (*.md)" if flag == "--content" else "templates (page.html, assets/)"))


def _paths(args: argparse.Namespace) -> Paths:
    from site_build.build import Paths

    _check_folders(args)
    return Paths(content=args.content, templates=args.templates, cache=args.cache)


def run_build(args: argparse.Namespace) -> int:
    """`handstep build`: one build, one summary line; nothing to do when the output folder already holds the build
    of exactly these inputs (site_build.stamp)."""
    args.interrupted = lambda: _interrupted_build(args.out, replaced=False)
    _check_folders(args)
    for flag, path in (("--out", args.out), ("--cache", args.cache), ("--config", args.config),
                       ("--compare", args.compare)):
        if path is not None:  # a name too long or a link loop: one line, before anything looks there
            write.check_usable(flag, path)
    config = Path(args.config or DEFAULT_CONFIG)
    compare = None if args.compare is None and args.compare_seed is None else (args.compare, args.compare_seed)
    stamped = compare is None and config.is_file()
    digest = None
    # Both checked and recorded while this build holds the locks of --out and --cache (site_build.lock), so that the
    # stamp names the files this build wrote; read before building: a page edited meanwhile is built next time.
    with lock.BuildLocks(args.out, args.cache) as locks:
        if stamped and stamp.recorded(args.cache, args.out):  # built before: its lock files may go there at once
            locks.acquire()
            digest = _stamp_digest(args, config)
            if _up_to_date(args, digest):
                return 0
        from site_build.render import katex

        early = katex.start_early(ROOT, args.cache / katex.CACHE_FILE)  # a cold build: node starts while Python loads
        try:
            from site_build.build import Builder, Compare
            from site_build.progress import Progress

            builder = Builder(_paths(args), progress=Progress(), katex_early=early)
            args.interrupted = lambda: _interrupted_build(args.out, builder.replaced)
            try:
                if not locks.taken:  # a first build: the folders are checked (the cache made) before a lock goes there
                    builder.check_outputs(config, args.out, args.force, Compare(*compare) if compare else None)
                    locks.acquire()
                    digest = _stamp_digest(args, config) if stamped else None
                    if _up_to_date(args, digest):  # another build, waited for, built these inputs
                        return 0
                report = builder.build(config, args.out, args.seed, require_coverage=args.require_coverage,
                                       compare=Compare(*compare) if compare else None, force=args.force)
            finally:
                builder.close()
        finally:
            if early is not None:  # the builder closed it, unless the build stopped before it had one
                early.close()
        if digest is not None:
            stamp.record(args.cache, args.out, digest, report.brief())
    print(report.summary())
    return 0


def _stamp_digest(args: argparse.Namespace, config: Path) -> str:
    """The digest of this build's inputs (site_build.stamp), the hashes of a checkpoint's files kept in --cache."""
    flags = {"seed": args.seed, "require_coverage": args.require_coverage}
    return stamp.inputs_digest(config, flags, args.content, args.templates, cache=args.cache)


def _up_to_date(args: argparse.Namespace, digest: str | None) -> bool:
    """Does --out hold the build of these inputs, untouched since? Then say so."""
    done = stamp.up_to_date(args.cache, args.out, digest) if digest is not None else None
    if done is not None:
        print(f"{shown_path(args.out)} is up to date: nothing changed since it was built ({done})")
    return done is not None


def _interrupted_build(out: Path, replaced: bool) -> str:
    """What an interrupted `handstep build` left (Builder.replaced says whether the new site was swapped in)."""
    site = f"{shown_path(out)}/"
    if not replaced:
        kept = "is as it was" if out.exists() else "was not written"
        return f"interrupted; nothing was replaced ({site} {kept})"
    return (f"interrupted after {site} was replaced: it holds the new site, complete with its search index, but the "
            f"cache and the record that {site} is up to date may not be written; run the same build again to finish "
            "(it uses what is cached)")


def run_serve(args: argparse.Namespace) -> int:
    """`handstep serve`: the dev server (see site_build.serve); the port is taken before the first build."""
    from site_build.serve import inherited_socket, serve

    paths = _paths(args)
    sock = inherited_socket()  # a server restarted after an edit of handstep's code keeps its socket and address
    try:
        sock = sock or socket.create_server(("127.0.0.1", args.port))
    except OSError as err:
        reason = "is already in use" if err.errno == errno.EADDRINUSE else f"cannot be used ({err.strerror or err})"
        other = args.port + 1 if 0 < args.port < 65535 else 8001
        raise BuildError(f"--port {args.port}", 0, f"{reason}; pick another, e.g. --port {other}") from None
    return serve(args.config or DEFAULT_CONFIG, args.out, sock, args.seed, paths, force=args.force)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (or SIGHUP) cleans up like Ctrl-C: temporary files go, the old site stays


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `handstep` console script."""
    args = make_parser().parse_args(argv)
    # Before the engine and the build are imported: their bytecode is checked against their source (the command
    # itself starts again, once, if its own first modules came from bytecode that was not).
    bytecode.ensure(restart=argv is None)
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    # A closed terminal (SIGHUP) too, unless it is ignored (`nohup handstep serve`): without this the build would
    # die where it stood, saying nothing and leaving its temporary files.
    hangup = getattr(signal, "SIGHUP", None)
    if previous is not None and hangup is not None and signal.getsignal(hangup) is signal.SIG_DFL:
        signal.signal(hangup, _terminate)
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        from site_build.build import EXPECTED_ERRORS  # loaded already by whatever raised one of them

        if not isinstance(err, EXPECTED_ERRORS):
            raise
        lines = err.lines() if isinstance(err, BuildError) else [str(err)]
        for line in lines:
            print(terminal_line(line), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a command that writes in steps says what it left (run_build: args.interrupted)
        said = args.interrupted() if hasattr(args, "interrupted") else "interrupted; nothing was replaced"
        print(f"handstep: {said}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
