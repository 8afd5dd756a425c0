"""``GET /email/limits``: what ``POST /email/send`` accepts, for the browser UI's checks."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import resolve
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_a_key_gets_the_configured_limits(client_with_key, gomail_config):
    gomail_config(
        api={
            "max_recipients": 7,
            "max_attachments": 3,
            "max_attachment_bytes": 1000,
            "max_attachments_bytes": 2500,
            "denied_content_types": ["application/x-msdownload"],
            "denied_extensions": ["exe", "bat"],
            "max_tags": 4,
            "max_tag_length": 12,
        }
    )

    response = client_with_key.get("/email/limits")

    assert response.status_code == 200
    assert response.json() == {
        "maxRecipients": 7,
        "maxAttachments": 3,
        "maxAttachmentBytes": 1000,
        "maxAttachmentsBytes": 2500,
        "deniedContentTypes": ["application/x-msdownload"],
        "deniedExtensions": ["exe", "bat"],
        "maxTags": 4,
        "maxTagLength": 12,
    }


def test_the_defaults_are_answered_to_a_signed_in_user(settings):
    user = get_user_model().objects.create_user("alice", password="a-long-password-1")
    client = APIClient()
    client.force_login(user)

    body = client.get("/email/limits").json()

    api = settings.GOMAIL.api
    assert body["maxRecipients"] == api.max_recipients == 50
    assert body["maxAttachmentsBytes"] == api.max_attachments_bytes
    assert body["deniedExtensions"] == api.denied_extensions
    assert "exe" in body["deniedExtensions"]


def test_limits_is_not_taken_for_an_email_id():
    # Routed before email/<message_id>, which would otherwise answer it a 404.
    assert resolve("/email/limits").url_name == "email-limits"
    assert resolve("/email/8b1c4f2e-7f53-4b83-9d35-5a4b8e0f2c11").url_name == "email-status"


def test_anonymous_callers_are_refused_like_the_status_endpoint():
    response = APIClient().get("/email/limits")

    assert response.status_code == 401
    assert response.json() == {"errors": {"base": "Authentication required"}}


def test_a_trusted_network_without_auth_reads_them_too(gomail_config):
    gomail_config(api={"require_auth": False})

    assert APIClient().get("/email/limits").status_code == 200
