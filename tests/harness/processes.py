"""Start and stop any process of the service, as the Procfile runs it.

``ProcessGroup`` starts ``celery worker`` / ``celery beat``, gunicorn, moto and the SendGrid
and SMTP stand-ins as subprocesses sharing one environment, each in its own session (process
group) with its output in a log file. A server is started on port 0 and the port it picked is
read back from its log line ("Listening at: http://127.0.0.1:PORT"), so two test runs never
race for a port. ``stop_all`` sends SIGTERM (Celery's warm shutdown) then SIGKILLs whatever
is left of every process group, so no pool child survives; ``ServiceProcess.kill()`` is the
crash. Every process is also registered for an ``atexit`` sweep, and ``logs()`` gives the tail
of each log for a failing test's report.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from tests.harness.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PYTHON = sys.executable
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
WORKER_READY = "ready."
BEAT_READY = "beat: Starting..."
# What each server prints once it is listening, with the URL it picked.
GUNICORN_LISTENING = re.compile(r"Listening at: (http://[\d.]+:\d+)")
MOTO_LISTENING = re.compile(r"moto server listening on (http://[\d.]+:\d+)")
STUB_LISTENING = re.compile(r"SendGrid stand-in listening on (http://[\d.]+:\d+)")
# The SMTP stand-in's control API is its ``url``; its SMTP address is read by ``smtp_address``.
SMTP_STUB_LISTENING = re.compile(
    r"SMTP stand-in listening on smtp://[\d.]+:\d+ \(control API on (http://[\d.]+:\d+)\)"
)
SMTP_ADDRESS = re.compile(r"SMTP stand-in listening on smtp://([\d.]+):(\d+)")


T = TypeVar("T")


class ProcessFailed(RuntimeError):
    """A subprocess exited before it was ready, or did not become ready in time."""


def run_checked(
    argv: Sequence[str], env: Mapping[str, str], timeout: float, *, cwd: Path = REPO_ROOT
) -> str:
    """Run a one-shot command of the service (``manage.py bootstrap``, say) to its end in the
    repository (or ``cwd``: another checkout of it); returns its output, ``ProcessFailed`` with
    the output if it did not succeed."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
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


_LIVE: set[ServiceProcess] = set()


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


