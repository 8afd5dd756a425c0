"""A ``send_batch`` task cut at the task-payload limit really fits in one SQS message: sent with
Celery through kombu's SQS transport to the test moto server, read back raw with boto3."""

from __future__ import annotations

import base64
import itertools
import json
import uuid

import pytest
from django.conf import settings

from dispatch import tasks
from dispatch.splitting import batches_within
from emails.wire import TASK_PAYLOAD_LIMIT, dispatch_bytes
from gomail_site.aws import aws_client
from gomail_site.celery import app
from gomail_site.config import SQS_MAX_MESSAGE_BYTES
from tests.dispatch.test_pipeline_units_pure import BODY_PIECES, message_with

pytestmark = pytest.mark.django_db


def read_raw(queue_name: str) -> dict:
    sqs = aws_client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    answer = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2, MessageAttributeNames=["All"]
    )
    messages = answer.get("Messages", [])
    assert len(messages) == 1, f"expected one task message on {queue_name}, got {len(messages)}"
    return messages[0]


def attributes_bytes(message: dict) -> int:
    # SQS counts attribute names, types and values against the same 256 KiB.
    total = 0
    for name, value in message.get("MessageAttributes", {}).items():
        total += len(name.encode()) + len(value["DataType"].encode())
        total += len(value.get("StringValue", "").encode())
        total += len(value.get("BinaryValue", b""))
    return total


@pytest.mark.parametrize("kinds", [["emoji", "cjk"], ["quotes", "controls"], sorted(BODY_PIECES)])
def test_a_task_at_the_payload_limit_fits_in_one_sqs_message(aws, kinds):
    # Large messages, then small ones, as many as fit: a batch close to the limit.
    cycle = itertools.cycle(kinds)
    batch, total = [], 0
    for repeat in (600, 30, 1):
        while True:
            message = message_with(BODY_PIECES[next(cycle)], repeat)
            if total + dispatch_bytes(message.body) > TASK_PAYLOAD_LIMIT:
                break
            batch.append(message)
            total += dispatch_bytes(message.body)
    assert batches_within(batch, 100, TASK_PAYLOAD_LIMIT, lambda m: dispatch_bytes(m.body)) == [
        batch
    ]
    estimate = sum(dispatch_bytes(message.body) for message in batch)
    assert TASK_PAYLOAD_LIMIT * 0.98 < estimate <= TASK_PAYLOAD_LIMIT  # at the limit
    batch_id = uuid.uuid4().hex

    # A connection of its own: kombu caches queue URLs per channel, and moto was just reset.
    with app.connection_for_write() as connection:
        tasks.send_batch.apply_async(
            args=["ses", batch_id, [message.to_task() for message in batch]],
            queue="ses",
            connection=connection,
        )

    raw = read_raw(f"{settings.GOMAIL.celery.queue_name_prefix}ses")
    size = len(raw["Body"].encode("utf-8")) + attributes_bytes(raw)
    assert size < SQS_MAX_MESSAGE_BYTES
    # And it is the task we sent, bodies intact.
    envelope = json.loads(raw["Body"])
    assert envelope["properties"]["body_encoding"] == "base64"
    args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]).decode("utf-8"))
    assert args[:2] == ["ses", batch_id]
    assert [item["body"] for item in args[2]] == [message.body for message in batch]
    assert kwargs == {}
