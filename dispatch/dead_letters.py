"""The dead-letter queue, for operators: look without losing, redrive, delete.

Peeking receives messages (so SQS hides them for a moment) and then makes every one of them
visible again at once, so a look never delays or hides anything.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from dispatch.settlement import SQS_BATCH_LIMIT
from dispatch.splitting import batches
from emails.models import Email
from emails.wire import UndecodableMessage, decode
from gomail_site.aws import aws_client, queue_url

# Long enough that repeated receives during one scan return other messages, short enough
# that a crash mid-scan hides nothing for long.
SCAN_VISIBILITY_SECONDS = 30
PREVIEW_LENGTH = 200


@dataclass(frozen=True)
class DeadLetterMessage:
    sqs_message_id: str
    receipt_handle: str
    body: str
    reason: str
    source_queue: str
    email_id: str
    receive_count: int
    dead_lettered_at: datetime | None

    @property
    def summary(self) -> str:
        """What the message is, without its body: addresses and subject, or a preview."""
        try:
            email = decode(self.body, self.sqs_message_id)
        except UndecodableMessage:
            preview = self.body[:PREVIEW_LENGTH]
            return f"(undecodable) {preview!r}"
        return f"{email.from_email} → {email.to_email}: {email.subject!r}"


def _dead_letter_url() -> str:
    return queue_url(settings.GOMAIL.sqs.dead_letter_queue)


def _parse(message: dict) -> DeadLetterMessage:
    attributes = {
        name: value.get("StringValue", "")
        for name, value in message.get("MessageAttributes", {}).items()
    }
    system = message.get("Attributes", {})
    sent = system.get("SentTimestamp")
    receives = attributes.get("receiveCount")
    return DeadLetterMessage(
        sqs_message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        # SQS's own redrive (max receives exceeded) moves a message without a reason.
        reason=attributes.get("reason")
        or "received more than sqs.max_receive_count times without being settled",
        source_queue=attributes.get("sourceQueue", ""),
        email_id=attributes.get("emailId", ""),
        receive_count=int(receives) if receives else int(system.get("ApproximateReceiveCount", 0)),
        dead_lettered_at=datetime.fromtimestamp(int(sent) / 1000, tz=UTC) if sent else None,
    )


def _scan(limit: int) -> list[DeadLetterMessage]:
    """Receive up to ``limit`` distinct messages; they stay hidden until ``_restore``."""
    found: dict[str, DeadLetterMessage] = {}
    sqs = aws_client("sqs")
    while len(found) < limit:
        answer = sqs.receive_message(
            QueueUrl=_dead_letter_url(),
            MaxNumberOfMessages=min(SQS_BATCH_LIMIT, limit - len(found)),
            VisibilityTimeout=SCAN_VISIBILITY_SECONDS,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        messages = [_parse(item) for item in answer.get("Messages", [])]
        fresh = [message for message in messages if message.sqs_message_id not in found]
        if not fresh:
            break
        found.update((message.sqs_message_id, message) for message in fresh)
    return list(found.values())


def _restore(messages: Collection[DeadLetterMessage]) -> None:
    for chunk in batches(list(messages), SQS_BATCH_LIMIT):
        aws_client("sqs").change_message_visibility_batch(
            QueueUrl=_dead_letter_url(),
            Entries=[
                {"Id": str(index), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                for index, m in enumerate(chunk)
            ],
        )


def peek(limit: int = 100) -> list[DeadLetterMessage]:
    """Up to ``limit`` dead-letter messages, oldest first; none is hidden afterwards."""
    messages = _scan(limit)
    _restore(messages)
    return sorted(messages, key=lambda m: m.dead_lettered_at or datetime.min.replace(tzinfo=UTC))


def _delete(messages: Collection[DeadLetterMessage]) -> None:
    for chunk in batches(list(messages), SQS_BATCH_LIMIT):
        aws_client("sqs").delete_message_batch(
            QueueUrl=_dead_letter_url(),
            Entries=[
                {"Id": str(index), "ReceiptHandle": m.receipt_handle}
                for index, m in enumerate(chunk)
            ],
        )


def _select(ids: Collection[str] | None, limit: int) -> tuple[list, list]:
    scanned = _scan(limit)
    chosen = [m for m in scanned if ids is None or m.sqs_message_id in ids]
    others = [m for m in scanned if ids is not None and m.sqs_message_id not in ids]
    return chosen, others


def redrive(ids: Collection[str] | None = None, limit: int = 1000) -> int:
    """Move the messages ``ids`` (all when None) back to an incoming queue: the one they came
    from when it is still configured, else the first. Their email records are queued again
    with their provider rejections forgotten. Returns how many moved."""
    incoming = settings.GOMAIL.sqs.incoming_queues
    chosen, others = _select(ids, limit)
    moved = []
    try:
        for message in chosen:
            target = message.source_queue if message.source_queue in incoming else incoming[0]
            aws_client("sqs").send_message(QueueUrl=queue_url(target), MessageBody=message.body)
            moved.append(message)
            if message.email_id:
                Email.objects.filter(id=message.email_id).update(
                    status=Email.Status.QUEUED, rejections={}, last_error="", queue=target
                )
    finally:
        # Deleted only once its copy is in an incoming queue; the rest is visible again.
        _delete(moved)
        _restore([*others, *(m for m in chosen if m not in moved)])
    return len(moved)


def delete(ids: Collection[str], limit: int = 1000) -> int:
    """Delete the dead-letter messages ``ids`` for good; returns how many were deleted."""
    chosen, others = _select(set(ids), limit)
    _delete(chosen)
    _restore(others)
    return len(chosen)


def find_body(email_id: str, limit: int = 1000) -> DeadLetterMessage | None:
    """The dead-letter message of email ``email_id``, if it is there (left visible)."""
    scanned = _scan(limit)
    _restore(scanned)
    for message in scanned:
        if message.email_id == email_id:
            return message
    return None
