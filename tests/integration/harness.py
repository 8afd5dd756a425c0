"""A harness for tests that run the service's real processes: Celery workers, beat, pipelines.

What it gives a test (the fixtures in ``conftest.py`` wire it up):

- ``ProcessGroup``: starts ``celery worker`` / ``celery beat`` subprocesses (and, with
  ``process()``, any other server of the service) exactly as the Procfile does (plus test
  timings from the environment), waits for each one's "ready" line in its log file, and
  stops them: SIGTERM (warm shutdown) then SIGKILL of the whole process group, so no pool
  child survives. ``CeleryProcess.kill()`` is the crash (SIGKILL, no warning).
  Every process started is also registered for an ``atexit`` sweep.
- ``worker_environment`` / ``config_env`` / ``with_overrides``: the environment a subprocess
  needs (the test database, the SendGrid stand-in, a Celery queue prefix, short timings) and
  the same configuration overrides for this process's ``settings.GOMAIL``.
- ``run_checked``: a one-shot command (``manage.py bootstrap``) run to its end.
- SQS helpers: ``purge_queues`` (moto's 60 s purge limit lifted for the call),
  ``queue_counts``, ``wait_queues_empty``, ``celery_queue_names``, ``dead_letters``.
- Emails: ``send_through_api`` (the real API, via DRF's test client) and ``enqueue_wire`` /
  ``enqueue_raw`` (straight onto an incoming queue, as another producer would).
- ``drive_pipeline``: calls ``dispatch.pipeline.run_pipeline`` in this process in a loop (the
  real ``dispatch_batch`` puts the batches on the workers' Celery queues) until a condition
  holds, and returns every run's report with the provider health it left behind.
- ``take_ledger``: per email id, the deliveries the SendGrid stand-in and moto's SES recorded,
  the record's status, provider and unknown outcomes, and the dead-letter queue.
- ``python -m tests.integration.harness probe ...``: a separate process that calls
  ``run_pipeline`` in a loop and records, inside the pipeline lease, when each run started and
  ended (for the "runs never overlap" test).

Django-dependent modules are imported inside the functions, so that this module can be imported
(by the probe subprocess) before Django is set up.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
WORKER_READY = "ready."
BEAT_READY = "beat: Starting..."

SENDER = "sender@example.com"  # in the verified SES identity of the test configuration
SUBJECT_PREFIX = "gomail-it"

# Short timings, within each setting's minimum (see gomail_site/config.py). Applied to every
# subprocess through the environment and to this process's settings by the fixtures.
FAST_TIMINGS: dict[str, dict[str, Any]] = {
    "sqs": {"visibility_timeout_seconds": 30},
    "pipeline": {"backoff_base_seconds": 1, "backoff_max_seconds": 2},
    "celery": {"visibility_timeout_seconds": 60},
}


class ProcessFailed(RuntimeError):
    """A subprocess exited before it was ready, or did not become ready in time."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError after
    ``timeout`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --- configuration and environment -----------------------------------------------------------


def config_env(overrides: Mapping[str, Any], _path: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"pipeline": {"backoff_base_seconds": 1}}`` -> ``{"GOMAIL_PIPELINE__BACKOFF_BASE_SECONDS":
    "1"}``; nested mappings (``providers.sendgrid.host``) become nested keys."""
    env: dict[str, str] = {}
    for key, value in overrides.items():
        path = (*_path, key)
        if isinstance(value, Mapping):
            env.update(config_env(value, path))
        else:
            text = json.dumps(value) if isinstance(value, bool | list) else str(value)
            env["GOMAIL_" + "__".join(part.upper() for part in path)] = text
    return env


def with_overrides(model: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of a (frozen) pydantic configuration with nested ``overrides`` applied."""
    updates = {}
    for key, value in overrides.items():
        current = getattr(model, key)
        if isinstance(value, Mapping) and hasattr(current, "model_copy"):
            updates[key] = with_overrides(current, value)
        else:
            updates[key] = value
    return model.model_copy(update=updates)


def merge(*overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge configuration overrides, later ones winning."""
    merged: dict[str, Any] = {}
    for layer in overrides:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def database_environment() -> dict[str, str]:
    """How a subprocess reaches the test database this process uses (SQLite file or
    PostgreSQL test database); call after the test database was set up."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return {"GOMAIL_SQLITE_PATH": str(db["NAME"])}
    if "postgresql" not in db["ENGINE"]:
        raise RuntimeError(f"no subprocess database URL for engine {db['ENGINE']}")
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    at = "@" if credentials else ""
    return {"DATABASE_URL": f"postgres://{credentials}{at}{host}{port}/{db['NAME']}"}


def worker_environment(
    *,
    queue_prefix: str,
    sendgrid_url: str,
    sendgrid_api_key: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The full environment of a Gomail subprocess in the tests: this process's environment
    (AWS endpoint of the test moto, fake credentials, GOMAIL_CONFIG), the production settings
    module on the test database, the SendGrid stand-in, a Celery queue prefix and timings."""
    env = dict(os.environ)
    for name in ("PYTEST_CURRENT_TEST", "PYTEST_VERSION", "DATABASE_URL", "GOMAIL_SQLITE_PATH"):
        env.pop(name, None)
    env.update(database_environment())
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "gomail_site.settings",
            "SENDGRID_API_KEY": sendgrid_api_key,
            "GOMAIL_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(
        config_env(
            merge(
                FAST_TIMINGS,
                {"celery": {"queue_name_prefix": queue_prefix}},
                {"providers": {"sendgrid": {"host": sendgrid_url}}},
                overrides or {},
            )
        )
    )
    return env


# --- processes --------------------------------------------------------------------------------


def run_checked(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> str:
    """Run a one-shot command of the service (``manage.py bootstrap``, say) to its end in the
    repository; returns its output, ``ProcessFailed`` with the output if it did not succeed."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProcessFailed(f"{argv} did not finish in {timeout:g}s") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise ProcessFailed(f"{argv} exited with {done.returncode}:\n{output[-3000:]}")
    return output


_LIVE: set[CeleryProcess] = set()


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class CeleryProcess:
    """One Celery subprocess (worker or beat) in its own session and process group, with its
    output in a log file. Start through ``ProcessGroup``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready_marker: str,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.ready_marker = ready_marker
        self.ready_seconds: float | None = None
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: a signal to the group reaches the prefork pool children.
            start_new_session=True,
        )
        self.pgid = self.popen.pid
        self._terminated = False
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"CeleryProcess({self.name!r}, pid={self.popen.pid})"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def tasks(self, event: str) -> set[str]:
        """Ids of the tasks this worker logged as ``event`` ("received", "succeeded", ...)."""
        return set(re.findall(r"Task [\w.]+\[([0-9a-f-]+)\] " + re.escape(event), self.log_text()))

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Wait for the ready line in the log; returns the start-up time in seconds."""
        deadline = time.monotonic() + timeout
        while self.ready_marker not in self.log_text():
            if not self.alive:
                raise ProcessFailed(
                    f"{self.name} exited with {self.popen.returncode} before it was ready:\n"
                    + self.tail()
                )
            if time.monotonic() >= deadline:
                raise ProcessFailed(f"{self.name} not ready after {timeout:g}s:\n" + self.tail())
            time.sleep(0.1)
        if self.ready_seconds is None:
            self.ready_seconds = time.monotonic() - self.started_at
        return self.ready_seconds

    def pool_pids(self) -> list[int]:
        """Every live process of this one's group except the main one (the pool children)."""
        return [pid for pid in _group_members(self.pgid) if pid != self.popen.pid]

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, nothing is acknowledged."""
        self._signal_group(signal.SIGKILL)
        self._reap(STOP_TIMEOUT_SECONDS)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM the main process (Celery's warm shutdown: running tasks finish), then
        SIGKILL whatever of the group is left after ``timeout``. Idempotent."""
        if self.alive:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self._signal_group(signal.SIGKILL)
        self._reap(STOP_TIMEOUT_SECONDS)

    def terminate(self) -> None:
        """Send SIGTERM to the main process once (a second one would not be a warm shutdown)."""
        if self.alive and not self._terminated:
            self._terminated = True
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def _signal_group(self, signum: int) -> None:
        if self.alive or _group_members(self.pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signum)

    def _reap(self, timeout: float) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ProcessFailed(f"{self.name} (pid {self.popen.pid}) did not exit") from exc
        deadline = time.monotonic() + timeout
        while _group_members(self.pgid):
            if time.monotonic() >= deadline:
                raise ProcessFailed(f"{self.name}: processes {_group_members(self.pgid)} remain")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)
            time.sleep(0.05)
        self._log.close()
        _LIVE.discard(self)


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (e.g. an interrupted session): no Celery process outlives the tests."""
    for process in list(_LIVE):
        with contextlib.suppress(Exception):
            process.kill()


class ProcessGroup:
    """Celery processes sharing one environment (database, stand-ins, Celery queue prefix).

    ``with ProcessGroup(...) as group:`` stops every process on the way out, failure or not.
    """

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = dict(env)
        self.log_dir = log_dir
        self.queue_prefix = self.env.get("GOMAIL_CELERY__QUEUE_NAME_PREFIX", "")
        self.processes: list[CeleryProcess] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def _start(
        self, name: str, argv: list[str], marker: str, env: Mapping[str, str] | None
    ) -> CeleryProcess:
        process = CeleryProcess(
            name=name,
            argv=argv,
            env={**self.env, **(env or {})},
            log_path=self.log_dir / f"{self.name}-{name}-{len(self.processes)}.log",
            ready_marker=marker,
        )
        self.processes.append(process)
        return process

    def process(
        self,
        name: str,
        argv: Sequence[str],
        ready_marker: str,
        *,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> CeleryProcess:
        """Any other long-running process of the service (a server such as gunicorn, moto or
        the SendGrid stand-in), managed like the Celery ones: ready once ``ready_marker`` is in
        its log, stopped with the group."""
        process = self._start(name, list(argv), ready_marker, env)
        if wait:
            process.wait_ready()
        return process

    def worker(
        self,
        name: str,
        queues: Sequence[str],
        *,
        concurrency: int = 2,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> CeleryProcess:
        """``celery -A gomail_site worker -Q <queues>`` with a prefork pool of ``concurrency``."""
        argv = [
            str(CELERY),
            "-A",
            "gomail_site",
            "worker",
            "-Q",
            ",".join(queues),
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "-n",
            f"{name}@%h",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        process = self._start(name, argv, WORKER_READY, env)
        if wait:
            process.wait_ready()
        return process

    def beat(
        self, name: str = "beat", *, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> CeleryProcess:
        """``celery -A gomail_site beat`` with a schedule file of its own."""
        schedule = self.log_dir / f"{self.name}-{name}-schedule"
        argv = [
            str(CELERY),
            "-A",
            "gomail_site",
            "beat",
            "--schedule",
            str(schedule),
            "--loglevel",
            "INFO",
        ]
        process = self._start(name, argv, BEAT_READY, env)
        if wait:
            process.wait_ready()
        return process

    def wait_ready(self) -> None:
        for process in self.processes:
            if process.alive or process.ready_seconds is None:
                process.wait_ready()

    def stop_all(self) -> None:
        """Beat first (no new tasks), then the workers, all at once; never raises before every
        process was dealt with."""
        ordered = sorted(self.processes, key=lambda p: p.ready_marker != BEAT_READY)
        for process in ordered:
            process.terminate()
        errors = []
        for process in ordered:
            try:
                process.stop()
            except ProcessFailed as exc:
                errors.append(str(exc))
        if errors:
            raise ProcessFailed("; ".join(errors))

    def logs(self, lines: int = 60) -> str:
        return "\n".join(
            f"----- {process.name} (pid {process.popen.pid}, exit {process.popen.returncode})"
            f"\n{process.tail(lines)}"
            for process in self.processes
        )


# --- SQS ---------------------------------------------------------------------------------------


def _sqs() -> Any:
    from gomail_site.aws import aws_client

    return aws_client("sqs")


def celery_queue_names(prefix: str) -> list[str]:
    """The SQS names of the Celery queues (``pipeline`` and one per provider) under ``prefix``."""
    import celeryconfig

    return [prefix + queue.name for queue in celeryconfig.task_queues]


def existing_queue_url(name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return _sqs().get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError:
        return None


@contextlib.contextmanager
def _purge_limit_lifted() -> Iterator[None]:
    # moto refuses a second purge of a queue within 60 s unless this is "false". It reads the
    # variable on each call, and the test moto server runs in this process.
    name = "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def purge_queues(names: Iterable[str]) -> None:
    """Empty each queue that exists (in-flight messages included); others are skipped."""
    with _purge_limit_lifted():
        for name in names:
            url = existing_queue_url(name)
            if url is not None:
                _sqs().purge_queue(QueueUrl=url)


def queue_counts(name: str) -> dict[str, int]:
    """``{"visible", "in_flight", "delayed"}`` of queue ``name`` (moto's counts are exact)."""
    url = existing_queue_url(name)
    if url is None:
        return {"visible": 0, "in_flight": 0, "delayed": 0}
    attributes = _sqs().get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "visible": int(attributes["ApproximateNumberOfMessages"]),
        "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
    }


def queues_empty(names: Iterable[str]) -> bool:
    return all(sum(queue_counts(name).values()) == 0 for name in names)


def wait_queues_empty(names: Sequence[str], timeout: float) -> None:
    wait_for(lambda: queues_empty(names), timeout, f"queues {list(names)} to be empty", 0.5)


def incoming_queues() -> list[str]:
    from django.conf import settings

    return list(settings.GOMAIL.sqs.incoming_queues)


def dead_letter_queue() -> str:
    from django.conf import settings

    return settings.GOMAIL.sqs.dead_letter_queue


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    attributes: dict[str, str]


def dead_letters() -> list[DeadLetter]:
    """Every message in the dead-letter queue with its attributes; left in the queue."""
    from gomail_site.aws import queue_url

    sqs, url = _sqs(), queue_url(dead_letter_queue())
    found: dict[str, DeadLetter] = {}
    handles: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            handles.append(message["ReceiptHandle"])
            found[message["MessageId"]] = DeadLetter(
                message_id=message["MessageId"],
                body=message["Body"],
                attributes={
                    name: value.get("StringValue", "")
                    for name, value in message.get("MessageAttributes", {}).items()
                },
            )
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(found.values())


# --- emails in ---------------------------------------------------------------------------------


def new_subject() -> str:
    """A unique subject: how a message at moto's SES is traced back to its email."""
    return f"{SUBJECT_PREFIX} {uuid.uuid4().hex}"


def email_fields(index: int = 0, **overrides: str) -> dict[str, str]:
    """The wire/API fields of a valid test email (camelCase keys)."""
    fields = {
        "fromEmail": SENDER,
        "fromName": "Gomail integration",
        "toEmail": f"reader{index}@example.org",
        "toName": f"Reader {index}",
        "subject": new_subject(),
        "body": f"Integration test email number {index}.",
    }
    fields.update(overrides)
    return fields


def send_through_api(client: Any, count: int, **overrides: str) -> list[str]:
    """POST ``count`` emails to ``/email/send``; every answer must be 200. Returns their ids."""
    ids = []
    for index in range(count):
        response = client.post(
            "/email/send",
            data=json.dumps({"email": email_fields(index, **overrides)}),
            content_type="application/json",
        )
        assert response.status_code == 200, (response.status_code, response.content)
        ids.append(response.json()["messageId"])
    return ids


def enqueue_raw(body: str, queue: str | None = None) -> str:
    """Put ``body`` as it is on an incoming queue (default the first); returns the MessageId."""
    from gomail_site.aws import queue_url

    name = queue or incoming_queues()[0]
    return _sqs().send_message(QueueUrl=queue_url(name), MessageBody=body)["MessageId"]


def enqueue_wire(count: int, **overrides: str) -> list[str]:
    """Create ``count`` email records and put their wire messages on the incoming queues
    (alternating), as the API does but without HTTP. Returns their ids."""
    from django.utils import timezone

    from emails.models import Email
    from emails.wire import WIRE_FIELDS, WireEmail

    ids = []
    queues = incoming_queues()
    for index in range(count):
        fields = email_fields(index, **overrides)
        email = WireEmail(
            id=str(uuid.uuid4()),
            accepted_at=timezone.now(),
            **{attribute: fields[key] for key, attribute in WIRE_FIELDS.items()},
        )
        queue = queues[index % len(queues)]
        Email.objects.create(
            id=email.id,
            from_email=email.from_email,
            from_name=email.from_name,
            to_email=email.to_email,
            to_name=email.to_name,
            subject=email.subject,
            queue=queue,
            accepted_at=email.accepted_at,
        )
        enqueue_raw(email.encode(), queue)
        ids.append(email.id)
    return ids


# --- the pipeline, driven from the test --------------------------------------------------------


@dataclass
class PipelineRun:
    """One ``run_pipeline`` call: its report and the provider health it left in the cache."""

    report: Any  # dispatch.pipeline.RunReport
    started: float  # time.monotonic()
    ended: float
    health_after: dict[str, Any]  # provider -> dispatch.health.HealthState

    @property
    def sent_to(self) -> dict[str, int]:
        return self.report.dispatched


def health_states() -> dict[str, Any]:
    from django.conf import settings

    from dispatch import health_store

    return {name: health_store.load_state(name) for name in settings.GOMAIL.enabled_providers}


def run_pipeline_once(dispatch: Callable[..., None] | None = None) -> PipelineRun:
    """One pipeline run in this process; batches go to the workers through ``dispatch_batch``."""
    from dispatch.pipeline import run_pipeline
    from dispatch.tasks import dispatch_batch

    started = time.monotonic()
    report = run_pipeline(dispatch or dispatch_batch)
    return PipelineRun(report, started, time.monotonic(), health_states())


def drive_pipeline(
    until: Callable[[], bool],
    timeout: float,
    *,
    pause: float = 0.3,
    before_each: Callable[[int], None] | None = None,
    dispatch: Callable[..., None] | None = None,
    runs: list[PipelineRun] | None = None,
) -> list[PipelineRun]:
    """Run the pipeline every ``pause`` seconds until ``until()`` holds (checked after each
    run); ``before_each(run_index)`` runs first each time (e.g. to feed emails). Each run is
    appended to ``runs`` (a list the caller's callbacks may look at; a new one by default),
    which is returned. AssertionError after ``timeout`` seconds, with the last runs described."""
    runs = [] if runs is None else runs
    deadline = time.monotonic() + timeout
    while True:
        if before_each is not None:
            before_each(len(runs))
        runs.append(run_pipeline_once(dispatch))
        if until():
            return runs
        if time.monotonic() >= deadline:
            recent = [(r.report.read, r.report.dispatched, r.report.health) for r in runs[-5:]]
            raise AssertionError(
                f"pipeline not settled after {timeout:g}s and {len(runs)} runs; last: {recent}"
            )
        time.sleep(pause)


def records_final(ids: Sequence[str]) -> bool:
    """Every record of ``ids`` is ``sent`` or ``dead``."""
    from emails.models import Email

    done = Email.objects.filter(id__in=ids, status__in=[Email.Status.SENT, Email.Status.DEAD])
    return done.count() == len(set(ids))


def settled(ids: Sequence[str], extra_queues: Sequence[str] = ()) -> bool:
    """Every record is final and the incoming queues (and ``extra_queues``) hold nothing,
    so nothing can come back and be sent again."""
    return records_final(ids) and queues_empty([*incoming_queues(), *extra_queues])


# --- the ledger --------------------------------------------------------------------------------


def ses_messages(moto_url: str) -> list[dict[str, Any]]:
    """Every email moto's SES accepted since its last reset (``/moto-api/data.json``)."""
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json", timeout=30) as answer:
        return json.load(answer).get("ses", {}).get("Message", [])


@dataclass
class Ledger:
    """Where each email of a test went, counted at the providers themselves."""

    ids: list[str]
    sendgrid: Counter[str]  # email id -> deliveries recorded by the SendGrid stand-in
    ses: Counter[str]  # email id -> deliveries recorded by moto's SES
    statuses: dict[str, str]
    providers: dict[str, str]
    unknown_outcomes: dict[str, int]
    rejections: dict[str, dict[str, str]]
    dead: list[DeadLetter]
    stub_attempts: int
    stub_failures: int

    def deliveries(self, email_id: str) -> int:
        return self.sendgrid[email_id] + self.ses[email_id]

    @property
    def duplicates(self) -> dict[str, int]:
        """Email id -> copies delivered beyond the first."""
        return {i: self.deliveries(i) - 1 for i in self.ids if self.deliveries(i) > 1}

    @property
    def undelivered(self) -> list[str]:
        return [i for i in self.ids if self.deliveries(i) == 0]

    @property
    def status_counts(self) -> Counter[str]:
        return Counter(self.statuses.get(i, "missing") for i in self.ids)

    def delivered_by(self, provider: str) -> int:
        counts = {"sendgrid": self.sendgrid, "ses": self.ses}[provider]
        return sum(counts[i] for i in self.ids)

    def dead_for(self, email_id: str) -> list[DeadLetter]:
        return [d for d in self.dead if d.attributes.get("emailId") == email_id]

    def summary(self) -> str:
        return (
            f"{len(self.ids)} emails: statuses {dict(self.status_counts)}, "
            f"delivered by ses {self.delivered_by('ses')}, sendgrid "
            f"{self.delivered_by('sendgrid')}, undelivered {len(self.undelivered)}, "
            f"duplicates {self.duplicates}, dead letters {len(self.dead)}, "
            f"stub attempts {self.stub_attempts} (failed {self.stub_failures})"
        )

    def assert_each_sent_once(self) -> None:
        """Every email is ``sent`` and delivered exactly once, by the provider its record
        names, and none of them is in the dead-letter queue."""
        assert self.status_counts == Counter({"sent": len(self.ids)}), self.summary()
        assert not self.undelivered and not self.duplicates, self.summary()
        for email_id in self.ids:
            provider = self.providers[email_id]
            counts = {"sendgrid": self.sendgrid, "ses": self.ses}[provider]
            assert counts[email_id] == 1, (email_id, provider, self.summary())
        assert not any(self.dead_for(email_id) for email_id in self.ids), self.summary()


def take_ledger(ids: Sequence[str], stub: Any, moto_url: str) -> Ledger:
    """Count, for each of ``ids``, the copies at the SendGrid stand-in (``custom_args``
    ``gomail_id``) and at moto's SES (by the email's unique subject), with its record and the
    dead-letter queue."""
    from emails.models import Email

    ids = [str(i) for i in ids]
    wanted = set(ids)
    records = {
        str(r["id"]): r
        for r in Email.objects.filter(id__in=ids).values(
            "id", "status", "provider", "subject", "unknown_outcomes", "rejections"
        )
    }
    by_subject = {r["subject"]: email_id for email_id, r in records.items() if r["subject"]}
    snapshot = stub.snapshot()
    sendgrid: Counter[str] = Counter()
    for message in snapshot["messages"]:
        email_id = message["payload"].get("custom_args", {}).get("gomail_id")
        if email_id in wanted:
            sendgrid[email_id] += 1
    ses: Counter[str] = Counter()
    for message in ses_messages(moto_url):
        email_id = by_subject.get(message.get("subject"))
        if email_id is not None:
            ses[email_id] += 1
    return Ledger(
        ids=ids,
        sendgrid=sendgrid,
        ses=ses,
        statuses={i: r["status"] for i, r in records.items()},
        providers={i: r["provider"] for i, r in records.items()},
        unknown_outcomes={i: r["unknown_outcomes"] for i, r in records.items()},
        rejections={i: r["rejections"] or {} for i, r in records.items()},
        dead=dead_letters(),
        stub_attempts=snapshot["attempts"],
        stub_failures=snapshot["failures"],
    )


# --- a pipeline in another process (for the "runs never overlap" test) ------------------------


@dataclass
class ProbeResult:
    runs: list[tuple[int, int]] = field(default_factory=list)  # (start, end) CLOCK_MONOTONIC ns
    skipped: int = 0
    read: int = 0


def start_probe(
    env: Mapping[str, str], out: Path, *, seconds: float, hold_ms: int, start_at: float
) -> subprocess.Popen:
    """Start ``python -m tests.integration.harness probe`` (see ``_probe``)."""
    argv = [
        sys.executable,
        "-m",
        "tests.integration.harness",
        "probe",
        "--out",
        str(out),
        "--seconds",
        str(seconds),
        "--hold-ms",
        str(hold_ms),
        "--start-at",
        str(start_at),
    ]
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115 - the child keeps its own copy
    try:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def run_probes(
    env: Mapping[str, str],
    directory: Path,
    count: int,
    *,
    seconds: float,
    hold_ms: int,
    setup_seconds: float = 5.0,
) -> list[ProbeResult]:
    """Run ``count`` pipeline probes at once (they start looping together, ``setup_seconds``
    from now, after Django's set-up) and return what each recorded. Every probe is waited
    for, or killed if anything goes wrong."""
    start_at = time.time() + setup_seconds
    outs = [directory / f"probe-{index}.json" for index in range(count)]
    probes = [
        start_probe(env, out, seconds=seconds, hold_ms=hold_ms, start_at=start_at) for out in outs
    ]
    try:
        for probe, out in zip(probes, outs, strict=True):
            code = probe.wait(setup_seconds + seconds + 60)
            if code != 0:
                log = out.with_suffix(".log").read_text(errors="replace")
                raise ProcessFailed(f"probe {out.name} exited with {code}:\n{log[-3000:]}")
    finally:
        for probe in probes:
            if probe.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(probe.pid, signal.SIGKILL)
                probe.wait(10)
    return [read_probe(out) for out in outs]


def read_probe(out: Path) -> ProbeResult:
    data = json.loads(out.read_text())
    return ProbeResult(
        runs=[tuple(run) for run in data["runs"]], skipped=data["skipped"], read=data["read"]
    )


def _probe(out: Path, seconds: float, hold_ms: int, start_at: float) -> None:
    """Call ``run_pipeline(dispatch_batch)`` in a loop for ``seconds`` (from ``start_at``, a
    ``time.time()``), recording when each run that got the lease started and ended. The
    recording wraps ``dispatch.pipeline._run``, which runs inside the lease, and holds the lease
    ``hold_ms`` longer so that the runs of several probes contend for it."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gomail_site.settings")
    django.setup()
    from dispatch import pipeline
    from dispatch.tasks import dispatch_batch

    result = ProbeResult()
    original = pipeline._run

    def recorded(dispatch: Callable[..., None]) -> Any:
        start = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        try:
            report = original(dispatch)
            result.read += report.read
            return report
        finally:
            time.sleep(hold_ms / 1000)
            result.runs.append((start, time.clock_gettime_ns(time.CLOCK_MONOTONIC)))

    pipeline._run = recorded
    _warm_up()
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pipeline.run_pipeline(dispatch_batch).ran:
            result.skipped += 1
        time.sleep(0.005)
    out.write_text(
        json.dumps({"runs": result.runs, "skipped": result.skipped, "read": result.read})
    )


def _warm_up() -> None:
    """Open what a first run would (database, boto3 clients, queue URLs, the broker), so that
    the probes' first runs are not slowed down by it while they contend."""
    from django.db import connection

    from gomail_site.aws import queue_url
    from gomail_site.celery import app

    connection.ensure_connection()
    for name in incoming_queues():
        queue_url(name)
    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.harness")
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser("probe", help="run the pipeline in a loop, recording each run")
    probe.add_argument("--out", type=Path, required=True)
    probe.add_argument("--seconds", type=float, required=True)
    probe.add_argument("--hold-ms", type=int, default=0)
    probe.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args(argv)
    _probe(args.out, args.seconds, args.hold_ms, args.start_at)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
