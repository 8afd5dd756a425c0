"""POST /email/send with the real emails' fields, against a real moto server (SQS and S3):
what is accepted and how it travels, every refusal keyed by its place, and no S3 object left
behind by anything that is not a 200."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from dispatch.queues import QueueSetup
from emails import claim_check
from emails.models import Email, EmailTag
from emails.wire import decode
from gomail_site.aws import aws_client
from tests.clients import VALID_EMAIL, post_email

pytestmark = pytest.mark.django_db

SENDER = VALID_EMAIL["fromEmail"]
PDF, CID = "application/pdf", "(cid:logo)"


def email(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "fromEmail": SENDER,
        "to": [{"email": "one@example.org", "name": "One"}],
        "subject": "Hi",
        "body": "text",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def attachment(**fields: Any) -> dict[str, Any]:
    return {"filename": "a.txt", "contentType": "text/plain", "content": b64(b"hello")} | fields


def queued(setup: QueueSetup) -> list[dict[str, Any]]:
    sqs, bodies = aws_client("sqs"), []
    for url in setup.incoming_urls.values():
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            bodies.extend(json.loads(m["Body"]) for m in messages)
    return bodies


def stored_objects() -> list[str]:
    answer = aws_client("s3").list_objects_v2(Bucket=settings.GOMAIL.payloads.bucket)
    return [item["Key"] for item in answer.get("Contents", [])]


def assert_refused(response: Any, errors: dict[str, str], setup: QueueSetup) -> None:
    assert response.status_code == 422, response.content[:500]
    assert response.json() == {"errors": errors}
    assert queued(setup) == [] and stored_objects() == []
    assert not Email.objects.exists()


# --- accepted ---------------------------------------------------------------------------------


def test_every_field_travels_in_the_message_and_on_the_record(client_with_key, aws):
    sent = email(
        to=[{"email": "one@example.org", "name": "One"}, {"email": "two@example.org"}],
        cc=[{"email": "cc@example.org"}],
        bcc=[{"email": "bcc@example.org", "name": "Hidden"}],
        html='<p>Hi <img src="cid:logo"></p>',
        replyTo=["help@example.com"],
        headers={"list-unsubscribe": "<https://example.com/u/1>"},
        tags=["welcome", "welcome", "onboarding"],
        metadata={"customer": "c-1"},
        attachments=[
            attachment(filename="C:\\Users\\me\\notes.txt"),
            attachment(filename="logo.png", contentType="IMAGE/PNG", contentId="logo"),
        ],
    )

    response = post_email(client_with_key, sent)

    assert response.status_code == 200, response.content
    [message] = queued(aws)
    wire = decode(json.dumps(message), "unused")
    assert [m.email for m in wire.to] == ["one@example.org", "two@example.org"]
    assert message["email"]["toEmail"] == "one@example.org"  # the original's field, the first
    assert [m.email for m in wire.bcc] == ["bcc@example.org"]
    assert wire.headers == {"List-Unsubscribe": "<https://example.com/u/1>"}  # allowlist's case
    assert wire.tags == ("welcome", "onboarding")  # duplicates merged
    assert [(a.filename, a.content_type) for a in wire.attachments] == [
        ("notes.txt", "text/plain"),
        ("logo.png", "image/png"),
    ]
    assert wire.attachments[1].content == b"hello"
    record = Email.objects.get(id=response.json()["messageId"])
    assert record.recipients["cc"] == [{"email": "cc@example.org"}]
    assert record.metadata == {"customer": "c-1"}
    assert record.attachments[0] == {
        "filename": "notes.txt",
        "contentType": "text/plain",
        "size": 5,
    }
    assert sorted(EmailTag.objects.filter(email=record).values_list("tag", flat=True)) == [
        "onboarding",
        "welcome",
    ]
    assert stored_objects() == []  # small enough for SQS: no claim check


def test_html_alone_is_enough(client_with_key, aws):
    response = post_email(client_with_key, email(body=None, html="<p>only html</p>"))

    assert response.status_code == 200, response.content


def test_the_status_shows_recipients_tags_metadata_and_attachments_and_bcc_only_to_the_sender(
    client_with_key, aws, gomail_config
):
    sent = email(
        cc=[{"email": "cc@example.org"}],
        bcc=[{"email": "bcc@example.org"}],
        tags=["t"],
        metadata={"k": "v"},
        attachments=[attachment()],
    )
    message_id = post_email(client_with_key, sent).json()["messageId"]

    mine = client_with_key.get(f"/email/{message_id}").json()
    gomail_config(api={"require_auth": False})
    anyone = APIClient().get(f"/email/{message_id}").json()

    assert mine["to"] == [{"email": "one@example.org", "name": "One"}]
    assert mine["cc"] == [{"email": "cc@example.org"}]
    assert mine["bcc"] == [{"email": "bcc@example.org"}]
    assert (mine["tags"], mine["metadata"]) == (["t"], {"k": "v"})
    assert mine["attachments"] == [{"filename": "a.txt", "contentType": "text/plain", "size": 5}]
    assert anyone["bcc"] == [] and anyone["cc"] == mine["cc"]


def test_an_original_format_email_shows_its_one_recipient(client_with_key, aws):
    message_id = post_email(client_with_key, VALID_EMAIL).json()["messageId"]

    status = client_with_key.get(f"/email/{message_id}").json()

    assert status["to"] == [{"email": "recipient@example.org", "name": "Recipient"}]
    assert (status["cc"], status["bcc"], status["attachments"]) == ([], [], [])


def test_a_large_email_goes_through_s3_with_its_digest(client_with_key, aws):
    content = bytes(range(256)) * 1024  # 256 KiB: over what a send task carries
    response = post_email(client_with_key, email(attachments=[attachment(content=b64(content))]))

    assert response.status_code == 200, response.content[:300]
    [message] = queued(aws)
    assert set(message["email"]) == {"fromEmail", "fromName", "toEmail", "toName", "subject"}
    summary = decode(json.dumps(message), "unused")
    assert summary.payload is not None
    assert stored_objects() == [claim_check.object_key(summary.id)]
    assert claim_check.fetch(summary).attachments[0].content == content


def test_a_queue_that_takes_less_sends_smaller_emails_through_s3(client_with_key, aws):
    sqs = aws_client("sqs")
    for url in aws.incoming_urls.values():
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "1024"})
    claim_check._queue_limits.clear()  # as a process started after the change would see it
    try:
        response = post_email(client_with_key, email(body="x" * 2_000))
    finally:
        claim_check._queue_limits.clear()

    assert response.status_code == 200
    [message] = queued(aws)
    assert "payload" in message


def test_s3_refusing_a_large_email_is_a_503_and_nothing_is_left(
    client_with_key, aws, gomail_config
):
    gomail_config(payloads={"bucket": "no-such-bucket"})
    response = post_email(client_with_key, email(body="x" * 300_000))

    assert response.status_code == 503
    assert queued(aws) == [] and not Email.objects.exists()


def test_sqs_refusing_a_claim_check_deletes_its_object(client_with_key, aws, monkeypatch):
    from emails import accepting
    from emails.queueing import QueueUnavailable

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise QueueUnavailable("refused")

    monkeypatch.setattr(accepting, "enqueue", refuse)
    response = post_email(client_with_key, email(body="x" * 300_000))

    assert response.status_code == 503
    assert stored_objects() == []
    assert Email.objects.get().status == Email.Status.WITHDRAWN


# --- refused, each at its place -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"toEmail": "x@example.org"},
            {"to": "Give either toEmail and toName or to, not both"},
        ),
        ({"to": []}, {"to": "To must name at least one recipient"}),
        ({"to": None}, {"toEmail": "To email is required"}),
        (
            {"to": [{"email": "ok@example.org"}, {"email": "nope"}, {"name": "x"}]},
            {"to[1].email": "To email is not a valid email", "to[2].email": "To email is required"},
        ),
        (
            {"cc": [{"email": "c@example.org", "name": "a\r\nBcc: x"}]},
            {"cc[0].name": "Cc name must not contain line breaks"},
        ),
        ({"bcc": "b@example.org"}, {"bcc": "Bcc must be a list of recipients"}),
        (
            {"cc": [{"email": "ONE@example.org"}]},
            {"cc[0].email": "ONE@example.org is already a recipient (to[0].email)"},
        ),
        ({"body": None}, {"body": "Body is required"}),
        ({"body": " ", "html": ""}, {"body": "Body is required"}),
        ({"replyTo": "nope"}, {"replyTo": "Reply-to address is not a valid email"}),
        ({"replyTo": ["a@example.com", 5]}, {"replyTo[1]": "Reply-to address must be a string"}),
        (
            {"headers": {"X-Mailer": "me"}},
            {
                "headers.X-Mailer": "Header X-Mailer is not allowed (allowed: List-Unsubscribe, "
                "List-Unsubscribe-Post, X-Entity-Ref-ID)"
            },
        ),
        (
            {"headers": {"List-Unsubscribe": "<a>\r\nBcc: x@example.org"}},
            {"headers.List-Unsubscribe": "Header value must not contain line breaks"},
        ),
        ({"tags": "one"}, {"tags": "Tags must be a list of strings"}),
        ({"tags": ["ok", ""]}, {"tags[1]": "Tag must be a non-empty string"}),
        ({"tags": ["t"] * 11}, {"tags": "At most 10 tags"}),
        ({"tags": ["x" * 65]}, {"tags[0]": "Tag must be at most 64 characters"}),
        ({"metadata": {"k": 1}}, {"metadata.k": "Metadata value must be a string"}),
        (
            {"metadata": {"k": "v" * 3000}},
            {"metadata": "Metadata must be at most 2048 bytes as JSON"},
        ),
        ({"attachments": {}}, {"attachments": "Attachments must be a list"}),
        (
            {"attachments": [attachment(content="!!!")]},
            {"attachments[0].content": "Content is not valid base64"},
        ),
        (
            {"attachments": [attachment(content=None)]},
            {"attachments[0].content": "Content is required"},
        ),
        (
            {"attachments": [attachment(), attachment(filename="setup.EXE.")]},
            {"attachments[1].filename": "Files ending in .exe are not allowed"},
        ),
        (
            {"attachments": [attachment(filename="invoice.pdf.js")]},
            {"attachments[0].filename": "Files ending in .js are not allowed"},
        ),
        (
            {"attachments": [attachment(contentType="application/x-msdownload")]},
            {"attachments[0].contentType": "Content type application/x-msdownload is not allowed"},
        ),
        (
            {"attachments": [attachment(contentType="text")]},
            {"attachments[0].contentType": "Content type must be a MIME type such as " + PDF},
        ),
        (
            {"attachments": [attachment(filename="../..")]},
            {"attachments[0].filename": "Filename is required"},
        ),
        (
            {"attachments": [attachment(contentId="logo")]},
            {"attachments[0].contentId": "Content ID logo is not referenced in the HTML " + CID},
        ),
        ({"attachments": [attachment()] * 21}, {"attachments": "At most 20 attachments"}),
    ],
)
def test_a_bad_field_is_a_422_at_its_place_and_nothing_is_stored(
    client_with_key, aws, fields, errors
):
    response = post_email(client_with_key, email(**fields))

    assert_refused(response, errors, aws)


def test_too_many_recipients_in_total(client_with_key, aws):
    to = [{"email": f"to{i}@example.org"} for i in range(30)]
    cc = [{"email": f"cc{i}@example.org"} for i in range(21)]

    response = post_email(client_with_key, email(to=to, cc=cc))

    assert_refused(response, {"recipients": "At most 50 recipients (to, cc and bcc together)"}, aws)


def test_attachments_over_their_limits(client_with_key, aws, gomail_config):
    gomail_config(api={"max_attachment_bytes": 10, "max_attachments_bytes": 15})
    one = attachment(content=b64(b"x" * 11))
    two = [attachment(content=b64(b"x" * 8)), attachment(content=b64(b"y" * 8))]

    assert_refused(
        post_email(client_with_key, email(attachments=[one])),
        {"attachments[0].content": "Content must be at most 10 bytes"},
        aws,
    )
    assert_refused(
        post_email(client_with_key, email(attachments=two)),
        {"attachments": "Attachments must be at most 15 bytes in total"},
        aws,
    )


def test_an_attachment_over_the_body_limit_is_a_400_and_nothing_is_stored(
    client_with_key, aws, gomail_config
):
    gomail_config(api={"max_body_size_bytes": 10_000})
    response = post_email(
        client_with_key, email(attachments=[attachment(content=b64(b"x" * 9_000))])
    )

    assert response.status_code == 400
    assert response.json() == {"errors": {"base": "Body is larger than the maximum of 10000 bytes"}}
    assert queued(aws) == [] and stored_objects() == []


def test_a_refused_large_email_leaves_no_object(client_with_key, aws):
    content = b64(b"x" * 300_000)
    response = post_email(
        client_with_key, email(to=[{"email": "bad"}], attachments=[attachment(content=content)])
    )

    assert_refused(response, {"to[0].email": "To email is not a valid email"}, aws)


def test_errors_across_fields_come_with_the_fields_own_at_once(client_with_key, aws):
    sent = email(
        to=[{"email": "one@example.org"}, {"email": "bad"}],
        bcc=[{"email": "One@Example.org"}],
        body=None,
        attachments=[attachment(contentId="logo", content="!")],
    )

    response = post_email(client_with_key, sent)

    assert_refused(
        response,
        {
            "to[1].email": "To email is not a valid email",
            "bcc[0].email": "One@Example.org is already a recipient (to[0].email)",
            "body": "Body is required",
            "attachments[0].content": "Content is not valid base64",
            "attachments[0].contentId": "Content ID logo is not referenced in the HTML " + CID,
        },
        aws,
    )


def test_the_recent_list_shows_bcc_to_the_sender(client_with_key, aws):
    post_email(client_with_key, email(bcc=[{"email": "bcc@example.org"}]))

    [line] = client_with_key.get("/email/recent").json()

    assert line["bcc"] == [{"email": "bcc@example.org"}]


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        # The original's required fields keep the original's answers.
        (
            {"toEmail": None, "body": None},
            {"toEmail": "To email is required", "body": "Body is required"},
        ),
        ({"toEmail": "   "}, {"toEmail": "To email is required"}),
        ({"body": "  "}, {"body": "Body is required"}),
    ],
)
def test_an_original_request_missing_a_required_field_gets_the_originals_answer(
    client_with_key, aws, fields, errors
):
    response = post_email(client_with_key, {**VALID_EMAIL, **fields})

    assert_refused(response, errors, aws)


def test_a_null_new_field_is_an_absent_one(client_with_key, aws):
    nulls = dict.fromkeys(
        ["to", "cc", "bcc", "replyTo", "headers", "tags", "metadata", "attachments"]
    )

    response = post_email(client_with_key, {**VALID_EMAIL, **nulls})

    assert response.status_code == 200, response.content
    [message] = queued(aws)
    assert message["email"] == VALID_EMAIL  # still the original format
