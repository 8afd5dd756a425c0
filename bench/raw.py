"""``raw``: the SQS stand-in's own rate for one ``SendMessage`` per call, by boto3 clients in
the same multi-process generator as ``ingest`` (one client per thread), at the same
concurrencies: the most any API could get from it."""

from __future__ import annotations

from bench.load import LoadPlan, SqsSender, run_load
from bench.options import Options
from bench.report import Result, Table, percentile
from bench.stack import BenchStack

NAME = "raw"


def measure_raw(stack: BenchStack, options: Options, concurrency: int, count: int) -> dict:
    from gomail_site.aws import queue_url
    from tests import harness

    stack.purge()
    url = queue_url(harness.incoming_queues()[0])
    plan = LoadPlan(total=count, concurrency=concurrency, processes=options.load_processes)
    load = run_load(plan, SqsSender(stack.aws_url, url))
    latencies = [o.seconds * 1000 for o in load.outcomes]
    return {
        "concurrency": concurrency,
        "calls": len(load.outcomes),
        "failed": len(load.refused),
        "seconds": load.seconds,
        "calls_per_second": len(load.outcomes) / load.seconds if load.seconds else None,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
    }


def measure_all(stack: BenchStack, options: Options) -> Result:
    """Every concurrency of ``options`` against ``stack``'s SQS."""
    count = options.count_for(NAME)
    rows = [measure_raw(stack, options, c, count) for c in options.concurrency]
    table = Table(
        f"raw SQS SendMessage: {count} calls per concurrency",
        ["clients", "calls/s", "p50 ms", "p99 ms", "failed"],
        [
            [r["concurrency"], r["calls_per_second"], r["p50_ms"], r["p99_ms"], r["failed"]]
            for r in rows
        ],
    )
    data = {
        "benchmark": NAME,
        "options": options.described(),
        "calls_per_concurrency": count,
        "rows": rows,
    }
    return Result(NAME, data, [table])


def run(options: Options) -> Result:
    with BenchStack(options, NAME) as stack:
        return measure_all(stack, options)
