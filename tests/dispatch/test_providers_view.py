"""GET /providers: each provider's health for signed-in users (the UI's panel)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from dispatch import controls, health_store
from dispatch.health import HealthState

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in() -> APIClient:
    client = APIClient()
    client.force_login(get_user_model().objects.create_user("frank", password="a-long-pass-5"))
    return client


def test_every_configured_provider_is_listed_with_its_health(signed_in):
    since = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    health_store.save_state(
        "sendgrid",
        HealthState(healthy=False, consecutive_failures=4, changed_at=since, last_error="HTTP 500"),
    )

    body = {row["name"]: row for row in signed_in.get("/providers").json()}

    # The test configuration's three instances, the SMTP relay disabled (shown as such).
    assert list(body) == ["ses", "sendgrid", "smtp"]
    assert body["smtp"]["enabled"] is False
    assert body["ses"]["healthy"] is True
    assert body["ses"]["probing"] is False
    assert body["sendgrid"] == {
        "name": "sendgrid",
        "enabled": True,
        "drained": False,
        "healthy": False,
        "probing": True,
        "since": since.isoformat(),
        "consecutiveFailures": 4,
        "consecutivePasses": 0,
        "inFlight": 0,
        "lastError": "HTTP 500",
    }


def test_a_drained_provider_is_not_probing(signed_in):
    health_store.save_state("sendgrid", HealthState(healthy=False))
    controls.set_drained("sendgrid", True, "test")

    row = next(r for r in signed_in.get("/providers").json() if r["name"] == "sendgrid")

    assert row["drained"] is True
    assert row["probing"] is False


def test_anonymous_is_a_401():
    response = APIClient().get("/providers")

    assert response.status_code == 401
    assert response.json() == {"errors": {"base": "Authentication required"}}
