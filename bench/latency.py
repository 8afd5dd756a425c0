"""``latency``: a light steady load (``--rate`` emails/s, default 2, for ``--seconds``) through
the API with the whole service running; per email, the time from the API's 200 to the provider
call: the SendGrid stand-in's ``receivedAt``, or the time the bench's moto (or the counting
proxy) received SES's ``SendEmail``. p50/p99 over all emails and per provider.
"""

from __future__ import annotations

from bench.deliveries import Copy, ledger_figures, provider_copies, take_ledger, wait_all_sent
from bench.ingest import warm_up
from bench.load import EmailPoster, LoadPlan, run_load
from bench.options import Options
from bench.report import Result, Table, percentile
from bench.stack import BenchStack

NAME = "latency"
CLIENTS = 4  # enough that a slow answer never holds the next send back
SETTLE_SECONDS = 120


def first_copies(copies: list[Copy]) -> dict[str, Copy]:
    """Email id -> its first copy at any provider."""
    first: dict[str, Copy] = {}
    for copy in sorted(copies, key=lambda c: c.at):
        first.setdefault(copy.email_id, copy)
    return first


def run(options: Options) -> Result:
    seconds = options.latency_seconds()
    total = max(1, round(options.rate * seconds))
    with BenchStack(options, NAME) as stack:
        stack.start_web(wait=False)
        stack.start_pipeline()
        stack.wait_web()
        warm_up(stack)
        stack.calls.reset()
        stack.stub.reset()
        plan = LoadPlan(
            total=total,
            concurrency=CLIENTS,
            processes=1,
            seconds_limit=seconds + 60,
            rate_per_second=options.rate,
        )
        load = run_load(plan, EmailPoster(stack.api_url, stack.api_key))
        accepted = {o.detail: o.answered_at for o in load.accepted}
        drained = wait_all_sent(list(accepted), SETTLE_SECONDS)
        calls = stack.calls.snapshot()
        copies, _ = provider_copies(list(accepted), stack.stub, calls)
        ledger = ledger_figures(take_ledger(list(accepted), stack.stub, calls))
    reached = first_copies(copies)
    latencies = {
        email_id: (reached[email_id].provider, (reached[email_id].at - at) * 1000)
        for email_id, at in accepted.items()
        if email_id in reached
    }
    rows = []
    for provider in ("all", "ses", "sendgrid"):
        values = [ms for p, ms in latencies.values() if provider in ("all", p)]
        rows.append(
            {
                "provider": provider,
                "emails": len(values),
                "p50_ms": percentile(values, 0.5),
                "p99_ms": percentile(values, 0.99),
                "max_ms": max(values, default=None),
            }
        )
    data = {
        "benchmark": NAME,
        "options": options.described(),
        "rate_per_second": options.rate,
        "seconds": seconds,
        "sent": len(load.outcomes),
        "accepted": len(accepted),
        "non_200": len(load.refused),
        "all_sent_within_seconds": drained,
        "rows": rows,
        "ledger": ledger,
    }
    table = Table(
        f"latency: accept to provider call, {options.rate:g} emails/s for {seconds:g} s",
        ["provider", "emails", "p50 ms", "p99 ms", "max ms"],
        [[r["provider"], r["emails"], r["p50_ms"], r["p99_ms"], r["max_ms"]] for r in rows],
    )
    return Result(NAME, data, [table])
