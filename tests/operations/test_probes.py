"""``/healthz`` and ``/readyz``: ready only when the configuration, the database and SQS are,
and a 503 that names the failing check otherwise (a real unreachable endpoint, no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import Client

from gomail_site import aws as site_aws

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

# Nothing listens on the discard port of the loopback interface: connections are refused.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def fresh_queue_urls() -> Iterator[None]:
    """Queue URLs are cached per endpoint; start and end with none cached."""
    site_aws._queue_urls.clear()
    yield
    site_aws._queue_urls.clear()


@contextmanager
def unreachable_database() -> Iterator[None]:
    """The default connection pointed at a database that cannot be opened, then restored."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-gomail-dir/db.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=9)
        connection.settings_dict["OPTIONS"] = {
            **saved.get("OPTIONS", {}),
            "connect_timeout": 2,
        }
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def test_healthz_is_open_and_ok(db):
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_when_everything_answers(aws, fresh_queue_urls):
    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"config": "ok", "database": "ok", "sqs": "ok"},
    }


def test_readyz_when_sqs_is_down(aws, gomail_config, fresh_queue_urls):
    gomail_config(aws={"endpoint_url": UNREACHABLE, "client_timeout_seconds": 0.5})

    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["config"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["sqs"].startswith("unavailable: ")
    assert UNREACHABLE not in response.content.decode()  # says what failed, not where


def test_readyz_when_the_incoming_queues_are_missing(moto_server, fresh_queue_urls):
    moto_server.reset()  # moto answers, but the queues are gone

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["sqs"] == "unavailable: QueueDoesNotExist"


# transaction=True: it closes and reopens the connection, which ends a test's atomic block.
@pytest.mark.django_db(transaction=True)
def test_readyz_when_the_database_is_unreachable(aws, fresh_queue_urls):
    with unreachable_database():
        response = Client().get("/readyz")
        healthz = Client().get("/healthz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("unavailable: ")
    assert checks["sqs"] == "ok"
    assert healthz.status_code == 200  # alive, just not ready
    # And the database is back for what follows.
    assert Client().get("/readyz").status_code == 200
