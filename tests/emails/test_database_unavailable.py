"""The database down is a 503 in the contract's shape, not a 500 (DESIGN.md section 4).

Found by the system tests (tests/system, "database unavailable"): with PostgreSQL unreachable,
the API key lookup raised OperationalError, which the API reported as a 500.
"""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from emails.models import ApiKey, Email

VALID = {"fromEmail": "sender@example.com", "toEmail": "reader@example.org", "body": "Hello"}
UNAVAILABLE = {"errors": {"base": "Service unavailable"}}


def post(client: APIClient) -> object:
    return client.post(
        "/email/send", data=json.dumps({"email": VALID}), content_type="application/json"
    )


@pytest.mark.django_db
def test_database_down_while_authenticating_is_a_503(client_with_key: APIClient) -> None:
    down = OperationalError("connection to server failed: Connection refused")
    with mock.patch.object(ApiKey, "find_active", side_effect=down):
        response = post(client_with_key)

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE


@pytest.mark.django_db
def test_database_down_while_recording_is_a_503_and_nothing_is_queued(
    client_with_key: APIClient, aws: object
) -> None:
    down = OperationalError("server closed the connection unexpectedly")
    with mock.patch.object(Email.objects, "create", side_effect=down):
        response = post(client_with_key)

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE


@pytest.mark.django_db
def test_database_down_on_a_status_read_is_a_503(client_with_key: APIClient) -> None:
    down = OperationalError("connection to server failed: Connection refused")
    with mock.patch("emails.views.visible_emails", side_effect=down):
        response = client_with_key.get("/email/6f1c0000-0000-4000-8000-000000000000")

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
