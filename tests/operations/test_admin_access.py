"""The operators' admin pages render for staff and are refused to everyone else."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from emails.models import ApiKey, Attempt, Email
from tests.dispatch.realparts import wire_email
from tests.operations.support import dead_letter_queue, put_dead_letter, queued_record, receive_all

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PAGES = [
    "admin:index",
    "admin:dispatch_providercontrol_changelist",
    "admin:dispatch_deadletter_changelist",
    "admin:emails_email_changelist",
    "admin:emails_apikey_changelist",
    "admin:emails_apikey_add",
]


@pytest.fixture
def dead_email(aws) -> Email:
    """A dead email with two attempts, its message in the dead-letter queue."""
    email = wire_email(subject="Dead on arrival", to_email="nobody@example.org")
    record = queued_record(email, status=Email.Status.DEAD, provider="ses", attempts=2)
    Attempt.objects.create(email=record, provider="ses", outcome="permanent", error="bad box")
    Attempt.objects.create(
        email=record, provider="sendgrid", outcome="transient", error="HTTP 503 from stand-in"
    )
    put_dead_letter(
        email.encode(), reason="rejected by every provider: ses: bad box", email_id=email.id
    )
    return record


@pytest.mark.parametrize("page", PAGES)
def test_staff_sees_every_page(staff_client: Client, dead_email: Email, page: str):
    response = staff_client.get(reverse(page))

    assert response.status_code == 200, response.content[:500]


def test_provider_page_lists_every_configured_provider(staff_client: Client):
    response = staff_client.get(reverse("admin:dispatch_providercontrol_changelist"))

    html = response.content.decode()
    assert response.status_code == 200
    for name in ("ses", "sendgrid"):
        assert f">{name}<" in html
    assert "healthy" in html
    assert "3 / 3" in html  # the thresholds column


def test_dead_letter_page_lists_the_message(staff_client: Client, dead_email: Email):
    response = staff_client.get(reverse("admin:dispatch_deadletter_changelist"))

    html = response.content.decode()
    assert "rejected by every provider: ses: bad box" in html
    assert str(dead_email.id) in html


def test_email_list_and_change_page_with_delivery_history(staff_client: Client, dead_email):
    listing = staff_client.get(reverse("admin:emails_email_changelist"))
    change = staff_client.get(reverse("admin:emails_email_change", args=[dead_email.id]))

    assert listing.status_code == 200
    assert "nobody@example.org" in listing.content.decode()
    assert change.status_code == 200
    html = change.content.decode()
    assert "delivery attempts" in html.lower()
    assert "bad box" in html
    assert "HTTP 503 from stand-in" in html


def test_email_list_filters_and_search(staff_client: Client, dead_email: Email):
    other = queued_record(wire_email(to_email="someone.else@example.org"))
    url = reverse("admin:emails_email_changelist")

    dead_only = staff_client.get(url, {"status__exact": "dead"}).content.decode()
    searched = staff_client.get(url, {"q": "someone.else"}).content.decode()

    assert "nobody@example.org" in dead_only
    assert "someone.else@example.org" not in dead_only
    assert "someone.else@example.org" in searched
    assert "nobody@example.org" not in searched
    assert str(other.id) in searched
    by_id = staff_client.get(url, {"q": str(dead_email.id)}).content.decode()
    assert "nobody@example.org" in by_id
    assert "someone.else@example.org" not in by_id


def test_api_key_list_shows_keys_without_secrets(staff_client: Client, db):
    api_key, raw = ApiKey.create_key("billing service")

    html = staff_client.get(reverse("admin:emails_apikey_changelist")).content.decode()

    assert "billing service" in html
    assert api_key.prefix in html
    assert raw not in html
    assert api_key.key_hash not in html


@pytest.mark.parametrize("page", PAGES)
def test_non_staff_user_is_sent_to_login(plain_user, page: str):
    client = Client()
    client.force_login(plain_user)

    response = client.get(reverse(page))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_is_sent_to_login(db, page: str):
    response = Client().get(reverse(page))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_provider_disabled_in_config_says_so(staff_client: Client, gomail_config):
    providers = settings.GOMAIL.providers
    gomail_config(providers={"sendgrid": providers.sendgrid.model_copy(update={"enabled": False})})

    html = staff_client.get(reverse("admin:dispatch_providercontrol_changelist")).content.decode()

    assert "disabled in config" in html


def test_admin_index_lists_the_operators_pages(staff_client: Client, db):
    html = staff_client.get(reverse("admin:index")).content.decode()

    for page in PAGES[1:4]:
        assert reverse(page) in html


def test_non_staff_cannot_post_dead_letter_actions(plain_user, aws):
    message_id = put_dead_letter(wire_email().encode())
    client = Client()
    client.force_login(plain_user)

    response = client.post(
        reverse("admin:dispatch_deadletter_changelist"),
        {"action": "delete", "selected": [message_id], "confirmed": "yes"},
    )

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert [m["MessageId"] for m in receive_all(dead_letter_queue())] == [message_id]
