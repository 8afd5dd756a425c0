"""Fault injection over the running service (issue 6): nothing accepted is ever lost.

Each test is a scenario on the shared stack (``conftest.stack``): emails go in through the real
API under gunicorn, beat drives the pipeline, a fault is injected and healed, and the ledger
check (``ledger.judge``) requires every accepted ``messageId`` to end sent exactly once (at
moto's SES or the SendGrid stand-in) or in the dead-letter queue with a reason. Duplicates are
allowed only where a provider call's outcome was unknown (a timeout, a crash), and never more
than the record's ``unknown_outcomes``.

Timings: 0.5 s pipeline interval, 30 s SQS visibility (the minimum), 1-2 s backoff, health
thresholds 3/3, SendGrid timeout 3 s (``stack.SYSTEM_OVERRIDES``).
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid

import pytest
from django.conf import settings

from emails.models import Attempt, Email
from tests import harness
from tests.system.conftest import Scenario, database_name
from tests.system.faults import DELAY, THROTTLE, UNREACHABLE
from tests.system.stack import SENDGRID_TIMEOUT_SECONDS

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

EMAILS = 30
DRAIN_TIMEOUT = 120
SERVICE_UNAVAILABLE = {"errors": {"base": "Service unavailable"}}


def wait_failures(scenario: Scenario, provider: str, at_least: int, timeout: float = 30) -> int:
    """Wait until ``provider`` has failed ``at_least`` sends (recorded attempts): the fault
    really was in the way. Returns the count."""

    def failed() -> int:
        count = Attempt.objects.filter(provider=provider).exclude(outcome="sent").count()
        return count if count >= at_least else 0

    return harness.wait_for(failed, timeout, f"{at_least} failed sends through {provider}", 0.5)


def run_outage(
    scenario: Scenario,
    *,
    provider: str,
    at_least: int = 6,
    duplicates_allowed: bool = False,
    note: str = "",
) -> None:
    """Send while the fault (already set) lasts, heal once ``provider`` failed ``at_least``
    sends, and check that everything was delivered."""
    ingest = scenario.stack.send(scenario.key, EMAILS)
    assert not ingest.refused, ingest.refused[:3]
    failures = wait_failures(scenario, provider, at_least)
    scenario.heal()
    drain = scenario.wait_drained(ingest.accepted, DRAIN_TIMEOUT)
    scenario.check(
        ingest.accepted,
        drain,
        duplicates_allowed=duplicates_allowed,
        note=note or f"{failures}+ failed {provider} sends before the heal",
    )


@pytest.mark.timeout(120)
def test_baseline(scenario: Scenario) -> None:
    ingest = scenario.stack.send(scenario.key, EMAILS)
    assert not ingest.refused, ingest.refused[:3]
    drain = scenario.wait_drained(ingest.accepted, 60)
    taken = scenario.check(ingest.accepted, drain)
    # Both providers took a share (the split is even while both are healthy).
    assert taken.delivered_by("ses") and taken.delivered_by("sendgrid"), taken.summary()


@pytest.mark.timeout(180)
def test_sendgrid_500_then_recovers(scenario: Scenario) -> None:
    scenario.stack.stub.configure(failRate=1, failStatus=500)
    run_outage(scenario, provider="sendgrid")


@pytest.mark.timeout(180)
def test_sendgrid_timeout(scenario: Scenario) -> None:
    # Slower than the client's timeout: each send's outcome is unknown, and the stand-in (as
    # SendGrid would) still delivers it, so a copy sent again elsewhere is a counted duplicate.
    scenario.stack.stub.configure(delayMs=int(SENDGRID_TIMEOUT_SECONDS * 1000) + 1500)
    run_outage(
        scenario,
        provider="sendgrid",
        at_least=3,
        duplicates_allowed=True,
        note="timed-out sends are delivered late by the stand-in: duplicates of unknown outcome",
    )


@pytest.mark.timeout(180)
def test_sendgrid_429_with_reset(scenario: Scenario) -> None:
    retry_after = 3
    scenario.stack.stub.configure(failRate=1, failStatus=429, retryAfterSeconds=retry_after)
    run_outage(scenario, provider="sendgrid")
    # Retry-After is honoured: an email refused with a 429 is not tried again (through any
    # provider) before it says, though the backoff alone would be 1-2 s.
    attempts: dict[str, list[Attempt]] = {}
    for attempt in Attempt.objects.order_by("at"):
        attempts.setdefault(str(attempt.email_id), []).append(attempt)
    gaps = [
        (later.at - earlier.at).total_seconds()
        for history in attempts.values()
        for earlier, later in itertools.pairwise(history)
        if earlier.provider == "sendgrid" and earlier.outcome == "transient"
    ]
    assert gaps, "no email was retried after a 429"
    assert min(gaps) >= retry_after - 0.5, sorted(gaps)[:5]


@pytest.mark.timeout(180)
def test_sendgrid_401_bad_key(scenario: Scenario) -> None:
    scenario.stack.stub.configure(failRate=1, failStatus=401)
    run_outage(scenario, provider="sendgrid")
    assert Attempt.objects.filter(provider="sendgrid", outcome="provider_config").exists()


@pytest.mark.timeout(180)
def test_ses_throttling(scenario: Scenario) -> None:
    scenario.stack.aws_fault("ses", THROTTLE)
    run_outage(scenario, provider="ses")
    assert scenario.stack.aws_count("ses", THROTTLE) >= 6


@pytest.mark.timeout(180)
def test_ses_unreachable(scenario: Scenario) -> None:
    scenario.stack.aws_fault("ses", UNREACHABLE)
    # A dropped connection after the request was written: SES may have acted on it, so the
    # outcome is unknown (no copy reached moto here, so no duplicate is expected).
    run_outage(scenario, provider="ses", note="connections to SES dropped mid-request")
    assert scenario.stack.aws_count("ses", UNREACHABLE) >= 6


@pytest.mark.timeout(240)
def test_both_providers_down_for_many_runs(scenario: Scenario) -> None:
    stack = scenario.stack
    stack.stub.configure(failRate=1, failStatus=500)
    stack.aws_fault("ses", THROTTLE)
    ingest = stack.send(scenario.key, EMAILS)
    assert not ingest.refused, ingest.refused[:3]
    # Longer than many pipeline runs (0.5 s apart) and many backoffs (1-2 s).
    outage = 15
    time.sleep(outage)
    failed = Attempt.objects.exclude(outcome="sent").count()
    assert failed >= 2 * 3, failed
    assert not Email.objects.filter(id__in=ingest.accepted, status=Email.Status.SENT).exists()
    scenario.heal()
    drain = scenario.wait_drained(ingest.accepted, DRAIN_TIMEOUT)
    scenario.check(
        ingest.accepted, drain, note=f"{outage}s outage of both, {failed} failed sends in it"
    )


@pytest.mark.timeout(180)
def test_poison_messages_mixed_in(scenario: Scenario) -> None:
    stack = scenario.stack
    marker = uuid.uuid4().hex
    wire = {"email": harness.email_fields(0), "id": str(uuid.uuid4())}
    missing = json.loads(json.dumps(wire))
    del missing["email"]["toEmail"]
    poison = {
        "not JSON": f"this is not JSON {marker}",
        "wrong shape": json.dumps({"email": f"not an object {marker}"}),
        "missing field": json.dumps({**missing, "marker": marker}),
    }
    first = stack.send(scenario.key, EMAILS // 2)
    queues = harness.incoming_queues()
    poison_ids = {
        kind: harness.enqueue_raw(body, queues[i % len(queues)])
        for i, (kind, body) in enumerate(poison.items())
    }
    second = stack.send(scenario.key, EMAILS // 2, start=EMAILS // 2)
    ingest = [*first.accepted, *second.accepted]
    assert not first.refused and not second.refused
    drain = scenario.wait_drained(ingest, DRAIN_TIMEOUT)
    letters = {d.body: d for d in harness.dead_letters()}
    for kind, body in poison.items():
        assert body in letters, f"the {kind} message is not in the dead-letter queue"
        reason = letters[body].attributes.get("reason", "")
        assert reason.startswith("undecodable message"), (kind, reason)
    scenario.check(
        ingest,
        drain,
        note=f"{len(poison_ids)} poison messages ({', '.join(poison)}) dead-lettered with reasons",
    )


@pytest.mark.timeout(240)
def test_provider_worker_killed_mid_batch(scenario: Scenario) -> None:
    stack = scenario.stack
    # Slow answers (within the client's timeout): the kill finds sends in flight.
    stack.stub.configure(delayMs=int(SENDGRID_TIMEOUT_SECONDS * 1000) - 500)
    ingest = stack.send(scenario.key, EMAILS)
    ids = ingest.accepted

    def sending() -> set[str]:
        rows = Email.objects.filter(id__in=ids, status=Email.Status.SENDING)
        return {str(i) for i in rows.values_list("id", flat=True)}

    harness.wait_for(sending, 30, "a batch to be sending")
    time.sleep(0.8)
    in_flight = sending()
    worker = stack.processes["providers"]
    interrupted = worker.tasks("received") - worker.tasks("succeeded")
    worker.kill()
    assert in_flight and interrupted, worker.tail()
    scenario.heal()
    stack.start_role("providers")
    # In-flight messages come back after the SQS visibility timeout (30 s).
    drain = scenario.wait_drained(ids, DRAIN_TIMEOUT)
    taken = scenario.check(
        ids,
        drain,
        duplicates_allowed=True,
        note=f"SIGKILL with {len(in_flight)} emails in flight",
    )
    assert set(taken.duplicates) <= in_flight, (taken.duplicates, in_flight)


@pytest.mark.timeout(240)
def test_pipeline_worker_killed_mid_run(scenario: Scenario) -> None:
    stack = scenario.stack
    # The pipeline worker's calls to the incoming queues take a second each (its Celery
    # broker's do not: a late pipeline task expires unrun): a run lasts several seconds, and
    # the kill lands after it read messages, before it dispatched them all.
    incoming = harness.incoming_queues()
    stack.aws_fault(
        "sqs",
        DELAY,
        roles=["pipeline"],
        delay_seconds=1.0,
        delay_match=tuple(name.encode() for name in incoming),
    )
    ingest = stack.send(scenario.key, EMAILS)
    ids = ingest.accepted
    worker = stack.processes["pipeline"]

    def mid_run() -> set[str]:
        discarded = set(
            re.findall(r"Discarding revoked task: [\w.]+\[([0-9a-f-]+)\]", worker.log_text())
        )
        running = worker.tasks("received") - worker.tasks("succeeded") - discarded
        held = sum(harness.queue_counts(name)["in_flight"] for name in incoming)
        return running if held else set()

    harness.wait_for(mid_run, 60, "a pipeline run holding messages it read")
    worker.kill()
    not_sent = Email.objects.filter(id__in=ids, status=Email.Status.QUEUED).count()
    scenario.heal()
    stack.start_role("pipeline")
    drain = scenario.wait_drained(ids, DRAIN_TIMEOUT)
    scenario.check(ids, drain, note=f"SIGKILL mid-run, {not_sent} emails not yet sent at the kill")


@pytest.mark.timeout(180)
def test_beat_restarted(scenario: Scenario) -> None:
    stack = scenario.stack
    stack.processes["beat"].stop()
    ingest = stack.send(scenario.key, EMAILS)
    time.sleep(3)
    # Without beat nothing runs the pipeline: it is beat, not the test, that drives it.
    waiting = Email.objects.filter(id__in=ingest.accepted, status=Email.Status.QUEUED).count()
    scenario.heal()
    stack.start_role("beat")
    drain = scenario.wait_drained(ingest.accepted, DRAIN_TIMEOUT)
    scenario.check(ingest.accepted, drain, note=f"{waiting} emails waited for beat's restart")
    assert waiting >= EMAILS - 2  # a pipeline task already queued may have run one batch


@pytest.mark.timeout(240)
def test_sqs_unreachable_during_ingest(scenario: Scenario) -> None:
    stack = scenario.stack
    before = stack.send(scenario.key, 10)
    stack.aws_fault("sqs", UNREACHABLE)
    during = stack.send(scenario.key, 20, start=10)
    # Long enough for every worker's broker polls (and the pipeline's reads) to fail too.
    time.sleep(5)
    scenario.heal()
    after = stack.send(scenario.key, 10, start=30)
    accepted = [*before.accepted, *during.accepted, *after.accepted]
    refused = [*before.refused, *during.refused, *after.refused]
    # Every refusal is the contract's 503, and nothing refused was half-accepted.
    assert refused, "the API accepted everything while SQS was unreachable"
    assert all(status == 503 and body == SERVICE_UNAVAILABLE for status, body, _ in refused), (
        refused[:3]
    )
    assert not Email.objects.filter(subject__in=[s for _, _, s in refused]).exists()
    drain = scenario.wait_drained(accepted, DRAIN_TIMEOUT)
    taken = scenario.check(
        accepted,
        drain,
        note=f"API answered {len(accepted)} x 200 and {len(refused)} x 503 "
        f"({len(during.accepted)} x 200 while cut)",
    )
    refused_subjects = {s for _, _, s in refused}
    delivered = {m.get("subject") for m in harness.ses_messages(stack.moto_url)} | {
        m["payload"].get("subject") for m in stack.stub.snapshot()["messages"]
    }
    assert not refused_subjects & delivered, "a refused email was delivered"
    assert taken.status_counts["sent"] == len(accepted)


@pytest.mark.timeout(240)
def test_database_unavailable(scenario: Scenario) -> None:
    if database_name() != "postgresql":
        pytest.skip("the database outage is injected with a TCP proxy: PostgreSQL runs only")
    stack = scenario.stack
    assert stack.db_proxy is not None
    before = stack.send(scenario.key, 10)
    stack.db_proxy.cut()
    during = stack.send(scenario.key, 10, start=10)
    time.sleep(5)  # the pipeline and the workers fail their runs meanwhile
    scenario.heal()
    after = stack.send(scenario.key, 10, start=20)
    accepted = [*before.accepted, *during.accepted, *after.accepted]
    refused = [*before.refused, *during.refused, *after.refused]
    assert during.refused, "the API accepted emails while the database was down"
    assert all(status == 503 and body == SERVICE_UNAVAILABLE for status, body, _ in refused), (
        refused[:3]
    )
    drain = scenario.wait_drained(accepted, DRAIN_TIMEOUT)
    scenario.check(
        accepted,
        drain,
        note=f"API answered {len(accepted)} x 200 and {len(refused)} x 503 "
        f"({stack.db_proxy.refused} connections refused)",
    )


BURST = 2000


@pytest.mark.timeout(600)
def test_burst(scenario: Scenario) -> None:
    stack = scenario.stack
    ingest = stack.send(scenario.key, BURST, clients=16)
    assert not ingest.refused, ingest.refused[:3]
    rate = len(ingest.accepted) / ingest.seconds
    drain = scenario.wait_drained(ingest.accepted, 420)
    scenario.check(
        ingest.accepted,
        drain,
        note=f"{BURST} accepted in {ingest.seconds:.0f}s ({rate:.0f}/s) by 16 clients; "
        f"drain counted from the last one ({settings.GOMAIL.pipeline.batch_size}/batch)",
    )
