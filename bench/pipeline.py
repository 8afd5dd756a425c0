"""``pipeline``: M messages preloaded onto the incoming queues (as another producer of the
original's format puts them, ten per SendMessageBatch), then the pipeline worker, the provider
worker and beat started as the Procfile runs them; the time until every record is ``sent``
(polled from the database), emails/s, CPU seconds per 1,000 emails of each process kind, SQS
calls per delivered email and duplicates (copies at the providers beyond one per email).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import reference
from bench.counting import sqs_calls
from bench.cpu import cpu_seconds
from bench.deliveries import ledger_figures, sent_ids, take_ledger
from bench.options import Options
from bench.report import Result, Table
from bench.stack import PIPELINE_ROLES, BenchStack
from tests import harness

NAME = "pipeline"
POLL_SECONDS = 0.25


def drain_timeout(count: int) -> float:
    """Generous: a burst drained at 2 emails/s, plus start-up."""
    return 120 + count / 2


def preload(stack: BenchStack, options: Options, count: int) -> list[str]:
    """``count`` wire messages onto the incoming queues (the bench's own calls, not counted:
    the call log is reset after) on purged queues; the SendGrid stand-in answers after its
    latency."""
    stack.purge()
    ids = harness.enqueue_from_another_producer(count)
    if options.sendgrid_latency_ms:
        stack.stub.configure(delayMs=options.sendgrid_latency_ms)
    stack.calls.reset()
    return ids


def drain_preloaded(
    stack: BenchStack,
    ids: Sequence[str],
    watch: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Start the pipeline's processes and wait until every one of ``ids`` is ``sent``
    (``watch(seconds since ready)`` is called on each poll). Returns the drain's figures and
    its ledger's; AssertionError if the drain did not end in time."""
    launched = time.monotonic()
    processes = stack.start_pipeline()
    ready = time.monotonic()
    wanted = {str(i) for i in ids}
    deadline = ready + drain_timeout(len(ids))
    while len(sent_ids(wanted)) < len(wanted):
        if watch is not None:
            watch(time.monotonic() - ready)
        if time.monotonic() >= deadline:
            raise AssertionError(f"not every email was sent in {drain_timeout(len(ids)):g} s")
        time.sleep(POLL_SECONDS)
    drained = time.monotonic() - ready
    cpu = {role: cpu_seconds(processes[role]) - stack.cpu_at_ready[role] for role in PIPELINE_ROLES}
    snapshot = stack.calls.snapshot()
    calls = sqs_calls(snapshot)
    ledger = take_ledger(ids, stack.stub, snapshot)
    return {
        "emails": len(ids),
        "start_up_seconds": ready - launched,
        "drain_seconds": drained,
        "emails_per_second": len(ids) / drained if drained else None,
        "cpu_seconds": cpu,
        "cpu_seconds_per_1000": {role: cpu[role] * 1000 / len(ids) for role in PIPELINE_ROLES},
        "sqs_calls": calls,
        "sqs_calls_per_email": calls["total"] / len(ids),
        "ses_calls": snapshot["calls"].get("ses", {}),
        "ledger": ledger_figures(ledger),
    }


def run(options: Options) -> Result:
    count = options.count_for(NAME)
    with BenchStack(options, NAME) as stack:
        ids = preload(stack, options, count)
        figures = drain_preloaded(stack, ids)
    go = reference.pipeline_reference(count) or {}
    data = {
        "benchmark": NAME,
        "options": options.described(),
        "sendgrid_latency_ms": options.sendgrid_latency_ms,
        **figures,
        "reference_go": reference.PIPELINE,
    }
    ledger = figures["ledger"]
    per_1000 = figures["cpu_seconds_per_1000"]
    table = Table(
        f"pipeline: {count} preloaded emails, SendGrid stand-in at "
        f"{options.sendgrid_latency_ms} ms",
        ["", "ours", "Go"],
        [
            ["drain seconds", figures["drain_seconds"], None],
            ["emails/s", figures["emails_per_second"], go.get("emails_per_second")],
            ["duplicates", ledger["duplicates"], go.get("duplicates")],
            ["lost", ledger["lost"], None],
            ["SQS calls / email", figures["sqs_calls_per_email"], None],
            *[[f"CPU s / 1,000: {role}", per_1000[role], None] for role in PIPELINE_ROLES],
        ],
    )
    return Result(NAME, data, [table], [f"delivered by {ledger['delivered_by']}"])
