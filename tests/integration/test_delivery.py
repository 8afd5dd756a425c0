"""Delivery through real provider workers: every accepted email is sent exactly once, poison
goes to the dead-letter queue with its reason, a permanent rejection is sent by the other
provider (DESIGN.md sections 2, 5, 6, 9).

One provider worker (``-Q ses,sendgrid``, as the Procfile runs it) serves the whole module;
the pipeline runs in the test process (``run_pipeline(dispatch_batch)``), so each test decides
when it runs and sees every run's report.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub
from emails.models import Email
from tests import harness
from tests.harness.fixtures import GroupFactory

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

# An allowed sender (api.allowed_senders: example.com) that moto's SES has not verified.
UNVERIFIED_IN_MOTO = "news@EXAMPLE.COM"


@pytest.fixture(scope="module")
def provider_worker(module_processes: GroupFactory) -> harness.ProcessGroup:
    group = module_processes("delivery")
    group.worker("providers", ["ses", "sendgrid"], concurrency=4)
    return group


@pytest.fixture
def ready(
    provider_worker: harness.ProcessGroup, clean_slate: None, gomail_overrides: Any
) -> harness.ProcessGroup:
    return provider_worker


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


def test_undecodable_messages_go_to_the_dead_letter_queue_with_their_reason(
    ready: harness.ProcessGroup, sendgrid_stub: SendGridStub, integration_aws: MotoServer
) -> None:
    queue = harness.incoming_queues()[0]
    poison = {
        "this is not JSON {": "undecodable message: body is not JSON",
        json.dumps({"email": "not an object"}): (
            'undecodable message: body is not an object with an "email" object'
        ),
        json.dumps({"email": {"fromEmail": harness.SENDER, "body": "no recipient"}}): (
            "undecodable message: missing required field(s): toEmail"
        ),
    }
    sqs_ids = {harness.enqueue_raw(body, queue): body for body in poison}
    good = harness.enqueue_wire(4)  # in the same runs, to the same workers

    harness.drive_pipeline(
        lambda: harness.settled(good) and len(harness.dead_letters()) == len(poison), 60
    )

    ledger = harness.take_ledger(good, sendgrid_stub, integration_aws.url)
    ledger.assert_each_sent_once()
    assert {d.attributes["sourceMessageId"] for d in ledger.dead} == set(sqs_ids)
    for dead in ledger.dead:
        body = sqs_ids[dead.attributes["sourceMessageId"]]
        assert dead.body == body  # kept as it was, for an operator to inspect or replay
        assert dead.attributes["reason"].startswith(poison[body]), dead.attributes
        assert dead.attributes["sourceQueue"] == queue
        assert dead.attributes["receiveCount"] == "1"
        assert "emailId" not in dead.attributes
    # The incoming queue no longer holds them (settled() saw it empty): moved, not copied.
    assert harness.queue_counts(queue) == {"visible": 0, "in_flight": 0, "delayed": 0}


def _assert_both_healthy() -> None:
    harness.run_pipeline_once()  # folds the last outcomes
    for name, state in harness.health_states().items():
        assert state.healthy and state.consecutive_failures == 0, (name, state)


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
    ledger.assert_each_sent_once()
    assert ledger.delivered_by("ses") == 20
    rejected = [i for i in ids if "sendgrid" in ledger.rejections[i]]
    # Those the split gave to SendGrid were rejected there once, then sent by SES at once.
    assert len(rejected) == sum(run.sent_to.get("sendgrid", 0) for run in runs) > 0
    assert ledger.stub_attempts == len(rejected)
    assert all("HTTP 400" in ledger.rejections[i]["sendgrid"] for i in rejected)
    assert not ledger.dead
    _assert_both_healthy()  # a rejection is the message's fault, not the provider's


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
    ledger.assert_each_sent_once()
    assert ledger.delivered_by("sendgrid") == 20
    rejected = [i for i in ids if "ses" in ledger.rejections[i]]
    assert len(rejected) == sum(run.sent_to.get("ses", 0) for run in runs) > 0
    assert all("MessageRejected" in ledger.rejections[i]["ses"] for i in rejected)
    assert not ledger.dead
    _assert_both_healthy()


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
