"""The service and its stand-ins for one benchmark, started through ``tests.harness``.

``BenchStack`` starts, as the Procfile runs them:

- the AWS side: the bench's moto (``bench.moto_server``, counting calls), the constant-time
  SQS stand-in (``bench.sqs_constant``), or an endpoint given with ``--sqs-endpoint`` used as
  it is behind a counting ``AwsFaultProxy``; and the SendGrid stand-in;
- this process's Django, on a fresh database, to read records (never through the API);
- ``manage.py migrate``, ``manage.py bootstrap`` and ``manage.py create_api_key`` of the
  measured checkout (``--service-root``), then on demand the API (gunicorn, options from the
  Procfile's ``web`` line) and the pipeline worker, the provider worker and beat (the
  Procfile's ``pipeline``, ``providers`` and ``beat`` lines), all run from that checkout.

The stand-ins always run from this checkout, so that before and after meet the same ones.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import procfile
from bench.counting import AwsCallLog, CallSource, RemoteCallLog
from bench.cpu import cpu_seconds
from bench.options import Options
from bench.report import RESULTS_DIR
from bench.sqs_constant import READY_LINE as CONSTANT_READY_LINE
from gomail_site.config import load_config
from tests import harness
from tests.harness import REPO_ROOT
from tests.harness.fixtures import STUB_API_KEY
from tests.harness.processes import stop_every
from tests.system.faults import AwsFaultProxy
from tests.system.stack import StubClient

PYTHON = sys.executable
CONFIG_PATH = REPO_ROOT / "bench" / "gomail.bench.yaml"
CONSTANT_LISTENING = re.compile(re.escape(CONSTANT_READY_LINE) + r" (http://[\d.]+:\d+)")
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
_API_KEY_LINE = re.compile(r"gm_\S+")
# The measured checkout's migrate, bootstrap and create_api_key in one process (one Django
# start-up instead of three), run in that checkout: its migrations, its queues, its key.
_SET_UP_SERVICE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("bootstrap", wait=30)
call_command("create_api_key", "bench")
"""
# ``--tiny`` proves the benchmarks work, in seconds: the pipeline runs every 500 ms and a failed
# send comes back after 1-2 s (the test suite's timings) instead of the defaults' 2 s and 10 s+.
TINY_OVERRIDES = {
    "pipeline": {"interval_milliseconds": 500, **harness.FAST_TIMINGS["pipeline"]},
    # A short backoff reaches only a short max age within SQS's receives (gomail_site.config).
    "delivery": harness.FAST_TIMINGS["delivery"],
}
PIPELINE_ROLES = ("pipeline", "providers", "beat")


def _postgres_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as connection:
        connection.execute(statement)


class BenchDatabase:
    """The benchmark's database, reached by every process through ``variables``: a fresh SQLite
    file in the run's folder, or PostgreSQL: ``DATABASE_URL`` from the environment as it is,
    else a fresh database on the local server, dropped by ``drop()``."""

    def __init__(self, kind: str, run_dir: Path) -> None:
        self.created = ""
        if kind == "sqlite":
            # DATABASE_URL would win over the file: a CI job's PostgreSQL is not the bench's.
            os.environ.pop("DATABASE_URL", None)
            self.variables = {"GOMAIL_SQLITE_PATH": str(run_dir / "gomail.sqlite3")}
        elif kind == "postgresql":
            url = os.environ.get("DATABASE_URL")
            if not url:
                self.created = f"gomail_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
                _postgres_admin(f'CREATE DATABASE "{self.created}"')
                url = urlunsplit(urlsplit(POSTGRES_SERVER)._replace(path=f"/{self.created}"))
            self.variables = {"DATABASE_URL": url}
        else:
            raise ValueError(f"unknown database {kind!r}")

    def drop(self) -> None:
        """Drop the database this created, if any (the service's processes are gone)."""
        if self.created:
            from django.db import connections

            connections.close_all()
            _postgres_admin(f'DROP DATABASE IF EXISTS "{self.created}" WITH (FORCE)')
            self.created = ""


