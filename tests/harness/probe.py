"""``python -m tests.harness.probe``: a pipeline in a process of its own that calls
``run_pipeline`` in a loop and records, inside the pipeline lease, when each run started and
ended (for the "runs never overlap" test); ``run_probes`` starts several at once.

Django-dependent modules are imported inside the functions, so that this module can be run
before Django is set up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.processes import REPO_ROOT, ProcessFailed
from tests.harness.queues import incoming_queues


@dataclass
class ProbeResult:
    runs: list[tuple[int, int]] = field(default_factory=list)  # (start, end) CLOCK_MONOTONIC ns
    skipped: int = 0
    read: int = 0


def start_probe(
    env: Mapping[str, str], out: Path, *, seconds: float, hold_ms: int, start_at: float
) -> subprocess.Popen:
    """Start ``python -m tests.harness.probe`` (see ``_probe``)."""
    argv = [
        sys.executable,
        "-m",
        "tests.harness.probe",
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
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.probe",
        description="run the pipeline in a loop, recording each run",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--hold-ms", type=int, default=0)
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args(argv)
    _probe(args.out, args.seconds, args.hold_ms, args.start_at)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
