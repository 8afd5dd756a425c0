"""Putting an accepted email on an incoming SQS queue (SendMessageBatch, not Celery).

The API's threads share one ``SendBatcher`` per process (``emails.batching``): concurrent
requests leave in one ``SendMessageBatch`` call, each answered by its own entry's outcome.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from emails import claim_check
from emails.batching import Arrival, EntryFailed, SendBatcher
from gomail_site.aws import aws_client, queue_url
from gomail_site.config import SQS_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

# The ingest client's attempts per SendMessageBatch (botocore's standard mode: a throttled,
# 5xx, timed-out or dropped call is tried again after a jittered backoff). Kept at 3, not 1:
# the retries add no new kind of outcome. One attempt can be stored with its answer lost too,
# and either way the failed call withdraws the record, so a worker deletes any stored copy
# unsent; a retry answered after an earlier attempt was stored leaves two copies of one email
# id, and the record's claim lets one be sent and the other deleted. What one attempt would
# change is a 503 for every passing throttle or dropped connection. docs/reliability.md,
# "Accepted means durable"; tests/dispatch/test_ingest_lost_answer.py.
INGEST_ATTEMPTS = 3


class QueueUnavailable(Exception):
    """SQS did not accept the message, or did not say so in time."""


class MessageTooLarge(ValueError):
    """The encoded message would exceed what SQS accepts."""


def choose_queue() -> str:
    """One of the configured incoming queues, at random, to spread the load between them."""
    return random.choice(settings.GOMAIL.sqs.incoming_queues)  # noqa: S311 - not security


def checked_size(body: str, email_id: str) -> str:
    """``body``, or ``MessageTooLarge`` when SQS or the send task would refuse it (a claim
    check's summary never is: this guards against a bug, before anything is recorded)."""
    if claim_check.needs_claim_check(body, SQS_MAX_MESSAGE_BYTES):
        raise MessageTooLarge(f"message {email_id} is too large to queue and dispatch")
    return body


def ingest_client() -> Any:
    """The SQS client the API enqueues with (``INGEST_ATTEMPTS`` attempts per call)."""
    return aws_client("sqs", attempts=INGEST_ATTEMPTS)


def _send_batch(url: str, entries: list[dict[str, str]]) -> Mapping[str, Any]:
    return ingest_client().send_message_batch(QueueUrl=url, Entries=entries)


def _linger_seconds() -> float:
    return settings.GOMAIL.api.sqs_batch_linger_milliseconds / 1000


_batcher = SendBatcher(_send_batch, linger=_linger_seconds, max_bytes=SQS_MAX_MESSAGE_BYTES)


def arriving() -> Arrival:
    """Announce a message this thread is about to enqueue (see ``SendBatcher.arriving``)."""
    return _batcher.arriving()


def enqueue_wait_seconds() -> float:
    """How long ``enqueue`` waits for SQS: every attempt's connect and read, and a batch to
    wait for; past that, no answer is coming."""
    return settings.GOMAIL.aws.client_timeout_seconds * 2 * INGEST_ATTEMPTS + 1


def enqueue(body: str, queue_name: str, arrival: Arrival | None = None) -> str:
    """Send ``body`` to ``queue_name``; returns the SQS MessageId once SQS accepted it.

    Raises ``QueueUnavailable`` when SQS cannot be reached, refuses the entry or does not
    answer in time (its outcome is then unknown: see ``emails.records.withdraw``).
    """
    wait = enqueue_wait_seconds()
    try:
        url = queue_url(queue_name)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("SQS unavailable for %s: %s", queue_name, exc)
        raise QueueUnavailable(str(exc)) from exc
    send = arrival.send if arrival is not None else _batcher.send
    try:
        return send(url, body, len(body.encode("utf-8")), wait)
    except (EntryFailed, FutureTimeout) as exc:
        logger.warning("SQS did not take a message on %s: %s", queue_name, exc or "no answer")
        raise QueueUnavailable(str(exc) or "no answer from SQS") from exc
