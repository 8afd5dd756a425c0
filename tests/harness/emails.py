"""Emails into the service, as a client sends them: valid test emails with unique subjects,
through the real API (DRF's test client) or straight onto an incoming queue (another producer).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.harness.queues import enqueue_raw, incoming_queues

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


def enqueue_wire(count: int, **overrides: str) -> list[str]:
    """Create ``count`` email records and put their wire messages on the incoming queues
    (alternating), as the API does but without HTTP. Returns their ids."""
    from django.utils import timezone

    from emails.records import record_accepted
    from emails.wire import WIRE_FIELDS, WireEmail

    ids = []
    queues = incoming_queues()
    for index in range(count):
        fields = email_fields(index, **overrides)
        email = WireEmail(
            id=str(uuid.uuid4()),
            accepted_at=timezone.now(),
            **{attribute: fields[key] for key, attribute in WIRE_FIELDS.items()},
        )
        queue = queues[index % len(queues)]
        record_accepted(email, queue)
        enqueue_raw(email.encode(), queue)
        ids.append(email.id)
    return ids
