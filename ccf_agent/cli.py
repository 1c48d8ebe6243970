"""Command line: run, check, test, status, setup, report, demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from ccf_agent import __version__
from ccf_agent.config import Config, ConfigError, load_config
from ccf_agent.credentials import LOG_SCRUBBER, ScrubbingFormatter, config_secrets

EXIT_CONFIG = 2
EXIT_NOT_RUNNING = 3


def _load(path: str, build: bool = False) -> Config:
    """The config; with `build`, also every part `run` builds from it (agent.preflight)."""
    try:
        config = load_config(path)
        if build:
            from ccf_agent.agent import preflight

            preflight(config)
        return config
    except ConfigError as e:
        _print_config_error(e)
        raise SystemExit(EXIT_CONFIG) from None


def _print_config_error(error: ConfigError) -> None:
    """Every problem of the config, one a line (each names its file:line and key)."""
    for e in error.errors:
        print(f"ccf-agent: config error: {e}", file=sys.stderr)


def _setup_logging(level: str, config: Config | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    if config is not None:
        LOG_SCRUBBER.add(config_secrets(config))


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _setup_logging(args.log_level, config)
    from ccf_agent.agent import Agent

    try:
        agent = Agent(config)  # builds the outputs: the same refusals as `check` (agent.preflight)
    except ConfigError as e:
        _print_config_error(e)
        return EXIT_CONFIG
    except (OSError, ValueError) as e:
        print(f"ccf-agent: cannot start with {args.config}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    # What is alive now (modules, config, the agent) lives as long as the process: keep it out
    # of every collection, and collect the young generation per 20,000 allocations rather than
    # 700 (records and batches rarely form cycles; bench: +5-10% events per CPU-second).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    from ccf_agent.pipeline.native import fast

    if fast is not None:  # a long-running daemon: keep freed arenas and heap for the next batches
        fast.keep_memory()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.run(agent.run())
    return uvloop.run(agent.run())


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config, build=True)
    print(f"{args.config}: OK ({len(config.inputs)} inputs, {len(config.outputs)} outputs, "
          f"{len(config.routes)} routes)")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    config = _load(args.config, build=True)  # everything `check` does first
    print(f"{args.config}: config OK ({len(config.inputs)} inputs, {len(config.outputs)} outputs, "
          f"{len(config.routes)} routes); connecting to every output and notifier")
    _setup_logging("error", config)
    from ccf_agent.ops.reach import run_test

    return run_test(config, sys.stdout, send_notice=args.send_test_notice)


def cmd_status(args: argparse.Namespace) -> int:
    from ccf_agent.ops.status_cli import status

    return status(_load(args.config), as_json=args.json)


def cmd_tap(args: argparse.Namespace) -> int:
    from ccf_agent.ops.tap_cli import tap

    return tap(_load(args.config), args.input, args.route, args.output, args.limit, args.format)


def cmd_top(args: argparse.Namespace) -> int:
    from ccf_agent.ops.top import top

    return top(_load(args.config), args.interval, args.iterations)


def cmd_setup(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _setup_logging("warning", config)
    from ccf_agent.outputs.elasticsearch.setup import run_setup

    return run_setup(config)


def cmd_report(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _setup_logging("warning")
    from ccf_agent.report.run import Request, UsageError, run_report

    try:
        return run_report(config, Request(args.date, args.since, args.format, args.out, args.send, args.source))
    except UsageError as e:
        print(f"ccf-agent report: {e}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_demo(args: argparse.Namespace) -> int:
    _setup_logging("warning")
    from ccf_agent.demo import demo

    return demo(args.dir, args.lines)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number greater than 0, not {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccf-agent", description="Ship Click Clack Cash Flow logs, losing nothing.")
    parser.add_argument("--version", action="version", version=f"ccf-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate a config file (exit 2 on errors)")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("test", help="check, then connect to every output and notifier: a verdict per target "
                                    "(exit 1 naming those that fail, 2 for config errors)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--send-test-notice", action="store_true", help="post a test notice to each notifier")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("status", help="show files, offsets and outputs (exit 3 when not running)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("tap", help="print the events the running daemon ships, redacted as its outputs get them")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--input", help="only this input's events")
    p.add_argument("--route", help="only the events of this route ('default': those no route matched)")
    p.add_argument("--output", help="only the events going to this output")
    p.add_argument("--limit", type=_positive, help="stop after this many events (default: until Ctrl-C)")
    p.add_argument("--format", choices=("ndjson", "text"), default="ndjson",
                   help="ndjson: each event as shipped, one a line; text: where it goes, then the event indented")
    p.set_defaults(func=cmd_tap)
    p = sub.add_parser("top", help="a live view of the running daemon: files, outputs, alerts, dead letters")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two readings (default 1)")
    p.add_argument("--iterations", type=_positive, help="stop after this many readings (default: until Ctrl-C)")
    p.set_defaults(func=cmd_top)
    p = sub.add_parser("setup", help="install index templates and the retention policy (idempotent; exit 1 if "
                                     "incomplete)")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_setup)
    p = sub.add_parser("report", help="the daily report: errors, payouts, failures, hourly series, alerts fired")
    p.add_argument("-c", "--config", required=True)
    when = p.add_mutually_exclusive_group()
    when.add_argument("--date", help="the day to report, YYYY-MM-DD in the report's time zone (default: yesterday)")
    when.add_argument("--since", help="the last stretch of time instead of a day, e.g. 24h")
    p.add_argument("--format", choices=("text", "html", "json"), default="text")
    p.add_argument("--out", help="write to this file ({date} stands for the report's date) instead of stdout")
    p.add_argument("--send", action="store_true", help="also post to the notifiers and mail it (report.smtp)")
    p.add_argument("--source", choices=("auto", "search", "files"), default="auto",
                   help="the search engine (auto: when the config has an elasticsearch output) or the log files")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("demo", help="ship sample Winston logs to local files (no server needed)")
    p.add_argument("--dir", help="scratch directory (default: a new temporary one)")
    p.add_argument("--lines", type=int, default=20_000)
    p.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    if args.command != "run":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `ccf-agent status | head` ends quietly
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
