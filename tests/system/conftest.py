"""Fixtures of the system tests: one running stack per module and a scenario recorder per test
(the table of every scenario at the end of the session is ``tests/system/report.py``'s).

The stack's processes share the test database (``django_db(transaction=True)``: each test's
rows are flushed after it, so every scenario creates its own API key). This process's own AWS
calls (the ledger, queue counts, poison messages) go to the stack's moto directly, never through
a fault proxy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from emails.models import ApiKey
from tests import harness
from tests.harness.fixtures import STUB_API_KEY, failed
from tests.system import ledger
from tests.system.stack import QUEUE_PREFIX, SYSTEM_OVERRIDES, THREE_PROVIDER_OVERRIDES, Stack


def database_name() -> str:
    return connection.vendor  # "sqlite" or "postgresql"


@contextlib.contextmanager
def running_stack(
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    smtp: bool = False,
) -> Iterator[Stack]:
    """The whole service (with the SMTP stand-in as a third provider if ``smtp``), and this
    process's settings matching it, until the block ends."""
    overrides: Mapping[str, Any] = (
        harness.merge(SYSTEM_OVERRIDES, THREE_PROVIDER_OVERRIDES) if smtp else SYSTEM_OVERRIDES
    )
    base_env = harness.service_environment(
        queue_prefix=QUEUE_PREFIX,
        sendgrid_url="http://127.0.0.1:1",  # replaced by the stand-in's, once it is up
        sendgrid_api_key=STUB_API_KEY,
        overrides=overrides,
    )
    with django_db_blocker.unblock():
        running = Stack.start(base_env, tmp_path_factory.mktemp("system"), smtp=smtp)
    # This process checks the stack's moto directly, with the stack's queue prefix.
    gomail = harness.with_overrides(
        settings.GOMAIL,
        harness.merge(
            harness.FAST_TIMINGS,
            overrides,
            {"providers": running.smtp_overrides()},
            # The stack's moto is busy serving the whole service: this process's checks wait
            # longer for an answer than a service's call would (a copy, not re-validated).
            {"aws": {"endpoint_url": running.moto_url, "client_timeout_seconds": 30}},
            {"celery": {"queue_name_prefix": QUEUE_PREFIX}},
        ),
    )
    override = override_settings(GOMAIL=gomail)
    override.enable()
    try:
        yield running
    finally:
        override.disable()
        running.stop()


@pytest.fixture(scope="module")
def stack(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The whole service (SES and SendGrid), started once for the module and stopped after its
    last test."""
    with running_stack(django_db_blocker, tmp_path_factory) as running:
        yield running


class Scenario:
    """One scenario: its faults are healed on the way in, its verdict recorded on the way out."""

    def __init__(self, name: str, stack: Stack, key: str) -> None:
        self.name = name
        self.stack = stack
        self.key = key
        self.healed_at: float | None = None

    def heal(self) -> None:
        """Every fault off; the drain time is counted from here."""
        self.stack.heal()
        self.healed_at = time.monotonic()

    def wait_drained(
        self, ids: Sequence[str], timeout: float, extra_queues: Sequence[str] = ()
    ) -> float:
        """Wait until every email is final and the incoming queues are empty; returns the
        seconds since the heal (or since now, if nothing was healed)."""
        since = self.healed_at if self.healed_at is not None else time.monotonic()
        harness.wait_for(
            lambda: harness.settled(ids, extra_queues),
            timeout,
            f"{len(ids)} emails of {self.name} to be sent or dead-lettered",
            interval=0.5,
        )
        return time.monotonic() - since

    def check(
        self,
        ids: Sequence[str],
        drain_seconds: float,
        *,
        duplicates_allowed: bool = False,
        dead_allowed: Sequence[str] = (),
        note: str = "",
    ) -> harness.Ledger:
        """Take the ledger, add the scenario's row to the table, and fail on any violation."""
        taken = harness.take_ledger(
            ids, self.stack.stub, self.stack.moto_url, smtp_stub=self.stack.smtp
        )
        result, problems = ledger.judge(
            self.name,
            database_name(),
            taken,
            drain_seconds=drain_seconds,
            duplicates_allowed=duplicates_allowed,
            dead_allowed=dead_allowed,
            note=note,
        )
        ledger.RESULTS.append(result)
        assert not problems, f"{self.name}: {problems[:10]}; {taken.summary()}"
        return taken


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, stack: Stack, transactional_db: None
) -> Iterator[Scenario]:
    """A scenario on a healed stack (every role running, the stand-ins reset), with an API key;
    the stack's logs are shown when it fails."""
    stack.heal()
    stack.stub.reset()
    if stack.smtp is not None:
        stack.smtp.reset()
    stack.ensure_running()
    _, key = ApiKey.create_key(f"system {request.node.name}")
    yield Scenario(request.node.name.removeprefix("test_"), stack, key)
    stack.heal()
    if failed(request):
        print(f"===== logs of the stack\n{stack.logs()}")
