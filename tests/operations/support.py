"""Helpers of the operations tests: wire emails, SQS puts and reads, a recording dispatcher."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from dispatch.inbox import ReceivedMessage, receive
from emails.models import Email
from emails.wire import WireEmail
from gomail_site.aws import aws_client, queue_url

SENDER = "sender@example.com"  # example.com is verified in moto's SES by the `aws` fixture


def wire_email(**overrides: Any) -> WireEmail:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "from_email": SENDER,
        "from_name": "Sender",
        "to_email": "reader@example.org",
        "to_name": "Reader",
        "subject": "Hello",
        "body": "Hello there",
        "accepted_at": datetime.now(UTC),
    }
    values.update(overrides)
    return WireEmail(**values)


def incoming(index: int = 0) -> str:
    return settings.GOMAIL.sqs.incoming_queues[index]


def put(body: str, queue: str | None = None) -> str:
    """Send ``body`` to an incoming queue (the first by default); returns its MessageId."""
    answer = aws_client("sqs").send_message(
        QueueUrl=queue_url(queue or incoming()), MessageBody=body
    )
    return answer["MessageId"]


def put_dead_letter(
    body: str,
    *,
    reason: str = "rejected by every provider: ses: bad address",
    email_id: str | None = None,
    source_queue: str | None = None,
    receive_count: int | None = None,
) -> str:
    """Put a message on the dead-letter queue as the settlement does; returns its MessageId."""
    attributes = {"reason": reason, "sourceQueue": source_queue or incoming()}
    if email_id is not None:
        attributes["emailId"] = email_id
    if receive_count is not None:
        attributes["receiveCount"] = str(receive_count)
    answer = aws_client("sqs").send_message(
        QueueUrl=queue_url(settings.GOMAIL.sqs.dead_letter_queue),
        MessageBody=body,
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )
    return answer["MessageId"]


def receive_all(queue: str, *, attributes: bool = False) -> list[dict[str, Any]]:
    """Every message of ``queue`` visible right now, in one sweep: each is received while the
    others are hidden, then all are made visible again (a look that changes nothing else)."""
    sqs = aws_client("sqs")
    url = queue_url(queue)
    found: dict[str, dict[str, Any]] = {}
    for _ in range(100):
        answer = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"] if attributes else [],
        )
        batch = answer.get("Messages", [])
        if not batch:
            break
        found.update((message["MessageId"], message) for message in batch)
    for message in found.values():
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return list(found.values())


def dead_letter_queue() -> str:
    return settings.GOMAIL.sqs.dead_letter_queue


def queued_record(email: WireEmail, **fields: Any) -> Email:
    """The record the API would have written for ``email``."""
    values = {
        "id": email.id,
        "from_email": email.from_email,
        "to_email": email.to_email,
        "subject": email.subject,
        "queue": incoming(),
        **fields,
    }
    return Email.objects.create(**values)


@dataclass
class RecordingDispatcher:
    """A pipeline dispatcher that keeps what it was given instead of queuing Celery tasks."""

    calls: list[tuple[str, str, list[ReceivedMessage]]] = field(default_factory=list)

    def __call__(self, provider: str, batch_id: str, messages: Sequence[ReceivedMessage]) -> None:
        self.calls.append((provider, batch_id, list(messages)))

    def messages_for(self, provider: str) -> list[ReceivedMessage]:
        return [m for name, _, batch in self.calls if name == provider for m in batch]

    @property
    def providers(self) -> set[str]:
        return {name for name, _, _ in self.calls}


def receive_messages(count: int, queue: str | None = None) -> list[ReceivedMessage]:
    """Read exactly ``count`` messages as the pipeline does (``dispatch.inbox.receive``)."""
    name = queue or incoming()
    messages: list[ReceivedMessage] = []
    deadline = time.monotonic() + 5
    while len(messages) < count and time.monotonic() < deadline:
        messages.extend(receive(name, min(10, count - len(messages))))
    assert len(messages) == count, f"read {len(messages)} of {count} from {name}"
    return messages
