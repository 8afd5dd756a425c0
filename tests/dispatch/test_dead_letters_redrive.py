"""``dispatch.dead_letters.redrive`` against the test moto's SQS and the database: the record
is queued before its copy exists, a dead letter is deleted only once its copy is queued, and
only a dead record goes back to ``queued`` (issue #13, items 2 and 3)."""

from __future__ import annotations

import time
import uuid

import pytest

from dispatch import dead_letters
from dispatch.sending import send_batch
from emails import records
from emails.models import Email
from tests.dispatch.realparts import incoming_queue, receive_exactly, wire_email
from tests.dispatch.sqs_hooks import once, sqs_hook, unreachable
from tests.harness.queues import queue_counts, ses_messages
from tests.operations.support import dead_letter_queue, put_dead_letter, queued_record, receive_all

# transaction=True: the worker of the race test delivers in threads with their own connections.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

REJECTIONS = {"ses": "Email address is not verified", "sendgrid": "HTTP 400: bad to"}


def dead_email(subject: str = "Dead", **fields):
    """A dead email's record and its dead-letter message, as the settlement leaves them."""
    email = wire_email(subject=subject)
    values = {"status": Email.Status.DEAD, "rejections": REJECTIONS, "last_error": "rejected"}
    queued_record(email, **{**values, **fields})
    message_id = put_dead_letter(
        email.encode(), reason="rejected by every provider", email_id=email.id
    )
    return email, message_id


def dead_letter_ids() -> set[str]:
    return {message["MessageId"] for message in receive_all(dead_letter_queue())}


def incoming_bodies() -> list[str]:
    return [message["Body"] for message in receive_all(incoming_queue())]


def test_a_worker_that_claims_the_copy_at_once_sends_it(aws, providers, moto_server):
    # A worker reads the copy the moment it lands, before redrive's next step: the record must
    # already be queued then, or the worker drops the copy as a leftover of a dead email.
    email, _ = dead_email()

    def worker_takes_the_copy(**_: object) -> None:
        send_batch("ses", uuid.uuid4().hex, receive_exactly(1), providers=providers)

    with sqs_hook("after-call.sqs.SendMessage", once(worker_takes_the_copy)):
        dead_letters.redrive()

    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENT
    assert len(ses_messages(moto_server.url)) == 1
    assert dead_letter_ids() == set()


def test_a_copy_sqs_refused_leaves_the_dead_letter_and_the_record_dead(aws):
    email, message_id = dead_email()

    with sqs_hook("before-call.sqs.SendMessage", unreachable):
        report = dead_letters.redrive()

    record = Email.objects.get(id=email.id)
    assert (record.status, record.rejections, record.last_error) == (
        Email.Status.DEAD,
        REJECTIONS,
        "rejected",
    )
    assert report.moved == 0
    assert set(report.failed) == {message_id}
    assert dead_letter_ids() == {message_id}  # still there, and visible at once
    assert incoming_bodies() == []


def test_a_dead_letter_sqs_would_not_delete_is_reported_and_kept(aws):
    email, message_id = dead_email()

    with sqs_hook("before-call.sqs.DeleteMessageBatch", unreachable):
        report = dead_letters.redrive()

    assert report.moved == 1
    assert report.undeleted == [message_id]
    assert Email.objects.get(id=email.id).status == Email.Status.QUEUED
    assert incoming_bodies() == [email.encode()]
    # The copy left behind is not redriven again while its email is on its way.
    again = dead_letters.redrive()
    assert again.moved == 0
    assert set(again.skipped) == {message_id}
    assert incoming_bodies() == [email.encode()]


def test_the_leftover_of_a_sent_email_is_deleted_not_redriven(aws):
    email, message_id = dead_email(status=Email.Status.SENT, provider="ses", rejections={})

    report = dead_letters.redrive()

    assert Email.objects.get(id=email.id).status == Email.Status.SENT
    assert incoming_bodies() == []
    assert dead_letter_ids() == set()
    assert (report.moved, report.leftovers) == (0, [message_id])


