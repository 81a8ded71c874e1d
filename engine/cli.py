"""The engine's command-line verbs: `handstep trace` and `handstep diff`.

`register(subparsers)` adds them to a parser (the `handstep` entry point adds the site verbs);
`python -m engine` runs them alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import ConfigError, load_config
from .diff import diff_traces, format_diff
from .run import RunError, run
from .trace import TraceError, load_trace

USER_ERRORS = (ConfigError, RunError, TraceError)  # one line on stderr, exit 2, no traceback
DEFAULT_CONFIG = "configs/default.yaml"


def cmd_trace(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    cfg = load_config(args.config, seed=args.seed)
    trace = run(cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trace.save(out)
    print(f"wrote {out}: {len(trace)} records, loss {trace['loss']:.6f} -> {trace['after.loss']:.6f} after one "
          f"{cfg.optimizer.name} step, {time.perf_counter() - start:.2f} s")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    a, b = load_trace(args.a), load_trace(args.b)
    d = diff_traces(a, b)
    print(format_diff(d, args.a, args.b, limit=0 if args.all else 40))
    on_diff = getattr(args, "on_diff", None)  # `handstep diff --html` (the site builder) adds a view here
    if on_diff is not None:
        on_diff(a, b, d)
    return 0 if d.identical else 1


def register(sub) -> None:
    """Add `trace` and `diff` to an argparse subparsers object."""
    p = sub.add_parser("trace", help="run one training step and write its trace as JSON")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--out", default="trace.json", help="output file (default trace.json)")
    p.set_defaults(func=cmd_trace)
    p = sub.add_parser("diff", help="compare two trace files record by record (exit 0 same, 1 different)")
    p.add_argument("a", help="first trace file")
    p.add_argument("b", help="second trace file")
    p.add_argument("--all", action="store_true", help="list every differing record (default: the first 40)")
    p.set_defaults(func=cmd_diff)


def run_command(args: argparse.Namespace, errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Run a parsed command; user errors become one line on stderr and exit code 2."""
    try:
        return args.func(args)
    except errors as exc:
        print(f"handstep: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("handstep: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="handstep", description="one training step of a tiny GPT-2, recorded")
    register(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(argv))
