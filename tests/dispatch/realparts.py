"""Helpers of the tests on the real parts (the delivery pipeline's, and the operations and
security tests that put and read emails too): wire emails, and small helpers to put, peek at and
read SQS messages. The fixtures (the SendGrid stand-in, providers built on it and on the test
moto server) are in ``tests/dispatch/conftest.py``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from django.conf import settings
from django.db import connection

from dispatch.inbox import ReceivedMessage, receive
from dispatch.providers import OutgoingEmail
from emails.wire import Attachment, Mailbox, WireEmail
from gomail_site.aws import aws_client, queue_url
from tests.harness.emails import SENDER
from tests.harness.queues import enqueue_raw as put
from tests.harness.queues import queue_counts

__all__ = ["SENDER", "put"]  # the harness's, under the names these tests use


def wire_email(**overrides: Any) -> WireEmail:
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "from_email": SENDER,
        "from_name": "Sender",
        "to_email": "reader@example.org",
        "to_name": "Reader",
        "subject": "Hello",
        "body": "Hello there",
        "accepted_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return WireEmail(**fields)


def outgoing_email(**overrides: str) -> OutgoingEmail:
    """What a provider is handed: names, subject and body with non-ASCII and a comma."""
    fields = {
        "message_id": "0b6f2a1e-5c1d-4a8e-9d1f-2f0c1e9a7b33",
        "from_email": SENDER,
        "from_name": "Zoë Sender",
        "to_email": "reader@example.org",
        "to_name": "Doe, John",
        "subject": "Grüße ✓",
        "body": "Line 1\nLine 2 ✓",
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


def incoming_queue(index: int = 0) -> str:
    return settings.GOMAIL.sqs.incoming_queues[index]


def receive_exactly(count: int, queue: str | None = None) -> list[ReceivedMessage]:
    """Read ``count`` messages with ``dispatch.inbox.receive`` (several calls if need be)."""
    name = queue or incoming_queue()
    messages: list[ReceivedMessage] = []
    deadline = time.monotonic() + 5
    while len(messages) < count and time.monotonic() < deadline:
        messages.extend(receive(name, min(10, count - len(messages))))
    assert len(messages) == count, f"read {len(messages)} of {count} from {name}"
    return messages


def levels(queue: str) -> tuple[int, int]:
    """(visible, in flight) of ``queue``."""
    counts = queue_counts(queue)
    return counts["visible"], counts["in_flight"]


def drain(queue: str, *, attributes: bool = False) -> list[dict[str, Any]]:
    """Every visible message of ``queue``, raw as boto3 returns them (they become invisible)."""
    sqs = aws_client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url(queue),
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"] if attributes else [],
        )
        batch = answer.get("Messages", [])
        if not batch:
            return found
        found.extend(batch)


def dead_letters() -> list[dict[str, Any]]:
    return drain(settings.GOMAIL.sqs.dead_letter_queue, attributes=True)


def dead_letter_reason(message: dict[str, Any]) -> str:
    return message["MessageAttributes"]["reason"]["StringValue"]


def in_own_connection(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``function`` for a worker thread: its database connection is closed afterwards."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return run


# --- real emails: every field a provider carries, and reading their MIME messages back ----

# An inline image's content id, as the HTML of ``real_email`` references it.
LOGO_CID = "logo-1@gomail.test"


def real_email(**overrides: Any) -> OutgoingEmail:
    """An email with every field set: two To (one IDN), a Cc, a Bcc, text and HTML, two
    reply-to addresses, a custom header, tags and metadata; no attachments (add them)."""
    fields: dict[str, Any] = {
        "message_id": "5d1c7a52-3f0e-4b5e-9a44-1c2d3e4f5a6b",
        "from_email": SENDER,
        "from_name": "Zoë Sender",
        "to_email": "",
        "to_name": "",
        "subject": "Grüße ✓",
        "body": "Plain ✓",
        "to": (Mailbox("reader@example.org", "Doe, John"), Mailbox("leser@bücher.example")),
        "cc": (Mailbox("copy@example.org", "Çopy"),),
        "bcc": (Mailbox("hidden@example.org", "Hidden One"),),
        "html": f'<p>HTML ✓ <img src="cid:{LOGO_CID}"></p>',
        "reply_to": ("answers@example.com", "help@bücher.example"),
        "headers": {"List-Unsubscribe": "<mailto:unsubscribe@example.com>"},
        "tags": ("newsletter", "week 12"),
        "metadata": {"campaign": "spring-7", "note": "not taggable!"},
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


def logo(content: bytes = b"\x89PNG\r\n\x1a\n-logo-") -> Attachment:
    """An inline image, referenced by ``real_email``'s HTML."""
    return Attachment("logo.png", "image/png", content, LOGO_CID)


def parsed(raw: bytes | str) -> EmailMessage:
    """A raw RFC 5322 message as the email package reads it (modern policy)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return message_from_bytes(data, policy=default_policy)  # type: ignore[return-value]


def header_block(raw: bytes | str) -> str:
    """Every header line of a raw message and of all its parts (the Bcc must be in none)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    message = parsed(text)
    return "\n".join(f"{name}: {value}" for part in message.walk() for name, value in part.items())


def part_by_filename(message: EmailMessage, filename: str) -> EmailMessage:
    [part] = [p for p in message.walk() if p.get_filename() == filename]
    return part  # type: ignore[return-value]
