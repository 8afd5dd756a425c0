"""The command line: ``python -m bench <name> [options]``; ``all`` runs every benchmark, each in
a process of its own (Django is set up once per process, on that benchmark's database)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

from bench.options import Options
from bench.report import publish
from tests.harness import REPO_ROOT

BENCHMARKS = ("ingest", "raw", "ceiling", "pipeline", "latency", "failover")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description="Gomail's benchmarks (docs/performance.md)."
    )
    p.add_argument("name", choices=[*BENCHMARKS, "all"])
    p.add_argument(
        "--sqs-endpoint",
        help="SQS (and SES) endpoint to use as given, queues created by manage.py bootstrap "
        "(default: the bench's own moto server)",
    )
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--tiny", action="store_true", help="CI size: seconds, not minutes")
    p.add_argument(
        "--service-root",
        type=Path,
        default=REPO_ROOT,
        help="run the service from this checkout (a git worktree of another commit)",
    )
    p.add_argument("--output", type=Path, help="JSON path (default .run/bench/<name>.json)")
    p.add_argument("--api-workers", type=int, help="gunicorn workers (default: the Procfile's)")
    p.add_argument("--api-threads", type=int, help="gunicorn threads (default: the Procfile's)")
    p.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[1, 8, 32],
        help="client concurrencies of ingest, raw and ceiling (default 1,8,32)",
    )
    p.add_argument("--count", type=int, help="emails (calls for raw); default per benchmark")
    p.add_argument("--seconds", type=float, help="latency: how long (default 30, tiny 5)")
    p.add_argument("--rate", type=float, default=2.0, help="latency: emails/s (default 2)")
    p.add_argument("--sendgrid-latency-ms", type=int, default=0, help="stand-in's answer delay")
    p.add_argument("--with-raw", action="store_true", help="ingest: run raw first, same SQS")
    p.add_argument(
        "--stock-moto-scans",
        action="store_true",
        help="the bench's moto keeps stock moto's per-message clock scans (slower with depth; "
        "see devtools/moto_server.py)",
    )
    p.add_argument("--load-processes", type=int, default=2, help="load generator processes")
    return p


def options_from(args: argparse.Namespace) -> Options:
    """The options of a benchmark from the parsed command line (same names)."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(Options)}
    values["service_root"] = args.service_root.resolve()
    return Options(**values)


def run_all(argv: list[str]) -> int:
    """Every benchmark in turn, each ``python -m bench <name>`` with the same options (but
    ``--output``, which names one file); returns the first failure's exit status, or 0."""
    rest = list(argv)
    rest.remove("all")
    if "--output" in rest:
        index = rest.index("--output")
        del rest[index : index + 2]
    status = 0
    for name in BENCHMARKS:
        done = subprocess.run([sys.executable, "-m", "bench", name, *rest], cwd=REPO_ROOT)
        status = status or done.returncode
    return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.name == "all":
        return run_all(argv)
    module = importlib.import_module(f"bench.{args.name}")
    publish(module.run(options_from(args)), args.output)
    return 0
