"""The ingest client's retries when SQS stored a ``SendMessageBatch`` but its answer was lost:
the real API, a real moto behind the AWS fault proxy (``tests/system/faults.py``), and the
worker's ``send_batch`` for the copy SQS kept (docs/reliability.md, "Accepted means durable")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from devtools.moto_server import MotoServer
from dispatch.sending import send_batch
from emails.models import Email
from emails.queueing import INGEST_ATTEMPTS, ingest_client
from tests.clients import VALID_EMAIL
from tests.dispatch.realparts import levels, receive_exactly
from tests.harness.queues import ses_messages
from tests.system.faults import LOSE_ANSWER, PASS, UNREACHABLE, AwsFaultProxy

# transaction=True: send_batch sends from threads with their own database connections.
pytestmark = pytest.mark.django_db(transaction=True)

SEND_MESSAGE_BATCH = (b"AmazonSQS.SendMessageBatch",)


@pytest.fixture
def proxy(moto_server: MotoServer, aws, gomail_config) -> Iterator[AwsFaultProxy]:
    """Every AWS call through a fault proxy in front of moto, until ``straight_to_moto``."""
    fault_proxy = AwsFaultProxy(moto_server.url, "ingest")
    gomail_config(aws={"endpoint_url": fault_proxy.url})
    yield fault_proxy
    fault_proxy.stop()


def straight_to_moto(gomail_config, moto_server: MotoServer) -> None:
    """The worker's part, and the test's checks, without the proxy."""
    gomail_config(aws={"endpoint_url": moto_server.url})


def post_email(client) -> object:
    return client.post(
        "/email/send", data=json.dumps({"email": VALID_EMAIL}), content_type="application/json"
    )


def test_the_ingest_client_tries_three_times_in_standard_mode() -> None:
    # Pinned: docs/reliability.md argues why the retries are harmless (the withdrawal).
    assert INGEST_ATTEMPTS == 3
    assert ingest_client().meta.config.retries == {"total_max_attempts": 3, "mode": "standard"}


def test_a_stored_batch_whose_answer_was_lost_is_a_503_and_its_copy_is_never_sent(
    providers, sendgrid_stub, moto_server, client_with_key, gomail_config, proxy
) -> None:
    # The first attempt reaches SQS and its answer is lost; the retries find SQS unreachable.
    proxy.set("sqs", LOSE_ANSWER, match=SEND_MESSAGE_BATCH, then=UNREACHABLE)

    response = post_email(client_with_key)

    assert response.status_code == 503
    assert proxy.counts()[("sqs", LOSE_ANSWER)] == 1
    assert proxy.counts()[("sqs", UNREACHABLE)] == INGEST_ATTEMPTS - 1
    record = Email.objects.get()
    assert record.status == Email.Status.WITHDRAWN
    straight_to_moto(gomail_config, moto_server)
    # SQS did keep it; the worker that reads it finds the record withdrawn (records.claim).
    copies = receive_exactly(1, queue=record.queue)

    outcome = send_batch("sendgrid", uuid.uuid4().hex, copies, providers=providers)

    assert outcome.provider_answers == 0
    assert sendgrid_stub.snapshot()["attempts"] == 0
    assert ses_messages(moto_server.url) == []
    assert levels(record.queue) == (0, 0)
    assert Email.objects.get(id=record.id).status == Email.Status.WITHDRAWN


def test_a_batch_stored_twice_by_a_retry_is_a_200_and_delivered_once(
    providers, sendgrid_stub, moto_server, client_with_key, gomail_config, proxy
) -> None:
    # The first attempt's answer is lost, the retry is answered: SQS holds two copies.
    proxy.set("sqs", LOSE_ANSWER, match=SEND_MESSAGE_BATCH, then=PASS)

    response = post_email(client_with_key)

    assert response.status_code == 200
    record = Email.objects.get(id=response.json()["messageId"])
    straight_to_moto(gomail_config, moto_server)
    first, second = receive_exactly(2, queue=record.queue)
    assert first.body == second.body

    for copy in (first, second):
        send_batch("sendgrid", uuid.uuid4().hex, [copy], providers=providers)

    assert sendgrid_stub.snapshot()["attempts"] == 1
    assert levels(record.queue) == (0, 0)
    assert Email.objects.get(id=record.id).status == Email.Status.SENT
