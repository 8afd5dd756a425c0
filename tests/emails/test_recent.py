"""GET /email/recent: the caller's own emails, newest first, filterable by status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from emails.models import ApiKey, Email

pytestmark = pytest.mark.django_db


def make_email(owner_key: ApiKey | None, user, status: str, minutes_ago: int) -> Email:
    return Email.objects.create(
        from_email="a@example.com",
        to_email=f"{status}-{minutes_ago}@example.org",
        subject=f"s{minutes_ago}",
        status=status,
        api_key=owner_key,
        user=user,
        accepted_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_a_key_sees_its_own_emails_newest_first(api_key, client_with_key):
    key, _ = api_key
    other, _ = ApiKey.create_key("other")
    mine = [make_email(key, None, "sent", 5), make_email(key, None, "queued", 1)]
    make_email(other, None, "sent", 0)

    response = client_with_key.get("/email/recent")

    assert response.status_code == 200
    body = response.json()
    assert [item["messageId"] for item in body] == [str(mine[1].id), str(mine[0].id)]
    assert body[0]["toEmail"] == "queued-1@example.org"
    assert body[0]["subject"] == "s1"
    assert set(body[0]) >= {"status", "provider", "attempts", "lastError", "acceptedAt", "sentAt"}


def test_filter_by_status_and_limit(api_key, client_with_key):
    key, _ = api_key
    for minutes in range(5):
        make_email(key, None, "sent", minutes)
    make_email(key, None, "dead", 10)

    dead = client_with_key.get("/email/recent?status=dead").json()
    two = client_with_key.get("/email/recent?status=sent&limit=2").json()

    assert [item["status"] for item in dead] == ["dead"]
    assert len(two) == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=lost", "Unknown status"),
        ("limit=abc", "Limit must be a number"),
        ("limit=0", "Limit must be between 1 and 200"),
        ("limit=201", "Limit must be between 1 and 200"),
    ],
)
def test_bad_queries_are_a_400(client_with_key, query, message):
    response = client_with_key.get(f"/email/recent?{query}")

    assert response.status_code == 400
    assert response.json() == {"errors": {"base": message}}


def test_a_signed_in_user_sees_their_emails_only():
    user = get_user_model().objects.create_user("dave", password="a-long-password-3")
    other = get_user_model().objects.create_user("erin", password="a-long-password-4")
    mine = make_email(None, user, "sent", 1)
    make_email(None, other, "sent", 1)
    client = APIClient()
    client.force_login(user)

    body = client.get("/email/recent").json()

    assert [item["messageId"] for item in body] == [str(mine.id)]


def test_anonymous_is_a_401():
    assert APIClient().get("/email/recent").status_code == 401
