"""``emails.resending.resend`` claims the dead original before it makes a copy: two operators
(or a double submit) make one copy, and a copy that could not be queued gives the claim back
(issue #13, item 4). Against the test moto's SQS and the database."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from emails.models import Email
from emails.resending import ResendOutcome, resend
from tests.dispatch.realparts import wire_email
from tests.dispatch.sqs_hooks import sqs_hook, unreachable
from tests.operations.support import dead_letter_queue, put_dead_letter, queued_record, receive_all

# transaction=True: the two resends run in threads, each with its own database connection.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


def dead_email() -> Email:
    email = wire_email(subject="Once more")
    original = queued_record(email, status=Email.Status.DEAD, last_error="rejected by all")
    put_dead_letter(email.encode(), email_id=email.id)
    return original


def in_thread(name: str, email_id: str, outcomes: dict[str, ResendOutcome]) -> threading.Thread:
    """A resend from another request: its own thread, connection and fresh record."""

    def run() -> None:
        try:
            outcomes[name] = resend(Email.objects.get(id=email_id))
        finally:
            connection.close()

    return threading.Thread(target=run, name=name)


def test_two_resends_at_once_make_exactly_one_copy(aws):
    original = dead_email()
    # Both find the dead letter: the second looks only once the first has made it visible
    # again, and the first goes on only once the second has looked too (or 5 s passed, when
    # the second was refused before it looked).
    first_restored, second_restored = threading.Event(), threading.Event()

    def before_receive(**_: Any) -> None:
        if threading.current_thread().name == "second":
            first_restored.wait(5)

    def after_restore(**_: Any) -> None:
        if threading.current_thread().name == "first":
            first_restored.set()
            second_restored.wait(5)
        elif threading.current_thread().name == "second":
            second_restored.set()

    outcomes: dict[str, ResendOutcome] = {}
    threads = [in_thread(name, str(original.id), outcomes) for name in ("first", "second")]
    with (
        sqs_hook("before-call.sqs.ReceiveMessage", before_receive),
        sqs_hook("after-call.sqs.ChangeMessageVisibilityBatch", after_restore),
    ):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    copies = Email.objects.filter(resent_from=original)
    assert copies.count() == 1
    made = [outcome for outcome in outcomes.values() if outcome.copy is not None]
    refused = [outcome.refusal for outcome in outcomes.values() if outcome.copy is None]
    assert len(made) == 1
    assert refused == ["already resent (or being resent)"]
    assert Email.objects.get(id=original.id).resent_at is not None


def test_a_copy_sqs_refused_gives_the_claim_back(aws):
    original = dead_email()

    with sqs_hook("before-call.sqs.SendMessageBatch", unreachable):
        failed = resend(original)

    assert failed.copy is None
    assert failed.refusal.startswith("could not queue the copy")
    assert Email.objects.get(id=original.id).resent_at is None
    assert len(receive_all(dead_letter_queue())) == 1  # the body is still there

    again = resend(Email.objects.get(id=original.id))

    assert again.copy is not None
    assert Email.objects.filter(resent_from=original, status=Email.Status.QUEUED).count() == 1


def test_an_email_resent_once_is_not_resent_again(aws):
    original = dead_email()
    assert resend(original).copy is not None
    put_dead_letter(wire_email(id=str(original.id)).encode(), email_id=str(original.id))

    second = resend(Email.objects.get(id=original.id))

    assert second.refusal == "already resent (or being resent)"
    assert Email.objects.filter(resent_from=original).count() == 1
