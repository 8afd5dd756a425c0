"""Provider health and batch outcomes in the real Django DatabaseCache (dispatch/health_store.py),
folded by the pipeline (``dispatch.pipeline.fold_health``)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from dispatch import health_store
from dispatch.health import BatchOutcome, HealthState, Thresholds
from dispatch.health_store import PendingBatch
from dispatch.pipeline import fold_health

pytestmark = pytest.mark.django_db


def register(provider: str, count: int, *, ago: timedelta = timedelta(0)) -> list[PendingBatch]:
    dispatched_at = (timezone.now() - ago).isoformat()
    batches = [PendingBatch(uuid.uuid4().hex, 10, dispatched_at) for _ in range(count)]
    health_store.save_pending(provider, health_store.load_pending(provider) + batches)
    return batches


def test_state_round_trips_and_starts_healthy():
    assert health_store.load_state("ses") == HealthState()
    state = HealthState(
        healthy=False,
        consecutive_failures=4,
        changed_at=timezone.now(),
        last_error="HTTP 500",
    )

    health_store.save_state("ses", state)

    assert health_store.load_state("ses") == state
    assert health_store.load_state("sendgrid") == HealthState()


def test_pending_outcomes_and_forgetting_them():
    batches = register("ses", 3)
    health_store.write_outcome(batches[0].batch_id, BatchOutcome(sent=2))
    health_store.write_outcome(batches[2].batch_id, BatchOutcome(transient=1, errors=["x"]))

    assert health_store.load_pending("ses") == batches
    found = health_store.read_outcomes(batch.batch_id for batch in batches)
    assert found == {
        batches[0].batch_id: BatchOutcome(sent=2).to_dict(),
        batches[2].batch_id: BatchOutcome(transient=1, errors=["x"]).to_dict(),
    }

    health_store.forget_outcomes(found)

    assert health_store.read_outcomes(batch.batch_id for batch in batches) == {}


def test_run_numbers_count_up():
    assert [health_store.next_run_number() for _ in range(3)] == [0, 1, 2]


# transaction=True: threads with their own connections must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
def test_concurrent_batch_outcomes_lose_no_health_update():
    workers = 30
    batches = register("sendgrid", workers)
    barrier = threading.Barrier(workers)

    def worker(batch: PendingBatch) -> None:
        try:
            barrier.wait(timeout=20)
            health_store.write_outcome(
                batch.batch_id, BatchOutcome(transient=1, errors=[f"HTTP 500 ({batch.batch_id})"])
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(worker, batches))

    states = fold_health(["sendgrid"], Thresholds(healthy=3, unhealthy=3))

    state = states["sendgrid"]
    assert state.consecutive_failures == workers  # every one of the 30 outcomes was folded
    assert state.healthy is False
    assert state.last_error == f"HTTP 500 ({batches[-1].batch_id})"  # in dispatch order
    assert health_store.load_state("sendgrid") == state
    assert health_store.load_pending("sendgrid") == []
    assert health_store.read_outcomes(batch.batch_id for batch in batches) == {}


def test_fold_health_folds_what_arrived_and_keeps_the_rest_pending():
    thresholds = Thresholds(healthy=2, unhealthy=2)
    ses = register("ses", 3)
    sendgrid = register("sendgrid", 2)
    stale = register("sendgrid", 1, ago=timedelta(hours=1))  # past its deadline: a failure
    health_store.write_outcome(ses[0].batch_id, BatchOutcome(transient=1, errors=["timeout"]))
    health_store.write_outcome(ses[2].batch_id, BatchOutcome(provider_config=2, errors=["401"]))
    health_store.write_outcome(sendgrid[1].batch_id, BatchOutcome(sent=10))

    states = fold_health(["ses", "sendgrid"], thresholds)

    assert states["ses"].healthy is False
    assert states["ses"].consecutive_failures == 2
    assert states["ses"].last_error == "401"
    assert health_store.load_pending("ses") == [ses[1]]
    # A pass, then the batch with no outcome by its deadline: one failure, still healthy.
    assert (states["sendgrid"].healthy, states["sendgrid"].consecutive_failures) == (True, 1)
    assert "no outcome by its deadline" in states["sendgrid"].last_error
    assert health_store.load_pending("sendgrid") == [sendgrid[0]]
    assert stale[0] not in health_store.load_pending("sendgrid")
    assert health_store.load_state("ses") == states["ses"]

    # The outcome of the batch still pending arrives: the next fold picks it up, once.
    health_store.write_outcome(ses[1].batch_id, BatchOutcome(sent=1))
    states = fold_health(["ses", "sendgrid"], thresholds)
    assert states["ses"].consecutive_passes == 1
    assert health_store.load_pending("ses") == []
    states = fold_health(["ses", "sendgrid"], thresholds)
    assert states["ses"].consecutive_passes == 1


def test_provider_health_shows_state_and_in_flight():
    health_store.save_state("sendgrid", HealthState(healthy=False, consecutive_failures=3))
    register("sendgrid", 2)

    shown = health_store.provider_health([("ses", True), ("sendgrid", False)])

    assert [
        (p.name, p.enabled, p.state.healthy, p.pending_batches, p.in_flight) for p in shown
    ] == [
        ("ses", True, True, 0, 0),
        ("sendgrid", False, False, 2, 20),
    ]
