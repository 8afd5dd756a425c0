"""The emails admin with real emails, through the real admin as a signed-in superuser: the
change page shows recipients, tags, metadata, attachments and the claim check's key; the
list filters by tag and searches metadata with ``key=value`` (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from emails.models import Email
from tests.clients import VALID_EMAIL, post_email

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

EMAILS = "admin:emails_email_changelist"


@pytest.fixture
def superuser_client(db: None) -> Client:
    operator = get_user_model().objects.create_user(
        username="operator", password="not-used", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(operator)
    return client


def sent(client: APIClient, **fields: Any) -> Email:
    """An email accepted by the API with ``fields`` beside the original's ones (None: left
    out)."""
    email = {key: value for key, value in {**VALID_EMAIL, **fields}.items() if value is not None}
    response = post_email(client, email)
    assert response.status_code == 200, response.content
    return Email.objects.get(id=response.json()["messageId"])


def listed(client: Client, **query: str) -> set[str]:
    response = client.get(reverse(EMAILS), query)
    assert response.status_code == 200
    return {str(email.pk) for email in response.context["cl"].result_list}


@pytest.fixture
def tagged(client_with_key: APIClient, aws) -> dict[str, Email]:
    return {
        "welcome": sent(
            client_with_key, tags=["welcome", "onboarding"], metadata={"plan": "pro", "n": "1"}
        ),
        "onboarding": sent(client_with_key, tags=["onboarding"], metadata={"plan": "free"}),
        "plain": sent(client_with_key),
    }


def test_the_tag_filter_offers_the_most_used_tags_and_filters_by_one(superuser_client, tagged):
    response = superuser_client.get(reverse(EMAILS))
    [tag_filter] = [f for f in response.context["cl"].filter_specs if f.title == "tag"]
    assert tag_filter.lookup_choices == [
        ("onboarding", "onboarding (2)"),
        ("welcome", "welcome (1)"),
    ]

    # Each email once, however many of its tags match (distinct).
    assert listed(superuser_client, tag="onboarding") == {
        str(tagged["welcome"].pk),
        str(tagged["onboarding"].pk),
    }
    assert listed(superuser_client, tag="welcome") == {str(tagged["welcome"].pk)}
    assert listed(superuser_client, tag="nobody uses this") == set()


def test_a_key_value_search_finds_the_emails_with_that_metadata(superuser_client, tagged):
    assert listed(superuser_client, q="plan=pro") == {str(tagged["welcome"].pk)}
    assert listed(superuser_client, q="plan=free") == {str(tagged["onboarding"].pk)}
    assert listed(superuser_client, q="plan=pr") == set()  # the whole value, not a part
    assert listed(superuser_client, q="n=1") == {str(tagged["welcome"].pk)}
    # Other terms keep the usual search (here: the recipient, which all three have).
    assert len(listed(superuser_client, q=VALID_EMAIL["toEmail"])) == 3


@pytest.mark.parametrize(
    "term",
    [
        "contains=x",  # a JSONField lookup name as the key: a key, not a lookup
        "has_key=plan",
        "plan__contains=p",
        "isnull=True",
        "a__b=1",
        "plan'); DROP TABLE emails_email; --=x",
        "=pro",
        "plan=",
        "plan==pro",
    ],
)
def test_a_search_term_that_looks_like_a_lookup_is_not_a_500(superuser_client, tagged, term):
    # None of these is a metadata key of any email (nor text the other fields hold).
    assert listed(superuser_client, q=term) == set()
    assert Email.objects.count() == 3  # and nothing was dropped


def test_a_metadata_key_named_like_a_lookup_is_found_as_a_key(
    superuser_client, client_with_key, aws
):
    email = sent(client_with_key, metadata={"contains": "yes", "a-b": "c"})

    assert listed(superuser_client, q="contains=yes") == {str(email.pk)}
    assert listed(superuser_client, q="a-b=c") == {str(email.pk)}


def test_the_change_page_shows_recipients_tags_metadata_and_attachments(
    superuser_client, client_with_key, aws
):
    email = sent(
        client_with_key,
        toEmail=None,
        toName=None,
        to=[{"email": "ada@example.org", "name": "Ada Lovelace"}, {"email": "b@example.org"}],
        cc=[{"email": "cc@example.org"}],
        bcc=[{"email": "hidden@example.org"}],
        tags=["welcome"],
        metadata={"customerId": "c-1234"},
        attachments=[
            {
                "filename": "report.pdf",
                "contentType": "application/pdf",
                "content": base64.b64encode(b"%PDF" * 512).decode(),
            }
        ],
    )

    response = superuser_client.get(reverse("admin:emails_email_change", args=[email.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert (
        "To: Ada Lovelace &lt;ada@example.org&gt;, b@example.org; Cc: cc@example.org; "
        "Bcc: hidden@example.org"
    ) in page
    assert "report.pdf (2.0\xa0KB, application/pdf)" in page
    assert "welcome" in page and "customerId" in page and "c-1234" in page
    assert "Payload key" in page
    # Read-only: no form field for any of them.
    for name in ("recipients", "tags", "metadata", "attachments", "payload_key"):
        assert f'name="{name}"' not in page


def test_a_claim_checked_email_shows_its_payload_key(superuser_client, client_with_key, aws):
    big = base64.b64encode(b"x" * 300_000).decode()  # over what SQS or a send task takes
    email = sent(
        client_with_key,
        attachments=[
            {"filename": "big.bin", "contentType": "application/octet-stream", "content": big}
        ],
    )
    assert email.payload_key

    page = superuser_client.get(reverse("admin:emails_email_change", args=[email.pk]))

    assert email.payload_key in page.content.decode()
    assert "big.bin (293.0\xa0KB, application/octet-stream)" in page.content.decode()
