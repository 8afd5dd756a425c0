"""Helpers of the tests on the real parts (the delivery pipeline's, and the operations and
security tests that put and read emails too): wire emails, and small helpers to put, peek at and
read SQS messages. The fixtures (the SendGrid stand-in, providers built on it and on the test
moto server) are in ``tests/dispatch/conftest.py``.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection

from devtools.moto_server import MotoServer
from dispatch.inbox import ReceivedMessage, receive
from emails.wire import WireEmail
from gomail_site.aws import aws_client, queue_url

SENDER = "sender@example.com"  # example.com is verified in moto's SES by the `aws` fixture


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


def incoming_queue(index: int = 0) -> str:
    return settings.GOMAIL.sqs.incoming_queues[index]


def put(body: str, queue: str | None = None) -> str:
    """Send a raw body to an incoming queue; returns its SQS MessageId."""
    answer = aws_client("sqs").send_message(
        QueueUrl=queue_url(queue or incoming_queue()), MessageBody=body
    )
    return answer["MessageId"]


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
    attributes = aws_client("sqs").get_queue_attributes(
        QueueUrl=queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


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


def ses_sent(moto_server: MotoServer) -> list[dict[str, Any]]:
    """What moto's SES has sent since the last reset."""
    with urllib.request.urlopen(f"{moto_server.url}/moto-api/data.json", timeout=10) as answer:
        data = json.load(answer)
    return data.get("ses", {}).get("Message", [])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def in_own_connection(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``function`` for a worker thread: its database connection is closed afterwards."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return run
