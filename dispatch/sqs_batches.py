"""SQS's batch calls on received messages (delete, change visibility), ten entries a call.

Used by the settlement of a send batch and by the dead-letter queue's operations. A failed
entry (or a failed call) is logged and reported back by its index, never raised: the caller
decides what a message that was not deleted or not hidden means for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from dispatch.splitting import batches
from gomail_site.aws import aws_client, queue_url

logger = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10


def delete_messages(queue: str, receipt_handles: Sequence[str]) -> set[int]:
    """Delete the messages of ``receipt_handles`` from ``queue``; returns the indexes (into
    ``receipt_handles``) of those SQS did not delete."""
    return _in_batches(
        "delete_message_batch",
        queue,
        [{"ReceiptHandle": handle} for handle in receipt_handles],
    )


def change_visibility(queue: str, delays: Sequence[tuple[str, int]]) -> set[int]:
    """Hide each message of ``delays`` (receipt handle, seconds) for its seconds from now (0:
    visible at once); returns the indexes of those whose visibility SQS did not change."""
    return _in_batches(
        "change_message_visibility_batch",
        queue,
        [{"ReceiptHandle": handle, "VisibilityTimeout": seconds} for handle, seconds in delays],
    )


def _in_batches(operation: str, queue: str, entries: Sequence[dict]) -> set[int]:
    failed: set[int] = set()
    for number, chunk in enumerate(batches(entries, SQS_BATCH_LIMIT)):
        numbered = [{"Id": str(index), **entry} for index, entry in enumerate(chunk)]
        start = number * SQS_BATCH_LIMIT
        failed.update(start + index for index in call_batch(operation, queue, numbered))
    return failed


def call_batch(operation: str, queue: str, entries: list[dict]) -> set[int]:
    """One SQS batch call; returns the indexes of the entries that failed."""
    try:
        answer = getattr(aws_client("sqs"), operation)(QueueUrl=queue_url(queue), Entries=entries)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("%s on %s failed: %s", operation, queue, exc)
        return set(range(len(entries)))
    failed = {int(item["Id"]) for item in answer.get("Failed", [])}
    for item in answer.get("Failed", []):
        logger.warning("%s on %s: entry failed: %s", operation, queue, item.get("Code"))
    return failed
