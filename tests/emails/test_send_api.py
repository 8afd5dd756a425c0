"""POST /email/send against a real moto server: the original's handler cases and more."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from dispatch.queues import QueueSetup
from emails.models import Email
from gomail_site.aws import aws_client
from tests.clients import VALID_EMAIL

pytestmark = pytest.mark.django_db


def post(client: APIClient, payload: Any, **extra: Any):
    data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return client.post("/email/send", data=data, content_type="application/json", **extra)


def drain(setup: QueueSetup) -> list[dict[str, Any]]:
    """Every message currently in the incoming queues, as parsed JSON bodies."""
    sqs = aws_client("sqs")
    bodies = []
    for url in setup.incoming_urls.values():
        while True:
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                break
            bodies.extend(json.loads(message["Body"]) for message in messages)
    return bodies


def test_valid_email_is_queued_in_the_wire_format(client_with_key, aws):
    response = post(client_with_key, {"email": VALID_EMAIL})

    assert response.status_code == 200
    message_id = response.json()["messageId"]
    [queued] = drain(aws)
    assert queued["id"] == message_id
    assert queued["email"] == VALID_EMAIL
    assert queued["acceptedAt"].endswith("+00:00")
    record = Email.objects.get(id=message_id)
    assert record.status == Email.Status.QUEUED
    assert record.queue in settings.GOMAIL.sqs.incoming_queues
    assert record.to_email == VALID_EMAIL["toEmail"]


def test_optional_fields_may_be_missing(client_with_key, aws):
    payload = {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.com", "body": "x"}}

    response = post(client_with_key, payload)

    assert response.status_code == 200
    [queued] = drain(aws)
    assert queued["email"]["subject"] == ""
    assert queued["email"]["fromName"] == ""


def test_unknown_fields_are_ignored_and_not_queued(client_with_key, aws):
    payload = {"email": {**VALID_EMAIL, "importance": "high"}, "priority": "high"}

    response = post(client_with_key, payload)

    assert response.status_code == 200
    [queued] = drain(aws)
    assert queued["email"] == VALID_EMAIL
    assert "priority" not in queued


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"email": ',
        b"[1, 2]",
        b'"email"',
        b"null",
        b"{}",
        b'{"email": []}',
        b'{"email": "x"}',
        b'{"email": null}',
        b'{"email": {"body": NaN}}',
        b"\xff\xfe\x00",
    ],
    ids=[
        "empty",
        "text",
        "truncated",
        "array",
        "string",
        "null",
        "no-email",
        "email-list",
        "email-string",
        "email-null",
        "nan",
        "not-utf8",
    ],
)
def test_malformed_or_wrongly_shaped_body_is_a_400(client_with_key, aws, body):
    response = post(client_with_key, body)

    assert response.status_code == 400
    assert response.json() == {"errors": {"base": "Could not decode JSON body"}}
    assert drain(aws) == []


def test_deeply_nested_json_is_a_400_not_a_crash(client_with_key, aws, gomail_config):
    gomail_config(api={"max_body_size_bytes": 200_000})
    body = '{"email": ' + "[" * 50_000 + "]" * 50_000 + "}"

    response = post(client_with_key, body)

    assert response.status_code == 400
    assert response.json() == {"errors": {"base": "JSON nesting is deeper than 10 levels"}}


def test_body_over_the_size_limit_is_a_400_before_parsing(client_with_key, aws):
    limit = settings.GOMAIL.api.max_body_size_bytes
    payload = json.dumps({"email": {**VALID_EMAIL, "body": "x" * limit}})

    response = post(client_with_key, payload)

    assert response.status_code == 400
    assert response.json() == {
        "errors": {"base": f"Body is larger than the maximum of {limit} bytes"}
    }
    assert drain(aws) == []


def test_size_limit_counts_utf8_bytes_not_characters(client_with_key, aws):
    limit = settings.GOMAIL.api.max_body_size_bytes
    # Fewer characters than the limit, more bytes: moto would count characters.
    payload = json.dumps({"email": {**VALID_EMAIL, "body": "€" * (limit // 2)}}, ensure_ascii=False)
    assert len(payload) < limit < len(payload.encode())

    response = post(client_with_key, payload.encode())

    assert response.status_code == 400
    assert "maximum" in response.json()["errors"]["base"]


@pytest.mark.parametrize(
    "text",
    ["nul \x00 byte", "escape \x1b", "non-character \ufffe", "lone surrogate \ud800"],
    ids=["nul", "control", "ufffe", "surrogate"],
)
def test_characters_sqs_refuses_are_a_400(client_with_key, aws, text):
    # json.dumps escapes them as \uXXXX, the way a client would send them.
    response = post(client_with_key, {"email": {**VALID_EMAIL, "body": text}})

    assert response.status_code == 400
    assert response.json() == {
        "errors": {"base": "Body contains characters outside the allowed set"}
    }
    assert drain(aws) == []


def test_allowed_unusual_characters_pass(client_with_key, aws):
    text = "tab\t newline\n emoji 🚀 cjk 漢字 rtl שלום"

    response = post(client_with_key, {"email": {**VALID_EMAIL, "body": text}})

    assert response.status_code == 200
    [queued] = drain(aws)
    assert queued["email"]["body"] == text


def withdrawn_only() -> bool:
    """Nothing accepted: the one record is withdrawn (a copy SQS kept would be dropped)."""
    return list(Email.objects.values_list("status", flat=True)) == [Email.Status.WITHDRAWN]


def test_sqs_unavailable_is_a_503_and_nothing_is_accepted(client_with_key, aws, gomail_config):
    gomail_config(aws={"endpoint_url": "http://127.0.0.1:9", "client_timeout_seconds": 0.5})

    response = post(client_with_key, {"email": VALID_EMAIL})

    assert response.status_code == 503
    assert response.json() == {"errors": {"base": "Service unavailable"}}
    assert withdrawn_only()


def test_missing_queue_is_a_503(client_with_key, aws):
    aws_client("sqs").delete_queue(QueueUrl=next(iter(aws.incoming_urls.values())))
    aws_client("sqs").delete_queue(QueueUrl=list(aws.incoming_urls.values())[1])
    from gomail_site import aws as aws_module

    aws_module._queue_urls.clear()

    response = post(client_with_key, {"email": VALID_EMAIL})

    assert response.status_code == 503
    assert withdrawn_only()


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"fromEmail": "not-an-email"}, {"fromEmail": "From email is not a valid email"}),
        ({"toEmail": None}, {"toEmail": "To email is required"}),
        ({"toEmail": ""}, {"toEmail": "To email is required"}),
        ({"body": ""}, {"body": "Body is required"}),
        ({"body": "   \n "}, {"body": "Body is required"}),
        ({"toEmail": 5}, {"toEmail": "To email must be a string"}),
        ({"subject": ["x"]}, {"subject": "Subject must be a string"}),
        ({"fromName": {"a": 1}}, {"fromName": "From name must be a string"}),
        (
            {"subject": "Hi\r\nBcc: victim@example.com"},
            {"subject": "Subject must not contain line breaks"},
        ),
        ({"toName": "Bob\nBcc: x@example.com"}, {"toName": "To name must not contain line breaks"}),
        (
            {"fromEmail": "a@example.com\r\nBcc: b@example.com"},
            {"fromEmail": "From email must not contain line breaks"},
        ),
        ({"subject": "s" * 999}, {"subject": "Subject must be at most 998 characters"}),
        ({"fromEmail": "a@b"}, {"fromEmail": "From email is not a valid email"}),
        ({"toEmail": "two@@example.com"}, {"toEmail": "To email is not a valid email"}),
    ],
)
def test_invalid_field_is_a_422_naming_it(client_with_key, aws, changes, errors):
    email = {**VALID_EMAIL, **changes}
    email = {key: value for key, value in email.items() if value is not None}

    response = post(client_with_key, {"email": email})

    assert response.status_code == 422
    assert response.json() == {"errors": errors}
    assert drain(aws) == []


def test_every_failing_field_is_reported_at_once(client_with_key, aws):
    payload = {"email": {"fromEmail": "nope", "subject": "ok"}}

    response = post(client_with_key, payload)

    assert response.status_code == 422
    assert response.json() == {
        "errors": {
            "fromEmail": "From email is not a valid email",
            "toEmail": "To email is required",
            "body": "Body is required",
        }
    }


@pytest.mark.parametrize(
    "address",
    [
        "someone@example.photography",
        "someone@example.international",
        "UPPER.Case@EXAMPLE.COM",
        "user@bücher.example",
        "user@xn--bcher-kva.example",
        "first.last+tag@sub.domain.example.co.uk",
        "用户@例子.广告",
    ],
)
def test_real_world_addresses_are_accepted(client_with_key, aws, address):
    response = post(client_with_key, {"email": {**VALID_EMAIL, "toEmail": address}})

    assert response.status_code == 200, response.json()
    [queued] = drain(aws)
    assert queued["email"]["toEmail"] == address


def test_other_methods_get_the_error_shape(client_with_key, aws):
    response = client_with_key.get("/email/send")

    assert response.status_code == 405
    assert response.json() == {"errors": {"base": "Method not allowed"}}


def test_unknown_url_gets_a_json_404(client_with_key, aws):
    response = client_with_key.get("/no/such/thing")

    assert response.status_code == 404
    assert response.json() == {"errors": {"base": "Not found"}}


def test_form_content_type_is_read_as_json_like_the_original(client_with_key, aws):
    response = client_with_key.post(
        "/email/send",
        data=json.dumps({"email": VALID_EMAIL}),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
