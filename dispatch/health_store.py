"""Provider health and batch outcomes in the Django DB cache (DESIGN.md section 7).

Writers are kept apart so that DatabaseCache's non-atomic updates never lose anything:
- the pipeline, under its lease, is the only writer of health states and of the list of
  batches pending per provider;
- a ``send_batch`` task writes only the outcome key of its own batch.
The pipeline folds the outcomes it finds, in dispatch order, into the health states.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connections, router
from django.utils import timezone
from django.utils.connection import ConnectionProxy

from dispatch.health import BatchOutcome, HealthState, Observation, Thresholds, fold
from dispatch.health import observation_from_outcome as _observation

HEALTH_KEY = "dispatch:health:{provider}"
PENDING_KEY = "dispatch:pending:{provider}"
OUTCOME_KEY = "dispatch:outcome:{batch_id}"
RUN_COUNTER_KEY = "dispatch:pipeline-runs"
LAST_RUN_KEY = "dispatch:pipeline-last-run"
OUTCOME_TTL_SECONDS = 24 * 3600

# A cache alias (settings.CACHES) and table of its own, which nothing else writes: culling
# of a shared cache would drop these keys first (they sort low), and its own is sized never to.
DISPATCH_CACHE = "dispatch"
cache = ConnectionProxy(caches, DISPATCH_CACHE)


@dataclass(frozen=True)
class PendingBatch:
    """A batch the pipeline dispatched and whose outcome it has not folded yet."""

    batch_id: str
    size: int
    dispatched_at: str  # ISO-8601

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingBatch:
        return cls(**data)


def fold_pending(
    state: HealthState,
    pending: Sequence[PendingBatch],
    outcomes: dict[str, dict[str, Any]],
    thresholds: Thresholds,
    now: datetime,
    deadline: datetime,
) -> tuple[HealthState, list[PendingBatch]]:
    """Fold the outcomes of pending batches into ``state``, in dispatch order.

    Returns the new state and the batches still pending: those without an outcome yet,
    dispatched at or after ``deadline``. An older batch with no outcome is a failing
    observation of its provider: its workers did not settle it within the visibility
    timeout (they stopped consuming, or cannot keep up), and its messages are already back in
    their queues. Pure: no I/O.
    """
    observations: list[Observation] = []
    still_pending: list[PendingBatch] = []
    for batch in pending:
        outcome = outcomes.get(batch.batch_id)
        if outcome is not None:
            observation = _observation(outcome, now)
            if observation is not None:
                observations.append(observation)
        elif datetime.fromisoformat(batch.dispatched_at) >= deadline:
            still_pending.append(batch)
        else:
            observations.append(
                Observation(
                    passed=False,
                    at=now,
                    error=f"a batch of {batch.size} had no outcome by its deadline "
                    f"(dispatched {batch.dispatched_at}): are its workers consuming?",
                )
            )
    return fold(state, observations, thresholds), still_pending


def load_state(provider: str) -> HealthState:
    return HealthState.from_dict(cache.get(HEALTH_KEY.format(provider=provider)))


def save_state(provider: str, state: HealthState) -> None:
    cache.set(HEALTH_KEY.format(provider=provider), state.to_dict(), timeout=None)


def load_pending(provider: str) -> list[PendingBatch]:
    stored = cache.get(PENDING_KEY.format(provider=provider)) or []
    return [PendingBatch.from_dict(item) for item in stored]


def save_pending(provider: str, pending: Iterable[PendingBatch]) -> None:
    cache.set(
        PENDING_KEY.format(provider=provider), [asdict(batch) for batch in pending], timeout=None
    )


def write_outcome(batch_id: str, outcome: BatchOutcome) -> None:
    """Called by the worker that settled ``batch_id``: the only writer of this key."""
    # Expires in a day: an outcome that arrives after its batch was given up is not kept forever.
    cache.set(OUTCOME_KEY.format(batch_id=batch_id), outcome.to_dict(), timeout=OUTCOME_TTL_SECONDS)


def read_outcomes(batch_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    keys = {OUTCOME_KEY.format(batch_id=batch_id): batch_id for batch_id in batch_ids}
    found = cache.get_many(list(keys))
    return {keys[key]: value for key, value in found.items()}


def forget_outcomes(batch_ids: Iterable[str]) -> None:
    cache.delete_many([OUTCOME_KEY.format(batch_id=batch_id) for batch_id in batch_ids])


def next_run_number() -> int:
    """A counter of pipeline runs (written by the pipeline only), to rotate provider order."""
    number = int(cache.get(RUN_COUNTER_KEY) or 0)
    cache.set(RUN_COUNTER_KEY, number + 1, timeout=None)
    return number


@dataclass(frozen=True)
class ProviderHealth:
    """What the admin and the API show of one provider."""

    name: str
    enabled: bool
    state: HealthState
    pending_batches: int
    in_flight: int


def provider_health(providers: Iterable[tuple[str, bool]]) -> list[ProviderHealth]:
    """The health of each ``(name, enabled)`` provider, as the pipeline last left it."""
    result = []
    for name, enabled in providers:
        pending = load_pending(name)
        result.append(
            ProviderHealth(
                name=name,
                enabled=enabled,
                state=load_state(name),
                pending_batches=len(pending),
                in_flight=sum(batch.size for batch in pending),
            )
        )
    return result


def save_last_run(finished_at: datetime) -> None:
    """When the last pipeline run finished (written by the pipeline, under its lease)."""
    cache.set(LAST_RUN_KEY, finished_at.isoformat(), timeout=None)


def load_last_run() -> datetime | None:
    stored = cache.get(LAST_RUN_KEY)
    return datetime.fromisoformat(stored) if stored else None


def purge_expired() -> int:
    """Delete the dispatch cache's expired rows; returns how many.

    DatabaseCache deletes an expired row only when it is read or once MAX_ENTRIES is passed,
    so late outcomes of given-up batches would pile up (and every ``set`` counts the table).
    The same statement as Django's own cull, by ``expires`` (an indexed column).
    """
    connection = connections[router.db_for_write(caches[DISPATCH_CACHE].cache_model_class)]
    table = connection.ops.quote_name(settings.CACHES[DISPATCH_CACHE]["LOCATION"])
    now = timezone.now().replace(microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            # Quoted names from the settings, the value a parameter: nothing from outside.
            f"DELETE FROM {table} WHERE {connection.ops.quote_name('expires')} < %s",  # noqa: S608
            [connection.ops.adapt_datetimefield_value(now)],
        )
        return cursor.rowcount
