"""The provider breaker's decisions (pure) and its process-wide holder with a test clock."""

from __future__ import annotations

import pytest

from dispatch.breaker import BreakerState, ProcessBreakers, after_call, allows


def run(outcomes: str, trip_after: int = 3, cooldown: float = 5.0) -> list[BreakerState]:
    """States after each call of ``outcomes`` ("F" failed, "S" succeeded), one second apart."""
    state, states = BreakerState(), []
    for second, outcome in enumerate(outcomes):
        state = after_call(state, outcome == "F", float(second), trip_after, cooldown)
        states.append(state)
    return states


@pytest.mark.parametrize(
    ("outcomes", "open_until"),
    [
        ("", None),
        ("FF", None),  # two failures in a row: not yet
        ("FFF", 2.0 + 5.0),  # the third opens it, from that call's time
        ("FFSFF", None),  # a success starts the count again
        ("FFFF", 3.0 + 5.0),  # a failure after it opened (the call let through) reopens it
        ("FFFSF", None),  # ... but not once a call succeeded since
        ("SSS", None),
    ],
)
def test_after_call_table(outcomes: str, open_until: float | None) -> None:
    states = run(outcomes)
    assert (states[-1].open_until if states else None) == open_until


def test_an_open_breaker_allows_again_after_its_cooldown() -> None:
    state = BreakerState(failures=3, open_until=10.0)
    assert not allows(state, 9.99)
    assert allows(state, 10.0)
    assert allows(BreakerState(), 0.0)


def test_process_breakers_are_per_provider_and_reset() -> None:
    now = [100.0]
    breakers = ProcessBreakers(trip_after=lambda: 2, cooldown=lambda: 5.0, clock=lambda: now[0])
    for _ in range(2):
        breakers.record("sendgrid", failed=True)
    assert not breakers.allows("sendgrid")
    assert breakers.allows("ses")
    now[0] = 105.0
    assert breakers.allows("sendgrid")  # one call let through
    breakers.record("sendgrid", failed=True)
    assert not breakers.allows("sendgrid")
    breakers.reset()
    assert breakers.allows("sendgrid")
