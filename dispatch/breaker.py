"""A provider worker process stops calling a provider that keeps failing, at once.

Provider health (``dispatch.health``) moves traffic away from a failing provider, but only
once the pipeline has folded the outcomes of whole batches: until then every batch already
dispatched to it would make all its calls, each one failing. This breaker acts within a
worker process, between two calls: after ``trip_after`` consecutive failed calls to a provider
(transient or provider-config failures: the ones health counts), its calls are skipped for
``cooldown`` seconds, and the messages they would have sent go back to their queue untried, to
be read again and routed by health. After the cooldown one call is let through: a success
closes the breaker, a failure opens it again at once.

A skipped message was not sent and nothing failed for it: no attempt is recorded, its record is
queued again as it was, and a batch of skipped messages tells health nothing. The decisions
are pure functions of a ``BreakerState``; ``ProcessBreakers`` only holds the states.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerState:
    """Consecutive failed calls, and until when (monotonic seconds) calls are skipped."""

    failures: int = 0
    open_until: float | None = None


def allows(state: BreakerState, now: float) -> bool:
    """Whether a call may be made at ``now``. Pure."""
    return state.open_until is None or now >= state.open_until


def after_call(
    state: BreakerState, failed: bool, now: float, trip_after: int, cooldown: float
) -> BreakerState:
    """The state after a call that ``failed`` (or succeeded) at ``now``. Pure.

    A success closes the breaker. A failure opens it for ``cooldown`` once ``trip_after``
    calls in a row failed, or at once when it had opened before and no call succeeded since.
    """
    if not failed:
        return BreakerState()
    failures = state.failures + 1
    if failures >= trip_after or state.open_until is not None:
        return BreakerState(failures=failures, open_until=now + cooldown)
    return BreakerState(failures=failures)


class ProcessBreakers:
    """One ``BreakerState`` per provider, shared by a worker process's sending threads."""

    def __init__(
        self,
        trip_after: Callable[[], int],
        cooldown: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trip_after = trip_after
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, BreakerState] = {}

    def allows(self, provider: str) -> bool:
        with self._lock:
            return allows(self._states.get(provider, BreakerState()), self._clock())

    def record(self, provider: str, failed: bool) -> None:
        with self._lock:
            state = self._states.get(provider, BreakerState())
            self._states[provider] = after_call(
                state, failed, self._clock(), self._trip_after(), self._cooldown()
            )

    def state(self, provider: str) -> BreakerState:
        with self._lock:
            return self._states.get(provider, BreakerState())

    def reset(self) -> None:
        with self._lock:
            self._states.clear()
