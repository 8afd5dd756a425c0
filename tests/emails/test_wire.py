"""The SQS wire format, compatible with the original service (pure, no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from emails.wire import UndecodableMessage, WireEmail, decode, derive_id

ORIGINAL_BODY = json.dumps(
    {
        "email": {
            "fromEmail": "a@example.com",
            "fromName": "A",
            "toEmail": "b@example.org",
            "toName": "B",
            "subject": "S",
            "body": "text",
        }
    }
)


def test_encode_then_decode_round_trips():
    email = WireEmail(
        id="0b7f6a34-1f4f-4b8e-9c43-0d5f7a1b2c3d",
        from_email="a@example.com",
        from_name="Zoë",
        to_email="b@example.org",
        body="🚀",
        accepted_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )

    body = email.encode()

    assert "🚀" in body  # literal, not \\u-escaped: SQS counts the bytes of this text
    assert decode(body, "sqs-id") == email


def test_a_message_from_the_original_producer_gets_a_stable_derived_id():
    first = decode(ORIGINAL_BODY, "sqs-message-1")
    again = decode(ORIGINAL_BODY, "sqs-message-1")
    other = decode(ORIGINAL_BODY, "sqs-message-2")

    assert first.id == again.id == derive_id("sqs-message-1")
    assert other.id != first.id
    assert first.accepted_at is None
    assert first.subject == "S"


def test_a_foreign_non_uuid_id_is_mapped_to_a_uuid():
    body = json.dumps({**json.loads(ORIGINAL_BODY), "id": "order-42"})

    assert decode(body, "sqs").id == derive_id("order-42")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[]", '"email" object'),
        ('{"email": "x"}', '"email" object'),
        ('{"email": {"fromEmail": 1, "toEmail": "b@x.org", "body": "b"}}', "email.fromEmail"),
        ('{"email": {"fromEmail": "a@x.org", "body": "b"}}', "toEmail"),
        ('{"email": {"fromEmail": "a@x.org", "toEmail": "b@x.org"}}', "body"),
    ],
)
def test_undecodable_messages_say_why(body, reason):
    with pytest.raises(UndecodableMessage, match=reason):
        decode(body, "sqs-id")


def test_null_optional_fields_from_another_producer_read_as_empty():
    body = json.dumps(
        {
            "email": {
                "fromEmail": "a@example.com",
                "fromName": None,
                "toEmail": "b@example.org",
                "toName": None,
                "subject": None,
                "body": "text",
            }
        }
    )

    email = decode(body, "sqs-id")

    assert (email.from_name, email.to_name, email.subject) == ("", "", "")


def test_null_required_field_is_still_undecodable():
    body = json.dumps({"email": {"fromEmail": None, "toEmail": "b@example.org", "body": "x"}})

    with pytest.raises(UndecodableMessage, match="fromEmail"):
        decode(body, "sqs-id")
