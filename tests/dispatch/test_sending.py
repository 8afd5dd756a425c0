"""``dispatch.sending.send_batch`` in-process, on the real parts: messages on the test moto's
SQS in the wire format, SES in moto, the SendGrid stand-in, the database and the DB cache."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from email.utils import parseaddr

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from dispatch import health_store
from dispatch.health import BatchOutcome
from dispatch.inbox import receive
from dispatch.providers.sendgrid import SendGridProvider
from dispatch.providers.ses import SesProvider
from dispatch.sending import send_batch
from emails.models import Attempt, Email
from gomail_site.aws import aws_client
from tests.dispatch.realparts import (
    dead_letter_reason,
    dead_letters,
    incoming_queue,
    levels,
    outgoing_email,
    put,
    receive_exactly,
    wire_email,
)
from tests.harness.queues import ses_messages
from tests.harness.waiting import wait_for

# transaction=True: send_batch delivers in threads, each with its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def short_backoff(gomail_config) -> None:
    gomail_config(pipeline={"backoff_base_seconds": 1, "backoff_max_seconds": 2})


def queued(email) -> Email:
    """The record the API creates when it accepts ``email``."""
    return Email.objects.create(
        id=email.id,
        from_email=email.from_email,
        to_email=email.to_email,
        subject=email.subject,
        queue=incoming_queue(),
    )


def enqueue(*emails) -> list:
    for email in emails:
        put(email.encode())
    return receive_exactly(len(emails))


def stub_recipients(stub) -> list[str]:
    return [
        message["payload"]["personalizations"][0]["to"][0]["email"] for message in stub.messages()
    ]


def test_success_on_sendgrid(aws, providers, sendgrid_stub, moto_server):
    email = wire_email(to_email="one@example.org", subject="Grüße 🚀", body='Hé "there" 日本')
    queued(email)
    messages = enqueue(email)
    batch_id = uuid.uuid4().hex

    outcome = send_batch("sendgrid", batch_id, messages, providers=providers)

    assert outcome == BatchOutcome(sent=1)
    [sent] = sendgrid_stub.messages()
    assert sent["payload"]["personalizations"][0]["to"][0]["email"] == "one@example.org"
    assert sent["payload"]["subject"] == "Grüße 🚀"
    assert sent["payload"]["content"][0]["value"] == 'Hé "there" 日本'
    assert sent["payload"]["custom_args"] == {"gomail_id": email.id}
    assert ses_messages(moto_server.url) == []
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENT
    assert (record.provider, record.provider_message_id) == ("sendgrid", sent["messageId"])
    assert record.attempts == 1
    assert levels(incoming_queue()) == (0, 0)  # deleted
    assert health_store.read_outcomes([batch_id]) == {batch_id: outcome.to_dict()}


def test_success_on_ses_for_a_batch_of_several(aws, providers, sendgrid_stub, moto_server):
    emails = [wire_email(to_email=f"r{index}@example.org") for index in range(12)]
    for email in emails[:6]:
        queued(email)  # the others come from another producer: no record yet
    messages = enqueue(*emails)

    outcome = send_batch("ses", uuid.uuid4().hex, messages, providers=providers)

    assert outcome == BatchOutcome(sent=12)
    sent = ses_messages(moto_server.url)
    assert sorted(parseaddr(m["destinations"]["ToAddresses"][0])[1] for m in sent) == sorted(
        e.to_email for e in emails
    )
    assert sendgrid_stub.messages() == []
    statuses = set(
        Email.objects.filter(id__in=[e.id for e in emails]).values_list("status", "provider")
    )
    assert statuses == {(Email.Status.SENT, "ses")}
    assert Email.objects.filter(id__in=[e.id for e in emails]).count() == 12
    assert levels(incoming_queue()) == (0, 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("this is not JSON", "not JSON"),
        ('["email"]', 'not an object with an "email" object'),
        ('{"email": "a string"}', 'not an object with an "email" object'),
        (
            json.dumps({"email": {"fromEmail": "a@example.com", "body": "x"}, "id": "1"}),
            "missing required field(s): toEmail",
        ),
        (
            json.dumps({"email": {"fromEmail": "a@example.com", "toEmail": 5, "body": "x"}}),
            '"email.toEmail" is not a string',
        ),
    ],
)
def test_a_poison_message_goes_to_the_dead_letter_queue(
    aws, providers, sendgrid_stub, moto_server, body, reason
):
    messages = enqueue_raw(body)
    batch_id = uuid.uuid4().hex

    outcome = send_batch("sendgrid", batch_id, messages, providers=providers)

    assert outcome == BatchOutcome()
    [dead] = dead_letters()
    assert dead["Body"] == body
    assert reason in dead_letter_reason(dead)
    assert dead_letter_reason(dead).startswith("undecodable message")
    assert levels(incoming_queue()) == (0, 0)
    assert sendgrid_stub.snapshot()["attempts"] == 0
    assert ses_messages(moto_server.url) == []
    assert Email.objects.count() == 0
    assert health_store.read_outcomes([batch_id]) == {batch_id: BatchOutcome().to_dict()}


def enqueue_raw(body: str) -> list:
    put(body)
    return receive_exactly(1)


def test_a_sendgrid_rejection_is_sent_through_ses(aws, providers, sendgrid_stub, moto_server):
    sendgrid_stub.configure(fail_rate=1, fail_status=400)
    email = wire_email(to_email="fallback@example.org")
    queued(email)
    messages = enqueue(email)

    outcome = send_batch("sendgrid", uuid.uuid4().hex, messages, providers=providers)

    # SendGrid's batch: its rejection is the message's fault, not SendGrid's.
    assert outcome == BatchOutcome(permanent=1)
    assert sendgrid_stub.messages() == []
    [sent] = ses_messages(moto_server.url)
    assert sent["destinations"]["ToAddresses"] == ["Reader <fallback@example.org>"]
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENT
    assert record.provider == "ses"
    assert set(record.rejections) == {"sendgrid"}
    assert "HTTP 400" in record.rejections["sendgrid"]
    assert list(record.attempt_log.values_list("provider", "outcome")) == [
        ("sendgrid", "permanent"),
        ("ses", "sent"),
    ]
    assert levels(incoming_queue()) == (0, 0)
    assert dead_letters() == []


def test_rejected_by_both_goes_to_the_dead_letter_queue(aws, providers, sendgrid_stub, moto_server):
    sendgrid_stub.configure(fail_rate=1, fail_status=400)
    email = wire_email(from_email="someone@unverified.test")
    queued(email)
    messages = enqueue(email)

    outcome = send_batch("ses", uuid.uuid4().hex, messages, providers=providers)

    assert outcome == BatchOutcome(permanent=1)
    assert ses_messages(moto_server.url) == []
    assert sendgrid_stub.messages() == []
    [dead] = dead_letters()
    assert dead["Body"] == email.encode()
    reason = dead_letter_reason(dead)
    assert reason.startswith("rejected by every provider")
    assert "ses: MessageRejected" in reason
    assert "sendgrid: HTTP 400" in reason
    assert dead["MessageAttributes"]["emailId"]["StringValue"] == email.id
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.DEAD
    assert record.last_error == reason
    assert set(record.rejections) == {"ses", "sendgrid"}
    assert record.claimed_at is None
    assert levels(incoming_queue()) == (0, 0)


def test_a_sendgrid_outage_hands_the_message_back_with_a_backoff(
    aws, providers, sendgrid_stub, moto_server
):
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    email = wire_email()
    queued(email)
    messages = enqueue(email)
    batch_id = uuid.uuid4().hex

    started = time.monotonic()
    outcome = send_batch("sendgrid", batch_id, messages, providers=providers)

    assert outcome.transient == 1
    assert (outcome.sent, outcome.permanent) == (0, 0)
    assert len(outcome.errors) == 1 and "HTTP 500" in outcome.errors[0]
    assert health_store.read_outcomes([batch_id]) == {batch_id: outcome.to_dict()}
    # Not failed over: a transient failure goes back to the queue, for any provider.
    assert ses_messages(moto_server.url) == []
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.FAILED
    assert "HTTP 500" in record.last_error
    assert record.provider == "sendgrid"
    assert record.claimed_at is None
    assert dead_letters() == []
    # Hidden for the backoff (1 s), not for the queue's 30 s visibility timeout.
    assert receive(incoming_queue(), 10) == []
    again = []
    while not again and time.monotonic() - started < 6:
        time.sleep(0.2)
        again = receive(incoming_queue(), 10)
    assert [m.sqs_message_id for m in again] == [messages[0].sqs_message_id]

    # The retry, once SendGrid is back, sends it.
    sendgrid_stub.configure(fail_rate=0)
    outcome = send_batch("sendgrid", uuid.uuid4().hex, again, providers=providers)
    assert outcome == BatchOutcome(sent=1)
    record = Email.objects.get(id=email.id)
    assert (record.status, record.attempts) == (Email.Status.SENT, 2)
    assert levels(incoming_queue()) == (0, 0)


def test_an_already_sent_message_is_deleted_and_not_sent_again(
    aws, providers, sendgrid_stub, moto_server
):
    email = wire_email()
    queued(email)
    Email.objects.filter(id=email.id).update(
        status=Email.Status.SENT, provider="ses", sent_at=timezone.now(), attempts=1
    )
    messages = enqueue(email)
    batch_id = uuid.uuid4().hex

    outcome = send_batch("sendgrid", batch_id, messages, providers=providers)

    assert outcome == BatchOutcome()
    assert outcome.provider_answers == 0
    assert sendgrid_stub.snapshot()["attempts"] == 0
    assert ses_messages(moto_server.url) == []
    assert levels(incoming_queue()) == (0, 0)
    record = Email.objects.get(id=email.id)
    assert (record.status, record.attempts, record.provider) == (Email.Status.SENT, 1, "ses")
    assert health_store.read_outcomes([batch_id]) == {batch_id: BatchOutcome().to_dict()}


def test_a_message_another_worker_is_sending_comes_back_when_its_claim_goes_stale(
    aws, providers, sendgrid_stub, moto_server
):
    email = wire_email()
    queued(email)
    visibility = settings.GOMAIL.sqs.visibility_timeout_seconds
    # Claimed by another worker 2 s short of stale: not sent now, looked at again in ~2 s
    # (a dead worker's email is then taken over), not a whole visibility timeout later.
    Email.objects.filter(id=email.id).update(
        status=Email.Status.SENDING,
        claimed_at=timezone.now() - timedelta(seconds=visibility - 2),
        attempts=1,
    )
    messages = enqueue(email)
    started = time.monotonic()

    outcome = send_batch("sendgrid", uuid.uuid4().hex, messages, providers=providers)

    assert outcome == BatchOutcome()
    assert sendgrid_stub.snapshot()["attempts"] == 0
    assert Email.objects.get(id=email.id).status == Email.Status.SENDING
    assert receive(incoming_queue(), 10) == []
    again = []
    while not again and time.monotonic() - started < 8:
        time.sleep(0.2)
        again = receive(incoming_queue(), 10)
    assert [m.sqs_message_id for m in again] == [messages[0].sqs_message_id]

    outcome = send_batch("sendgrid", uuid.uuid4().hex, again, providers=providers)

    assert outcome == BatchOutcome(sent=1)
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENT
    assert record.unknown_outcomes == 1  # taken over: the other worker may have sent it


def test_a_mixed_batch_settles_each_message_its_own_way(aws, providers, sendgrid_stub, moto_server):
    # Every second SendGrid call fails with a 500; SES takes nothing for this batch.
    sendgrid_stub.configure(fail_rate=0.5, fail_status=500)
    good = [wire_email(to_email=f"g{index}@example.org") for index in range(4)]
    for email in good:
        queued(email)
    for email in good:
        put(email.encode())
    put("poison")
    messages = receive_exactly(5)
    batch_id = uuid.uuid4().hex

    outcome = send_batch("sendgrid", batch_id, messages, providers=providers)

    assert (outcome.sent, outcome.transient, outcome.permanent) == (2, 2, 0)
    assert sorted(stub_recipients(sendgrid_stub)) == sorted(
        Email.objects.filter(status=Email.Status.SENT).values_list("to_email", flat=True)
    )
    assert Email.objects.filter(status=Email.Status.FAILED).count() == 2
    assert [dead_letter_reason(m)[:19] for m in dead_letters()] == ["undecodable message"]
    assert levels(incoming_queue()) == (0, 2)  # the two failed ones, hidden for the backoff
    assert Attempt.objects.count() == 4
    assert health_store.read_outcomes([batch_id]) == {batch_id: outcome.to_dict()}


def test_a_message_read_again_by_someone_else_is_not_sent(
    aws, providers, sendgrid_stub, moto_server
):
    # A batch that starts late: its receipt handle no longer works (here: not a handle at all),
    # so extending its visibility fails and the message is left to whoever holds it now.
    email = wire_email()
    queued(email)
    [message] = enqueue(email)
    stale = type(message)(
        queue=message.queue,
        receipt_handle="expired-receipt-handle",
        sqs_message_id=message.sqs_message_id,
        body=message.body,
    )

    outcome = send_batch("sendgrid", uuid.uuid4().hex, [stale], providers=providers)

    assert outcome == BatchOutcome()
    assert sendgrid_stub.snapshot()["attempts"] == 0
    assert Email.objects.get(id=email.id).status == Email.Status.QUEUED


def test_a_timeout_after_submission_is_retried_and_counted_as_a_possible_duplicate(
    aws, providers, sendgrid_stub, moto_server
):
    # The stand-in answers after the provider's 2 s timeout, but records (delivers) the email.
    sendgrid_stub.configure(delay_ms=2_500)
    email = wire_email()
    queued(email)
    messages = enqueue(email)

    outcome = send_batch("sendgrid", uuid.uuid4().hex, messages, providers=providers)

    assert outcome.transient == 1
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.FAILED
    assert record.unknown_outcomes == 1  # it may have been delivered: a retry may duplicate it
    attempt = record.attempt_log.get()
    assert (attempt.outcome, attempt.outcome_unknown) == ("transient", True)
    assert ses_messages(moto_server.url) == []  # not failed over: a retry goes through the queue
    assert levels(incoming_queue()) == (0, 1)
    wait_for(lambda: len(sendgrid_stub.messages()) == 1, 15, "the late send to be recorded")


def test_a_provider_refusing_our_credentials_counts_against_it_and_retries(
    aws, sendgrid_stub, moto_server
):
    wrong_key = {
        "ses": SesProvider(aws_client("ses", attempts=1)),
        "sendgrid": SendGridProvider(api_key="SG.wrong", host=sendgrid_stub.url, timeout_seconds=2),
    }
    email = wire_email()
    queued(email)
    messages = enqueue(email)

    outcome = send_batch("sendgrid", uuid.uuid4().hex, messages, providers=wrong_key)

    assert (outcome.provider_config, outcome.sent, outcome.permanent) == (1, 0, 0)
    assert outcome.health_failures == 1
    assert "HTTP 401" in outcome.errors[0]
    assert ses_messages(moto_server.url) == []
    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.FAILED
    assert record.rejections == {}  # not the message's fault: SendGrid may take it later
    assert levels(incoming_queue()) == (0, 1)
    assert dead_letters() == []


def test_a_failing_provider_is_not_called_again_once_its_breaker_opens(
    aws, providers, sendgrid_stub, moto_server, gomail_config
):
    # One sending thread, so the calls are made in order: three fail, then the breaker holds
    # the other seven back untried, without recording an attempt or counting a failure.
    sendgrid = settings.GOMAIL.providers.sendgrid.model_copy(update={"send_concurrency": 1})
    gomail_config(providers={"sendgrid": sendgrid})
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    emails = [wire_email() for _ in range(10)]
    for email in emails:
        queued(email)
    messages = enqueue(*emails)

    outcome = send_batch("sendgrid", uuid.uuid4().hex, messages, providers=providers)

    assert outcome.transient == settings.GOMAIL.health.breaker_failures == 3
    assert sendgrid_stub.snapshot()["attempts"] == 3
    statuses = sorted(Email.objects.values_list("status", "attempts"))
    assert statuses == sorted([(Email.Status.FAILED, 1)] * 3 + [(Email.Status.QUEUED, 0)] * 7)
    assert Attempt.objects.count() == 3
    assert ses_messages(moto_server.url) == []
    # Every message comes back within seconds: the held-back ones after one (nothing failed
    # for them: no backoff), the failed ones after theirs (1-2 s here).
    back: set[str] = set()

    def all_back() -> bool:
        back.update(m.sqs_message_id for m in receive(incoming_queue(), 10))
        return len(back) == len(messages)

    wait_for(all_back, 8, "every message to come back")


def test_a_copy_of_a_withdrawn_email_is_deleted_unsent(aws, providers, sendgrid_stub, moto_server):
    # The API answered 503 (SQS's answer was lost) but SQS kept the message after all.
    email = wire_email()
    queued(email)
    Email.objects.filter(id=email.id).update(status=Email.Status.WITHDRAWN)
    messages = enqueue(email)

    outcome = send_batch("sendgrid", uuid.uuid4().hex, messages, providers=providers)

    assert outcome.provider_answers == 0
    assert sendgrid_stub.snapshot()["attempts"] == 0
    assert levels(incoming_queue()) == (0, 0)
    assert Email.objects.get(id=email.id).status == Email.Status.WITHDRAWN


def test_an_email_past_its_max_age_is_given_up_with_its_reason(
    aws, providers, sendgrid_stub, moto_server
):
    # delivery.max_age_hours: 72, the default
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    email = wire_email()
    record = queued(email)
    Email.objects.filter(id=record.id).update(
        accepted_at=timezone.now() - timedelta(hours=73), attempts=6
    )
    messages = enqueue(email)

    outcome = send_batch("sendgrid", uuid.uuid4().hex, messages, providers=providers)

    # The call was made (and counts against SendGrid); the email then goes, with its reason.
    assert outcome.transient == 1
    record.refresh_from_db()
    assert record.status == Email.Status.DEAD
    assert record.last_error.startswith("gave up after 7 attempts over 73.0 hours; last error: ")
    assert "HTTP 500" in record.last_error
    [dead] = dead_letters()
    assert dead_letter_reason(dead) == record.last_error
    assert levels(incoming_queue()) == (0, 0)


def test_an_email_within_its_max_age_is_retried(aws, providers, sendgrid_stub):
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    email = wire_email()
    record = queued(email)
    Email.objects.filter(id=record.id).update(accepted_at=timezone.now() - timedelta(hours=71))

    send_batch("sendgrid", uuid.uuid4().hex, enqueue(email), providers=providers)

    record.refresh_from_db()
    assert record.status == Email.Status.FAILED
    assert dead_letters() == []


def test_a_drained_fallback_gives_up_once_the_email_is_too_old(
    aws, providers, sendgrid_stub, moto_server
):
    """Rejected for good by SendGrid while SES is drained: retried until the max age, then
    dead-lettered by Gomail rather than left to SQS's redrive."""
    from dispatch import controls

    sendgrid_stub.configure(fail_rate=1, fail_status=400)
    controls.set_drained("ses", True, by="test")
    email = wire_email()
    record = queued(email)
    Email.objects.filter(id=record.id).update(accepted_at=timezone.now() - timedelta(hours=80))

    send_batch("sendgrid", uuid.uuid4().hex, enqueue(email), providers=providers)

    record.refresh_from_db()
    assert record.status == Email.Status.DEAD
    assert "last error: retrying on another provider" in record.last_error
    assert ses_messages(moto_server.url) == []


