"""``send_batch`` with claim checks, in-process on the real parts (moto's SQS and S3, the
SendGrid stand-in): the payload fetched and its object deleted once sent, kept while the email
can still be sent or redriven, and S3 being unreachable a retry, not the email's end."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings

from dispatch import dead_letters
from dispatch.sending import send_batch
from emails import claim_check, records
from emails.models import Email
from emails.wire import Attachment, WireEmail
from gomail_site.aws import aws_client
from tests.dispatch.realparts import put, receive_exactly, wire_email

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def short_backoff(gomail_config) -> None:
    gomail_config(pipeline={"backoff_base_seconds": 1, "backoff_max_seconds": 2})


def claim_checked(**fields) -> tuple[WireEmail, WireEmail]:
    """An email with an attachment, stored as the API stores it; (it, its claim check)."""
    email = wire_email(
        attachments=(Attachment("a.bin", "application/octet-stream", b"\x00\x01" * 100),),
        **fields,
    )
    summary = claim_check.store(email, email.encode())
    records.record_accepted(
        email, settings.GOMAIL.sqs.incoming_queues[0], payload_key=summary.payload.key
    )
    put(summary.encode())
    return email, summary


def object_exists(summary: WireEmail) -> bool:
    answer = aws_client("s3").list_objects_v2(
        Bucket=summary.payload.bucket, Prefix=summary.payload.key
    )
    return bool(answer.get("Contents"))


def test_a_claim_check_is_sent_whole_and_its_object_deleted(aws, providers, sendgrid_stub):
    email, summary = claim_checked()

    send_batch("sendgrid", uuid.uuid4().hex, receive_exactly(1), providers=providers)

    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.SENT and record.payload_key == ""
    assert not object_exists(summary)
    [message] = sendgrid_stub.messages()
    assert message["payload"]["attachments"][0]["filename"] == "a.bin"


def test_a_failed_send_keeps_the_object_for_the_next_try(aws, providers, sendgrid_stub):
    sendgrid_stub.configure(fail_rate=1.0, fail_status=500)
    email, summary = claim_checked()

    send_batch("sendgrid", uuid.uuid4().hex, receive_exactly(1), providers=providers)

    assert Email.objects.get(id=email.id).status == Email.Status.FAILED
    assert object_exists(summary)


def test_a_dead_emails_object_is_kept_for_a_redrive(aws, providers, sendgrid_stub):
    sendgrid_stub.configure(fail_rate=1.0, fail_status=400)  # permanent: to SES, then dead
    email, summary = claim_checked(from_email="unverified@example.net")

    send_batch("sendgrid", uuid.uuid4().hex, receive_exactly(1), providers=providers)

    assert Email.objects.get(id=email.id).status == Email.Status.DEAD
    assert object_exists(summary)


def test_s3_unreachable_is_a_retry(aws, providers, sendgrid_stub, gomail_config):
    email, _ = claim_checked()
    messages = receive_exactly(1)
    # S3 at an endpoint that does not answer: unavailable, not missing (SQS too, so the
    # message's hand-back fails as well: it comes back after its visibility timeout).
    gomail_config(aws={"endpoint_url": "http://127.0.0.1:9"})

    send_batch("sendgrid", uuid.uuid4().hex, messages, providers=providers)

    record = Email.objects.get(id=email.id)
    assert record.status == Email.Status.FAILED, record.last_error
    assert "payload could not be read" in record.last_error
    assert (record.provider, sendgrid_stub.messages()) == ("", [])


def test_a_redriven_claim_check_finds_its_object_and_is_sent(aws, providers, sendgrid_stub):
    sendgrid_stub.configure(fail_rate=1.0, fail_status=400)
    email, summary = claim_checked(from_email="unverified@example.net")
    send_batch("sendgrid", uuid.uuid4().hex, receive_exactly(1), providers=providers)
    assert Email.objects.get(id=email.id).status == Email.Status.DEAD
    sendgrid_stub.reset()

    report = dead_letters.redrive()
    send_batch("sendgrid", uuid.uuid4().hex, receive_exactly(1), providers=providers)

    assert report.moved == 1
    assert Email.objects.get(id=email.id).status == Email.Status.SENT
    assert not object_exists(summary)
    [message] = sendgrid_stub.messages()
    assert message["payload"]["attachments"][0]["filename"] == "a.bin"
