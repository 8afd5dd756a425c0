"""Response headers: the Content-Security-Policy, nosniff and frame denial on the UI, the
admin and Swagger UI; HSTS only in production; CORS only for the configured origins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from gomail_site import security

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]
UI_ORIGIN = "https://ui.example.org"
PASSWORD = "a-long-enough-password-2"


def directives(policy: str) -> dict[str, list[str]]:
    """A policy as {directive: sources}, whatever the order of its directives."""
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {words[0]: words[1:] for words in parts}


def assert_protected(response) -> None:
    configured = directives(settings.GOMAIL.security.content_security_policy)
    assert directives(response["Content-Security-Policy"]) == configured
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_user(
        "operator", password=PASSWORD, is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_ui_page_is_protected():
    # Served by whitenoise from frontend/dist when built, else the "not built" page.
    response = Client().get("/")

    assert response.status_code in (200, 503)
    assert_protected(response)


def test_the_ui_bundle_has_no_inline_script():
    index = REPO_ROOT / "frontend" / "dist" / "index.html"
    if not index.exists():
        pytest.skip("the UI is not built (make ui)")

    assert _inline_scripts(index.read_text()) == []


def test_admin_pages_are_protected(staff_client: Client):
    login_page = Client().get("/admin/login/")
    index = staff_client.get("/admin/")
    changelist = staff_client.get("/admin/emails/email/")

    for response in (login_page, index, changelist):
        assert response.status_code == 200
        assert_protected(response)


def test_api_answers_are_protected(client_with_key):
    assert_protected(client_with_key.get("/providers"))


def _inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_swagger_ui_needs_no_inline_script(settings):
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()

    page = client.get("/api/docs")
    html = page.content.decode()
    script_urls = re.findall(r"""<script[^>]*\bsrc=["']([^"']+)""", html)
    scripts = [client.get(url.replace("&amp;", "&")) for url in script_urls]

    assert page.status_code == 200
    assert_protected(page)
    assert _inline_scripts(html) == []
    assert any("?script" in url for url in script_urls)  # Swagger UI's start-up, as a file
    assert [script.status_code for script in scripts] == [200] * len(scripts)


def test_the_policy_is_the_configured_one():
    # What settings.py does with security.content_security_policy, through django-csp.
    policy = "default-src 'none'; script-src 'self'; upgrade-insecure-requests"
    with override_settings(CONTENT_SECURITY_POLICY={"DIRECTIVES": security.csp_directives(policy)}):
        response = Client().get("/admin/login/")

    assert directives(response["Content-Security-Policy"]) == {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "upgrade-insecure-requests": [],
    }


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("default-src 'self'; scrpt-src 'self'", "directive 'scrpt-src' is unknown"),
        ("default-src 'self'; default-src 'none'", "directive 'default-src' appears twice"),
        (" ; ", "no directive"),
    ],
)
def test_a_wrong_policy_is_refused_with_its_key(policy, message):
    with pytest.raises(ImproperlyConfigured) as error:
        security.csp_directives(policy)

    assert str(error.value).startswith("security.content_security_policy: ")
    assert message in str(error.value)


# --- HSTS --------------------------------------------------------------------------------


def test_no_hsts_in_development_even_over_https():
    response = Client().get("/healthz", secure=True)

    assert "Strict-Transport-Security" not in response


def test_hsts_in_production_over_https():
    with override_settings(**security.production_settings(settings.GOMAIL.security)):
        response = Client().get("/admin/login/", secure=True)

    seconds = settings.GOMAIL.security.hsts_seconds
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == f"max-age={seconds}; includeSubDomains"
    assert_protected(response)


# --- CORS --------------------------------------------------------------------------------


@pytest.fixture
def ui_origin_allowed():
    allowed = security.origins([f"{UI_ORIGIN}/"])
    with override_settings(CORS_ALLOWED_ORIGINS=allowed, CSRF_TRUSTED_ORIGINS=allowed):
        yield


