"""Production mode: the process refuses to start without its secrets or with DEBUG on,
`check --deploy` passes with them, and its cookies only travel over HTTPS.

Start-up is tested in real processes (``manage.py``, the WSGI module gunicorn imports) with
the project's own settings module, not the test settings.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from dispatch.providers.sendgrid import DEVELOPMENT_API_KEY
from gomail_site import security

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-enough-password-1"
STRONG_KEY = secrets.token_urlsafe(64)
PRODUCTION_ENV = {
    "GOMAIL_SECURITY__PRODUCTION": "true",
    "DJANGO_SECRET_KEY": STRONG_KEY,
    "DJANGO_ALLOWED_HOSTS": "mail.example.org",
    "SENDGRID_API_KEY": "x",
}
REFUSED = "Gomail refuses to start in production (security.production: true)"


def run(args: list[str], **env: str | None) -> subprocess.CompletedProcess[str]:
    """A process of the project, with its own settings, and ``env`` on top (None: unset)."""
    # DJANGO_ALLOW_ASYNC_UNSAFE: the browser tests set it while they run; a process that
    # inherits it fails `check --deploy` (async.E001) whatever this test is about.
    unset = {
        "DJANGO_SECRET_KEY",
        "DJANGO_DEBUG",
        "DJANGO_ALLOWED_HOSTS",
        "SENDGRID_API_KEY",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    }
    environ = {name: value for name, value in os.environ.items() if name not in unset}
    environ["DJANGO_SETTINGS_MODULE"] = "gomail_site.settings"
    for name, value in env.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manage(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return run(["manage.py", *args], **env)


def test_check_deploy_passes_in_production_with_the_required_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY is not set"),
        (
            {"DJANGO_SECRET_KEY": security.DEVELOPMENT_SECRET_KEY},
            "DJANGO_SECRET_KEY is the development default",
        ),
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG=1: DEBUG must be off in production"),
    ],
    ids=["no secret key", "default secret key", "debug"],
)
def test_production_start_is_refused_with_a_message(change, message):
    result = manage("check", **{**PRODUCTION_ENV, **change})

    assert result.returncode != 0
    assert REFUSED in result.stderr
    assert message in result.stderr


def test_the_web_server_refuses_too():
    # gunicorn imports this module and runs no system check.
    result = run(["-c", "import gomail_site.wsgi"], **{**PRODUCTION_ENV, "DJANGO_SECRET_KEY": None})

    assert result.returncode != 0
    assert REFUSED in result.stderr
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_development_starts_without_any_secret():
    result = manage(
        "check", GOMAIL_SECURITY__PRODUCTION=None, DJANGO_SECRET_KEY=None, SENDGRID_API_KEY=None
    )

    assert result.returncode == 0, result.stderr


def test_every_problem_is_named_at_once():
    problems = security.production_problems({"DJANGO_DEBUG": "1"}, settings.GOMAIL)

    assert problems == [
        "DJANGO_DEBUG=1: DEBUG must be off in production",
        "DJANGO_SECRET_KEY is not set",
        "DJANGO_ALLOWED_HOSTS is not set (the host names this service answers to, comma-separated)",
        "SENDGRID_API_KEY is not set (provider sendgrid is enabled: set it, or "
        "providers.sendgrid.enabled: false)",
    ]


def _fit() -> dict[str, str]:
    return dict(PRODUCTION_ENV)


@pytest.mark.parametrize(
    "key",
    [STRONG_KEY[:49], "ab" * 40, "django-insecure-" + secrets.token_urlsafe(60)],
    ids=["49 characters", "2 different characters", "insecure prefix"],
)
def test_a_weak_secret_key_is_refused(key):
    problems = security.production_problems({**_fit(), "DJANGO_SECRET_KEY": key}, settings.GOMAIL)

    assert len(problems) == 1
    assert problems[0].startswith("DJANGO_SECRET_KEY is")


def test_allowed_hosts_are_required():
    problems = security.production_problems(
        {**_fit(), "DJANGO_ALLOWED_HOSTS": " , "}, settings.GOMAIL
    )

    assert [problem.split(" ")[0] for problem in problems] == ["DJANGO_ALLOWED_HOSTS"]


def test_the_sendgrid_key_is_required_only_while_sendgrid_is_enabled(gomail_config):
    without_key = {**_fit(), "SENDGRID_API_KEY": ""}
    stand_in_key = {**_fit(), "SENDGRID_API_KEY": DEVELOPMENT_API_KEY}

    enabled = security.production_problems(without_key, settings.GOMAIL)
    enabled_stand_in = security.production_problems(stand_in_key, settings.GOMAIL)
    sendgrid_off = settings.GOMAIL.providers.sendgrid.model_copy(update={"enabled": False})
    gomail_config(providers={"sendgrid": sendgrid_off})
    disabled = security.production_problems(without_key, settings.GOMAIL)

    assert [problem.split(" ")[0] for problem in enabled] == ["SENDGRID_API_KEY"]
    assert [problem.split(" ")[0] for problem in enabled_stand_in] == ["SENDGRID_API_KEY"]
    assert disabled == []


def test_the_fit_environment_has_no_problem():
    assert security.production_problems(_fit(), settings.GOMAIL) == []


# --- cookies -----------------------------------------------------------------------------


def _sign_in(*, secure: bool) -> dict:
    get_user_model().objects.create_user("carol", password=PASSWORD)
    client = Client(enforce_csrf_checks=True)
    client.get("/session", secure=secure)
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/session",
        {"username": "carol", "password": PASSWORD},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
        secure=secure,
        # Over HTTPS Django's CSRF check wants the page's origin, as a browser sends it.
        **({"HTTP_ORIGIN": "https://testserver"} if secure else {}),
    )
    assert response.status_code == 200, response.content
    return response.cookies


@pytest.mark.django_db
def test_production_cookies_are_secure_httponly_and_lax():
    with override_settings(**security.production_settings(settings.GOMAIL.security)):
        cookies = _sign_in(secure=True)

    session, csrf = cookies[settings.SESSION_COOKIE_NAME], cookies[settings.CSRF_COOKIE_NAME]
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert csrf["secure"] is True
    assert csrf["samesite"] == "Lax"
    # The UI reads its CSRF token from this cookie.
    assert not csrf["httponly"]


@pytest.mark.django_db
def test_development_cookies_are_lax_but_work_over_http():
    cookies = _sign_in(secure=False)

    session, csrf = cookies[settings.SESSION_COOKIE_NAME], cookies[settings.CSRF_COOKIE_NAME]
    assert session["samesite"] == "Lax"
    assert session["httponly"] is True
    assert csrf["samesite"] == "Lax"
    assert not session["secure"]
    assert not csrf["secure"]


@pytest.mark.django_db
def test_production_redirects_http_to_https_except_the_probes():
    with override_settings(**security.production_settings(settings.GOMAIL.security)):
        plain = Client().get("/session")
        behind_tls_proxy = Client().get("/session", HTTP_X_FORWARDED_PROTO="https")
        probe = Client().get("/healthz")

    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/session"
    assert behind_tls_proxy.status_code == 401  # not signed in: answered, not redirected
    assert probe.status_code == 200


def test_an_smtp_relay_in_the_clear_beyond_loopback_is_refused():
    from gomail_site.config import Providers

    relays = Providers.parse(
        {
            "local": {"type": "smtp", "host": "127.0.0.1", "security": "none"},
            "remote": {"type": "smtp", "host": "mail.example.org", "security": "none"},
            "safe": {"type": "smtp", "host": "mail.example.org", "security": "starttls"},
        }
    )
    config = settings.GOMAIL.model_copy(update={"providers": relays})

    assert security.production_problems(_fit(), config) == [
        "providers.remote.security is none: mail to mail.example.org would go in the clear"
    ]
