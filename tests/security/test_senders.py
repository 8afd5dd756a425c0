"""The sender policy (emails/senders.py): which ``fromEmail`` a caller may use.

The policy itself is one pure function, tested as a table; then the lookup of a caller's
entries, the API's answer (a 422 beside the other field errors), and the admin's forms.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from emails.models import ApiKey, Email, SenderAllowance
from emails.senders import (
    NOT_ALLOWED,
    allowed_senders_for,
    invalid_entries,
    is_allowed_sender,
    normalise_entry,
    parse_entries,
    validate_entries,
)
from gomail_site.aws import aws_client
from tests.clients import keyed, post_email

# --- the policy, pure -------------------------------------------------------------------------

POLICY = [
    # (address, entries, allowed)
    ("a@example.com", ["example.com"], True),
    ("A.Person@EXAMPLE.COM", ["example.com"], True),
    ("a@example.com", ["EXAMPLE.com"], True),
    ("a@example.com", ["  example.com  "], True),
    ("a@example.com", ["other.org", "example.com"], True),
    # A domain entry is that domain exactly: not its subdomains, nor look-alikes.
    ("a@sub.example.com", ["example.com"], False),
    ("a@example.com.evil.org", ["example.com"], False),
    ("a@notexample.com", ["example.com"], False),
    ("a@example.co", ["example.com"], False),
    ("a@ex\u0430mple.com", ["example.com"], False),  # a Cyrillic a (U+0430)
    ("a@example.com", ["sub.example.com"], False),
    # An address entry is that address, in any case, and nothing else.
    ("billing@example.org", ["billing@example.org"], True),
    ("Billing@Example.ORG", ["billing@example.org"], True),
    ("billing@example.org", ["BILLING@EXAMPLE.ORG"], True),
    ("sales@example.org", ["billing@example.org"], False),
    ("billing@sub.example.org", ["billing@example.org"], False),
    ("billing+x@example.org", ["billing@example.org"], False),
    ("billing@example.org", ["example.com", "billing@example.org"], True),
    # IDN domains compare in their ASCII (IDNA) form, whichever form each side uses.
    ("user@bücher.example", ["xn--bcher-kva.example"], True),
    ("user@xn--bcher-kva.example", ["bücher.example"], True),
    ("user@BÜCHER.example", ["bücher.example"], True),
    ("user@bucher.example", ["bücher.example"], False),
    ("用户@例子.广告", ["例子.广告"], True),
    ("用户@例子.广告", ["用户@xn--fsqu00a.xn--4rr70v"], True),
    ("他人@例子.广告", ["用户@例子.广告"], False),
    # A quoted local part may hold an "@": the domain is after the last one.
    ('"a@example.com"@evil.org', ["example.com"], False),
    ('"a@evil.org"@example.com', ["example.com"], True),
    # Nothing allowed, or nothing usable: fail closed.
    ("a@example.com", [], False),
    ("a@example.com", ["", "   ", "not a domain!", "@", "a@"], False),
    ("example.com", ["example.com"], False),
    ("@example.com", ["example.com"], False),
    ("", ["example.com"], False),
]


@pytest.mark.parametrize(("address", "entries", "allowed"), POLICY)
def test_policy(address: str, entries: list[str], allowed: bool) -> None:
    assert is_allowed_sender(address, entries) is allowed


@pytest.mark.parametrize(
    ("entry", "normal"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("Billing@Bücher.example", "billing@xn--bcher-kva.example"),
        ("a_b.example", None),
        ("", None),
        ("a@", None),
    ],
)
def test_entries_are_compared_in_one_form(entry: str, normal: str | None) -> None:
    assert normalise_entry(entry) == normal


def test_admin_text_holds_one_entry_per_line_commas_and_spaces_also_separate() -> None:
    text = "billing@example.org\r\n  example.net, bücher.example;other.example\n\n"

    assert parse_entries(text) == [
        "billing@example.org",
        "example.net",
        "bücher.example",
        "other.example",
    ]
    assert parse_entries("") == []


@pytest.mark.parametrize(
    ("entries", "bad"),
    [
        (["example.com", "billing@example.org", "bücher.example", "用户@例子.广告"], []),
        (["example.com", "not_a.domain", "two@@example.com", "localhost", "a@"], None),
    ],
)
def test_invalid_entries_are_named(entries: list[str], bad: list[str] | None) -> None:
    expected = bad if bad is not None else entries[1:]

    assert invalid_entries(entries) == expected


def test_the_field_validator_refuses_a_typo_naming_it() -> None:
    validate_entries("example.com\nbilling@example.org")

    with pytest.raises(ValidationError) as caught:
        validate_entries("example.com\nbilling@@example.com")
    assert caught.value.params == {"entries": "billing@@example.com"}
    assert caught.value.code == "invalid_sender"


# --- the lookup -------------------------------------------------------------------------------


@pytest.fixture
def owner(db: None) -> Any:
    user = get_user_model().objects.create_user(username="owner", password="not-used")
    SenderAllowance.objects.create(user=user, allowed_senders="owner.example")
    return user


def test_lookup_adds_the_key_and_its_owner_to_the_configured_default(owner, gomail_config):
    gomail_config(api={"allowed_senders": ["example.com"]})
    api_key, _ = ApiKey.create_key("owned", user=owner)
    api_key.allowed_senders = "billing@key.example"
    lone_key, _ = ApiKey.create_key("lone")
    stranger = get_user_model().objects.create_user(username="stranger", password="not-used")

    assert allowed_senders_for(api_key, owner) == [
        "example.com",
        "billing@key.example",
        "owner.example",
    ]
    assert allowed_senders_for(lone_key, None) == ["example.com"]
    assert allowed_senders_for(None, owner) == ["example.com", "owner.example"]
    assert allowed_senders_for(None, stranger) == ["example.com"]
    assert allowed_senders_for(None, None) == ["example.com"]


def test_lookup_without_required_auth_is_the_default_alone(owner, gomail_config):
    gomail_config(api={"require_auth": False, "allowed_senders": ["example.com"]})
    api_key, _ = ApiKey.create_key("owned", user=owner)
    api_key.allowed_senders = "key.example"

    assert allowed_senders_for(api_key, owner) == ["example.com"]


# --- the API ----------------------------------------------------------------------------------

pytest_api = pytest.mark.django_db


def send(client: Any, **fields: Any) -> Any:
    email = {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi", **fields}
    return post_email(client, {key: value for key, value in email.items() if value is not None})


def queued_count(aws: Any) -> int:
    sqs = aws_client("sqs")
    return sum(
        int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        for url in aws.incoming_urls.values()
    )


@pytest_api
def test_the_configured_default_is_allowed_and_anything_else_is_a_422(client_with_key, aws):
    assert send(client_with_key, fromEmail="news@example.com").status_code == 200
    assert send(client_with_key, fromEmail="News@EXAMPLE.COM").status_code == 200

    for sender in ("news@other.org", "news@sub.example.com", "news@example.com.evil.org"):
        response = send(client_with_key, fromEmail=sender)
        assert response.status_code == 422, sender
        assert response.json() == {"errors": {"fromEmail": NOT_ALLOWED}}
    assert queued_count(aws) == 2
    assert Email.objects.count() == 2


@pytest_api
def test_a_refused_sender_is_reported_with_the_other_field_errors(client_with_key, aws):
    response = send(client_with_key, fromEmail="x@other.org", toEmail=None, body="", subject=5)

    assert response.status_code == 422
    assert response.json() == {
        "errors": {
            "fromEmail": NOT_ALLOWED,
            "toEmail": "To email is required",
            "subject": "Subject must be a string",
            "body": "Body is required",
        }
    }


@pytest_api
def test_an_invalid_address_is_reported_as_invalid_not_as_refused(client_with_key, aws):
    response = send(client_with_key, fromEmail="x@other")

    assert response.json() == {"errors": {"fromEmail": "From email is not a valid email"}}


@pytest_api
def test_a_key_may_send_from_its_own_entries_and_no_other_key_may(aws):
    billing, billing_raw = ApiKey.create_key("billing")
    billing.allowed_senders = "billing@other.org\nbücher.example"
    billing.save()
    _, other_raw = ApiKey.create_key("other")

    assert send(keyed(billing_raw), fromEmail="billing@other.org").status_code == 200
    assert send(keyed(billing_raw), fromEmail="BILLING@other.org").status_code == 200
    assert send(keyed(billing_raw), fromEmail="news@xn--bcher-kva.example").status_code == 200
    assert send(keyed(billing_raw), fromEmail="a@example.com").status_code == 200
    assert send(keyed(billing_raw), fromEmail="sales@other.org").status_code == 422
    assert send(keyed(other_raw), fromEmail="billing@other.org").status_code == 422
    assert send(keyed(other_raw), fromEmail="news@bücher.example").status_code == 422


@pytest_api
def test_a_key_change_applies_to_its_next_request(aws):
    api_key, raw = ApiKey.create_key("changing")
    assert send(keyed(raw), fromEmail="a@late.example").status_code == 422

    api_key.allowed_senders = "late.example"
    api_key.save()

    assert send(keyed(raw), fromEmail="a@late.example").status_code == 200


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest_api
def test_a_user_may_send_from_their_entries_with_the_session_and_their_keys(aws):
    users = get_user_model().objects
    alice = users.create_user(username="alice", password="not-used")
    bob = users.create_user(username="bob", password="not-used")
    SenderAllowance.objects.create(user=alice, allowed_senders="alice@people.example")
    _, alice_key = ApiKey.create_key("alice's", user=alice)
    _, bob_key = ApiKey.create_key("bob's", user=bob)

    assert send(signed_in(alice), fromEmail="alice@people.example").status_code == 200
    assert send(keyed(alice_key), fromEmail="alice@people.example").status_code == 200
    assert send(signed_in(alice), fromEmail="carol@people.example").status_code == 422
    assert send(signed_in(bob), fromEmail="alice@people.example").status_code == 422
    assert send(keyed(bob_key), fromEmail="alice@people.example").status_code == 422
    assert send(signed_in(bob), fromEmail="bob@example.com").status_code == 200


@pytest_api
def test_without_required_auth_the_default_alone_applies(aws, gomail_config):
    gomail_config(api={"require_auth": False})
    api_key, raw = ApiKey.create_key("extra")
    api_key.allowed_senders = "other.org"
    api_key.save()

    assert send(APIClient(), fromEmail="a@example.com").status_code == 200
    assert send(APIClient(), fromEmail="a@other.org").json() == {
        "errors": {"fromEmail": NOT_ALLOWED}
    }
    assert send(keyed(raw), fromEmail="a@other.org").status_code == 422


@pytest_api
def test_the_configured_default_is_read_per_request(client_with_key, aws, gomail_config):
    gomail_config(api={"allowed_senders": ["billing@other.org"]})

    assert send(client_with_key, fromEmail="a@example.com").status_code == 422
    assert send(client_with_key, fromEmail="billing@other.org").status_code == 200

    gomail_config(api={"allowed_senders": []})
    assert send(client_with_key, fromEmail="billing@other.org").status_code == 422


# --- the admin --------------------------------------------------------------------------------


@pytest.fixture
def admin_client(db: None) -> Client:
    operator = get_user_model().objects.create_user(
        username="operator", password="not-used", is_staff=True, is_superuser=True
    )
    return signed_in(operator)


def test_the_api_key_admin_edits_allowed_senders_and_refuses_a_typo(admin_client):
    api_key, _ = ApiKey.create_key("editable")
    url = reverse("admin:emails_apikey_change", args=[api_key.pk])
    form = {"name": "editable", "user": "", "revoked_at_0": "", "revoked_at_1": ""}

    assert 'name="allowed_senders"' in admin_client.get(url).content.decode()

    refused = admin_client.post(url, {**form, "allowed_senders": "example.org\nexmaple..org"})
    assert refused.status_code == 200  # the form again, with its error
    assert "Not an email address or a domain: exmaple..org" in refused.content.decode()
    api_key.refresh_from_db()
    assert api_key.allowed_senders == ""

    saved = admin_client.post(url, {**form, "allowed_senders": "example.org\nbilling@x.example"})
    assert saved.status_code == 302
    api_key.refresh_from_db()
    assert parse_entries(api_key.allowed_senders) == ["example.org", "billing@x.example"]


def test_a_users_allowed_senders_are_edited_inline_on_the_user_admin(admin_client):
    user = get_user_model().objects.create_user(username="writer", password="not-used")
    url = reverse("admin:auth_user_change", args=[user.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    inline = next(
        formset
        for formset in page.context["inline_admin_formsets"]
        if formset.formset.model is SenderAllowance
    )
    prefix = inline.formset.prefix
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in ("password", "groups", "user_permissions")
    }
    data.update(
        {
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            "is_active": "on",
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1",
            f"{prefix}-0-allowed_senders": "writer@books.example",
            f"{prefix}-0-user": str(user.pk),
        }
    )
    data.pop("date_joined", None)
    data.pop("last_login", None)

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert SenderAllowance.objects.get(user=user).allowed_senders == "writer@books.example"
    assert "writer@books.example" in allowed_senders_for(None, user)


def test_the_allowed_senders_have_their_own_admin_list(admin_client):
    user = get_user_model().objects.create_user(username="listed", password="not-used")
    SenderAllowance.objects.create(user=user, allowed_senders="listed.example")

    page = admin_client.get(reverse("admin:emails_senderallowance_changelist"))

    assert page.status_code == 200
    assert "listed.example" in page.content.decode()