class ServiceProcess:
    """One subprocess in its own session and process group, with its output in a log file.
    Start through ``ProcessGroup``. ``ready`` is a marker string or a pattern whose first
    group (a server's URL) becomes ``url``. It runs in ``cwd``: the repository, or another
    checkout of it (the benchmarks measure an older commit's service that way)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: str | re.Pattern[str],
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.ready = ready
        self.ready_seconds: float | None = None
        self.url = ""
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
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
        return f"ServiceProcess({self.name!r}, pid={self.popen.pid})"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def is_beat(self) -> bool:
        return self.ready == BEAT_READY

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

    def _is_ready(self) -> bool:
        text = self.log_text()
        if isinstance(self.ready, str):
            return self.ready in text
        found = self.ready.search(text)
        if found:
            self.url = found.group(1)
        return found is not None

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Wait for the ready line in the log; returns the start-up time in seconds."""
        deadline = time.monotonic() + timeout
        while not self._is_ready():
            if not self.alive:
                raise ProcessFailed(
                    f"{self.name} exited with {self.popen.returncode} before it was ready:\n"
                    + self.tail()
                )
            if time.monotonic() >= deadline:
                raise ProcessFailed(f"{self.name} not ready after {timeout:g}s:\n" + self.tail())
            time.sleep(0.05)
        if self.ready_seconds is None:
            self.ready_seconds = time.monotonic() - self.started_at
        return self.ready_seconds

    def pool_pids(self) -> list[int]:
        """Every live process of this one's group except the main one (the pool children)."""
        return [pid for pid in _group_members(self.pgid) if pid != self.popen.pid]

    def exit_status_on(self, signum: int, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """Send ``signum`` to the main process; its exit status (``ProcessFailed`` if it is
        still running after ``timeout``)."""
        self.popen.send_signal(signum)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ProcessFailed(f"{self.name} still runs {timeout:g}s after {signum}") from exc

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
    """Last resort (e.g. an interrupted session): no process of the tests outlives them."""
    for process in list(_LIVE):
        with contextlib.suppress(Exception):
            process.kill()


def stop_every(items: Sequence[T], stop: Callable[[T], None]) -> None:
    """``stop(item)`` for every item, even after one failed; then one ``ProcessFailed`` with
    every failure, if any."""
    errors = []
    for item in items:
        try:
            stop(item)
        except ProcessFailed as exc:
            errors.append(str(exc))
    if errors:
        raise ProcessFailed("; ".join(errors))


def smtp_address(process: ServiceProcess) -> tuple[str, int]:
    """The SMTP host and port of an SMTP stand-in started by ``ProcessGroup.smtp`` (ready)."""
    found = SMTP_ADDRESS.search(process.log_text())
    if found is None:
        raise ProcessFailed(f"{process.name} printed no SMTP address:\n{process.tail()}")
    return found.group(1), int(found.group(2))


def wait_healthy(process: ServiceProcess, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Wait until the server ``process`` (its ``url`` known) answers ``/healthz`` with 200."""
    process.wait_ready()

    def healthy() -> bool:
        if not process.alive:
            raise ProcessFailed(f"{process.name} exited:\n{process.tail()}")
        try:
            with urllib.request.urlopen(f"{process.url}/healthz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    wait_for(healthy, timeout, f"{process.name} to answer /healthz", interval=0.1)


class ProcessGroup:
    """Processes of the service sharing one environment (database, stand-ins, Celery queue
    prefix), run in ``cwd`` (default the repository). ``with ProcessGroup(...) as group:`` stops
    every process on the way out."""

    def __init__(
        self, name: str, env: Mapping[str, str], log_dir: Path, cwd: Path = REPO_ROOT
    ) -> None:
        self.name = name
        self.env = dict(env)
        self.log_dir = log_dir
        self.cwd = cwd
        self.processes: list[ServiceProcess] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def process(
        self,
        name: str,
        argv: Sequence[str],
        ready: str | re.Pattern[str],
        *,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> ServiceProcess:
        """Any long-running process: ready once ``ready`` is in its log (a pattern's first
        group is its URL), stopped with the group."""
        process = ServiceProcess(
            name=name,
            argv=list(argv),
            env={**self.env, **(env or {})},
            log_path=self.log_dir / f"{self.name}-{name}-{len(self.processes)}.log",
            ready=ready,
            cwd=self.cwd,
        )
        self.processes.append(process)
        if wait:
            process.wait_ready()
        return process

    def moto(
        self,
        name: str = "moto",
        *,
        module: str = "devtools.moto_server",
        args: Sequence[str] = (),
        **options: object,
    ) -> ServiceProcess:
        """``python -m devtools.moto_server`` on a port of its own choosing (``.url``). Queue
        purges are never refused: the tests purge between scenarios, more than once a minute.
        ``module``: a launcher that wraps devtools.moto_server's (the benchmarks' counting one),
        with the same command line and ready line, plus ``args``."""
        env = {"MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false"}
        argv = [PYTHON, "-m", module, "--port", "0", *args]
        return self.process(name, argv, MOTO_LISTENING, env=env, **options)

    def sendgrid(
        self, api_key: str | None, name: str = "sendgrid", **options: object
    ) -> ServiceProcess:
        """``python -m devtools.sendgrid_stub`` on a port of its own choosing (``.url``); its
        API key from ``--api-key``, or with None from its environment."""
        argv = [PYTHON, "-m", "devtools.sendgrid_stub", "--port", "0"]
        if api_key is not None:
            argv += ["--api-key", api_key]
        return self.process(name, argv, STUB_LISTENING, **options)

    def smtp(self, name: str = "smtp", **options: object) -> ServiceProcess:
        """``python -m devtools.smtp_stub`` (plain SMTP, no AUTH) on ports of its own choosing:
        ``.url`` is its HTTP control API, ``smtp_address(process)`` its SMTP host and port."""
        argv = [PYTHON, "-m", "devtools.smtp_stub", "--host", "127.0.0.1"]
        argv += ["--port", "0", "--http-port", "0"]
        return self.process(name, argv, SMTP_STUB_LISTENING, **options)

    def gunicorn(
        self,
        name: str = "web",
        *,
        workers: int | None = None,
        threads: int | None = None,
        access_log: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> ServiceProcess:
        """The API as the Procfile's ``web`` line runs it, on a port of its own (``.url``);
        with ``wait``, returned once it answers ``/healthz``. ``workers``, ``threads``: None
        keeps gunicorn.conf.py's; ``extra_args``: more gunicorn options."""
        argv = [str(BIN / "gunicorn"), "gomail_site.wsgi", "--bind", "127.0.0.1:0"]
        if workers is not None:
            argv += ["--workers", str(workers)]
        if threads is not None:
            argv += ["--threads", str(threads)]
        if access_log:
            argv += ["--access-logfile", "-"]
        argv += list(extra_args)
        process = self.process(name, argv, GUNICORN_LISTENING, env=env, wait=wait)
        if wait:
            wait_healthy(process)
        return process

    def worker(
        self,
        name: str,
        queues: Sequence[str],
        *,
        concurrency: int = 2,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> ServiceProcess:
        """``celery -A gomail_site worker -Q <queues>`` with a prefork pool of ``concurrency``."""
        argv = [str(BIN / "celery"), "-A", "gomail_site", "worker", "-Q", ",".join(queues)]
        argv += ["--concurrency", str(concurrency), "--pool", "prefork", "-n", f"{name}@%h"]
        argv += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
        argv += ["--loglevel", "INFO"]
        return self.process(name, argv, WORKER_READY, env=env, wait=wait)

    def beat(
        self, name: str = "beat", *, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> ServiceProcess:
        """``celery -A gomail_site beat`` with a schedule file of its own."""
        schedule = self.log_dir / f"{self.name}-{name}-schedule"
        argv = [str(BIN / "celery"), "-A", "gomail_site", "beat", "--schedule", str(schedule)]
        argv += ["--loglevel", "INFO"]
        return self.process(name, argv, BEAT_READY, env=env, wait=wait)

    def wait_ready(self) -> None:
        for process in self.processes:
            if process.alive or process.ready_seconds is None:
                process.wait_ready()

    def stop_all(self) -> None:
        """Beat first (no new tasks), then the rest, all at once; never raises before every
        process was dealt with."""
        ordered = sorted(self.processes, key=lambda p: not p.is_beat)
        for process in ordered:
            process.terminate()
        stop_every(ordered, ServiceProcess.stop)

    def logs(self, lines: int = 60) -> str:
        return "\n".join(
            f"----- {process.name} (pid {process.popen.pid}, exit {process.popen.returncode})"
            f"\n{process.tail(lines)}"
            for process in self.processes
        )
