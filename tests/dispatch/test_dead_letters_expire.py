"""Records with no message behind them (the database failed after a failed SQS call, before the
withdrawal; a queue removed from the configuration) are marked dead once SQS has deleted any
message they had: older than the incoming queues' retention (``sqs.message_retention_seconds``).
The sweep runs with the reconciliation of the dead letters, from beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dispatch import dead_letters, tasks
from emails import records
from emails.models import Email
from tests.dispatch.realparts import wire_email
from tests.operations.support import queued_record

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

REASON = "no message left: older than the incoming queues' retention (4 days)"


def aged(status: str, hours: float, **fields) -> str:
    record = queued_record(wire_email(), status=status, last_error="HTTP 500", **fields)
    Email.objects.filter(id=record.id).update(accepted_at=timezone.now() - timedelta(hours=hours))
    return str(record.id)


def status_of(email_id: str) -> tuple[str, str]:
    return tuple(Email.objects.filter(id=email_id).values_list("status", "last_error").get())


def sweep(**kwargs) -> int:
    now = timezone.now()
    return records.expire_unqueued(
        now - timedelta(days=4), now - timedelta(minutes=5), REASON, **kwargs
    )


def test_waiting_records_older_than_the_retention_are_marked_dead_with_why():
    stale = timezone.now() - timedelta(hours=1)
    expired = [
        aged(Email.Status.QUEUED, 97),
        aged(Email.Status.FAILED, 200),
        aged(Email.Status.SENDING, 97, claimed_at=stale),  # its worker died
        aged(Email.Status.SENDING, 97),  # no claim time at all
    ]
    kept = {
        aged(Email.Status.QUEUED, 95): (Email.Status.QUEUED, "HTTP 500"),  # young
        # A worker holds it now: its message is there.
        aged(Email.Status.SENDING, 97, claimed_at=timezone.now()): (
            Email.Status.SENDING,
            "HTTP 500",
        ),
        # Redriven a day ago: its copy is a new message, kept 4 days from then.
        aged(Email.Status.QUEUED, 300, requeued_at=timezone.now() - timedelta(days=1)): (
            Email.Status.QUEUED,
            "HTTP 500",
        ),
        aged(Email.Status.SENT, 300): (Email.Status.SENT, "HTTP 500"),
        aged(Email.Status.WITHDRAWN, 300): (Email.Status.WITHDRAWN, "HTTP 500"),
        aged(Email.Status.DEAD, 300): (Email.Status.DEAD, "HTTP 500"),
    }

    assert sweep() == len(expired)

    assert {email_id: status_of(email_id) for email_id in expired} == {
        email_id: (Email.Status.DEAD, REASON) for email_id in expired
    }
    assert {email_id: status_of(email_id) for email_id in kept} == kept
    assert Email.objects.get(id=expired[2]).claimed_at is None
    assert sweep() == 0  # idempotent


def test_a_record_redriven_longer_ago_than_the_retention_is_marked_dead_too():
    email_id = aged(Email.Status.QUEUED, 300, requeued_at=timezone.now() - timedelta(days=5))

    assert sweep() == 1
    assert status_of(email_id) == (Email.Status.DEAD, REASON)


def test_one_sweep_marks_at_most_its_limit():
    for _ in range(5):
        aged(Email.Status.QUEUED, 100)

    assert sweep(limit=2) == 2
    assert sweep(limit=2) == 2
    assert sweep(limit=2) == 1
    assert Email.objects.filter(status=Email.Status.DEAD).count() == 5


def test_the_reason_names_the_configured_retention(gomail_config):
    gomail_config(sqs={"message_retention_seconds": 2 * 86_400})
    old = aged(Email.Status.QUEUED, 49)
    young = aged(Email.Status.QUEUED, 47)

    assert dead_letters.expire_messageless() == 1

    assert status_of(old) == (
        Email.Status.DEAD,
        "no message left: older than the incoming queues' retention (2 days)",
    )
    assert status_of(young)[0] == Email.Status.QUEUED


def test_beats_reconciliation_task_sweeps_too(aws, gomail_config):
    gomail_config(sqs={"message_retention_seconds": 4 * 86_400})
    email_id = aged(Email.Status.FAILED, 24 * 4 + 1)

    assert tasks.reconcile_dead_letters() == {"reconciled": 0, "expired": 1}

    assert status_of(email_id) == (Email.Status.DEAD, REASON)
