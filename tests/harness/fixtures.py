"""The harness's pytest fixtures (a plugin of the root ``conftest.py``), for every test that
runs the service's real processes or its stand-ins.

Ground rules they keep:

- moto is never reset here: a reset deletes the Celery queues of running workers too. The
  incoming queues, the dead-letter queue and the SES identity are created (idempotently) once
  per module, and each test starts from purged queues instead.
- Workers share the test database (a file for SQLite, ``test_gomail`` for PostgreSQL), so the
  tests that start them are ``django_db(transaction=True)``.
- Every process a fixture starts is stopped at its scope's end, pass or fail; a failing test
  gets the tail of each process's log in its report (``failed(request)`` tells a fixture).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub, start_sendgrid_stub
from dispatch.providers.ses import verify_ses_identities
from dispatch.queues import ensure_queues
from emails.claim_check import ensure_bucket
from tests.harness.environment import FAST_TIMINGS, service_environment, with_overrides
from tests.harness.processes import ProcessGroup, stop_every
from tests.harness.queues import (
    celery_queue_names,
    dead_letter_queue,
    incoming_queues,
    purge_queues,
)

STUB_API_KEY = "SG.test-suite-key"

GroupFactory = Callable[..., ProcessGroup]
# The module-scoped groups alive now, whose logs a failing test shows.
_MODULE_GROUPS: list[ProcessGroup] = []


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (a time limit, a developer's kill) ends the session as Ctrl-C does, so that
    # fixture teardowns and the atexit sweep stop every process the session started: they run
    # in sessions of their own and would outlive it.
    with contextlib.suppress(ValueError):  # only the main thread may set a handler
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    # Keeps each phase's report on the item, so a fixture's teardown knows the test failed.
    report = yield
    setattr(item, f"harness_report_{report.when}", report)
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test of ``request`` failed in its set-up or its call (for a teardown)."""
    return any(
        getattr(getattr(request.node, f"harness_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def sendgrid_server() -> Iterator[SendGridStub]:
    """The SendGrid stand-in of the session, in this process (its record is shared)."""
    with start_sendgrid_stub(host="127.0.0.1", port=0, api_key=STUB_API_KEY) as server:
        yield server


@pytest.fixture
def sendgrid_stub(sendgrid_server: SendGridStub) -> SendGridStub:
    """The stand-in with no messages, counters or injected faults."""
    sendgrid_server.reset()
    return sendgrid_server


@pytest.fixture(scope="module")
def integration_aws(moto_server: MotoServer) -> MotoServer:
    """The test moto with the configured queues and SES identity, created without a reset."""
    ensure_queues(django_settings.GOMAIL.sqs)
    ensure_bucket(django_settings.GOMAIL.payloads)
    verify_ses_identities(django_settings.GOMAIL.providers.ses.verify_identities)
    return moto_server


def default_prefix() -> str:
    """The Celery queue prefix of this process: what ``dispatch_batch`` here publishes to."""
    return django_settings.GOMAIL.celery.queue_name_prefix


def _group_factory(groups: list[ProcessGroup], stub: SendGridStub, log_root: Path) -> GroupFactory:
    def make(
        name: str, *, prefix: str | None = None, overrides: dict[str, Any] | None = None
    ) -> ProcessGroup:
        """A process group on Celery queue prefix ``prefix`` (default: this process's, so the
        pipeline driven from the test reaches its workers), whose queues start empty."""
        prefix = prefix if prefix is not None else default_prefix()
        purge_queues(celery_queue_names(prefix))
        env = service_environment(
            queue_prefix=prefix,
            sendgrid_url=stub.url,
            sendgrid_api_key=stub.api_key,
            overrides=overrides,
        )
        group = ProcessGroup(name, env, log_root / name)
        groups.append(group)
        return group

    return make


def stop_groups(groups: list[ProcessGroup], show_logs: bool) -> None:
    """Stop every group (the last started first), printing their logs first if asked."""
    if show_logs:
        for group in reversed(groups):
            print(f"===== logs of process group {group.name}\n{group.logs()}")
    stop_every(list(reversed(groups)), ProcessGroup.stop_all)


@pytest.fixture(scope="module")
def module_processes(
    django_db_setup: None,
    integration_aws: MotoServer,
    sendgrid_server: SendGridStub,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GroupFactory]:
    """Start process groups shared by a module's tests (stopped after its last test)."""
    groups = _MODULE_GROUPS
    yield _group_factory(groups, sendgrid_server, tmp_path_factory.mktemp("processes"))
    try:
        stop_groups(groups, show_logs=False)
    finally:
        groups.clear()


@pytest.fixture(autouse=True)
def _module_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _MODULE_GROUPS and failed(request):
        for group in _MODULE_GROUPS:
            print(f"===== logs of process group {group.name}\n{group.logs()}")


@pytest.fixture
def processes(
    request: pytest.FixtureRequest,
    transactional_db: None,
    integration_aws: MotoServer,
    sendgrid_server: SendGridStub,
    tmp_path: Path,
) -> Iterator[GroupFactory]:
    """Start process groups for one test (stopped when it ends, logs shown if it failed).

    Set up after the test database and so stopped before its tables are flushed."""
    groups: list[ProcessGroup] = []
    yield _group_factory(groups, sendgrid_server, tmp_path)
    stop_groups(groups, show_logs=failed(request))


@pytest.fixture
def clean_slate(
    transactional_db: None, integration_aws: MotoServer, sendgrid_stub: SendGridStub
) -> None:
    """Empty incoming, dead-letter and Celery queues and a reset stand-in (the cache, with the
    provider health, is emptied for every database test by the root conftest)."""
    purge_queues([*incoming_queues(), dead_letter_queue(), *celery_queue_names(default_prefix())])


@pytest.fixture
def gomail_overrides(settings: Any) -> Callable[[dict[str, Any]], None]:
    """Apply configuration overrides to this process (the pipeline run from the test):
    ``gomail_overrides({"health": {"unhealthy_threshold": 3}})``. The test timings of the
    workers (``FAST_TIMINGS``) are applied already."""

    def apply(overrides: dict[str, Any]) -> None:
        settings.GOMAIL = with_overrides(settings.GOMAIL, overrides)

    apply(FAST_TIMINGS)
    return apply
