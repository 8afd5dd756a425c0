"""The whole service running as a user runs it (the Procfile's processes), for the system tests.

``Stack.start`` launches, as subprocesses: moto (``python -m devtools.moto_server``), the
SendGrid stand-in (``python -m devtools.sendgrid_stub``), ``manage.py bootstrap``, the API under
gunicorn, the pipeline worker, the provider worker and celery beat, which drives the pipeline
(the tests never run it themselves). With ``smtp=True`` it also starts the SMTP stand-in
(``python -m devtools.smtp_stub``) and enables the ``smtp`` provider on it (the third provider
of ``THREE_PROVIDER_OVERRIDES``); without, SES and SendGrid only, as the suite was written for.

Every service process reaches moto through its own ``AwsFaultProxy`` (one per role, so that a
fault can hit every process or just one) and, on PostgreSQL, the database through one
``TcpProxy``. The test process itself talks to moto and
the database directly: its checks never pass through a fault.

Processes are managed by ``tests.harness.ProcessGroup`` (ready lines in log files, ports the
servers pick themselves, SIGKILL of whole process groups).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests import harness
from tests.harness.fixtures import STUB_API_KEY
from tests.system.faults import AwsFaultProxy, TcpProxy

PYTHON = sys.executable
QUEUE_PREFIX = "gomail-system-"
ROLES = ("web", "pipeline", "providers", "beat")
WEB_WORKERS = 2  # the Procfile's
PROVIDER_CONCURRENCY = 4  # the Procfile's
SENDGRID_TIMEOUT_SECONDS = 3

# Small timings, on top of the harness's FAST_TIMINGS (1-2 s backoff). The SQS visibility
# timeout is what a crash scenario waits out: 30 s, above the 18 s floor the configuration
# allows for these provider timeouts (3 x the slowest call, an AWS call of 2 s tried 3 times),
# a margin for batches on 2 cores shared with the rest of the suite. Celery's 30 s is what a
# killed worker's task waits before it comes back.
SYSTEM_OVERRIDES: dict[str, Any] = {
    "sqs": {"visibility_timeout_seconds": 30},
    "celery": {"visibility_timeout_seconds": 30},
    "pipeline": {"interval_milliseconds": 500, "lease_seconds": 10},
    # Five sending threads per provider worker process (two rounds per batch of 10, which the
    # visibility timeout still holds): each keeps a database connection, and on PostgreSQL this
    # stack's workers beside the rest of the suite's went past max_connections (seen in a CI
    # run) with ten.
    "providers": {
        "ses": {"send_concurrency": 5},
        "sendgrid": {"timeout_seconds": SENDGRID_TIMEOUT_SECONDS, "send_concurrency": 5},
    },
    # The burst must measure the pipeline, not the per-key rate limit.
    "api": {"rate_limit_per_key": "1000000/min", "rate_limit_per_user": "1000000/min"},
}

# Loopback, but on 2 cores shared with the rest of the suite: a timed-out send is an unknown
# outcome (a possible duplicate), so not too short.
SMTP_TIMEOUT_SECONDS = 2
# On top of SYSTEM_OVERRIDES, with the SMTP stand-in (its host and port are added once it is
# up). A third enabled provider is a fourth call per batch in the start-up timing check, and an
# SMTP send may wait 19 x its timeout: 4 x 19 x 2 s = 152 s, within 160 s visibility timeouts
# (which only a crash scenario would wait out; this stack has none).
THREE_PROVIDER_OVERRIDES: dict[str, Any] = {
    "sqs": {"visibility_timeout_seconds": 160},
    "celery": {"visibility_timeout_seconds": 160},
    "providers": {
        # One round per batch (the timing check's 4 x 19 x 2 s holds only with one).
        "ses": {"send_concurrency": 10},
        "sendgrid": {"send_concurrency": 10},
        "smtp": {"enabled": True, "security": "none", "timeout_seconds": SMTP_TIMEOUT_SECONDS},
    },
}


class StubClient:
    """The SendGrid stand-in subprocess over its HTTP control API (``/_stub/...``); quacks like
    ``devtools.sendgrid_stub.SendGridStub`` where ``harness.take_ledger`` uses it."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.api_key = api_key

    def configure(self, **camel_case: object) -> dict[str, Any]:
        """``configure(failRate=1, failStatus=500)``: merged into the stand-in's fault config."""
        answer = requests.post(f"{self.url}/_stub/config", json=camel_case, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def heal(self) -> None:
        """No more faults; the recorded messages stay (they are the ledger)."""
        self.configure(failRate=0, delayMs=0, retryAfterSeconds=None)

    def snapshot(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/_stub/messages", timeout=30)
        answer.raise_for_status()
        return answer.json()

    def reset(self) -> None:
        requests.post(f"{self.url}/_stub/reset", timeout=10).raise_for_status()


class SmtpStubClient(StubClient):
    """The SMTP stand-in subprocess over its HTTP control API (same ``/_stub/`` shape; its
    faults are ``failRate``, ``failCode``, ``failStage``, ``delayMs``, ``dropConnection``)."""

    def __init__(self, url: str, address: tuple[str, int]) -> None:
        super().__init__(url, api_key="")
        self.host, self.port = address

    def heal(self) -> None:
        requests.post(f"{self.url}/_stub/heal", timeout=10).raise_for_status()


@dataclass
class Ingest:
    """What the API answered to a set of emails."""

    accepted: list[str] = field(default_factory=list)  # messageIds of the 200s
    refused: list[tuple[int, Any, str]] = field(default_factory=list)  # (status, body, subject)
    seconds: float = 0.0

    def extend(self, other: Ingest) -> None:
        self.accepted += other.accepted
        self.refused += other.refused
        self.seconds += other.seconds


class Stack:
    """The running service; see the module docstring. Build with ``Stack.start``."""

    def __init__(
        self,
        group: harness.ProcessGroup,
        moto_url: str,
        stub: StubClient,
        smtp: SmtpStubClient | None = None,
    ) -> None:
        self.group = group
        self.moto_url = moto_url
        self.stub = stub
        self.smtp = smtp
        # The provider worker's queues (the Procfile's provider_queues: the enabled providers).
        self.provider_queues = ("ses", "sendgrid", "smtp") if smtp else ("ses", "sendgrid")
        self.proxies: dict[str, AwsFaultProxy] = {}
        self.db_proxy: TcpProxy | None = None
        self.env: dict[str, str] = {}
        self.api_url = ""
        self.processes: dict[str, harness.ServiceProcess] = {}
        self._local = threading.local()

    # --- start and stop -------------------------------------------------------------------

    @classmethod
    def start(cls, base_env: Mapping[str, str], log_dir: Path, *, smtp: bool = False) -> Stack:
        """Start everything; ``base_env`` is ``harness.service_environment``'s (test database,
        timings, stand-in; with ``smtp``, ``THREE_PROVIDER_OVERRIDES`` too). Stops what it
        started if any step fails."""
        group = harness.ProcessGroup("system", base_env, log_dir)
        try:
            moto = group.moto()
            stub = group.sendgrid(STUB_API_KEY)
            relay = None
            if smtp:
                process = group.smtp()
                relay = SmtpStubClient(process.url, harness.smtp_address(process))
            stack = cls(group, moto.url, StubClient(stub.url, STUB_API_KEY), relay)
            stack._start_services(base_env)
        except BaseException:
            group.stop_all()
            raise
        return stack

    def _start_services(self, base_env: Mapping[str, str]) -> None:
        self.env = dict(base_env)
        self.env["GOMAIL_PROVIDERS__SENDGRID__HOST"] = self.stub.url
        self.env.update(harness.config_env({"providers": self.smtp_overrides()}))
        if "DATABASE_URL" in self.env:
            parts = urlsplit(self.env["DATABASE_URL"])
            self.db_proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
            netloc = parts.netloc.rsplit("@", 1)
            credentials = netloc[0] + "@" if len(netloc) == 2 else ""
            self.env["DATABASE_URL"] = parts._replace(
                netloc=f"{credentials}127.0.0.1:{self.db_proxy.port}"
            ).geturl()
        self.proxies = {role: AwsFaultProxy(self.moto_url, role) for role in ROLES}
        self.group.env = self.env
        # As the Procfile's web line does first: queues, dead-letter queue, SES identity.
        harness.run_checked(
            [PYTHON, "manage.py", "bootstrap", "--wait", "30"], self.role_env("web"), 120
        )
        for role in ROLES:
            self.start_role(role)

    def smtp_overrides(self) -> dict[str, Any]:
        """The ``providers`` overrides pointing the smtp provider at the stand-in (none without
        it)."""
        if self.smtp is None:
            return {}
        return {"smtp": {"host": self.smtp.host, "port": self.smtp.port}}

    def role_env(self, role: str) -> dict[str, str]:
        return {**self.env, "GOMAIL_AWS__ENDPOINT_URL": self.proxies[role].url}

    def start_role(
        self, role: str, *, wait: bool = True, provider_queues: Sequence[str] | None = None
    ) -> harness.ServiceProcess:
        """Start (again) the process of ``role``, as the Procfile starts it (the provider
        worker on ``provider_queues``, by default every enabled provider's: a scenario may
        leave a provider's queue unconsumed)."""
        env = self.role_env(role)
        if provider_queues is None:
            provider_queues = self.provider_queues
        if role == "web":
            process = self.group.gunicorn("web", workers=WEB_WORKERS, env=env, wait=wait)
            self.api_url = process.url
        elif role == "pipeline":
            process = self.group.worker("pipeline", ["pipeline"], concurrency=1, env=env, wait=wait)
        elif role == "providers":
            process = self.group.worker(
                "providers",
                list(provider_queues),
                concurrency=PROVIDER_CONCURRENCY,
                env=env,
                wait=wait,
            )
        elif role == "beat":
            process = self.group.beat("beat", env=env, wait=wait)
        else:
            raise ValueError(role)
        self.processes[role] = process
        return process

    def stop(self) -> None:
        try:
            self.group.stop_all()
        finally:
            for proxy in self.proxies.values():
                proxy.stop()
            if self.db_proxy is not None:
                self.db_proxy.stop()

    # --- faults ---------------------------------------------------------------------------

    def aws_fault(self, service: str, mode: str, roles: Iterable[str] = ROLES, **kw: Any) -> None:
        for role in roles:
            self.proxies[role].set(service, mode, **kw)

    def aws_count(self, service: str, mode: str) -> int:
        return sum(proxy.counts()[(service, mode)] for proxy in self.proxies.values())

    def heal(self) -> None:
        """Every fault off (the stand-ins keep their record of messages)."""
        self.stub.heal()
        if self.smtp is not None:
            self.smtp.heal()
        for proxy in self.proxies.values():
            proxy.heal()
        if self.db_proxy is not None:
            self.db_proxy.heal()

    def ensure_running(self) -> None:
        """Restart any role whose process is gone (a previous scenario killed it and failed)."""
        for role, process in list(self.processes.items()):
            if not process.alive:
                self.start_role(role)

    # --- traffic --------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def post_email(self, key: str, fields: Mapping[str, str]) -> tuple[int, Any]:
        """``POST /email/send`` once; (status, JSON body). A dropped connection is (0, text)."""
        try:
            answer = self._session().post(
                f"{self.api_url}/email/send",
                data=json.dumps({"email": dict(fields)}),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                timeout=60,
            )
        except requests.RequestException as exc:
            return 0, str(exc)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text

    def send(
        self,
        key: str,
        count: int,
        *,
        clients: int = 8,
        start: int = 0,
        pause: Callable[[int], None] | None = None,
    ) -> Ingest:
        """Send ``count`` distinct emails (unique subjects) with ``clients`` concurrent HTTP
        clients; ``pause(index)`` runs before each (to pace the traffic)."""

        def one(index: int) -> tuple[int, Any, str]:
            if pause is not None:
                pause(index)
            fields = harness.email_fields(start + index)
            status, body = self.post_email(key, fields)
            return status, body, fields["subject"]

        began = time.monotonic()
        ingest = Ingest()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for status, body, subject in pool.map(one, range(count)):
                if status == 200:
                    ingest.accepted.append(body["messageId"])
                else:
                    ingest.refused.append((status, body, subject))
        ingest.seconds = time.monotonic() - began
        return ingest

    def logs(self, lines: int = 60) -> str:
        return self.group.logs(lines)
