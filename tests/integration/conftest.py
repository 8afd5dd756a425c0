"""Fixtures of the tests that run the service's real Celery processes (see ``harness.py``).

Ground rules these fixtures keep:

- moto is never reset here: a reset deletes the Celery queues of running workers too. The
  incoming queues, the dead-letter queue and the SES identity are created (idempotently) once
  per module, and each test starts from purged queues instead.
- Workers share the test database (a file for SQLite, ``test_gomail`` for PostgreSQL), so the
  tests are ``django_db(transaction=True)``; the cache (provider health) is cleared per test.
- Every process a fixture starts is stopped at its scope's end, pass or fail; a failing test
  gets the tail of each process's log in its report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache

from devtools.moto_server import MotoServer
from devtools.sendgrid_stub import SendGridStub, start_sendgrid_stub
from dispatch.queues import ensure_queues, verify_ses_identities
from tests.integration import harness

STUB_API_KEY = "SG.integration-test-key"

GroupFactory = Callable[..., harness.ProcessGroup]
# The module-scoped groups alive now, whose logs a failing test shows.
_MODULE_GROUPS: list[harness.ProcessGroup] = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    # Keeps each phase's report on the item, so a fixture's teardown knows the test failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def sendgrid_stub() -> Iterator[SendGridStub]:
    stub = start_sendgrid_stub(port=0, api_key=STUB_API_KEY)
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def integration_aws(moto_server: MotoServer) -> MotoServer:
    """The test moto with the configured queues and SES identity, created without a reset."""
    ensure_queues(django_settings.GOMAIL.sqs)
    verify_ses_identities(django_settings.GOMAIL.providers.ses.verify_identities)
    return moto_server


def default_prefix() -> str:
    """The Celery queue prefix of this process: what ``dispatch_batch`` here publishes to."""
    return django_settings.GOMAIL.celery.queue_name_prefix


def _group_factory(
    groups: list[harness.ProcessGroup], stub: SendGridStub, log_root: Path
) -> GroupFactory:
    def make(
        name: str, *, prefix: str | None = None, overrides: dict[str, Any] | None = None
    ) -> harness.ProcessGroup:
        """A process group on Celery queue prefix ``prefix`` (default: this process's, so the
        pipeline driven from the test reaches its workers), whose queues start empty."""
        prefix = prefix if prefix is not None else default_prefix()
        harness.purge_queues(harness.celery_queue_names(prefix))
        env = harness.worker_environment(
            queue_prefix=prefix,
            sendgrid_url=stub.url,
            sendgrid_api_key=stub.api_key,
            overrides=overrides,
        )
        group = harness.ProcessGroup(name, env, log_root / name)
        groups.append(group)
        return group

    return make


def _stop_groups(groups: list[harness.ProcessGroup], show_logs: bool) -> None:
    errors = []
    for group in reversed(groups):
        if show_logs:
            print(f"===== logs of process group {group.name}\n{group.logs()}")
        try:
            group.stop_all()
        except harness.ProcessFailed as exc:
            errors.append(str(exc))
    if errors:
        raise harness.ProcessFailed("; ".join(errors))


@pytest.fixture(scope="module")
def module_processes(
    django_db_setup: None,
    integration_aws: MotoServer,
    sendgrid_stub: SendGridStub,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GroupFactory]:
    """Start process groups shared by a module's tests (stopped after its last test)."""
    groups = _MODULE_GROUPS
    yield _group_factory(groups, sendgrid_stub, tmp_path_factory.mktemp("celery"))
    try:
        _stop_groups(groups, show_logs=False)
    finally:
        groups.clear()


@pytest.fixture(autouse=True)
def _module_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _failed(request):
        for group in _MODULE_GROUPS:
            print(f"===== logs of process group {group.name}\n{group.logs()}")


@pytest.fixture
def processes(
    request: pytest.FixtureRequest,
    transactional_db: None,
    integration_aws: MotoServer,
    sendgrid_stub: SendGridStub,
    tmp_path: Path,
) -> Iterator[GroupFactory]:
    """Start process groups for one test (stopped when it ends, logs shown if it failed).

    Set up after the test database and so stopped before its tables are flushed."""
    groups: list[harness.ProcessGroup] = []
    yield _group_factory(groups, sendgrid_stub, tmp_path)
    _stop_groups(groups, show_logs=_failed(request))


@pytest.fixture
def clean_slate(
    request: pytest.FixtureRequest,
    transactional_db: None,
    integration_aws: MotoServer,
    sendgrid_stub: SendGridStub,
) -> Iterator[None]:
    """Empty incoming, dead-letter and Celery queues, a reset stand-in, no provider health."""
    harness.purge_queues(
        [
            *harness.incoming_queues(),
            harness.dead_letter_queue(),
            *harness.celery_queue_names(default_prefix()),
        ]
    )
    sendgrid_stub.reset()
    cache.clear()
    yield


@pytest.fixture
def gomail_overrides(settings: Any) -> Callable[[dict[str, Any]], None]:
    """Apply configuration overrides to this process (the pipeline run from the test):
    ``gomail_overrides({"health": {"unhealthy_threshold": 3}})``. The test timings of the
    workers (``harness.FAST_TIMINGS``) are applied already."""

    def apply(overrides: dict[str, Any]) -> None:
        settings.GOMAIL = harness.with_overrides(settings.GOMAIL, overrides)

    apply(harness.FAST_TIMINGS)
    return apply
