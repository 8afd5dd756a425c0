"""Who may send, and who may read an email's status."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from emails.models import ApiKey, Email

pytestmark = pytest.mark.django_db

EMAIL = {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi"}}


def send(client: APIClient):
    return client.post("/email/send", data=json.dumps(EMAIL), content_type="application/json")


def keyed_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def test_unauthenticated_request_is_a_401_in_the_error_shape(aws):
    response = send(APIClient())

    assert response.status_code == 401
    assert response.json() == {"errors": {"base": "Authentication required"}}
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Email.objects.count() == 0


@pytest.mark.parametrize(
    "header",
    ["Bearer gm_nope_nope", "Bearer not-a-gomail-key", "Bearer", "Bearer a b", "Bearer \u00e9"],
)
def test_wrong_key_is_a_401(aws, api_key, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = send(client)

    assert response.status_code == 401
    assert response.json() == {"errors": {"base": "Invalid API key"}}


def test_a_key_with_the_right_prefix_but_wrong_secret_is_refused(aws, api_key):
    _, raw = api_key
    tampered = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")

    response = send(keyed_client(tampered))

    assert response.status_code == 401


def test_revoked_key_is_refused(aws, api_key):
    key, raw = api_key
    assert send(keyed_client(raw)).status_code == 200
    key.revoked_at = timezone.now()
    key.save()

    assert send(keyed_client(raw)).status_code == 401


def test_keys_are_stored_hashed(api_key):
    key, raw = api_key

    stored = ApiKey.objects.filter(pk=key.pk).values().get()

    assert raw not in json.dumps(stored, default=str)
    assert ApiKey.find_active(raw) == key


def test_key_use_is_recorded(aws, api_key):
    key, raw = api_key

    send(keyed_client(raw))

    key.refresh_from_db()
    assert key.last_used_at is not None


def test_status_is_visible_to_the_sending_key_only(aws, api_key):
    _, raw = api_key
    owner = keyed_client(raw)
    _, other_raw = ApiKey.create_key("someone else")
    message_id = send(owner).json()["messageId"]

    mine = owner.get(f"/email/{message_id}")
    theirs = keyed_client(other_raw).get(f"/email/{message_id}")
    anonymous = APIClient().get(f"/email/{message_id}")

    assert mine.status_code == 200
    body = mine.json()
    assert body["messageId"] == message_id
    assert body["status"] == "queued"
    assert body["provider"] == ""
    assert body["attempts"] == 0
    assert body["lastError"] == ""
    assert body["acceptedAt"]
    assert body["sentAt"] is None
    assert theirs.status_code == 404
    assert theirs.json() == {"errors": {"base": "Not found"}}
    assert anonymous.status_code == 401


@pytest.mark.parametrize("message_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_status_is_a_404(client_with_key, message_id):
    response = client_with_key.get(f"/email/{message_id}")

    assert response.status_code == 404
    assert response.json() == {"errors": {"base": "Not found"}}


def test_signed_in_user_sends_with_csrf_and_sees_own_emails(aws):
    user = get_user_model().objects.create_user("alice", password="a-long-password-1")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)

    without_token = send(client)
    client.get("/admin/login/")  # any page that sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    with_token = client.post(
        "/email/send",
        data=json.dumps(EMAIL),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )

    assert without_token.status_code == 403
    assert "CSRF" in without_token.json()["errors"]["base"]
    assert with_token.status_code == 200
    message_id = with_token.json()["messageId"]
    assert Email.objects.get(id=message_id).user == user
    assert client.get(f"/email/{message_id}").status_code == 200


def test_a_users_key_emails_are_visible_to_the_user(aws):
    user = get_user_model().objects.create_user("bob", password="a-long-password-2")
    _, raw = ApiKey.create_key("bob's service", user)
    message_id = send(keyed_client(raw)).json()["messageId"]
    session = APIClient()
    session.force_login(user)

    assert session.get(f"/email/{message_id}").status_code == 200


def test_auth_can_be_switched_off_for_a_trusted_network(aws, gomail_config):
    gomail_config(api={"require_auth": False})

    response = send(APIClient())

    assert response.status_code == 200
    assert APIClient().get(f"/email/{response.json()['messageId']}").status_code == 200


def test_create_api_key_prints_a_working_key_alone_on_the_last_line(aws, capsys):
    call_command("create_api_key", "billing-service")

    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith("gm_")
    assert " " not in last_line
    assert send(keyed_client(last_line)).status_code == 200
    assert ApiKey.objects.get(name="billing-service").key_hash != last_line


def test_create_demo_account_replaces_the_previous_demo_key(aws, capsys):
    call_command("create_demo_account")
    first = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]
    call_command("create_demo_account")
    second = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]

    assert send(keyed_client(first)).status_code == 401
    assert send(keyed_client(second)).status_code == 200
    assert get_user_model().objects.get(username="demo").is_staff
