"""Fixtures shared by the whole suite: a real moto server over HTTP and API clients."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from devtools.moto_server import MotoServer, start_moto_server
from dispatch.providers.ses import verify_ses_identities
from dispatch.queues import QueueSetup, ensure_queues
from emails.claim_check import ensure_bucket
from emails.models import ApiKey

# The process harness's fixtures (stand-ins, process groups, clean queues), for every folder,
# and the system scenarios' table (here, so that xdist's controller, which prints it, has it).
pytest_plugins = ["tests.harness.fixtures", "tests.system.report"]


# A test that uses any of these reaches the database (pytest-django's fixtures).
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
    | {"live_server", "django_db_setup", "admin_user", "admin_client", "django_user_model"}
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the database ``database``: what the PostgreSQL pass of
    ``.ci/run`` selects (``-m "database and not browser"``). Derived, never hand-kept, so that
    the selection cannot silently shrink. The ``system`` tests share a stack per module and
    the machine's CPU: under xdist they form one group, run one at a time by one worker while the
    others take the rest. ``tryfirst``: before ``-m`` and xdist read the marks."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("django_db") or fixtures & DATABASE_FIXTURES:
            item.add_marker(pytest.mark.database)
        if item.get_closest_marker("system"):
            item.add_marker(pytest.mark.xdist_group("processes"))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """The test moto server, on the port the test settings point every AWS client at."""
    server = start_moto_server(port=int(os.environ["GOMAIL_TEST_MOTO_PORT"]))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_breakers() -> Iterator[None]:
    """No provider starts a test with its breaker open from another test's failures (the
    breakers are a worker process's memory, and the tests' process is one); no sending thread
    outlives its test with a database connection open (the test database is then dropped)."""
    from dispatch.sending import BREAKERS, close_send_pools

    BREAKERS.reset()
    yield
    close_send_pools()


@pytest.fixture(autouse=True)
def fresh_cache(request: pytest.FixtureRequest) -> None:
    """An empty Django cache for every database test (the one place that empties it): the
    cache table is not a model, so pytest-django's rollback or flush leaves provider health,
    outcomes and pending batches behind."""
    if request.node.get_closest_marker("database") is None:
        return
    from django.core.cache import caches

    request.getfixturevalue("django_db_setup")  # the test database, never the developer's
    with request.getfixturevalue("django_db_blocker").unblock():
        for alias in settings.CACHES:  # the dispatch cache (provider health) included
            caches[alias].clear()


@pytest.fixture
def aws(moto_server: MotoServer) -> QueueSetup:
    """A freshly reset moto with the configured queues and SES identities in place."""
    moto_server.reset()
    setup = ensure_queues(settings.GOMAIL.sqs)
    ensure_bucket(settings.GOMAIL.payloads)
    verify_ses_identities(settings.GOMAIL.providers.ses.verify_identities)
    return setup


@pytest.fixture
def gomail_config(settings: pytest.FixtureRequest):
    """Change configuration values for one test: ``gomail_config(api={"require_auth": False})``."""

    def change(**sections: dict) -> None:
        current = settings.GOMAIL
        updates = {
            name: getattr(current, name).model_copy(update=values)
            for name, values in sections.items()
        }
        settings.GOMAIL = current.model_copy(update=updates)

    return change


@pytest.fixture
def api_key(db: None) -> tuple[ApiKey, str]:
    return ApiKey.create_key("test client")


@pytest.fixture
def client_with_key(api_key: tuple[ApiKey, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")
    return client
