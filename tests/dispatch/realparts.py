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
from typing import Any

from django.conf import settings
from django.db import connection

from dispatch.inbox import ReceivedMessage, receive
from dispatch.providers import OutgoingEmail
from emails.wire import WireEmail
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
