"""Helpers of the operations tests: dead-letter puts, a look at a queue that changes nothing,
queued records and a recording dispatcher. Wire emails and incoming-queue puts and reads come
from ``tests.dispatch.realparts``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from dispatch.inbox import ReceivedMessage
from emails.models import Email
from emails.wire import WireEmail
from gomail_site.aws import aws_client, queue_url
from tests.dispatch.realparts import incoming_queue


def put_dead_letter(
    body: str,
    *,
    reason: str = "rejected by every provider: ses: bad address",
    email_id: str | None = None,
    source_queue: str | None = None,
    receive_count: int | None = None,
) -> str:
    """Put a message on the dead-letter queue as the settlement does; returns its MessageId."""
    attributes = {"reason": reason, "sourceQueue": source_queue or incoming_queue()}
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
        "queue": incoming_queue(),
        **fields,
    }
    return Email.objects.create(**values)


@dataclass
class RecordingDispatcher:
    """A pipeline dispatcher that keeps what it was given instead of queuing Celery tasks."""

    calls: list[tuple[str, str, list[ReceivedMessage]]] = field(default_factory=list)

    def __call__(
        self, provider: str, batch_id: str, messages: Sequence[ReceivedMessage], probe: bool = False
    ) -> None:
        self.calls.append((provider, batch_id, list(messages)))

    def messages_for(self, provider: str) -> list[ReceivedMessage]:
        return [m for name, _, batch in self.calls if name == provider for m in batch]

    @property
    def providers(self) -> set[str]:
        return {name for name, _, _ in self.calls}
