"""Email record transitions while workers deliver (emails/records.py), on the real database."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from emails import records
from emails.models import Attempt, Email
from emails.records import Claim
from emails.wire import WireEmail

pytestmark = pytest.mark.django_db

STALE_AFTER = timedelta(seconds=30)


def wire(**overrides) -> WireEmail:
    fields = {
        "id": str(uuid.uuid4()),
        "from_email": "sender@example.com",
        "from_name": "Sender",
        "to_email": "reader@example.org",
        "to_name": "Reader",
        "subject": "Hello",
        "body": "Body",
        "accepted_at": datetime(2026, 11, 30, 6, 0, tzinfo=UTC),
    }
    fields.update(overrides)
    return WireEmail(**fields)


def stored(email: WireEmail, **fields) -> Email:
    """A record as the API leaves it (queued), with ``fields`` changed."""
    values = {
        "id": email.id,
        "from_email": email.from_email,
        "to_email": email.to_email,
        "subject": email.subject,
        "queue": "gomail-test-incoming-1",
    }
    values.update(fields)
    return Email.objects.create(**values)


def test_claim_of_a_queued_record_takes_it_and_counts_the_attempt():
    email = wire()
    stored(email, attempts=0)

    result = records.claim(email, "q", STALE_AFTER)

    assert result.claim is Claim.CLAIMED
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENDING
    assert record.attempts == 1
    assert record.claimed_at is not None
    assert record.unknown_outcomes == 0


def test_claim_of_a_failed_record_takes_it_again_with_its_rejections():
    email = wire()
    stored(email, status=Email.Status.FAILED, attempts=2, rejections={"sendgrid": "HTTP 400"})

    result = records.claim(email, "q", STALE_AFTER)

    assert result.claim is Claim.CLAIMED
    assert result.rejections == {"sendgrid": "HTTP 400"}
    assert Email.objects.get(id=email.id).attempts == 3


@pytest.mark.parametrize(
    ("status", "expected"),
    [(Email.Status.SENT, Claim.ALREADY_SENT), (Email.Status.DEAD, Claim.ALREADY_DEAD)],
)
def test_claim_of_a_finished_record_changes_nothing(status, expected):
    email = wire()
    stored(email, status=status, attempts=1)

    result = records.claim(email, "q", STALE_AFTER)

    assert result.claim is expected
    record = Email.objects.get(id=email.id)
    assert (record.status, record.attempts, record.claimed_at) == (status, 1, None)


def test_claim_of_a_record_another_live_worker_sends_is_busy():
    email = wire()
    claimed_at = timezone.now() - timedelta(seconds=5)
    stored(email, status=Email.Status.SENDING, attempts=1, claimed_at=claimed_at)

    result = records.claim(email, "q", STALE_AFTER)

    assert result.claim is Claim.BUSY
    assert timedelta(seconds=24) <= result.stale_in <= STALE_AFTER - timedelta(seconds=5)
    record = Email.objects.get(id=email.id)
    assert (record.attempts, record.claimed_at, record.unknown_outcomes) == (1, claimed_at, 0)


@pytest.mark.parametrize("claimed_ago", [timedelta(seconds=31), timedelta(hours=5), None])
def test_claim_of_a_stale_sending_record_takes_it_over_as_an_unknown_outcome(claimed_ago):
    email = wire()
    claimed_at = timezone.now() - claimed_ago if claimed_ago else None
    stored(email, status=Email.Status.SENDING, attempts=1, claimed_at=claimed_at)

    result = records.claim(email, "q", STALE_AFTER)

    assert result.claim is Claim.CLAIMED
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENDING
    assert record.attempts == 2
    assert record.unknown_outcomes == 1  # the dead worker may have sent it
    assert record.claimed_at > timezone.now() - timedelta(seconds=5)


def test_claim_of_a_message_from_another_producer_creates_its_record():
    email = wire(accepted_at=None, from_name="F" * 300, subject="S" * 1200)
    before = timezone.now()

    result = records.claim(email, "gomail-test-incoming-2", STALE_AFTER)

    assert result.claim is Claim.CLAIMED
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENDING
    assert record.attempts == 1
    assert record.queue == "gomail-test-incoming-2"
    assert (record.from_email, record.to_email) == (email.from_email, email.to_email)
    assert len(record.from_name) == 256 and len(record.subject) == 998  # cut to the columns
    assert record.accepted_at >= before


def claimed_at_once(pool: ThreadPoolExecutor, email: WireEmail) -> list[Claim]:
    """Two workers (threads, each with its own connection) claim ``email`` at the same instant."""
    barrier = threading.Barrier(2)

    def claim() -> Claim:
        try:
            barrier.wait(timeout=10)
            return records.claim(email, "q", STALE_AFTER).claim
        finally:
            connection.close()

    return sorted(pool.map(lambda _: claim(), range(2)))


# transaction=True: threads with their own connections must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_the_same_record_at_once_one_wins():
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_ in range(20):
            email = wire()
            # Even rounds race on the API's record, odd rounds on a record neither has yet.
            if round_ % 2 == 0:
                stored(email)

            assert claimed_at_once(pool, email) == sorted([Claim.CLAIMED, Claim.BUSY]), round_
            assert Email.objects.get(id=email.id).attempts == 1


# transaction=True: threads with their own connections must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
def test_two_workers_taking_over_the_same_stale_claim_one_wins():
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_ in range(20):
            email = wire()
            stale = timezone.now() - timedelta(minutes=5)
            stored(email, status=Email.Status.SENDING, attempts=1, claimed_at=stale)

            assert claimed_at_once(pool, email) == sorted([Claim.CLAIMED, Claim.BUSY]), round_
            record = Email.objects.get(id=email.id)
            assert (record.attempts, record.unknown_outcomes) == (2, 1)


def test_record_sent_ends_the_claim():
    email = wire()
    stored(email, last_error="HTTP 500")
    records.claim(email, "q", STALE_AFTER)

    records.record_sent(email.id, "ses", "ses-message-id")

    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENT
    assert (record.provider, record.provider_message_id) == ("ses", "ses-message-id")
    assert record.sent_at is not None
    assert record.claimed_at is None
    assert record.last_error == ""
    assert records.claim(email, "q", STALE_AFTER).claim is Claim.ALREADY_SENT


def test_record_failure_hands_the_record_back_for_a_retry():
    email = wire()
    stored(email)
    records.claim(email, "q", STALE_AFTER)

    records.record_failure(email.id, "sendgrid", "no answer within 2s", outcome_unknown=True)

    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.FAILED
    assert (record.provider, record.last_error) == ("sendgrid", "no answer within 2s")
    assert record.claimed_at is None
    assert record.unknown_outcomes == 1
    assert records.claim(email, "q", STALE_AFTER).claim is Claim.CLAIMED


def test_record_rejection_accumulates_per_provider():
    email = wire()
    stored(email)
    records.claim(email, "q", STALE_AFTER)

    records.record_rejection(email.id, "sendgrid", "HTTP 400: bad")
    records.record_rejection(email.id, "ses", "MessageRejected: no")

    record = Email.objects.get(id=email.id)
    assert record.rejections == {"sendgrid": "HTTP 400: bad", "ses": "MessageRejected: no"}
    assert record.last_error == "MessageRejected: no"


def test_record_dead_and_release_claim():
    dead, released, sent = wire(), wire(), wire()
    for email in (dead, released, sent):
        stored(email)
        records.claim(email, "q", STALE_AFTER)
    records.record_sent(sent.id, "ses", "x")

    records.record_dead(dead.id, "rejected by every provider")
    records.release_claim(released.id)
    records.release_claim(sent.id)  # not sending: left alone

    record = Email.objects.get(id=dead.id)
    assert (record.status, record.last_error, record.claimed_at) == (
        Email.Status.DEAD,
        "rejected by every provider",
        None,
    )
    record = Email.objects.get(id=released.id)
    assert (record.status, record.claimed_at) == (Email.Status.FAILED, None)
    assert Email.objects.get(id=sent.id).status == Email.Status.SENT


def test_record_attempt_keeps_the_history_in_order():
    email = wire()
    stored(email)

    records.record_attempt(email.id, "sendgrid", "permanent", "HTTP 400")
    records.record_attempt(email.id, "ses", "transient", "timeout", outcome_unknown=True)
    records.record_attempt(email.id, "ses", "sent")

    history = list(
        Attempt.objects.filter(email_id=email.id).values_list(
            "provider", "outcome", "error", "outcome_unknown"
        )
    )
    assert history == [
        ("sendgrid", "permanent", "HTTP 400", False),
        ("ses", "transient", "timeout", True),
        ("ses", "sent", "", False),
    ]


def test_a_claimed_record_cannot_be_withdrawn():
    # SQS answered the API late: a worker already read the message. It is delivered, and the
    # API's withdrawal finds it gone (the API then answers 200, not 503).
    email = wire()
    record = records.record_accepted(email, "q")
    assert record.status == Email.Status.QUEUED

    assert records.claim(email, "q", STALE_AFTER).claim is Claim.CLAIMED
    assert records.withdraw(record) is False
    assert Email.objects.get(id=email.id).status == Email.Status.SENDING


def test_a_withdrawn_record_is_never_claimed():
    # The API answered 503; a copy SQS kept after all (its answer lost) is dropped unsent.
    email = wire()
    record = records.record_accepted(email, "q")
    assert records.withdraw(record) is True

    assert records.claim(email, "q", STALE_AFTER).claim is Claim.WITHDRAWN
    assert Email.objects.get(id=email.id).status == Email.Status.WITHDRAWN
    assert Email.objects.get(id=email.id).attempts == 0


def test_claim_batch_settles_what_it_can_in_one_go_and_leaves_the_rest():
    queued_email, failed_email, sent_email, busy_email, missing = (wire() for _ in range(5))
    stored(queued_email)
    stored(failed_email, status=Email.Status.FAILED, attempts=1, rejections={"ses": "no"})
    stored(sent_email, status=Email.Status.SENT)
    stored(busy_email, status=Email.Status.SENDING, claimed_at=timezone.now())

    results = records.claim_batch([queued_email, failed_email, sent_email, busy_email, missing])

    accepted = dict(Email.objects.values_list("id", "accepted_at"))
    claimed_at = {email.id: accepted[uuid.UUID(email.id)] for email in (queued_email, failed_email)}
    assert results == {
        queued_email.id: records.ClaimResult(
            Claim.CLAIMED, {}, attempts=1, since=claimed_at[queued_email.id]
        ),
        failed_email.id: records.ClaimResult(
            Claim.CLAIMED, {"ses": "no"}, attempts=2, since=claimed_at[failed_email.id]
        ),
        sent_email.id: records.ClaimResult(Claim.ALREADY_SENT),
    }
    # Another worker's claim and a record that does not exist yet are left to claim().
    assert records.claim(busy_email, "q", STALE_AFTER).claim is Claim.BUSY
    assert records.claim(missing, "q", STALE_AFTER).claim is Claim.CLAIMED
    attempts = dict(Email.objects.values_list("id", "attempts"))
    assert attempts[uuid.UUID(queued_email.id)] == 1
    assert attempts[uuid.UUID(failed_email.id)] == 2
    # A second batch holding the same messages finds them claimed: nothing is claimed twice.
    assert records.claim_batch([queued_email, failed_email]) == {}
