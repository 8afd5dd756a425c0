"""API clients and emails as the API's callers send them, for the in-process API tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rest_framework.test import APIClient

# A valid email with every field of the original's format.
VALID_EMAIL = {
    "fromEmail": "sender@example.com",
    "fromName": "Sender",
    "toEmail": "recipient@example.org",
    "toName": "Recipient",
    "subject": "Hello",
    "body": "Hi there",
}


def keyed(raw_key: str) -> APIClient:
    """A client that sends ``raw_key`` as its bearer token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def post_email(client: Any, email: Mapping[str, Any]) -> Any:
    """``POST /email/send`` of ``{"email": email}`` as JSON."""
    return client.post(
        "/email/send", data=json.dumps({"email": dict(email)}), content_type="application/json"
    )
