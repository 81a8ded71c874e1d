"""The `handstep` command: `build` and `serve` here, `trace` and `diff` from the engine.

Every expected failure (a bad config, a bad page) prints one line per problem to
stderr and exits with status 2; a traceback would mean a bug in handstep itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from site_build.build import EXPECTED_ERRORS, ROOT, Builder, Compare, Paths
from site_build.errors import BuildError

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
DEFAULT_OUT = ROOT / "site"


def make_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="handstep", description="One training step of a tiny GPT-2, by hand, as a website."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if importlib.util.find_spec("engine.cli") is not None:
        from engine import cli as engine_cli

        engine_cli.register(sub)
        _add_diff_html(sub)
    build = sub.add_parser("build", help="compute the trace and build the site")
    _add_build_options(build)
    build.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: site/)")
    build.add_argument(
        "--require-coverage", action="store_true", help="fail unless every trace record is shown on some page"
    )
    build.add_argument("--compare", type=Path, default=None, metavar="OTHER.yaml",
                       help="also run OTHER.yaml and show its numbers beside every matrix, plus compare.html")
    build.add_argument("--compare-seed", type=int, default=None, metavar="N",
                       help="compare with a run of the same config (or of --compare) with seed N")
    build.set_defaults(func=run_build)
    serve = sub.add_parser("serve", help="build, serve on 127.0.0.1 and rebuild on changes")
    _add_build_options(serve)
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: site/)")
    serve.set_defaults(func=run_serve)
    return parser


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config file (default: configs/default.yaml)")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    parser.add_argument("--content", type=Path, default=Paths().content, help="pages directory (default: content/)")
    parser.add_argument("--templates", type=Path, default=Paths().templates,
                        help="templates directory (default: templates/)")
    parser.add_argument("--cache", type=Path, default=Paths().cache,
                        help="cache of rendered math and compiled pages (default: .cache/)")


def _add_diff_html(sub: argparse._SubParsersAction) -> None:
    """Give the engine's `diff` verb `--html OUT.html` (the engine itself knows no HTML)."""
    diff = sub.choices.get("diff")
    if diff is None:
        return
    diff.add_argument("--html", type=Path, default=None, metavar="OUT.html",
                      help="also write the comparison as a standalone HTML page")
    text_diff = diff.get_default("func")

    def run_diff(args: argparse.Namespace) -> int:
        if args.html is not None:
            from site_build.compare import write_diff_html

            def on_diff(a, b, d) -> None:  # the engine's diff hands over both traces and their diff
                write_diff_html(a, b, d, args.html, args.a, args.b)
                print(f"wrote {args.html}")

            args.on_diff = on_diff
        return text_diff(args)

    diff.set_defaults(func=run_diff)


def run_build(args: argparse.Namespace) -> int:
    """`handstep build`: one build, one summary line."""
    builder = Builder(Paths(content=args.content, templates=args.templates, cache=args.cache))
    compare = None
    if args.compare is not None or args.compare_seed is not None:
        compare = Compare(args.compare, args.compare_seed)
    try:
        report = builder.build(args.config, args.out, args.seed, require_coverage=args.require_coverage,
                               compare=compare)
    finally:
        builder.close()
    print(report.summary())
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """`handstep serve`: the dev server (see site_build.serve)."""
    from site_build.serve import serve

    return serve(args.config, args.out, args.port, args.seed,
                 Paths(content=args.content, templates=args.templates, cache=args.cache))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `handstep` console script."""
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as err:
        lines = err.lines() if isinstance(err, BuildError) else [str(err)]
        for line in lines:
            print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
