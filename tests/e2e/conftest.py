"""Fixtures of the browser tests: Debian's chromium driven by Playwright against the running
service (pytest-django's ``live_server``, real moto, the SendGrid stand-in and real provider
worker subprocesses from ``tests.harness``), with the pipeline run by the test.

- ``site_url``: the live server, once it is known to serve the built UI at ``/`` (else skip:
  run ``make ui``).
- ``new_page(viewport=...)``: a fresh browser context (no cookies) and page; on failure every
  page of the test is saved to ``test-artifacts/e2e/<test name>.png`` / ``.html``.
- ``pipeline``: provider workers (started once per module) on clean queues, and a background
  thread calling ``run_pipeline(dispatch_batch)`` every ``PIPELINE_INTERVAL`` seconds, as beat
  would; ``pipeline.held()`` keeps runs off while a test queues a burst of emails.
- ``screenshot(page, name)``: writes ``docs/<name>.png`` when ``GOMAIL_SCREENSHOTS=1``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests import harness
from tests.harness.fixtures import GroupFactory, failed
from tests.harness.pipeline import PipelineLoop

REPO_ROOT = harness.REPO_ROOT
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
DOCS = REPO_ROOT / "docs"
SCREENSHOTS = os.environ.get("GOMAIL_SCREENSHOTS") == "1"

CHROMIUM_MISSING = (
    "chromium is not installed: run scripts/ensure-chromium (Debian's chromium package) to run "
    "the browser tests"
)
UI_NOT_BUILT = (
    "the browser UI is not built (GET / answered the 'UI not built' page): run `make ui` "
    "(cd frontend && npm ci && npm run build) to run the browser tests"
)
# Flags that matter on a closed network: no GPU, no QUIC, none of Chrome's own network traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
DESKTOP = {"width": 1280, "height": 800}
# Every wait has a deadline: actions and expect() give up after these unless told otherwise.
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 20_000
expect.set_options(timeout=ACTION_TIMEOUT_MS)

# The health thresholds of the e2e run, for the workers (environment) and the pipeline run in
# this process (settings): low, so that an outage shows within a few batches.
E2E_OVERRIDES: dict[str, Any] = {"health": {"unhealthy_threshold": 2, "healthy_threshold": 2}}
PIPELINE_INTERVAL = 0.5  # seconds between pipeline runs, as beat's interval would be


# --- failure artefacts -------------------------------------------------------------------------


def _save_artefacts(name: str, pages: list[Page]) -> list[Path]:
    """``<name>.png`` and ``<name>.html`` of each open page (``<name>-2.png`` for a second)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    saved = []
    for index, page in enumerate(pages, start=1):
        if page.is_closed():
            continue
        base = ARTIFACTS / (stem if index == 1 else f"{stem}-{index}")
        try:
            page.screenshot(path=f"{base}.png", full_page=True, timeout=10_000)
            saved.append(base.with_suffix(".png"))
            base.with_suffix(".html").write_text(page.content(), encoding="utf-8")
            saved.append(base.with_suffix(".html"))
        except Exception as exc:  # a crashed page must not hide the test's own failure
            print(f"could not save {base}: {exc}")
    return saved


# --- the browser and the site ------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def chromium_path() -> str:
    """Debian's chromium (Playwright never downloads a browser here); skip the module without."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.skip(CHROMIUM_MISSING)
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    # Playwright's sync API runs an asyncio event loop in this (the test) thread, driving it
    # from greenlets, from start() to stop(). Django sees that running loop and refuses every
    # ORM call made in the same thread (creating users, reading records, the test database's
    # flush) with SynchronousOnlyOperation, although nothing here is async and no ORM call runs
    # inside the loop. Django reads DJANGO_ALLOW_ASYNC_UNSAFE at each call, so it is set exactly
    # while the loop exists: set at import, it would leak into the rest of the suite and its
    # subprocesses (`manage.py check --deploy` fails with async.E001 when it is set). Per module
    # for the same reason: no other test module runs beside a running event loop.
    before = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
    finally:
        playwright.stop()
        if before is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = before


@pytest.fixture(scope="session")
def site_url(live_server: Any) -> str:
    """The live server's URL, once ``/`` is the built UI (whitenoise serving frontend/dist)."""
    try:
        with urllib.request.urlopen(live_server.url + "/", timeout=10) as answer:
            html = answer.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            pytest.skip(UI_NOT_BUILT)
        raise
    if '<div id="root">' not in html or "/assets/" not in html:
        pytest.skip(f"{UI_NOT_BUILT}; / served something else:\n{html[:300]}")
    return live_server.url


PageFactory = Callable[..., Page]


@pytest.fixture
def new_page(
    request: pytest.FixtureRequest, transactional_db: None, browser: Browser, site_url: str
) -> Iterator[PageFactory]:
    """``new_page(viewport=...)``: a page in a fresh context (its own cookies). Set up after the
    test database, so closed before its tables are flushed; saves every page on failure."""
    contexts: list[BrowserContext] = []

    def make(viewport: dict[str, int] | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP, base_url=site_url)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    try:
        if failed(request):
            pages = [page for context in contexts for page in context.pages]
            for path in _save_artefacts(request.node.name, pages):
                print(f"saved {path}")
    finally:
        for context in contexts:
            with contextlib.suppress(Exception):
                context.close()


@pytest.fixture
def page(new_page: PageFactory) -> Page:
    """A desktop-sized (1280x800) page on the live server, signed out."""
    return new_page()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Write ``docs/<name>.png`` from what ``page`` shows, when GOMAIL_SCREENSHOTS=1."""
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=full_page)
        print(f"wrote docs/{name}.png")


# --- the running service -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider_workers(module_processes: GroupFactory) -> harness.ProcessGroup:
    """The Procfile's ``providers`` worker (SES and SendGrid queues), reaching the stand-in
    through GOMAIL_PROVIDERS__SENDGRID__HOST (set by the harness); once per module."""
    group = module_processes("e2e", overrides=E2E_OVERRIDES)
    group.worker("providers", ["ses", "sendgrid"], concurrency=2)
    return group


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest,
    provider_workers: harness.ProcessGroup,
    clean_slate: None,
    gomail_overrides: Callable[[dict[str, Any]], None],
) -> Iterator[PipelineLoop]:
    """Provider workers on empty queues, a reset stand-in, fresh provider health, and the
    pipeline running in the background until the test ends (the workers' logs on failure)."""
    gomail_overrides(E2E_OVERRIDES)
    loop = PipelineLoop(PIPELINE_INTERVAL).start()
    try:
        yield loop
    finally:
        try:
            loop.stop()
        finally:
            if failed(request):
                print(f"===== pipeline: {loop.runs} runs")
                print(f"===== logs of process group {provider_workers.name}")
                print(provider_workers.logs())
