"""``ingest``: N emails through ``POST /email/send`` at each client concurrency, the API as the
Procfile runs it, SQS the bench's moto (or ``--sqs-endpoint``).

Per concurrency: requests per second, p50/p99 latency, non-200 answers, the API's CPU seconds
per 1,000 accepted emails (gunicorn's master and workers, from /proc) and its SQS calls per
accepted email by action (counted where they arrive). Queues are purged between concurrencies.
With ``--with-raw`` the ``raw`` benchmark runs first on the same SQS, else its last JSON (if its
endpoint was the same) gives the ratio to the SQS stand-in's own rate.
"""

from __future__ import annotations

from typing import Any

from bench import raw, reference
from bench.counting import sqs_calls
from bench.cpu import cpu_seconds
from bench.load import EmailPoster, LoadPlan, run_load
from bench.options import Options
from bench.report import Result, Table, percentile, ratio, read_result
from bench.stack import BenchStack

NAME = "ingest"


WARM_UP_REQUESTS = (64, 16)  # full, --tiny


def warm_up(stack: BenchStack) -> None:
    """Some requests before anything is measured, spread over the API's workers and threads:
    the first one each serves imports and connects (database, boto3 client, queue URL)."""
    total = WARM_UP_REQUESTS[1] if stack.options.tiny else WARM_UP_REQUESTS[0]
    plan = LoadPlan(total=total, concurrency=8, processes=1)
    run_load(plan, EmailPoster(stack.api_url, stack.api_key))


def measure_ingest(stack: BenchStack, options: Options, concurrency: int, count: int) -> dict:
    """One concurrency's figures (see the module docstring); the queues are purged first."""
    web = stack.processes["web"]
    stack.purge()
    stack.calls.reset()
    cpu_before = cpu_seconds(web)
    plan = LoadPlan(total=count, concurrency=concurrency, processes=options.load_processes)
    load = run_load(plan, EmailPoster(web.url, stack.api_key))
    cpu = cpu_seconds(web) - cpu_before
    calls = sqs_calls(stack.calls.snapshot())
    accepted = len(load.accepted)
    latencies = [o.seconds * 1000 for o in load.outcomes]
    per_email = (lambda n: n / accepted) if accepted else (lambda n: None)
    return {
        "concurrency": concurrency,
        "requests": len(load.outcomes),
        "accepted": accepted,
        "non_200": len(load.refused),
        "non_200_statuses": sorted({o.status for o in load.refused}),
        "seconds": load.seconds,
        "requests_per_second": len(load.outcomes) / load.seconds if load.seconds else None,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "api_cpu_seconds": cpu,
        "api_cpu_seconds_per_1000": cpu * 1000 / accepted if accepted else None,
        "sqs_calls": calls,
        "sqs_calls_per_email": {
            "SendMessage": per_email(calls["SendMessage"]),
            "SendMessageBatch": per_email(calls["SendMessageBatch"]),
            "others": per_email(calls["others"]),
        },
        "first_refusal": load.refused[0].detail if load.refused else None,
    }


def ingest_table(title: str, rows: list[dict], go: dict[int, int], raw_rates: dict) -> Table:
    table = Table(
        title,
        [
            "clients",
            "req/s",
            "Go req/s",
            "ratio to raw SQS",
            "p50 ms",
            "p99 ms",
            "non-200",
            "API CPU s / 1,000",
            "SendMessage / email",
            "SendMessageBatch / email",
            "other SQS / email",
        ],
    )
    for row in rows:
        per_email = row["sqs_calls_per_email"]
        table.rows.append(
            [
                row["concurrency"],
                row["requests_per_second"],
                go.get(row["concurrency"]),
                ratio(row["requests_per_second"], raw_rates.get(row["concurrency"])),
                row["p50_ms"],
                row["p99_ms"],
                row["non_200"],
                row["api_cpu_seconds_per_1000"],
                per_email["SendMessage"],
                per_email["SendMessageBatch"],
                per_email["others"],
            ]
        )
    return table


def raw_rates_from(data: dict[str, Any] | None, options: Options, count: int) -> dict[int, float]:
    """calls/s of a raw result by concurrency, if it measured the same SQS endpoint (with the
    same moto scans) with as many calls as emails here (moto slows as its queue fills)."""
    same = ("sqs_endpoint", "stock_moto_scans")
    if not data or any(data["options"].get(k) != options.described()[k] for k in same):
        return {}
    if data["calls_per_concurrency"] != count:
        return {}
    return {row["concurrency"]: row["calls_per_second"] for row in data["rows"]}


def run(options: Options) -> Result:
    count = options.count_for(NAME)
    with BenchStack(options, NAME) as stack:
        raw_result = raw.measure_all(stack, options) if options.with_raw else None
        stack.start_web()
        warm_up(stack)
        rows = [measure_ingest(stack, options, c, count) for c in options.concurrency]
        api = stack.web_described()
    raw_data = raw_result.data if raw_result else read_result(raw.NAME)
    raw_rates = raw_rates_from(raw_data, options, count)
    data = {
        "benchmark": NAME,
        "options": options.described(),
        "emails_per_concurrency": count,
        "api": api,
        "rows": rows,
        "raw_calls_per_second": raw_rates,
        "reference_go": {
            "requests_per_second": reference.INGEST_REQUESTS_PER_SECOND,
            "api_cpu_ms_per_email": reference.INGEST_CPU_MS_PER_EMAIL,
        },
    }
    low, high = reference.INGEST_CPU_MS_PER_EMAIL
    tables = [
        ingest_table(
            f"ingest: {count} emails per concurrency",
            rows,
            reference.INGEST_REQUESTS_PER_SECOND,
            raw_rates,
        )
    ]
    if raw_result:
        tables += raw_result.tables
    notes = [
        f"Go's API CPU per 1,000 accepted emails: {low:g}-{high:g} s.",
        "ratio to raw SQS: "
        + (
            "this run's raw benchmark."
            if raw_result
            else "the last raw JSON, if any, of the same endpoint."
        ),
    ]
    return Result(NAME, data, tables, notes)
