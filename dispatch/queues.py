"""The SQS queues Gomail owns: incoming queues and the dead-letter queue (DESIGN.md section 8).

``queue_attributes`` decides what each queue must look like; ``ensure_queues`` makes it so,
idempotently, against whatever endpoint the configuration names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gomail_site.aws import aws_client
from gomail_site.config import SQS_MAX_RETENTION_SECONDS, CeleryConfig, SqsConfig


@dataclass(frozen=True)
class QueueSetup:
    dead_letter_url: str
    incoming_urls: dict[str, str]


def dead_letter_attributes(sqs: SqsConfig) -> dict[str, str]:
    """SQS's longest retention, longer than the incoming queues' (checked by the config): a
    message SQS's redrive moves keeps its first enqueue time, and must not expire here before
    an operator has seen it."""
    return {"MessageRetentionPeriod": str(SQS_MAX_RETENTION_SECONDS)}


def incoming_attributes(sqs: SqsConfig, dead_letter_arn: str) -> dict[str, str]:
    """Attributes of an incoming queue: visibility, retention and the redrive to the DLQ."""
    redrive = {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": sqs.max_receive_count}
    return {
        "VisibilityTimeout": str(sqs.visibility_timeout_seconds),
        "MessageRetentionPeriod": str(sqs.message_retention_seconds),
        "RedrivePolicy": json.dumps(redrive, separators=(",", ":")),
    }


def _ensure_queue(name: str, attributes: dict[str, str]) -> str:
    # CreateQueue with no attributes is idempotent even when the queue exists with others;
    # setting them afterwards brings an existing queue in line with the configuration.
    sqs = aws_client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def ensure_queues(sqs_config: SqsConfig) -> QueueSetup:
    """Create or update the dead-letter queue, then each incoming queue redriving to it."""
    dead_letter_url = _ensure_queue(
        sqs_config.dead_letter_queue, dead_letter_attributes(sqs_config)
    )
    arn = aws_client("sqs").get_queue_attributes(
        QueueUrl=dead_letter_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    incoming = {
        name: _ensure_queue(name, incoming_attributes(sqs_config, arn))
        for name in sqs_config.incoming_queues
    }
    return QueueSetup(dead_letter_url=dead_letter_url, incoming_urls=incoming)


def ensure_celery_queues(celery: CeleryConfig, names: list[str]) -> dict[str, str]:
    """Create Celery's broker queues (``<prefix><name>``) with its visibility timeout.

    kombu would create them on first use too, but with predefined queues (production) it
    never creates anything, and a worker should not be the first to find a queue missing.
    """
    attributes = {"VisibilityTimeout": str(celery.visibility_timeout_seconds)}
    return {name: _ensure_queue(f"{celery.queue_name_prefix}{name}", attributes) for name in names}
