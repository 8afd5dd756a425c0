"""Putting an accepted email on an incoming SQS queue (a plain SendMessage, not Celery)."""

from __future__ import annotations

import logging
import random

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from emails.wire import TASK_PAYLOAD_LIMIT, WireEmail, dispatch_bytes
from gomail_site.aws import aws_client, queue_url
from gomail_site.config import SQS_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)


class QueueUnavailable(Exception):
    """SQS did not accept the message; nothing was queued."""


class MessageTooLarge(ValueError):
    """The encoded message would exceed what SQS accepts."""


def choose_queue() -> str:
    """One of the configured incoming queues, at random, to spread the load between them."""
    return random.choice(settings.GOMAIL.sqs.incoming_queues)  # noqa: S311 - not security


def enqueue(email: WireEmail, queue_name: str) -> str:
    """Send ``email`` to ``queue_name``; returns the SQS MessageId once SQS accepted it.

    Raises ``MessageTooLarge`` before any I/O when the body would be refused, and
    ``QueueUnavailable`` when SQS cannot be reached or refuses the call.
    """
    body = email.encode()
    # Both SQS's own limit and the send task's: a message that could not be dispatched to a
    # worker would be accepted only to be dead-lettered.
    if (
        len(body.encode("utf-8")) > SQS_MAX_MESSAGE_BYTES
        or dispatch_bytes(body) > TASK_PAYLOAD_LIMIT
    ):
        raise MessageTooLarge(f"message {email.id} is too large to queue and dispatch")
    try:
        answer = aws_client("sqs").send_message(QueueUrl=queue_url(queue_name), MessageBody=body)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("SQS refused message %s on %s: %s", email.id, queue_name, exc)
        raise QueueUnavailable(str(exc)) from exc
    return answer["MessageId"]