@contextmanager
def database_refuses(event: str, table: str, condition: str):
    """The database refuses ``event`` ("INSERT", "UPDATE") on ``table`` for the rows where
    ``condition`` (SQL on ``NEW``) holds: a real error in one message's thread, from a
    trigger."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_row() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'injected'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_row BEFORE {event} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_row()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER refuse_row BEFORE {event} ON {table} WHEN {condition} "
                "BEGIN SELECT RAISE(ABORT, 'injected'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER refuse_row ON {table}")
                cursor.execute("DROP FUNCTION refuse_row()")
            else:
                cursor.execute("DROP TRIGGER refuse_row")


def stored_id(email_id: str) -> str:
    """``email_id`` as the database stores it (SQLite: 32 hex digits, no dashes)."""
    return email_id if connection.vendor == "postgresql" else uuid.UUID(email_id).hex


def attempts_refused_for(email_id: str):
    return database_refuses("INSERT", "emails_attempt", f"NEW.email_id = '{stored_id(email_id)}'")


def test_a_dead_letter_the_database_cannot_record_does_not_fail_the_batch(
    aws, providers, sendgrid_stub
):
    sendgrid_stub.configure(fail_rate=1, fail_status=400)
    rejected, fine = wire_email(from_email="someone@unverified.test"), wire_email()
    for email in (rejected, fine):
        queued(email)
    batch_id = uuid.uuid4().hex

    with database_refuses("UPDATE", "emails_email", "NEW.status = 'dead'"):
        outcome = send_batch("ses", batch_id, enqueue(rejected, fine), providers=providers)

    assert outcome.sent == 1 and outcome.permanent == 1
    assert health_store.read_outcomes([batch_id]) == {batch_id: outcome.to_dict()}
    assert Email.objects.get(id=fine.id).status == Email.Status.SENT
    [dead] = dead_letters()
    assert dead["MessageAttributes"]["emailId"]["StringValue"] == rejected.id


def test_one_message_failing_in_its_thread_does_not_fail_the_batch(aws, providers, sendgrid_stub):
    emails = [wire_email(to_email=f"r{index}@example.org") for index in range(4)]
    for email in emails:
        queued(email)
    messages = enqueue(*emails)
    batch_id = uuid.uuid4().hex

    with attempts_refused_for(emails[2].id):
        outcome = send_batch("sendgrid", batch_id, messages, providers=providers)

    # Every call counts for health, the one whose record could not be written too.
    assert outcome.sent == 4
    assert health_store.read_outcomes([batch_id]) == {batch_id: outcome.to_dict()}
    # Its record says sent (written before the attempt's row that failed): read again, its
    # message is only deleted.
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.SENT}
    assert Attempt.objects.count() == 3
    # The other three are deleted; that one is back after its backoff (1 s), not after the
    # 30 s visibility timeout.
    again = wait_for(lambda: receive(incoming_queue(), 10), 6, "the failed message back")
    assert [m.sqs_message_id for m in again] == [messages[2].sqs_message_id]


def test_sending_threads_keep_their_database_connection(aws, providers, sendgrid_stub):
    """One connection per sending thread, not one per email (DATABASES' CONN_MAX_AGE)."""
    from django.db.backends.signals import connection_created

    emails = [wire_email(to_email=f"r{index}@example.org") for index in range(12)]
    for email in emails:
        queued(email)
    opened = []

    def count(sender, connection, **kwargs) -> None:
        opened.append(connection)

    connection_created.connect(count)
    try:
        for batch in (emails[:6], emails[6:]):
            send_batch("sendgrid", uuid.uuid4().hex, enqueue(*batch), providers=providers)
    finally:
        connection_created.disconnect(count)

    assert Email.objects.filter(status=Email.Status.SENT).count() == 12
    concurrency = settings.GOMAIL.providers.sendgrid.send_concurrency
    assert 1 <= len(opened) <= concurrency


def test_a_redriven_email_counts_its_max_age_from_the_redrive(aws, providers, sendgrid_stub):
    """Given up at 72 hours and redriven by an operator: a failure now is retried, not the
    end of it (a redrive that allowed one attempt only would be no redrive)."""
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    email = wire_email()
    record = queued(email)
    Email.objects.filter(id=record.id).update(
        accepted_at=timezone.now() - timedelta(hours=80),
        requeued_at=timezone.now() - timedelta(minutes=1),
    )

    send_batch("sendgrid", uuid.uuid4().hex, enqueue(email), providers=providers)

    record.refresh_from_db()
    assert record.status == Email.Status.FAILED
    assert dead_letters() == []


def test_a_message_near_sqs_max_receive_count_is_given_up_by_gomail(aws, providers, sendgrid_stub):
    """SQS's redrive would move it without a reason a few receives later."""
    sendgrid_stub.configure(fail_rate=1, fail_status=500)
    email = wire_email()
    record = queued(email)
    [message] = enqueue(email)
    worn = replace(message, receive_count=settings.GOMAIL.sqs.max_receive_count - 50)

    send_batch("sendgrid", uuid.uuid4().hex, [worn], providers=providers)

    record.refresh_from_db()
    assert record.status == Email.Status.DEAD
    assert f"received {worn.receive_count} times" in record.last_error
    assert len(dead_letters()) == 1


def test_a_worker_process_closes_its_providers_connections_when_it_ends(settings):
    """The SMTP relay's connection a sending thread kept is closed, not dropped, when the
    worker process ends (``dispatch.tasks``: Celery's worker_process_shutdown)."""
    from devtools.smtp_stub import start_smtp_stub
    from dispatch import sending
    from dispatch.tasks import _release_connections
    from gomail_site.config import Providers

    with start_smtp_stub() as stub:
        relay = {"type": "smtp", "host": stub.smtp_host, "port": stub.smtp_port}
        settings.GOMAIL = settings.GOMAIL.model_copy(
            update={"providers": Providers.parse({"relay": relay})}
        )
        sending.close_providers()
        [provider] = sending._process_providers().values()
        provider.send(outgoing_email())
        assert provider.open_connections == 1

        _release_connections()

        assert provider.open_connections == 0
        assert sending._process_providers.cache_info().currsize == 0
