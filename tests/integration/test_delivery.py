"""Delivery through real provider workers: every accepted email is sent exactly once, a
permanent rejection is sent by the other provider, and health-routed failover (DESIGN.md
sections 2, 5, 5.4, 5.6, 6, 9, 9.2). Poison messages and a worker killed mid-batch are the
system suite's scenarios (``tests/system/test_faults.py``).

One provider worker (``-Q ses,sendgrid``, as the Procfile runs it) serves the whole module;
the pipeline runs in the test process (``run_pipeline(dispatch_batch)``), so each test decides
when it runs and sees every run's report. SendGrid's outage and recovery are played by the
stand-in (``fail_rate``/``fail_status``) while emails keep arriving through the API every
``PAUSE`` seconds, so every run's split and the health it was based on can be checked.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub
from dispatch import health_store
from dispatch.health import HealthState
from emails.models import Email
from tests import harness
from tests.harness.fixtures import GroupFactory

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

# An allowed sender (api.allowed_senders: example.com) that moto's SES has not verified.
UNVERIFIED_IN_MOTO = "news@EXAMPLE.COM"
THRESHOLD = 3
PAUSE = 0.5  # seconds between pipeline runs, as beat's interval would be
PER_RUN = 10  # emails accepted through the API before each run


# The workers' breaker reopens after this long: a test that starts right after an outage test
# finds it closed again, so that every probe dispatched to SendGrid reaches it (the breaker's
# holding back of a failing provider's calls is proven by tests/dispatch/test_sending.py).
BREAKER_COOLDOWN = 0.2


@pytest.fixture(scope="module")
def provider_worker(module_processes: GroupFactory) -> harness.ProcessGroup:
    group = module_processes(
        "delivery", overrides={"health": {"breaker_cooldown_seconds": BREAKER_COOLDOWN}}
    )
    group.worker("providers", ["ses", "sendgrid"], concurrency=4)
    return group


@pytest.fixture
def ready(
    provider_worker: harness.ProcessGroup, clean_slate: None, gomail_overrides: Any
) -> harness.ProcessGroup:
    return provider_worker


@pytest.fixture
def thresholds(ready: harness.ProcessGroup, gomail_overrides: Any) -> harness.ProcessGroup:
    """``ready``, with THRESHOLD failures or passes in a row to flip SendGrid's health."""
    gomail_overrides({"health": {"unhealthy_threshold": THRESHOLD, "healthy_threshold": THRESHOLD}})
    return ready


def seed_sendgrid_unhealthy() -> None:
    """SendGrid where an outage left it (the pipeline is the only writer, and none runs yet)."""
    health_store.save_state(
        "sendgrid",
        HealthState(
            healthy=False,
            consecutive_failures=THRESHOLD,
            changed_at=timezone.now(),
            last_error="HTTP 500: outage (seeded by the test)",
        ),
    )


def settle(ids: list[str], timeout: float = 60) -> list[harness.PipelineRun]:
    return harness.drive_pipeline(lambda: harness.settled(ids), timeout)


