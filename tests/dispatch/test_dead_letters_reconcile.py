"""Messages SQS itself moved to the dead-letter queue (``maxReceiveCount`` receives, no
reason): their records are marked dead by a periodic task, without hiding anything (issue #13,
item 1). The move is SQS's own, on the test moto: a redrive policy of two receives."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from dispatch import dead_letters, tasks
from dispatch.sending import send_batch
from emails.models import Email
from gomail_site.aws import aws_client, queue_url
from gomail_site.config import PIPELINE_QUEUE
from tests.dispatch.realparts import incoming_queue, put, receive_exactly, wire_email
from tests.dispatch.sqs_hooks import once, sqs_hook, unreachable
from tests.harness.queues import queue_counts, ses_messages
from tests.operations.support import dead_letter_queue, put_dead_letter, queued_record, receive_all

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

MAX_RECEIVES = 2


def moved_by_sqs(body: str) -> str:
    """Put ``body`` on the first incoming queue and receive it until SQS moves it to the
    dead-letter queue by its redrive policy; returns the dead letter's MessageId."""
    sqs = aws_client("sqs")
    source = queue_url(incoming_queue())
    target = sqs.get_queue_attributes(
        QueueUrl=queue_url(dead_letter_queue()), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    policy = {"deadLetterTargetArn": target, "maxReceiveCount": MAX_RECEIVES}
    sqs.set_queue_attributes(QueueUrl=source, Attributes={"RedrivePolicy": json.dumps(policy)})
    waiting = queue_counts(dead_letter_queue())["visible"]
    message_id = put(body)
    for _ in range(MAX_RECEIVES + 1):  # the receive after the last one moves it
        sqs.receive_message(QueueUrl=source, VisibilityTimeout=0, WaitTimeSeconds=0)
    # Counted, not received: a receive from the dead-letter queue counts as one more.
    assert queue_counts(dead_letter_queue())["visible"] == waiting + 1
    return message_id  # SQS keeps it on the move


def dead_letter_ids() -> set[str]:
    return {message["MessageId"] for message in receive_all(dead_letter_queue())}


def test_the_dead_letter_view_reads_the_email_and_its_receives_from_the_message(aws):
    email = wire_email()
    message_id = moved_by_sqs(email.encode())

    [message] = dead_letters.peek()

    assert message.sqs_message_id == message_id
    assert message.email_id == email.id  # from its body: SQS set no attributes
    assert message.moved_by_sqs
    assert message.receive_count == MAX_RECEIVES
    assert message.reason == f"moved by SQS after {MAX_RECEIVES} receives"


@pytest.mark.parametrize("status", [Email.Status.QUEUED, Email.Status.FAILED, Email.Status.SENDING])
def test_reconcile_marks_the_record_of_a_moved_message_dead(aws, status):
    email = wire_email()
    queued_record(email, status=status, last_error="HTTP 500")
    message_id = moved_by_sqs(email.encode())

    reconciled = dead_letters.reconcile_moved_by_sqs()

    record = Email.objects.get(id=email.id)
    assert (record.status, record.last_error) == (
        Email.Status.DEAD,
        f"moved by SQS after {MAX_RECEIVES} receives",
    )
    assert reconciled == 1
    assert dead_letter_ids() == {message_id}  # the scan hid nothing


@pytest.mark.parametrize("status", [Email.Status.SENT, Email.Status.WITHDRAWN, Email.Status.DEAD])
def test_reconcile_leaves_a_final_record_alone(aws, status):
    email = wire_email()
    queued_record(email, status=status, last_error="as it was")
    moved_by_sqs(email.encode())

    assert dead_letters.reconcile_moved_by_sqs() == 0

    record = Email.objects.get(id=email.id)
    assert (record.status, record.last_error) == (status, "as it was")


def test_reconcile_leaves_gomails_own_dead_letters_and_the_undecodable_alone(aws):
    email = wire_email()
    queued_record(email, status=Email.Status.QUEUED)
    put_dead_letter(email.encode(), reason="rejected by every provider", email_id=email.id)
    moved_by_sqs("not json")

    assert dead_letters.reconcile_moved_by_sqs() == 0
    assert Email.objects.get(id=email.id).status == Email.Status.QUEUED
    assert len(dead_letter_ids()) == 2


def test_redrive_of_a_moved_message_queues_its_record_again(aws):
    email = wire_email()
    queued_record(email, status=Email.Status.FAILED, last_error="HTTP 500")
    message_id = moved_by_sqs(email.encode())

    report = dead_letters.redrive({message_id})

    assert report.moved == 1
    assert Email.objects.get(id=email.id).status == Email.Status.QUEUED
    assert [m["Body"] for m in receive_all(incoming_queue())] == [email.encode()]
    assert dead_letter_ids() == set()


def test_the_task_reconciles_and_beat_runs_it_every_few_minutes(aws):
    import celeryconfig

    email = wire_email()
    queued_record(email, status=Email.Status.FAILED)
    moved_by_sqs(email.encode())

    assert tasks.reconcile_dead_letters() == {"reconciled": 1, "expired": 0}

    assert Email.objects.get(id=email.id).status == Email.Status.DEAD
    [entry] = [
        entry
        for entry in celeryconfig.beat_schedule.values()
        if entry["task"] == tasks.reconcile_dead_letters.name
    ]
    assert 60 <= entry["schedule"] <= 900
    # On the pipeline's queue, by default (the one worker that is not a provider's).
    assert "queue" not in entry.get("options", {})
    assert celeryconfig.task_default_queue == PIPELINE_QUEUE


# --- a redrive's requeued record is not the reconciliation's -------------------------------


@pytest.mark.django_db(transaction=True)  # the worker delivers in threads of their own
def test_a_reconcile_that_receives_the_moved_dead_letter_mid_redrive_loses_nothing(
    aws, providers, moto_server, monkeypatch
):
    # The redrive's hold on the dead letter runs out while it works (a long redrive): a
    # reconcile receives it again, after the record was queued again and its copy sent.
    monkeypatch.setattr(dead_letters, "SCAN_VISIBILITY_SECONDS", 1)
    email = wire_email()
    queued_record(email, status=Email.Status.FAILED, last_error="HTTP 500")
    moved_by_sqs(email.encode())

    reconciled: list[int] = []

    def hold_expires_and_beat_reconciles(**_: object) -> None:
        time.sleep(1.2)
        reconciled.append(dead_letters.reconcile_moved_by_sqs())

    with sqs_hook("after-call.sqs.SendMessage", once(hold_expires_and_beat_reconciles)):
        report = dead_letters.redrive()

    assert report.moved == 1
    assert Email.objects.get(id=email.id).status == Email.Status.QUEUED
    assert reconciled == [0]
    send_batch("ses", uuid.uuid4().hex, receive_exactly(1), providers=providers)
    assert Email.objects.get(id=email.id).status == Email.Status.SENT
    assert len(ses_messages(moto_server.url)) == 1


def test_a_moved_dead_letter_a_redrive_could_not_delete_leaves_the_requeued_record(aws):
    email = wire_email()
    queued_record(email, status=Email.Status.FAILED, last_error="HTTP 500")
    message_id = moved_by_sqs(email.encode())
    with sqs_hook("before-call.sqs.DeleteMessageBatch", unreachable):
        report = dead_letters.redrive()
    assert report.undeleted == [message_id]

    assert dead_letters.reconcile_moved_by_sqs() == 0

    assert Email.objects.get(id=email.id).status == Email.Status.QUEUED


def test_a_redriven_copy_sqs_moved_in_its_turn_marks_the_record_dead(aws):
    # Requeued before this dead letter was sent: the move is news.
    email = wire_email()
    requeued = timezone.now() - timedelta(hours=2)
    queued_record(email, status=Email.Status.FAILED, requeued_at=requeued)
    moved_by_sqs(email.encode())

    assert dead_letters.reconcile_moved_by_sqs() == 1

    assert Email.objects.get(id=email.id).status == Email.Status.DEAD


def test_reconcile_leaves_a_record_a_worker_is_sending_now(aws, settings):
    # Another copy of the message (one an ingest retry stored twice) is being sent.
    stale = timedelta(seconds=settings.GOMAIL.sqs.visibility_timeout_seconds + 60)
    fresh, old = wire_email(), wire_email()
    queued_record(fresh, status=Email.Status.SENDING, claimed_at=timezone.now())
    queued_record(old, status=Email.Status.SENDING, claimed_at=timezone.now() - stale)
    moved_by_sqs(fresh.encode())
    moved_by_sqs(old.encode())

    assert dead_letters.reconcile_moved_by_sqs() == 1

    assert Email.objects.get(id=fresh.id).status == Email.Status.SENDING
    assert Email.objects.get(id=old.id).status == Email.Status.DEAD