@pytest.mark.parametrize(
    "status", [Email.Status.QUEUED, Email.Status.FAILED, Email.Status.WITHDRAWN]
)
def test_a_dead_letter_whose_record_is_not_dead_stays_and_is_reported(aws, status):
    email, message_id = dead_email(status=status)

    report = dead_letters.redrive()

    assert Email.objects.get(id=email.id).status == status
    assert incoming_bodies() == []
    assert dead_letter_ids() == {message_id}
    assert report.moved == 0
    assert status in report.skipped[message_id]


def test_a_dead_email_being_resent_is_not_redriven(aws):
    email, message_id = dead_email()
    assert records.claim_resend(email.id)

    report = dead_letters.redrive()

    assert Email.objects.get(id=email.id).status == Email.Status.DEAD
    assert incoming_bodies() == []
    assert dead_letter_ids() == {message_id}
    assert "resent" in report.skipped[message_id]


def test_a_message_without_an_email_record_is_redriven_as_it_is(aws):
    message_id = put_dead_letter("not json", reason="undecodable message: body is not JSON")

    report = dead_letters.redrive({message_id})

    assert report.moved == 1
    assert incoming_bodies() == ["not json"]
    assert dead_letter_ids() == set()


def test_a_redrive_holds_at_most_ten_dead_letters_while_it_sends_their_copies(aws):
    # A long redrive must not outlive its hold on the dead letters (SCAN_VISIBILITY_SECONDS):
    # one visible again is a reconcile's or a peek's to receive while the redrive acts on it.
    # Chunks of ten, each deleted before the next is received.
    emails = [dead_email(f"Dead {n}")[0] for n in range(25)]
    held_at_send: list[int] = []

    def count_held(**_: object) -> None:
        held_at_send.append(queue_counts(dead_letter_queue())["in_flight"])

    with sqs_hook("before-call.sqs.SendMessage", count_held):
        report = dead_letters.redrive()

    assert report.moved == 25
    assert len(held_at_send) == 25
    assert max(held_at_send) <= dead_letters.SQS_BATCH_LIMIT
    assert sorted(incoming_bodies()) == sorted(email.encode() for email in emails)
    assert dead_letter_ids() == set()
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.QUEUED}


def test_a_selected_redrive_finds_its_dead_letters_among_many(aws):
    chosen = {dead_email(f"Dead {n}")[1] for n in range(3)}
    others = {dead_email(f"Other {n}")[1] for n in range(22)}

    report = dead_letters.redrive(chosen)

    assert report.moved == 3
    assert dead_letter_ids() == others  # the others visible again, untouched
    assert len(incoming_bodies()) == 3


def test_a_slow_chunk_keeps_its_dead_letters_hidden_until_they_are_deleted(aws, monkeypatch):
    # Each copy is slow to send (a throttled SQS, a database waiting for its lock): the
    # chunk's hold is renewed before each step, so none is visible while it is worked on.
    monkeypatch.setattr(dead_letters, "SCAN_VISIBILITY_SECONDS", 3)
    for n in range(3):
        dead_email(f"Dead {n}")
    hidden_at_send: list[int] = []

    def slow(**_: object) -> None:
        hidden_at_send.append(queue_counts(dead_letter_queue())["in_flight"])
        time.sleep(1.6)  # the hold renewed before the next step, once half of it ran out

    with sqs_hook("before-call.sqs.SendMessage", slow):
        report = dead_letters.redrive()

    assert report.moved == 3
    assert hidden_at_send == [3, 3, 3]
    assert dead_letter_ids() == set()


def test_a_dead_letter_whose_hold_cannot_be_renewed_is_not_acted_on(aws, monkeypatch):
    monkeypatch.setattr(dead_letters, "SCAN_VISIBILITY_SECONDS", 3)
    first, first_id = dead_email("First")
    second, _ = dead_email("Second")

    def slow(**_: object) -> None:
        time.sleep(1.6)

    with (
        sqs_hook("before-call.sqs.SendMessage", slow),
        sqs_hook("before-call.sqs.ChangeMessageVisibilityBatch", unreachable),
    ):
        report = dead_letters.redrive()

    assert report.moved == 1
    [(left_id, why)] = report.skipped.items()
    assert why == dead_letters.LOST_HOLD
    left = first if left_id == first_id else second
    assert Email.objects.get(id=left.id).status == Email.Status.DEAD
    counts = queue_counts(dead_letter_queue())
    assert counts["visible"] + counts["in_flight"] == 1  # left, not deleted
