"""The SQS queues of the test moto, seen from the test: counts, purges, the dead-letter queue
and the SES messages moto recorded. Every call goes to this process's configured endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


def _sqs() -> Any:
    from gomail_site.aws import aws_client

    return aws_client("sqs")


def incoming_queues() -> list[str]:
    from django.conf import settings

    return list(settings.GOMAIL.sqs.incoming_queues)


def dead_letter_queue() -> str:
    from django.conf import settings

    return settings.GOMAIL.sqs.dead_letter_queue


def celery_queue_names(prefix: str) -> list[str]:
    """The SQS names of the Celery queues (``pipeline`` and one per provider) under ``prefix``."""
    import celeryconfig

    return [prefix + queue.name for queue in celeryconfig.task_queues]


def existing_queue_url(name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return _sqs().get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError:
        return None


@contextlib.contextmanager
def _purge_limit_lifted() -> Iterator[None]:
    # moto refuses a second purge of a queue within 60 s unless this is "false". It reads the
    # variable on each call, and the test moto server runs in this process.
    name = "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def purge_queues(names: Iterable[str]) -> None:
    """Empty each queue that exists (in-flight messages included); others are skipped."""
    with _purge_limit_lifted():
        for name in names:
            url = existing_queue_url(name)
            if url is not None:
                _sqs().purge_queue(QueueUrl=url)


def queue_counts(name: str) -> dict[str, int]:
    """``{"visible", "in_flight", "delayed"}`` of queue ``name`` (moto's counts are exact)."""
    url = existing_queue_url(name)
    if url is None:
        return {"visible": 0, "in_flight": 0, "delayed": 0}
    attributes = _sqs().get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "visible": int(attributes["ApproximateNumberOfMessages"]),
        "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
    }


def queues_empty(names: Iterable[str]) -> bool:
    return all(sum(queue_counts(name).values()) == 0 for name in names)


def enqueue_raw(body: str, queue: str | None = None) -> str:
    """Put ``body`` as it is on an incoming queue (default the first); returns the MessageId."""
    from gomail_site.aws import queue_url

    name = queue or incoming_queues()[0]
    return _sqs().send_message(QueueUrl=queue_url(name), MessageBody=body)["MessageId"]


def enqueue_raw_batch(bodies: Sequence[str], queue: str) -> None:
    """Put up to ten ``bodies`` on ``queue`` in one SendMessageBatch call; all must succeed."""
    from gomail_site.aws import queue_url

    entries = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(bodies)]
    answer = _sqs().send_message_batch(QueueUrl=queue_url(queue), Entries=entries)
    assert not answer.get("Failed"), answer["Failed"]


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    attributes: dict[str, str]


def dead_letters() -> list[DeadLetter]:
    """Every message in the dead-letter queue with its attributes; left in the queue."""
    from gomail_site.aws import queue_url

    sqs, url = _sqs(), queue_url(dead_letter_queue())
    found: dict[str, DeadLetter] = {}
    handles: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            handles.append(message["ReceiptHandle"])
            found[message["MessageId"]] = DeadLetter(
                message_id=message["MessageId"],
                body=message["Body"],
                attributes={
                    name: value.get("StringValue", "")
                    for name, value in message.get("MessageAttributes", {}).items()
                },
            )
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(found.values())


def ses_messages(moto_url: str) -> list[dict[str, Any]]:
    """Every email moto's SES accepted since its last reset (``/moto-api/data.json``)."""
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json", timeout=30) as answer:
        return json.load(answer).get("ses", {}).get("Message", [])
