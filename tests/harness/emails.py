"""Emails into the service, as a client sends them: valid test emails with unique subjects,
through the real API (DRF's test client) or straight onto an incoming queue (another producer).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.harness.queues import enqueue_raw_batch, incoming_queues, queue_counts
from tests.harness.waiting import wait_for

SENDER = "sender@example.com"  # in the verified SES identity of the test configuration
SUBJECT_PREFIX = "gomail-it"


def new_subject() -> str:
    """A unique subject: how a message at moto's SES is traced back to its email."""
    return f"{SUBJECT_PREFIX} {uuid.uuid4().hex}"


def email_fields(index: int = 0, **overrides: str) -> dict[str, str]:
    """The wire/API fields of a valid test email (camelCase keys)."""
    fields = {
        "fromEmail": SENDER,
        "fromName": "Gomail integration",
        "toEmail": f"reader{index}@example.org",
        "toName": f"Reader {index}",
        "subject": new_subject(),
        "body": f"Integration test email number {index}.",
    }
    fields.update(overrides)
    return fields


def send_through_api(client: Any, count: int, **overrides: str) -> list[str]:
    """POST ``count`` emails to ``/email/send``; every answer must be 200. Returns their ids."""
    ids = []
    for index in range(count):
        response = client.post(
            "/email/send",
            data=json.dumps({"email": email_fields(index, **overrides)}),
            content_type="application/json",
        )
        assert response.status_code == 200, (response.status_code, response.content)
        ids.append(response.json()["messageId"])
    return ids


def wire_emails(count: int, **overrides: str) -> list[Any]:
    """``count`` valid ``WireEmail``s with unique subjects, accepted now."""
    from django.utils import timezone

    from emails.wire import WIRE_FIELDS, WireEmail

    emails = []
    for index in range(count):
        fields = email_fields(index, **overrides)
        emails.append(
            WireEmail(
                id=str(uuid.uuid4()),
                accepted_at=timezone.now(),
                **{attribute: fields[key] for key, attribute in WIRE_FIELDS.items()},
            )
        )
    return emails


def enqueue_from_another_producer(count: int, *, backlog: int | None = None) -> list[str]:
    """Put ``count`` wire messages on the incoming queues (alternating, ten per SendMessageBatch
    call) as another producer of the original's format would: no record (the worker that
    claims one creates it). With ``backlog``, each call waits while the incoming queues hold
    that many visible messages: a producer faster than the pipeline, kept to a backlog moto
    serves quickly (its receives scan every message of a queue). Returns their ids."""
    queues = incoming_queues()
    emails = wire_emails(count)

    def room() -> bool:
        return sum(queue_counts(name)["visible"] for name in queues) < (backlog or 0)

    for start in range(0, count, 10):
        if backlog is not None:
            wait_for(room, 120, f"fewer than {backlog} messages waiting", interval=0.1)
        queue = queues[(start // 10) % len(queues)]
        enqueue_raw_batch([email.encode() for email in emails[start : start + 10]], queue)
    return [email.id for email in emails]