class BenchStack:
    """See the module docstring. ``with BenchStack(options, "ingest") as stack:`` stops
    everything on the way out. ``sqs="constant"`` puts the constant-time stand-in in place of
    moto (or of ``--sqs-endpoint``)."""

    def __init__(self, options: Options, name: str, *, sqs: str = "service") -> None:
        self.options = options
        self.name = name
        self.sqs = sqs
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = RESULTS_DIR / "runs" / f"{name}-{stamp}-{os.getpid()}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.standins = harness.ProcessGroup("standins", os.environ, self.run_dir)
        self.service: harness.ProcessGroup | None = None
        self.proxy: AwsFaultProxy | None = None
        self.calls: CallSource = AwsCallLog()
        self.aws_url = ""  # where this process's own AWS calls go
        self.service_aws_url = ""  # where the service's go (a counting proxy, maybe)
        self.moto_url: str | None = None
        self.stub: StubClient | None = None
        self.api_key = ""
        self.processes: dict[str, harness.ServiceProcess] = {}
        self.database: BenchDatabase | None = None
        self.cpu_at_ready: dict[str, float] = {}

    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        sendgrid = self.standins.sendgrid(STUB_API_KEY, wait=False)
        self._start_aws()
        sendgrid.wait_ready()
        self.stub = StubClient(sendgrid.url, STUB_API_KEY)
        self._configure_this_process()
        env = harness.child_environment(TINY_OVERRIDES if self.options.tiny else None)
        env.update(
            {
                "GOMAIL_AWS__ENDPOINT_URL": self.service_aws_url,
                "GOMAIL_PROVIDERS__SENDGRID__HOST": sendgrid.url,
                "SENDGRID_API_KEY": STUB_API_KEY,
                "GOMAIL_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        root = self.options.service_root
        self.service = harness.ProcessGroup("service", env, self.run_dir, cwd=root)
        output = harness.run_checked([PYTHON, "-c", _SET_UP_SERVICE], env, 600, cwd=root)
        self.api_key = next(
            line for line in output.splitlines() if _API_KEY_LINE.fullmatch(line.strip())
        ).strip()

    def _start_aws(self) -> None:
        if self.sqs == "constant":
            process = self.standins.process(
                "sqs-constant",
                [PYTHON, "-m", "bench.sqs_constant", "--port", "0"],
                CONSTANT_LISTENING,
            )
            self.aws_url = self.service_aws_url = process.url
            self.calls = RemoteCallLog(process.url)
        elif self.options.sqs_endpoint is None:
            args = ["--stock-scans"] if self.options.stock_moto_scans else []
            process = self.standins.moto(module="bench.moto_server", args=args)
            self.aws_url = self.service_aws_url = self.moto_url = process.url
            self.calls = RemoteCallLog(process.url)
        else:
            # Counted on the way: the service's calls pass this process's proxy, the bench's
            # own go straight to the endpoint.
            log = AwsCallLog()
            self.proxy = AwsFaultProxy(self.options.sqs_endpoint, "bench", observe=log.observe)
            self.calls = log
            self.aws_url = self.options.sqs_endpoint
            self.service_aws_url = self.proxy.url

    def _configure_this_process(self) -> None:
        """Django here, on the benchmark's database and the AWS endpoint (once per process:
        ``python -m bench all`` runs each benchmark in a process of its own)."""
        import django

        self.database = BenchDatabase(self.options.database, self.run_dir)
        prometheus = self.run_dir / "prometheus"
        prometheus.mkdir(exist_ok=True)
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "gomail_site.settings",
                "GOMAIL_CONFIG": str(CONFIG_PATH),
                "GOMAIL_AWS__ENDPOINT_URL": self.aws_url,
                # Every process of a local run writes its metrics as `make run`'s do.
                "PROMETHEUS_MULTIPROC_DIR": str(prometheus),
                **self.database.variables,
            }
        )
        # moto takes any credentials; with another endpoint, the environment's own are used.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local-moto")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local-moto")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        django.setup()

    def stop(self) -> None:
        """Everything down. The service's processes are killed, not shut down warmly: the
        measurement is over and nothing of theirs is kept (a warm shutdown costs seconds per
        benchmark); whatever they left in flight on the queues is purged by the next one."""
        try:
            if self.service is not None:
                stop_every(self.service.processes, harness.ServiceProcess.kill)
        finally:
            try:
                self.standins.stop_all()
            finally:
                if self.proxy is not None:
                    self.proxy.stop()
                if self.database is not None:
                    self.database.drop()

    # --- the service's processes -----------------------------------------------------------

    def start_web(self, *, wait: bool = True) -> harness.ServiceProcess:
        """The API, as the Procfile's ``web`` line runs it (``--api-workers/--api-threads``
        override its counts); without ``wait``, ``wait_web`` before using it."""
        assert self.service is not None
        web = procfile.web_command(self.options.service_root)
        process = self.service.gunicorn(
            "web",
            workers=self.options.api_workers or web.workers,
            threads=self.options.api_threads or web.threads,
            access_log=web.access_log,
            extra_args=web.extra_args,
            wait=wait,
        )
        self.processes["web"] = process
        return process

    def start_pipeline(self) -> dict[str, harness.ServiceProcess]:
        """The pipeline worker, the provider worker and beat, as the Procfile runs them."""
        assert self.service is not None
        root = self.options.service_root
        for role in ("pipeline", "providers"):
            command = procfile.worker_command(root, role)
            # As `manage.py provider_queues` prints them with the benchmarks' configuration.
            queues = command.queues or load_config(CONFIG_PATH).celery_queues[1:]
            self.processes[role] = self.service.worker(
                role, queues, concurrency=command.concurrency, wait=False
            )
        self.processes["beat"] = self.service.beat("beat", wait=False)
        # Each one's CPU at its ready line: what it costs to start is not what it costs to run.
        for role in PIPELINE_ROLES:
            self.processes[role].wait_ready()
            self.cpu_at_ready[role] = cpu_seconds(self.processes[role])
        return {role: self.processes[role] for role in PIPELINE_ROLES}

    def web_described(self) -> dict[str, Any]:
        """How the API ran: the Procfile's options, the overrides, its worker processes."""
        web = procfile.web_command(self.options.service_root)
        return {
            "procfile_web": dataclasses.asdict(web),
            "api_workers": self.options.api_workers,
            "api_threads": self.options.api_threads,
            "worker_processes": len(self.processes["web"].pool_pids()),
        }

    def wait_web(self) -> None:
        harness.wait_healthy(self.processes["web"])

    # --- what the benchmarks ask of it ------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.processes["web"].url

    def purge(self) -> None:
        """Empty the incoming, dead-letter and Celery queues (the bench's own calls)."""
        names = [*harness.incoming_queues(), harness.dead_letter_queue()]
        names += harness.celery_queue_names(self._settings().celery.queue_name_prefix)
        harness.purge_queues(names)

    @staticmethod
    def _settings() -> Any:
        from django.conf import settings

        return settings.GOMAIL

    def logs(self) -> str:
        groups = [g for g in (self.standins, self.service) if g is not None]
        return "\n".join(group.logs() for group in groups)
