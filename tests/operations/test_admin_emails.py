"""The emails admin's resend of dead emails and the API keys admin (add shows the key once,
revoke locks it out), against moto's SQS and the database."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from emails.models import ApiKey, Email
from tests.clients import keyed, post_email
from tests.dispatch.realparts import wire_email
from tests.operations.support import dead_letter_queue, put_dead_letter, queued_record, receive_all

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

EMAILS = "admin:emails_email_changelist"
KEYS = "admin:emails_apikey_changelist"
KEY_PATTERN = re.compile(r"gm_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")


def resend(client: Client, *emails: Email):
    return client.post(
        reverse(EMAILS),
        {"action": "resend_dead", "_selected_action": [str(e.id) for e in emails], "index": 0},
        follow=True,
    )


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def incoming_messages() -> list[tuple[str, dict]]:
    return [
        (queue, json.loads(message["Body"]))
        for queue in settings.GOMAIL.sqs.incoming_queues
        for message in receive_all(queue)
    ]


def test_resend_of_a_dead_email_queues_a_linked_copy(aws, staff_client, staff_user):
    email = wire_email(subject="Try again", body="The body lives only in SQS")
    original = queued_record(email, status=Email.Status.DEAD, last_error="rejected by all")
    put_dead_letter(email.encode(), email_id=email.id)
    other_id = put_dead_letter(wire_email().encode(), email_id="someone-else")

    response = resend(staff_client, original)

    copy = Email.objects.get(resent_from=original)
    assert copy.id != original.id
    assert copy.status == Email.Status.QUEUED
    assert (copy.to_email, copy.subject) == (email.to_email, email.subject)
    assert shown_messages(response) == [f"{original.id}: resent as {copy.id}."]
    [(queue, body)] = incoming_messages()
    assert queue == copy.queue
    assert body["id"] == str(copy.id)
    assert body["email"]["body"] == "The body lives only in SQS"
    assert body["email"]["subject"] == "Try again"
    # The original's dead-letter message is gone; the other one is untouched.
    assert {m["MessageId"] for m in receive_all(dead_letter_queue())} == {other_id}
    assert Email.objects.get(id=original.id).status == Email.Status.DEAD
    entry = LogEntry.objects.get(user=staff_user)
    assert entry.object_id == str(original.id)
    assert entry.get_change_message() == f"Resent as {copy.id}"


@pytest.mark.parametrize("status", [Email.Status.FAILED, Email.Status.SENT, Email.Status.QUEUED])
def test_resend_of_an_email_that_is_not_dead_is_refused(aws, staff_client, status):
    email = wire_email()
    record = queued_record(email, status=status)
    put_dead_letter(email.encode(), email_id=email.id)  # even with a message to take

    response = resend(staff_client, record)

    [shown] = shown_messages(response)
    assert shown.startswith(f"{record.id}: not dead ({status})")
    assert Email.objects.count() == 1
    assert incoming_messages() == []
    assert len(receive_all(dead_letter_queue())) == 1
    assert not LogEntry.objects.exists()


def test_resend_without_a_dead_letter_message_is_refused(aws, staff_client):
    record = queued_record(wire_email(), status=Email.Status.DEAD)

    response = resend(staff_client, record)

    assert shown_messages(response) == [
        f"{record.id}: its message is no longer in the dead-letter queue"
    ]
    assert Email.objects.count() == 1
    assert incoming_messages() == []


def test_api_key_add_shows_the_key_once_and_it_authenticates(aws, staff_client):
    response = staff_client.post(
        reverse("admin:emails_apikey_add"),
        {"name": "newsletter", "user": "", "revoked_at_0": "", "revoked_at_1": ""},
        follow=True,
    )

    assert response.status_code == 200
    shown = [m for m in shown_messages(response) if "New API key" in m]
    assert len(shown) == 1
    [raw_key] = KEY_PATTERN.findall(shown[0])
    api_key = ApiKey.objects.get(name="newsletter")
    assert raw_key.startswith(f"gm_{api_key.prefix}_")
    assert raw_key not in api_key.key_hash
    # Shown once: neither the list nor the change page shows it again.
    for url in (reverse(KEYS), reverse("admin:emails_apikey_change", args=[api_key.pk])):
        page = staff_client.get(url)
        assert raw_key not in page.content.decode()
        assert not [m for m in get_messages(page.wsgi_request) if raw_key in str(m)]

    sent = post_email(
        keyed(raw_key), {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi"}
    )
    assert sent.status_code == 200, sent.content
    assert Email.objects.get(id=sent.json()["messageId"]).api_key == api_key


def test_revoke_makes_the_key_401(aws, staff_client, api_key):
    record, raw_key = api_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    payload = {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "x"}}
    assert client.post("/email/send", payload, format="json").status_code == 200

    response = staff_client.post(
        reverse(KEYS),
        {"action": "revoke", "_selected_action": [record.pk], "index": 0},
        follow=True,
    )

    assert shown_messages(response) == ["Revoked 1 API key(s)."]
    record.refresh_from_db()
    assert record.revoked_at is not None
    refused = client.post("/email/send", payload, format="json")
    assert refused.status_code == 401
    assert refused.json() == {"errors": {"base": "Invalid API key"}}
    assert Email.objects.count() == 1
