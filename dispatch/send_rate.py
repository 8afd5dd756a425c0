"""Per-provider send-rate limits that hold across every worker process.

``providers.<name>.max_send_rate_per_second`` (SES's account maximum, for one) is a budget
shared by every worker thread of every worker process, so it is counted in the database, in
fixed windows: one row per provider says which window is current and how many sends it has
granted. Taking a slot is one conditional UPDATE (``try_acquire``):

    UPDATE ... SET count = CASE WHEN window = W THEN count + 1 ELSE 1 END, window = W
     WHERE provider = P AND (window < W OR (window = W AND count < sends))

which, like ``dispatch.lease``, cannot have two winners for the last slot: PostgreSQL
re-checks the WHERE on the committed row when two updates race, SQLite runs writers one at a
time. A refused caller sleeps until the next window (plus a little jitter, so that the
waiting threads do not all arrive at once) and tries again, until its deadline.

The windows are one second long and grant ``floor(rate)`` sends; a rate under one per second
gets windows of ``ceil(1 / rate)`` seconds with one send each. The budget is therefore never
above the configured rate within a window, but as with any fixed window, the end of one
window and the start of the next may together grant up to twice the per-window budget within
one second: configure a little under a limit the provider enforces over a sliding second.

Windows are numbered by each worker's wall clock, so the workers' clocks must agree (NTP); a
stored window far ahead of a worker's clock (a clock stepped back) is taken as stale and
reset, rather than blocking the provider until the clock catches up.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When

from dispatch.models import SendRateWindow

logger = logging.getLogger(__name__)

# A send waits at most this long for a slot (less when the queue's visibility timeout is
# short, see ``slot_wait_seconds``); then its message goes back to the queue, unsent.
MAX_SLOT_WAIT_SECONDS = 10.0
# Waiters wake at a random point of the first part of the next window, not all at its start.
JITTER_FRACTION = 0.1
# A stored window more than this far ahead of a worker's clock is stale (clock stepped back).
MAX_CLOCK_AHEAD_SECONDS = 60


@dataclass(frozen=True)
class Budget:
    """``sends`` sends per window of ``seconds`` seconds."""

    seconds: int
    sends: int


def budget(rate_per_second: float) -> Budget:
    """The window length and sends per window of a rate, never above the rate. Pure."""
    if rate_per_second <= 0:
        raise ValueError("a send rate must be positive")
    seconds = max(1, math.ceil(1 / rate_per_second - 1e-9))
    sends = max(1, math.floor(rate_per_second * seconds + 1e-9))
    return Budget(seconds=seconds, sends=sends)


def configured_rate(provider: str) -> float | None:
    """``providers.<provider>.max_send_rate_per_second``; None: no limit (or no such config)."""
    config = settings.GOMAIL.providers.get(provider)
    return getattr(config, "max_send_rate_per_second", None)


def try_acquire(provider: str, allowance: Budget, now: float) -> int | None:
    """Take one slot of ``provider``'s window at time ``now`` (seconds since the epoch).

    Returns the window's index when granted, None when the window is full. One UPDATE (and,
    the first time for a provider, the INSERT of its row).
    """
    window = int(now // allowance.seconds)
    stale_ahead = window + max(1, MAX_CLOCK_AHEAD_SECONDS // allowance.seconds)
    for _ in range(2):
        granted = (
            SendRateWindow.objects.filter(provider=provider)
            .filter(
                Q(window__lt=window)
                | Q(window=window, count__lt=allowance.sends)
                | Q(window__gt=stale_ahead)
            )
            .update(
                count=Case(When(window=window, then=F("count") + 1), default=Value(1)),
                window=window,
            )
        )
        if granted:
            return window
        if SendRateWindow.objects.filter(provider=provider).exists():
            return None
        _create_row(provider)
    return None


def wall_clock() -> float:
    """Seconds since the epoch: the windows' clock, the same in every worker process."""
    return time.time()


def acquire(
    provider: str,
    rate_per_second: float,
    timeout: float,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int | None:
    """Wait up to ``timeout`` seconds for a slot of ``provider`` at ``rate_per_second``.

    Returns the granted window's index, or None when no slot could be had in time (it gives
    up at once when the next window starts after the deadline: waiting longer is no use).
    """
    clock = clock or wall_clock
    allowance = budget(rate_per_second)
    deadline = clock() + timeout
    while True:
        now = clock()
        window = try_acquire(provider, allowance, now)
        if window is not None:
            return window
        next_window = (math.floor(now / allowance.seconds) + 1) * allowance.seconds
        if next_window > deadline:
            return None
        jitter = random.uniform(0, JITTER_FRACTION * allowance.seconds)  # noqa: S311
        sleep(max(0.0, min(next_window + jitter, deadline) - now))


def slot_wait_seconds(visibility_timeout: float) -> float:
    """How long one send may wait for a slot: short beside the queue's visibility timeout,
    so that a batch of waiting sends still settles long before its messages reappear."""
    return min(MAX_SLOT_WAIT_SECONDS, visibility_timeout / 10)


def take_slot(provider: str, timeout: float) -> bool:
    """Before a call to ``provider``: True once it may be made (at once when it has no
    configured rate), False when its rate left no slot within ``timeout`` seconds."""
    rate = configured_rate(provider)
    if rate is None:
        return True
    if acquire(provider, rate, timeout) is not None:
        return True
    logger.warning("no send slot of %s within %gs (max %g/s)", provider, timeout, rate)
    return False


def retry_after_seconds(provider: str) -> float:
    """How soon a message refused a slot is worth reading again: one window of ``provider``
    (the settlement's usual backoff applies on top, so a backlog that keeps coming back
    backs off instead of spending its receive count)."""
    rate = configured_rate(provider)
    return float(budget(rate).seconds) if rate is not None else 1.0


def _create_row(provider: str) -> None:
    try:
        with transaction.atomic():
            SendRateWindow.objects.create(provider=provider)
    except IntegrityError:
        pass  # another worker created it first: the same row serves both
