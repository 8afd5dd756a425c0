"""Reading the incoming SQS queues: their depth, and the messages themselves (thin I/O)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dispatch.reading import SKIPPED, QueueLevels, receive_sizes
from gomail_site.aws import aws_client, queue_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the pipeline read it, and as a ``send_batch`` task carries it."""

    queue: str
    receipt_handle: str
    sqs_message_id: str
    body: str
    receive_count: int = 1
    # When it was read (seconds since the epoch); 0: not known (a task of an older version).
    received_at: float = 0.0

    def to_task(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_task(cls, data: dict[str, Any]) -> ReceivedMessage:
        return cls(**data)


def queue_levels(queue_name: str) -> QueueLevels:
    """Approximate visible and in-flight counts of one queue (SQS's own estimates)."""
    attributes = aws_client("sqs").get_queue_attributes(
        QueueUrl=queue_url(queue_name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return QueueLevels(
        depth=int(attributes["ApproximateNumberOfMessages"]),
        in_flight=int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def receive(queue_name: str, count: int) -> list[ReceivedMessage]:
    """One short-poll ReceiveMessage of up to ``count`` (≤ 10) messages: an empty queue costs
    no waiting."""
    answer = aws_client("sqs").receive_message(
        QueueUrl=queue_url(queue_name),
        MaxNumberOfMessages=count,
        WaitTimeSeconds=0,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    now = time.time()
    return [
        ReceivedMessage(
            queue=queue_name,
            received_at=now,
            receipt_handle=message["ReceiptHandle"],
            sqs_message_id=message["MessageId"],
            body=message["Body"],
            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        )
        for message in answer.get("Messages", [])
    ]


def read_levels(queue_names: Sequence[str], pool: ThreadPoolExecutor) -> list[QueueLevels]:
    """The levels of every queue, asked concurrently; ``SKIPPED`` for a queue whose levels
    could not be read, so that one failing queue (throttled, deleted, denied) does not stop
    the others from being read this run."""
    return list(pool.map(_levels_or_skipped, queue_names))


def _levels_or_skipped(queue_name: str) -> QueueLevels:
    try:
        return queue_levels(queue_name)
    except (BotoCoreError, ClientError) as exc:
        logger.warning(
            "could not read the levels of %s, not reading it this run: %s", queue_name, exc
        )
        return SKIPPED


def read_messages(
    plan: Sequence[tuple[str, int]], pool: ThreadPoolExecutor
) -> list[ReceivedMessage]:
    """Run one reader per ``(queue, quota)`` of ``plan`` concurrently; all they read, in plan
    order. A reader that fails stops there: what it and the others read still goes out."""
    results = pool.map(lambda reader: _receive_or_nothing(*reader), plan)
    return [message for messages in results for message in messages]


def _receive_or_nothing(queue_name: str, quota: int) -> list[ReceivedMessage]:
    """A reader: receives of up to 10 until ``quota`` is read or the queue runs dry; what a
    failed receive leaves unread waits for the next run, what was read goes out."""
    messages: list[ReceivedMessage] = []
    for size in receive_sizes(quota):
        try:
            got = receive(queue_name, size)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not read %s: %s", queue_name, exc)
            break
        messages += got
        if len(got) < size:
            break
    return messages