def test_two_hundred_emails_through_the_api_are_each_sent_once_by_both_providers(
    ready: harness.ProcessGroup,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    started = time.monotonic()
    ids = harness.send_through_api(client_with_key, 200)
    accepted = time.monotonic()

    runs = settle(ids, timeout=120)

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    print(
        f"200 emails: accepted in {accepted - started:.1f}s, settled in "
        f"{time.monotonic() - accepted:.1f}s over {len(runs)} pipeline runs; {ledger.summary()}"
    )
    ledger.assert_each_sent_once()
    by_ses, by_sendgrid = ledger.delivered_by("ses"), ledger.delivered_by("sendgrid")
    assert by_ses + by_sendgrid == 200
    # Both healthy: an equal split in every run (a remainder alternates between them).
    assert abs(by_ses - by_sendgrid) <= len(runs), (by_ses, by_sendgrid)
    assert sum(run.report.read for run in runs) == 200  # nothing was read twice
    assert ledger.stub_attempts == by_sendgrid


def _assert_both_healthy() -> None:
    harness.run_pipeline_once()  # folds the last outcomes
    for name, state in harness.health_states().items():
        assert state.healthy and state.consecutive_failures == 0, (name, state)


def assert_rejected_by_one_sent_by_the_other(
    ids: list[str],
    runs: list[harness.PipelineRun],
    ledger: harness.Ledger,
    *,
    rejecting: str,
    reason: str,
) -> list[str]:
    """Every email was sent once, all by the provider that is not ``rejecting``; those the
    split gave to ``rejecting`` were rejected there (``reason`` in the rejection) and sent by
    the other at once, never dead-lettered; both providers stay healthy (a rejection is the
    message's fault, not the provider's). Returns the rejected ids."""
    other = next(name for name in ("ses", "sendgrid") if name != rejecting)
    ledger.assert_each_sent_once()
    assert ledger.delivered_by(other) == len(ids)
    rejected = [i for i in ids if rejecting in ledger.rejections[i]]
    assert len(rejected) == sum(run.sent_to.get(rejecting, 0) for run in runs) > 0
    assert all(reason in ledger.rejections[i][rejecting] for i in rejected)
    assert not ledger.dead
    _assert_both_healthy()
    return rejected


def test_sendgrid_rejecting_every_message_as_invalid_sends_them_through_ses(
    ready: harness.ProcessGroup,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    sendgrid_stub.configure(fail_rate=1, fail_status=400)
    ids = harness.send_through_api(client_with_key, 20)

    runs = settle(ids)

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    rejected = assert_rejected_by_one_sent_by_the_other(
        ids, runs, ledger, rejecting="sendgrid", reason="HTTP 400"
    )
    assert ledger.stub_attempts == len(rejected)  # one attempt each at SendGrid


def test_ses_rejecting_every_message_sends_them_through_sendgrid(
    ready: harness.ProcessGroup,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    # moto's SES refuses a sender outside the verified identities: MessageRejected. It compares
    # the domain case-sensitively, so an upper-case example.com (an allowed sender of ours,
    # compared case-insensitively) is outside them.
    ids = harness.send_through_api(client_with_key, 20, fromEmail=UNVERIFIED_IN_MOTO)

    runs = settle(ids)

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    assert_rejected_by_one_sent_by_the_other(
        ids, runs, ledger, rejecting="ses", reason="MessageRejected"
    )


def test_a_message_every_provider_rejects_is_dead_lettered_with_each_reason(
    ready: harness.ProcessGroup,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    sendgrid_stub.configure(fail_rate=1, fail_status=400)
    ids = harness.send_through_api(client_with_key, 6, fromEmail=UNVERIFIED_IN_MOTO)

    settle(ids)

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    assert ledger.status_counts == {"dead": 6}, ledger.summary()
    assert not any(ledger.deliveries(i) for i in ids)
    for email_id in ids:
        [dead] = ledger.dead_for(email_id)
        reason = dead.attributes["reason"]
        assert reason.startswith("rejected by every provider: "), reason
        assert "ses: MessageRejected" in reason and "sendgrid: HTTP 400" in reason, reason
        assert json.loads(dead.body)["id"] == email_id
        assert Email.objects.get(id=email_id).last_error == reason
    _assert_both_healthy()


# --- failover ------------------------------------------------------------------------------


def sendgrid_health(run: harness.PipelineRun) -> HealthState:
    return run.health_after["sendgrid"]


def batches_to(provider: str, run: harness.PipelineRun) -> int:
    """How many batches a run dispatched to ``provider`` (its share cut by batch size)."""
    return -(-run.sent_to.get(provider, 0) // settings.GOMAIL.pipeline.batch_size)


def assert_probes_only(runs: list[harness.PipelineRun]) -> None:
    """Runs that split with SendGrid unhealthy gave it exactly one message (a probe) whenever
    SES could have one first, never more (with one message, a probe turn gives it to SendGrid:
    ``health.low_traffic_probe_every_runs``)."""
    for run in runs:
        assert run.report.health["sendgrid"] is False
        expected = {1} if run.report.read >= 2 else {0, run.report.read}
        assert run.sent_to.get("sendgrid", 0) in expected, (run.report, expected)


def test_sendgrid_outage_gets_only_probes_after_the_threshold_and_loses_nothing(
    thresholds: harness.ProcessGroup,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    ids: list[str] = []

    def feed(run_index: int) -> None:
        if run_index < 8:
            ids.extend(harness.send_through_api(client_with_key, PER_RUN))

    started = time.monotonic()
    runs = harness.drive_pipeline(
        lambda: len(ids) == 8 * PER_RUN and harness.settled(ids), 120, pause=PAUSE, before_each=feed
    )

    # The run that first split with SendGrid unhealthy, and the state the run before left.
    flip = next(i for i, run in enumerate(runs) if not sendgrid_health(run).healthy)
    before = sendgrid_health(runs[flip - 1]) if flip else HealthState()
    after = sendgrid_health(runs[flip])
    # It turned on the THRESHOLD-th consecutive failing batch, folded in dispatch order.
    assert before.healthy and before.consecutive_failures < THRESHOLD, before
    assert after.consecutive_failures >= THRESHOLD and after.consecutive_passes == 0, after
    assert "HTTP 500" in after.last_error and after.changed_at is not None
    sendgrid_batches_while_healthy = sum(batches_to("sendgrid", run) for run in runs[:flip])
    assert sendgrid_batches_while_healthy >= THRESHOLD
    # From then on SendGrid only ever got a probe, and stayed unhealthy (every probe failed).
    assert_probes_only(runs[flip:])
    assert all(not sendgrid_health(run).healthy for run in runs[flip:])

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    ledger.assert_each_sent_once()
    assert ledger.delivered_by("ses") == len(ids)
    # At most one attempt at SendGrid per message dispatched to it (the worker's breaker holds
    # back the rest of a batch once calls keep failing); each one failed and came back.
    sent_to_sendgrid = sum(run.sent_to.get("sendgrid", 0) for run in runs)
    assert ledger.stub_attempts == ledger.stub_failures <= sent_to_sendgrid
    assert not ledger.dead
    print(
        f"outage: SendGrid unhealthy from run {flip + 1} "
        f"({runs[flip].started - started:.1f}s), after {sendgrid_batches_while_healthy} "
        f"SendGrid batches dispatched while healthy ({before.consecutive_failures} failing "
        f"observations folded before, {after.consecutive_failures} at the flip); then "
        f"{len(runs) - flip} runs with {sum(r.sent_to.get('sendgrid', 0) for r in runs[flip:])} "
        f"probes; {len(runs)} runs, {time.monotonic() - started:.1f}s; {ledger.summary()}"
    )


def test_sendgrid_recovers_after_the_threshold_of_passing_probes_and_takes_half_again(
    thresholds: harness.ProcessGroup,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    seed_sendgrid_unhealthy()
    ids: list[str] = []
    runs: list[harness.PipelineRun] = []
    extra_runs = 6  # runs fed with emails once SendGrid is healthy again

    def recovered_in() -> int | None:
        """Index of the first run that split with SendGrid healthy again."""
        return next((i for i, run in enumerate(runs) if sendgrid_health(run).healthy), None)

    def feed(run_index: int) -> None:
        flip = recovered_in()
        if flip is None or run_index - flip < extra_runs:
            ids.extend(harness.send_through_api(client_with_key, PER_RUN))

    def until() -> bool:
        flip = recovered_in()
        return flip is not None and len(runs) - flip > extra_runs and harness.settled(ids)

    started = time.monotonic()
    harness.drive_pipeline(until, 120, pause=PAUSE, before_each=feed, runs=runs)

    flip = recovered_in()
    assert flip is not None and flip > 0
    before, after = sendgrid_health(runs[flip - 1]), sendgrid_health(runs[flip])
    # Healthy again on the THRESHOLD-th consecutive passing probe, not before.
    assert not before.healthy and before.consecutive_passes < THRESHOLD, before
    assert after.healthy and after.consecutive_passes >= THRESHOLD, after
    assert after.consecutive_failures == 0
    assert_probes_only(runs[:flip])
    probes = sum(run.sent_to.get("sendgrid", 0) for run in runs[:flip])
    assert probes >= THRESHOLD
    # Healthy again: an equal split of every run (one message apart at most, for odd counts).
    shares = [(r.sent_to.get("ses", 0), r.sent_to.get("sendgrid", 0)) for r in runs[flip:]]
    assert all(abs(ses - sendgrid) <= 1 for ses, sendgrid in shares), shares
    fed_after = sum(ses + sendgrid for ses, sendgrid in shares)
    sendgrid_after = sum(sendgrid for _, sendgrid in shares)
    assert fed_after >= extra_runs * PER_RUN
    odd_runs = sum((ses + sendgrid) % 2 for ses, sendgrid in shares)
    assert abs(fed_after - 2 * sendgrid_after) <= odd_runs, shares

    ledger = harness.take_ledger(ids, sendgrid_stub, integration_aws.url)
    ledger.assert_each_sent_once()
    assert ledger.delivered_by("sendgrid") == probes + sendgrid_after
    print(
        f"recovery: {probes} probes over {flip} runs, healthy from run {flip + 1} "
        f"({runs[flip].started - started:.1f}s after the first run); afterwards SendGrid took "
        f"{sendgrid_after} of {fed_after} ({sendgrid_after / fed_after:.0%}); {ledger.summary()}"
    )


def test_at_one_email_a_run_a_recovered_sendgrid_is_probed_and_healthy_again(
    thresholds: harness.ProcessGroup,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
    integration_aws: MotoServer,
) -> None:
    """One message a run would always go to the healthy provider: a probe turn (one run in
    ``health.low_traffic_probe_every_runs``) sends it to the unhealthy one instead."""
    seed_sendgrid_unhealthy()
    ids: list[str] = []
    runs: list[harness.PipelineRun] = []
    for _ in range(20):
        ids.extend(harness.send_through_api(client_with_key, 1))
        runs.append(harness.run_pipeline_once())
        harness.wait_for(lambda: harness.records_final(ids[-1:]), 15, "the run's email sent")

    unhealthy_runs = [run for run in runs if not run.report.health["sendgrid"]]
    probes = sum(run.sent_to.get("sendgrid", 0) for run in unhealthy_runs)
    every = settings.GOMAIL.health.low_traffic_probe_every_runs
    # A probe on one run in ``every`` while unhealthy, not more, and enough to recover.
    assert THRESHOLD <= probes <= -(-len(unhealthy_runs) // every), (probes, len(unhealthy_runs))
    assert len(unhealthy_runs) < len(runs)  # healthy again within the 20 runs
    # The last probes' outcomes are folded by the next runs (no email left to probe with).
    harness.wait_for(
        lambda: harness.run_pipeline_once().health_after["sendgrid"].healthy,
        10,
        "SendGrid healthy again",
    )
    harness.wait_for(lambda: harness.settled(ids), 30, "every email settled")
    harness.take_ledger(ids, sendgrid_stub, integration_aws.url).assert_each_sent_once()
