"""Real emails end to end (issue 15): through the API, SQS, S3 (the claim check) and a real
provider worker, to moto's SES, the SendGrid stand-in and the SMTP stand-in.

A worker per provider (``-Q <provider>``, that provider alone enabled; the SMTP one on an
in-process stand-in) serves the module; the pipeline runs in the test process, with only the
provider under test enabled there, so that every email of a test goes to that provider.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import pytest
from botocore.exceptions import ClientError
from django.conf import settings

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub
from devtools.smtp_stub import SmtpStub, start_smtp_stub
from emails import claim_check
from emails.models import Email
from gomail_site.aws import aws_client
from tests import harness
from tests.dispatch.realparts import dead_letter_reason, dead_letters, header_block, parsed
from tests.harness.emails import SENDER, new_subject
from tests.harness.fixtures import GroupFactory
from tests.harness.queues import enqueue_raw

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]

PROVIDERS = ("ses", "sendgrid", "smtp")
THREE_MIB = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def smtp_relay() -> Iterator[SmtpStub]:
    with start_smtp_stub() as stub:
        yield stub


def only(provider: str, relay: SmtpStub) -> dict[str, Any]:
    """The ``providers`` overrides that enable ``provider`` alone (the SMTP one on ``relay``)."""
    # A short SMTP timeout, so that the test queues' 30 s visibility holds a batch (19 waits
    # of it per send: dispatch/providers/smtp.py); on loopback.
    smtp = {"host": relay.smtp_host, "port": relay.smtp_port, "timeout_seconds": 0.7}
    return {
        name: {"enabled": name == provider} | (smtp if name == "smtp" else {}) for name in PROVIDERS
    }


@pytest.fixture(scope="module")
def workers(module_processes: GroupFactory, smtp_relay: SmtpStub) -> Any:
    """``workers("ses")``: a provider worker of that provider alone (started once)."""
    started: dict[str, harness.ProcessGroup] = {}

    def start(provider: str) -> harness.ProcessGroup:
        if provider not in started:
            group = module_processes(
                f"real-emails-{provider}", overrides={"providers": only(provider, smtp_relay)}
            )
            group.worker("providers", [provider], concurrency=2)
            started[provider] = group
        return started[provider]

    return start


@pytest.fixture
def through(
    workers: Any,
    clean_slate: None,
    gomail_overrides: Any,
    smtp_relay: SmtpStub,
    sendgrid_stub: SendGridStub,
):
    """``through("ses")``: this process's pipeline routes to that provider alone, whose
    worker runs."""
    smtp_relay.reset()

    def route(provider: str) -> None:
        workers(provider)
        gomail_overrides({"providers": only(provider, smtp_relay)})

    return route


def send(client: Any, email: dict[str, Any], **headers: str) -> Any:
    return client.post(
        "/email/send", data=json.dumps({"email": email}), content_type="application/json", **headers
    )


def settle(ids: list[str], timeout: float = 90) -> None:
    harness.drive_pipeline(lambda: harness.settled(ids), timeout)


def real_email(subject: str, attachment: bytes | None = None) -> dict[str, Any]:
    email: dict[str, Any] = {
        "fromEmail": SENDER,
        "fromName": "Sender",
        "to": [{"email": "first@example.org", "name": "First"}, {"email": "second@example.org"}],
        "cc": [{"email": "copy@example.org", "name": "Copy"}],
        "bcc": [{"email": "hidden@example.org"}],
        "subject": subject,
        "body": "Plain text part",
        "html": "<p>HTML <b>part</b></p>",
        "replyTo": "answers@example.com",
        "tags": ["welcome"],
        "metadata": {"customer": "c-42"},
    }
    if attachment is not None:
        email["attachments"] = [
            {
                "filename": "report.bin",
                "contentType": "application/octet-stream",
                "content": base64.b64encode(attachment).decode("ascii"),
            }
        ]
    return email


# --- what each provider received ------------------------------------------------------------


def moto_raw_messages(moto_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json", timeout=30) as answer:
        return json.load(answer).get("ses", {}).get("RawMessage", [])


def ses_received(moto_url: str, subject: str) -> tuple[EmailMessage, list[str]]:
    """The MIME message moto's SES got for ``subject`` (through SendRawEmail) and its
    destinations."""
    found = [
        (parsed(m["raw_data"]), m["destinations"])
        for m in moto_raw_messages(moto_url)
        if parsed(m["raw_data"])["Subject"] == subject
    ]
    assert len(found) == 1, f"{len(found)} raw messages with subject {subject}"
    message, destinations = found[0]
    # moto adds the To and Cc headers' mailboxes to the destinations it records.
    return message, sorted({parseaddr(d)[1].lower() for d in destinations})


def smtp_received(relay: SmtpStub, email_id: str) -> tuple[EmailMessage, str, list[str]]:
    found = [m for m in relay.messages() if m["headers"].get("X-Gomail-Id") == email_id]
    assert len(found) == 1, f"{len(found)} SMTP messages for {email_id}"
    return parsed(found[0]["data"]), found[0]["data"], found[0]["rcptTos"]


def sendgrid_received(stub: SendGridStub, email_id: str) -> dict[str, Any]:
    found = [p for p in _payloads(stub) if p.get("custom_args", {}).get("gomail_id") == email_id]
    assert len(found) == 1, f"{len(found)} SendGrid payloads for {email_id}"
    return found[0]


def _payloads(stub: SendGridStub) -> list[dict[str, Any]]:
    return [message["payload"] for message in stub.messages()]


def attachment_of(message: EmailMessage, filename: str) -> bytes:
    [part] = [p for p in message.walk() if p.get_filename() == filename]
    return part.get_content()


def alternatives(message: EmailMessage) -> list[str]:
    [alternative] = [p for p in message.walk() if p.get_content_type() == "multipart/alternative"]
    return [part.get_content_type() for part in alternative.iter_parts()]


def object_exists(key: str) -> bool:
    try:
        aws_client("s3").head_object(Bucket=settings.GOMAIL.payloads.bucket, Key=key)
    except ClientError:
        return False
    return True


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_recipients_alternatives_and_a_3_mib_attachment_through_s3_arrive_whole(
    provider: str,
    through: Any,
    client_with_key: Any,
    integration_aws: MotoServer,
    sendgrid_stub: SendGridStub,
    smtp_relay: SmtpStub,
) -> None:
    through(provider)
    content = os.urandom(THREE_MIB)
    subject = new_subject()

    response = send(client_with_key, real_email(subject, content))

    assert response.status_code == 200, response.content[:300]
    email_id = response.json()["messageId"]
    record = Email.objects.get(id=email_id)
    # 4 MiB of base64 is over what SQS or a send task takes: the payload went to S3.
    assert record.payload_key == claim_check.object_key(email_id)
    assert object_exists(record.payload_key)

    settle([email_id])

    record.refresh_from_db()
    assert (record.status, record.provider) == (Email.Status.SENT, provider), record.last_error
    assert record.payload_key == "" and not object_exists(claim_check.object_key(email_id))
    assert record.attachments == [
        {"filename": "report.bin", "contentType": "application/octet-stream", "size": THREE_MIB}
    ]
    everyone = ["first@example.org", "second@example.org", "copy@example.org", "hidden@example.org"]
    if provider == "sendgrid":
        payload = sendgrid_received(sendgrid_stub, email_id)
        [personalization] = payload["personalizations"]
        assert [r["email"] for r in personalization["to"]] == everyone[:2]
        assert [r["email"] for r in personalization["cc"]] == ["copy@example.org"]
        assert [r["email"] for r in personalization["bcc"]] == ["hidden@example.org"]
        assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
        [attachment] = payload["attachments"]
        assert base64.b64decode(attachment["content"]) == content
        assert payload["categories"] == ["welcome"]
        assert payload["custom_args"]["customer"] == "c-42"
        return
    if provider == "ses":
        message, envelope = ses_received(integration_aws.url, subject)
        raw = message.as_string()
    else:
        message, raw, envelope = smtp_received(smtp_relay, email_id)
    assert sorted(set(envelope)) == sorted(everyone)
    assert "hidden@example.org" not in header_block(raw)  # Bcc: the envelope only
    assert "second@example.org" in message["To"] and "copy@example.org" in message["Cc"]
    assert alternatives(message) == ["text/plain", "text/html"]
    assert attachment_of(message, "report.bin") == content


def test_an_original_format_message_is_still_delivered_as_before(
    through: Any, integration_aws: MotoServer, sendgrid_stub: SendGridStub
) -> None:
    through("sendgrid")
    subject = new_subject()
    original = {
        "email": {
            "fromEmail": SENDER,
            "fromName": "Old",
            "toEmail": "reader@example.org",
            "toName": "Reader",
            "subject": subject,
            "body": "From the original producer",
        }
    }
    enqueue_raw(json.dumps(original), settings.GOMAIL.sqs.incoming_queues[0])

    harness.drive_pipeline(lambda: bool(_by_subject(sendgrid_stub, subject)), 60)

    [payload] = _by_subject(sendgrid_stub, subject)
    assert payload["personalizations"] == [
        {"to": [{"email": "reader@example.org", "name": "Reader"}]}
    ]
    assert payload["content"] == [{"type": "text/plain", "value": "From the original producer"}]
    assert "attachments" not in payload and "categories" not in payload


def _by_subject(stub: SendGridStub, subject: str) -> list[dict[str, Any]]:
    return [p for p in _payloads(stub) if p.get("subject") == subject]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [("delete", "is missing"), ("corrupt", "is corrupt")],
)
def test_a_claim_check_whose_object_is_missing_or_corrupt_is_dead_lettered_with_the_reason(
    damage: str,
    reason: str,
    through: Any,
    client_with_key: Any,
    sendgrid_stub: SendGridStub,
) -> None:
    through("sendgrid")
    response = send(client_with_key, real_email(new_subject(), os.urandom(THREE_MIB)))
    assert response.status_code == 200
    email_id = response.json()["messageId"]
    s3, bucket, key = (
        aws_client("s3"),
        settings.GOMAIL.payloads.bucket,
        claim_check.object_key(email_id),
    )
    if damage == "delete":
        s3.delete_object(Bucket=bucket, Key=key)
    else:
        s3.put_object(Bucket=bucket, Key=key, Body=b'{"email": "not the one"}')

    settle([email_id])

    record = Email.objects.get(id=email_id)
    assert record.status == Email.Status.DEAD
    assert reason in record.last_error
    [dead] = [m for m in dead_letters() if json.loads(m["Body"])["id"] == email_id]
    assert reason in dead_letter_reason(dead)
    assert sendgrid_received_none(sendgrid_stub, email_id)


def sendgrid_received_none(stub: SendGridStub, email_id: str) -> bool:
    return not [p for p in _payloads(stub) if p.get("custom_args", {}).get("gomail_id") == email_id]


def test_an_idempotent_retry_sends_one_email_and_a_conflicting_reuse_is_refused(
    through: Any, client_with_key: Any, sendgrid_stub: SendGridStub
) -> None:
    through("sendgrid")
    key = f"order-{uuid.uuid4()}"
    email = real_email(new_subject())

    first = send(client_with_key, email, HTTP_IDEMPOTENCY_KEY=key)
    retry = send(client_with_key, email, HTTP_IDEMPOTENCY_KEY=key)
    other = send(client_with_key, {**email, "subject": "another"}, HTTP_IDEMPOTENCY_KEY=key)

    assert first.status_code == retry.status_code == 200
    email_id = first.json()["messageId"]
    assert retry.json() == {"messageId": email_id}
    assert other.status_code == 422
    assert other.json() == {"errors": {"base": "Idempotency-Key reused with a different request"}}
    settle([email_id])
    assert Email.objects.filter(subject=email["subject"]).count() == 1
    sendgrid_received(sendgrid_stub, email_id)  # exactly one copy
