"""The pipeline driven by the test itself, in this process: ``run_pipeline`` with the real
``dispatch_batch`` (batches go to the workers' Celery queues) in a loop until a condition holds
(``drive_pipeline``), or in a background thread as beat would run it (``PipelineLoop``).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tests.harness.queues import incoming_queues, queues_empty


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


class PipelineLoop:
    """``run_pipeline(dispatch_batch)`` every ``interval`` seconds in a background thread, as
    beat runs it in production. Each run holds ``_turn``, so ``held()`` waits for a run in
    progress to end and keeps the next from starting (emails queued meanwhile are read by one
    run together). A run that raises is recorded; ``stop()`` fails with it."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.runs = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._turn = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="e2e-pipeline", daemon=True)

    def start(self) -> PipelineLoop:
        self._thread.start()
        return self

    def _loop(self) -> None:
        from django.db import connections

        from dispatch.pipeline import run_pipeline
        from dispatch.tasks import dispatch_batch

        try:
            while not self._stop.is_set():
                with self._turn:
                    try:
                        run_pipeline(dispatch_batch)
                        self.runs += 1
                    except Exception:
                        self.errors.append(traceback.format_exc())
                self._stop.wait(self.interval)
        finally:
            # This thread's own connection: closed, or PostgreSQL refuses to drop the test DB.
            connections.close_all()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._turn:
            yield

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        if self._thread.is_alive():
            raise RuntimeError("the pipeline thread did not stop within 60 s")
        if self.errors:
            raise AssertionError(
                f"{len(self.errors)} pipeline run(s) raised; the first:\n{self.errors[0]}"
            )
