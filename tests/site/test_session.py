"""/session: the browser UI signs in and out with a Django account, CSRF-protected."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.middleware.csrf import _unmask_cipher_token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password-1"


@pytest.fixture
def user():
    return get_user_model().objects.create_user("carol", password=PASSWORD)


def browser() -> APIClient:
    return APIClient(enforce_csrf_checks=True)


def csrf(client: APIClient) -> str:
    client.get("/session")
    return client.cookies["csrftoken"].value


def sign_in(client: APIClient, username: str, password: str, token: str | None):
    headers = {"HTTP_X_CSRFTOKEN": token} if token else {}
    return client.post(
        "/session",
        data=json.dumps({"username": username, "password": password}),
        content_type="application/json",
        **headers,
    )


def test_nobody_is_signed_in_at_first_and_the_csrf_cookie_is_set():
    client = browser()

    response = client.get("/session")

    assert response.status_code == 401
    assert response.json() == {"errors": {"base": "Not signed in"}}
    assert client.cookies["csrftoken"].value


def test_sign_in_then_session_then_sign_out(user):
    client = browser()
    token = csrf(client)

    signed_in = sign_in(client, "carol", PASSWORD, token)
    who = client.get("/session")
    signed_out = client.delete("/session", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    after = client.get("/session")

    assert signed_in.status_code == 200
    assert signed_in.json() == {"username": "carol", "isStaff": False}
    assert who.json()["username"] == "carol"
    assert signed_out.status_code == 204
    assert after.status_code == 401


def test_sign_in_without_the_csrf_token_is_refused(user):
    client = browser()
    client.get("/session")

    response = sign_in(client, "carol", PASSWORD, token=None)

    assert response.status_code == 403
    assert "CSRF" in response.json()["errors"]["base"]
    assert client.get("/session").status_code == 401


def test_wrong_password_is_a_401_in_the_error_shape(user):
    client = browser()

    response = sign_in(client, "carol", "wrong", csrf(client))

    assert response.status_code == 401
    assert response.json() == {"errors": {"base": "Wrong username or password"}}


def test_missing_fields_are_a_422_naming_them():
    client = browser()

    response = client.post(
        "/session", data="{}", content_type="application/json", HTTP_X_CSRFTOKEN=csrf(client)
    )

    assert response.status_code == 422
    assert response.json() == {
        "errors": {"username": "Username is required", "password": "Password is required"}
    }


def test_sign_out_without_the_csrf_token_keeps_the_session(user):
    client = browser()
    sign_in(client, "carol", PASSWORD, csrf(client))

    response = client.delete("/session")

    assert response.status_code == 403
    assert client.get("/session").status_code == 200


# --- /session/csrf: the token for a UI that cannot read the API's cookie (another origin) ----


def test_the_csrf_endpoint_answers_a_token_that_signs_in_and_out(user):
    client = browser()

    answer = client.get("/session/csrf")
    token = answer.json()["csrfToken"]
    signed_in = sign_in(client, "carol", PASSWORD, token)
    # Signing in rotates the token (Django's login): the UI asks again before signing out.
    stale = client.delete("/session", HTTP_X_CSRFTOKEN=token)
    fresh = client.get("/session/csrf").json()["csrfToken"]
    signed_out = client.delete("/session", HTTP_X_CSRFTOKEN=fresh)

    assert answer.status_code == 200
    assert answer["Cache-Control"] == "no-store"
    assert client.cookies["csrftoken"].value
    assert signed_in.status_code == 200
    assert stale.status_code == 403
    assert _unmask_cipher_token(fresh) != _unmask_cipher_token(token)
    assert signed_out.status_code == 204
    assert client.get("/session").status_code == 401


def test_a_token_from_another_browser_does_not_pass_the_check(user):
    other = browser().get("/session/csrf").json()["csrfToken"]
    client = browser()
    client.get("/session/csrf")

    response = sign_in(client, "carol", PASSWORD, other)

    assert response.status_code == 403
    assert client.get("/session").status_code == 401