def preflight(origin: str, path: str = "/email/send") -> object:
    return Client().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, x-csrftoken",
    )


def test_configured_origin_may_call_the_api_with_credentials(ui_origin_allowed, client_with_key):
    allowed = preflight(UI_ORIGIN)
    answer = client_with_key.get("/providers", HTTP_ORIGIN=UI_ORIGIN)

    assert allowed["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert allowed["Access-Control-Allow-Credentials"] == "true"
    assert "x-csrftoken" in allowed["Access-Control-Allow-Headers"]
    assert answer.status_code == 200
    assert answer["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert answer["Access-Control-Allow-Credentials"] == "true"


def test_unknown_origin_gets_no_cors_header(ui_origin_allowed, client_with_key):
    unknown = "https://evil.example.net"

    for response in (preflight(unknown), client_with_key.get("/providers", HTTP_ORIGIN=unknown)):
        assert "Access-Control-Allow-Origin" not in response
        assert "Access-Control-Allow-Credentials" not in response


def test_by_default_no_origin_is_allowed(client_with_key):
    assert settings.CORS_ALLOWED_ORIGINS == []
    assert "Access-Control-Allow-Origin" not in preflight(UI_ORIGIN)
    assert "Access-Control-Allow-Origin" not in client_with_key.get(
        "/providers", HTTP_ORIGIN=UI_ORIGIN
    )


def test_the_admin_and_the_ui_are_never_shared_with_another_origin(ui_origin_allowed):
    admin = preflight(UI_ORIGIN, "/admin/login/")
    ui_page = Client().get("/", HTTP_ORIGIN="https://evil.example.net")

    assert "Access-Control-Allow-Origin" not in admin
    assert "Access-Control-Allow-Origin" not in ui_page


def _cross_origin_sign_in(origin: str) -> object:
    get_user_model().objects.create_user("dave", password=PASSWORD)
    client = Client(enforce_csrf_checks=True)
    client.get("/session", secure=True)
    return client.post(
        "/session",
        {"username": "dave", "password": PASSWORD},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
        HTTP_ORIGIN=origin,
        secure=True,
    )


def test_a_ui_on_a_configured_origin_can_sign_in(ui_origin_allowed):
    response = _cross_origin_sign_in(UI_ORIGIN)

    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == UI_ORIGIN


def test_a_page_on_another_origin_cannot_sign_in(ui_origin_allowed):
    response = _cross_origin_sign_in("https://evil.example.net")

    assert response.status_code == 403
    assert "CSRF" in response.json()["errors"]["base"]


def test_settings_take_origins_and_policy_from_the_configuration():
    script = (
        "import json, gomail_site.settings as s; print(json.dumps({"
        "'cors': s.CORS_ALLOWED_ORIGINS, 'credentials': s.CORS_ALLOW_CREDENTIALS, "
        "'csrf': s.CSRF_TRUSTED_ORIGINS, 'csp': s.CONTENT_SECURITY_POLICY['DIRECTIVES'], "
        "'samesite': [s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE]}))"
    )
    env = {
        **os.environ,
        "GOMAIL_API__CORS_ALLOWED_ORIGINS": json.dumps([f"{UI_ORIGIN}/", "http://127.0.0.1:5173"]),
        "GOMAIL_SECURITY__CONTENT_SECURITY_POLICY": "default-src 'none'; img-src data:",
        "GOMAIL_SECURITY__COOKIE_SAMESITE": "Strict",
    }

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["cors"] == [UI_ORIGIN, "http://127.0.0.1:5173"]
    assert values["csrf"] == values["cors"]
    assert values["credentials"] is True
    assert values["samesite"] == ["Strict", "Strict"]
    assert {name: sources for name, sources in values["csp"].items() if sources} == {
        "default-src": ["'none'"],
        "img-src": ["data:"],
    }
