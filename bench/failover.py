"""``failover``: a burst preloaded onto the incoming queues while the SendGrid stand-in fails
every send (HTTP 500), then the whole pipeline started: the SendGrid calls that failed before
the traffic moved (the stand-in's failure count when the pipeline marked SendGrid unhealthy),
the time to drain (every record ``sent``), duplicates and lost emails (must be 0)."""

from __future__ import annotations

from bench import reference
from bench.options import Options
from bench.pipeline import drain_preloaded, preload
from bench.report import Result, Table
from bench.stack import BenchStack
from tests import harness

NAME = "failover"


def run(options: Options) -> Result:
    count = options.count_for(NAME)
    moved: dict[str, float] = {}
    with BenchStack(options, NAME) as stack:
        stack.stub.configure(failRate=1, failStatus=500)
        ids = preload(stack, options, count)

        def watch(seconds: float) -> None:
            # Reads the cache and the stand-in: no AWS call inside the measured window.
            if not moved and not harness.health_states()["sendgrid"].healthy:
                moved.update(seconds=seconds, failures=stack.stub.snapshot()["failures"])

        figures = drain_preloaded(stack, ids, watch)
        total_failures = stack.stub.snapshot()["failures"]
    ledger = figures["ledger"]
    go = reference.FAILOVER
    data = {
        "benchmark": NAME,
        "options": options.described(),
        **figures,
        "failed_sendgrid_calls_before_moved": moved.get("failures"),
        "seconds_until_moved": moved.get("seconds"),
        "failed_sendgrid_calls_total": total_failures,
        "reference_go": go,
    }
    low, high = go["drain_seconds"]
    table = Table(
        f"failover: {count} preloaded emails, SendGrid failing every send (500)",
        ["", "ours", "Go"],
        [
            [
                "failed SendGrid calls before traffic moved",
                moved.get("failures"),
                go["failed_sendgrid_calls"],
            ],
            ["failed SendGrid calls in all", total_failures, None],
            ["seconds until traffic moved", moved.get("seconds"), None],
            ["drain seconds", figures["drain_seconds"], f"{low}-{high}"],
            ["duplicates", ledger["duplicates"], None],
            ["lost", ledger["lost"], 0],
        ],
    )
    return Result(NAME, data, [table], [f"delivered by {ledger['delivered_by']}"])
