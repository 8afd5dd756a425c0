"""``ceiling``: ``ingest`` with the constant-time SQS stand-in (``bench.sqs_constant``) in place
of moto: the API's own cost and rate, apart from its SQS's."""

from __future__ import annotations

from bench import reference
from bench.ingest import ingest_table, measure_ingest, warm_up
from bench.options import Options
from bench.report import Result
from bench.stack import BenchStack

NAME = "ceiling"


def run(options: Options) -> Result:
    count = options.count_for(NAME)
    with BenchStack(options, NAME, sqs="constant") as stack:
        stack.start_web()
        warm_up(stack)
        rows = [measure_ingest(stack, options, c, count) for c in options.concurrency]
        api = stack.web_described()
    data = {
        "benchmark": NAME,
        "options": {**options.described(), "sqs_endpoint": "bench.sqs_constant"},
        "emails_per_concurrency": count,
        "api": api,
        "rows": rows,
        "reference_go": {"requests_per_second": reference.CEILING_REQUESTS_PER_SECOND},
    }
    table = ingest_table(
        f"ceiling (constant-time SQS): {count} emails per concurrency",
        rows,
        reference.CEILING_REQUESTS_PER_SECOND,
        {},
    )
    return Result(NAME, data, [table])
