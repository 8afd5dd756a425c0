"""The UI deployed on another origin than the API: its static files on one server, the API on
another, CORS and CSRF from the configured origins (``api.cors_allowed_origins``).

The UI is built here with ``VITE_API_BASE`` naming the API's origin, as a deployment of the
static files elsewhere would build it, and served by a plain static file server. The two
origins differ by port only (same site), so the default ``SameSite=Lax`` cookies apply; a UI
on another site needs ``security.cookie_samesite: None`` in production (docs/security.md).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.test import override_settings
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from tests import harness
from tests.e2e.conftest import ACTION_TIMEOUT_MS, DESKTOP, PageFactory
from tests.e2e.test_browser import (
    PASSWORD,
    SENT_TIMEOUT_MS,
    email_form,
    make_user,
    send_through_ui,
    session_call,
    sign_in,
)
from tests.harness.pipeline import PipelineLoop

pytestmark = [pytest.mark.system, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FRONTEND = harness.REPO_ROOT / "frontend"
VITE = FRONTEND / "node_modules" / ".bin" / "vite"
BUILD_TIMEOUT_SECONDS = 120
NETWORK_ERROR = "Network error: could not reach the server"  # frontend/src/api.js


class QuietStaticFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is for failures, not for every asset fetched


@pytest.fixture(scope="module")
def ui_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not VITE.exists():
        pytest.skip("frontend/node_modules is missing: run `make ui` (npm ci) to build the UI")
    return tmp_path_factory.mktemp("cross-origin-ui")


@contextlib.contextmanager
def static_files(directory: Path) -> Iterator[str]:
    """A plain static file server for ``directory`` on an origin of its own."""
    handler = functools.partial(QuietStaticFiles, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="ui-static", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def ui_server(ui_directory: Path) -> Iterator[str]:
    """The UI's origin (its build comes later, once the API's origin is known)."""
    with static_files(ui_directory) as origin:
        yield origin


@pytest.fixture(scope="module")
def api_origin(ui_server: str) -> Iterator[str]:
    """The API on a live server of its own, allowing the UI's origin (CORS and CSRF). Its own
    server, started under these settings, because Django's CSRF middleware reads the trusted
    origins once per server."""
    with override_settings(CORS_ALLOWED_ORIGINS=[ui_server], CSRF_TRUSTED_ORIGINS=[ui_server]):
        server = LiveServer("127.0.0.1:0")
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def cross_origin_ui(ui_directory: Path, ui_server: str, api_origin: str) -> str:
    """The UI built for the API on ``api_origin`` and served at ``ui_server``."""
    result = subprocess.run(
        [str(VITE), "build", "--outDir", str(ui_directory), "--emptyOutDir", "--logLevel", "warn"],
        cwd=FRONTEND,
        env={**os.environ, "VITE_API_BASE": api_origin},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = "".join(path.read_text() for path in (ui_directory / "assets").glob("*.js"))
    assert api_origin in bundle, "the build does not name the API's origin"
    return ui_server


@pytest.fixture
def page_on(browser: Browser, new_page: PageFactory) -> Iterator[Callable[[str], Page]]:
    """``page_on(origin)``: a fresh page there (``new_page`` comes first for its fresh cache)."""
    contexts: list[BrowserContext] = []

    def make(origin: str) -> Page:
        context = browser.new_context(viewport=DESKTOP, base_url=origin)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def test_a_ui_on_another_origin_signs_in_sends_follows_delivery_and_signs_out(
    page_on: Callable[[str], Page], api_origin: str, cross_origin_ui: str, pipeline: PipelineLoop
) -> None:
    page = page_on(cross_origin_ui)
    api_calls: list[str] = []
    page.on(
        "request",
        lambda request: (
            api_calls.append(request.url) if request.url.startswith(api_origin) else None
        ),
    )
    make_user("ada")

    sign_in(page, "ada")
    message_id = send_through_ui(page, email_form())

    status = page.get_by_test_id("email-status")
    expect(status).to_have_attribute("data-status", "sent", timeout=SENT_TIMEOUT_MS)
    # The page is the UI origin's; every API call went to the API's origin, with the session
    # (its cookie) and the CSRF token that GET /session/csrf gave.
    assert page.url.startswith(cross_origin_ui)
    assert f"{api_origin}/session/csrf" in api_calls
    assert f"{api_origin}/email/{message_id}" in api_calls
    assert not any(url.startswith(f"{cross_origin_ui}/email") for url in api_calls)

    with page.expect_response(session_call) as answer:
        page.get_by_role("button", name="Sign out").click()
    assert answer.value.status == 204
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()


def test_the_same_ui_on_an_origin_not_configured_cannot_use_the_api(
    page_on: Callable[[str], Page], ui_directory: Path, api_origin: str, cross_origin_ui: str
) -> None:
    # The same build and API as the test above, which signs in: only the origin differs.
    make_user("ada")
    with static_files(ui_directory) as unlisted:
        page = page_on(unlisted)
        page.goto("/")
        expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
        sent: list[str] = []
        page.on("request", lambda request: sent.append(f"{request.method} {request.url}"))
        page.get_by_label("Username").fill("ada")
        page.get_by_label("Password").fill(PASSWORD)

        # The API answers, but without Access-Control-Allow-Origin for this origin the browser
        # keeps the answer (the CSRF token) from the page, so the sign-in never goes out.
        with page.expect_event(
            "requestfailed", lambda request: request.url == f"{api_origin}/session/csrf"
        ):
            page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("banner")).to_have_text(NETWORK_ERROR)
        expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
        assert f"GET {api_origin}/session/csrf" in sent
        assert f"POST {api_origin}/session" not in sent
        assert not Session.objects.exists()
