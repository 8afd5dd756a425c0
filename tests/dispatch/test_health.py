"""Provider health as a state machine (DESIGN §5.6, §6), as tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.health import (
    BatchOutcome,
    HealthState,
    Observation,
    Thresholds,
    fold,
    observation_from_outcome,
    observe,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def at(step: int) -> datetime:
    return T0 + timedelta(seconds=step)


def run(pattern: str, thresholds: Thresholds, start: HealthState | None = None) -> list[bool]:
    """Observe 'P'ass / 'F'ail in order; return the health after each observation."""
    state = start or HealthState()
    seen = []
    for step, mark in enumerate(pattern):
        state = observe(state, mark == "P", thresholds, at(step), error=f"error {step}")
        seen.append(state.healthy)
    return seen


# --- transitions -------------------------------------------------------------------------

H, U = True, False

TRANSITIONS = [
    # (healthy threshold, unhealthy threshold, start healthy?, pattern, health after each)
    pytest.param(1, 1, H, "F", [U], id="unhealthy 1: the first failure turns it"),
    pytest.param(1, 2, H, "FF", [H, U], id="unhealthy 2: the second failure, not the third"),
    pytest.param(1, 3, H, "FFF", [H, H, U], id="unhealthy 3: the third failure, not the fourth"),
    pytest.param(1, 3, H, "FFFFF", [H, H, U, U, U], id="more failures: stays unhealthy"),
    pytest.param(1, 3, H, "FFPFFF", [H, H, H, H, H, U], id="a pass resets the failure streak"),
    pytest.param(1, 2, H, "FPFPFPFP", [H] * 8, id="alternating never flips at threshold 2"),
    pytest.param(2, 1, U, "PFPFPFPF", [U] * 8, id="alternating never recovers at threshold 2"),
    pytest.param(1, 1, H, "PPPP", [H] * 4, id="passes keep it healthy"),
    pytest.param(1, 1, U, "P", [H], id="healthy 1: the first pass recovers it"),
    pytest.param(2, 1, U, "PP", [U, H], id="healthy 2: the second pass, not the third"),
    pytest.param(3, 1, U, "PPP", [U, U, H], id="healthy 3: the third pass"),
    pytest.param(3, 1, U, "PPFPPP", [U, U, U, U, U, H], id="a failure resets the pass streak"),
    pytest.param(2, 2, H, "FFPP", [H, U, U, H], id="down and recovered"),
    pytest.param(2, 2, H, "FFPPFF", [H, U, U, H, H, U], id="down, up, down again"),
    pytest.param(1, 1, H, "FPFP", [U, H, U, H], id="threshold 1 both ways flips every time"),
]


@pytest.mark.parametrize(("healthy", "unhealthy", "start", "pattern", "expected"), TRANSITIONS)
def test_transitions_table(
    healthy: int, unhealthy: int, start: bool, pattern: str, expected: list[bool]
) -> None:
    thresholds = Thresholds(healthy=healthy, unhealthy=unhealthy)

    assert run(pattern, thresholds, HealthState(healthy=start)) == expected


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_unhealthy_exactly_at_the_threshold_so_the_next_split_sees_it(threshold: int) -> None:
    """The original turned one observation late; the state after the Nth failure is unhealthy."""
    thresholds = Thresholds(healthy=1, unhealthy=threshold)
    state = HealthState()
    for step in range(threshold - 1):
        state = observe(state, False, thresholds, at(step))
        assert state.healthy
    state = observe(state, False, thresholds, at(threshold))
    assert not state.healthy
    assert state.changed_at == at(threshold)


def test_streaks_count_the_current_run_and_survive_a_transition() -> None:
    thresholds = Thresholds(healthy=2, unhealthy=2)
    state = HealthState()

    state = observe(state, False, thresholds, at(1), "timeout")
    assert (state.consecutive_failures, state.consecutive_passes) == (1, 0)
    state = observe(state, False, thresholds, at(2), "503")
    assert (state.healthy, state.consecutive_failures, state.consecutive_passes) == (False, 2, 0)
    state = observe(state, False, thresholds, at(3), "503")
    assert state.consecutive_failures == 3  # the admin can see how long it has been failing
    state = observe(state, True, thresholds, at(4))
    assert (state.healthy, state.consecutive_failures, state.consecutive_passes) == (False, 0, 1)
    state = observe(state, True, thresholds, at(5))
    assert (state.healthy, state.consecutive_failures, state.consecutive_passes) == (True, 0, 2)


def test_changed_at_only_moves_on_a_transition() -> None:
    thresholds = Thresholds(healthy=2, unhealthy=2)
    state = HealthState()

    state = observe(state, False, thresholds, at(1))
    assert state.changed_at is None
    state = observe(state, False, thresholds, at(2))
    assert state.changed_at == at(2)
    state = observe(state, False, thresholds, at(3))
    state = observe(state, True, thresholds, at(4))
    assert state.changed_at == at(2)
    state = observe(state, True, thresholds, at(5))
    assert state.changed_at == at(5)


def test_last_error_keeps_the_latest_failing_error() -> None:
    thresholds = Thresholds(healthy=1, unhealthy=5)
    state = HealthState()

    state = observe(state, False, thresholds, at(1), "timeout")
    assert state.last_error == "timeout"
    state = observe(state, False, thresholds, at(2), "HTTP 503")
    assert state.last_error == "HTTP 503"
    state = observe(state, True, thresholds, at(3))
    assert state.last_error == "HTTP 503"  # a pass does not erase why it failed
    state = observe(state, False, thresholds, at(4))
    assert state.last_error == "HTTP 503"  # a failure without text keeps the last known one


def test_lowering_a_threshold_takes_effect_on_the_next_observation() -> None:
    state = HealthState()
    for step in range(3):
        state = observe(state, False, Thresholds(healthy=1, unhealthy=5), at(step))
    assert state.healthy

    state = observe(state, False, Thresholds(healthy=1, unhealthy=2), at(3))

    assert not state.healthy


def test_observe_does_not_mutate_its_input() -> None:
    state = HealthState()

    observe(state, False, Thresholds(1, 1), at(1), "boom")

    assert state == HealthState()


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        observe(HealthState(), True, Thresholds(1, 1), datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("healthy", "unhealthy"), [(0, 1), (1, 0), (-1, 3), (True, 2), (1.5, 2), ("2", 2)]
)
def test_thresholds_are_validated(healthy: object, unhealthy: object) -> None:
    with pytest.raises(ValueError, match="threshold must be an integer >= 1"):
        Thresholds(healthy=healthy, unhealthy=unhealthy)  # type: ignore[arg-type]


# --- fold --------------------------------------------------------------------------------


def test_fold_applies_observations_in_order() -> None:
    thresholds = Thresholds(healthy=2, unhealthy=2)
    observations = [
        Observation(passed=False, at=at(1), error="timeout"),
        Observation(passed=False, at=at(2), error="HTTP 502"),
        Observation(passed=True, at=at(3)),
    ]

    state = fold(HealthState(), observations, thresholds)

    assert state == HealthState(
        healthy=False,
        consecutive_failures=0,
        consecutive_passes=1,
        changed_at=at(2),
        last_error="HTTP 502",
    )


def test_fold_of_nothing_is_the_same_state() -> None:
    state = HealthState(healthy=False, consecutive_failures=4, last_error="x")

    assert fold(state, [], Thresholds(1, 1)) is state


@given(
    marks=st.lists(st.booleans(), max_size=40),
    healthy=st.integers(1, 4),
    unhealthy=st.integers(1, 4),
)
def test_fold_matches_observing_one_by_one(marks: list[bool], healthy: int, unhealthy: int) -> None:
    thresholds = Thresholds(healthy=healthy, unhealthy=unhealthy)
    observations = [Observation(passed, at(step), "e") for step, passed in enumerate(marks)]

    state = HealthState()
    for observation in observations:
        state = observe(state, observation.passed, thresholds, observation.at, observation.error)
        # The streaks are the current run of identical outcomes: never both non-zero.
        assert min(state.consecutive_failures, state.consecutive_passes) == 0

    assert fold(HealthState(), observations, thresholds) == state


@given(
    marks=st.lists(st.booleans(), max_size=40),
    healthy=st.integers(1, 4),
    unhealthy=st.integers(1, 4),
)
def test_health_only_changes_at_a_full_streak(
    marks: list[bool], healthy: int, unhealthy: int
) -> None:
    thresholds = Thresholds(healthy=healthy, unhealthy=unhealthy)
    state = HealthState()
    for step, passed in enumerate(marks):
        new = observe(state, passed, thresholds, at(step))
        if new.healthy != state.healthy:
            if new.healthy:
                assert new.consecutive_passes == healthy
            else:
                assert new.consecutive_failures == unhealthy
        state = new


# --- stored form -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        HealthState(),
        HealthState(
            healthy=False,
            consecutive_failures=7,
            consecutive_passes=0,
            changed_at=T0,
            last_error="HTTP 503 from SendGrid",
        ),
        HealthState(changed_at=datetime(2025, 6, 1, 8, 30, 15, 123456, tzinfo=UTC)),
        HealthState(changed_at=datetime(2025, 6, 1, 8, 30, tzinfo=timezone(timedelta(hours=2)))),
    ],
)
def test_state_round_trips_through_json(state: HealthState) -> None:
    stored = json.loads(json.dumps(state.to_dict()))

    assert HealthState.from_dict(stored) == state


def test_to_dict_is_plain_and_iso() -> None:
    state = HealthState(healthy=False, consecutive_failures=2, changed_at=T0, last_error="x")

    assert state.to_dict() == {
        "healthy": False,
        "consecutive_failures": 2,
        "consecutive_passes": 0,
        "changed_at": "2025-01-01T12:00:00+00:00",
        "last_error": "x",
    }


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        pytest.param(None, HealthState(), id="nothing stored yet"),
        pytest.param({}, HealthState(), id="empty"),
        pytest.param({"healthy": False}, HealthState(healthy=False), id="only health"),
        pytest.param(
            {"healthy": False, "consecutive_failures": 3},
            HealthState(healthy=False, consecutive_failures=3),
            id="older version without passes, changed_at, last_error",
        ),
        pytest.param({"changed_at": None, "last_error": None}, HealthState(), id="explicit nulls"),
        pytest.param(
            {"healthy": True, "future_field": [1, 2]}, HealthState(), id="unknown keys ignored"
        ),
        pytest.param(
            {"changed_at": "2025-01-01T12:00:00Z"}, HealthState(changed_at=T0), id="Z suffix"
        ),
    ],
)
def test_from_dict_tolerates_older_and_partial_data(
    stored: dict[str, object] | None, expected: HealthState
) -> None:
    assert HealthState.from_dict(stored) == expected


@pytest.mark.parametrize(
    "stored",
    [
        {"changed_at": "yesterday"},
        {"changed_at": 1735732800},
        {"healthy": "false"},
        {"consecutive_failures": -1},
        {"consecutive_passes": "3"},
    ],
)
def test_from_dict_refuses_corrupt_data(stored: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HealthState.from_dict(stored)


# --- batch outcomes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "passed"),
    [
        pytest.param(BatchOutcome(sent=10), True, id="all sent: pass"),
        pytest.param(BatchOutcome(sent=8, permanent=2), True, id="permanent rejections: pass"),
        pytest.param(BatchOutcome(permanent=3), True, id="only rejections: the provider answered"),
        pytest.param(BatchOutcome(sent=9, transient=1, errors=["503"]), False, id="one transient"),
        pytest.param(BatchOutcome(provider_config=1, errors=["401"]), False, id="config: fail"),
        pytest.param(
            BatchOutcome(sent=5, transient=1, provider_config=1, permanent=1),
            False,
            id="mixed: fail",
        ),
    ],
)
def test_observation_from_outcome_table(outcome: BatchOutcome, passed: bool) -> None:
    observation = observation_from_outcome(outcome, T0)

    assert observation is not None
    assert observation.passed is passed
    assert observation.at == T0
    if passed:
        assert observation.error == ""


def test_a_batch_without_any_provider_answer_is_no_evidence() -> None:
    assert observation_from_outcome(BatchOutcome(), T0) is None
    assert observation_from_outcome({}, T0) is None


def test_observation_error_joins_a_few_distinct_errors() -> None:
    outcome = BatchOutcome(
        transient=6,
        errors=["HTTP 503", "timeout", "HTTP 503", "", "throttled", "HTTP 502", "reset"],
    )

    observation = observation_from_outcome(outcome, T0)

    assert observation == Observation(
        passed=False, at=T0, error="HTTP 503; timeout; throttled (and 2 more)"
    )


def test_observation_from_the_workers_json() -> None:
    stored = json.loads(
        json.dumps(BatchOutcome(sent=3, transient=1, errors=["HTTP 500"]).to_dict())
    )

    assert observation_from_outcome(stored, T0) == Observation(False, T0, "HTTP 500")


def test_outcome_round_trips_through_json() -> None:
    outcome = BatchOutcome(sent=1, transient=2, provider_config=3, permanent=4, errors=["a", "b"])

    stored = json.loads(json.dumps(outcome.to_dict()))

    assert BatchOutcome.from_dict(stored) == outcome
    assert stored["errors"] == ["a", "b"]


def test_outcome_from_partial_json_defaults_to_zero() -> None:
    assert BatchOutcome.from_dict({"sent": 2, "errors": None, "extra": 1}) == BatchOutcome(sent=2)


@pytest.mark.parametrize(
    "fields",
    [{"sent": -1}, {"transient": 1.5}, {"permanent": True}, {"errors": "HTTP 503"}],
)
def test_outcome_refuses_bad_counts(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BatchOutcome(**fields)  # type: ignore[arg-type]


def test_outcomes_fold_into_health_in_dispatch_order() -> None:
    """The pipeline's use: worker JSON -> observations -> fold -> stored state."""
    thresholds = Thresholds(healthy=2, unhealthy=2)
    reported = [
        {"sent": 10},
        {"sent": 4, "transient": 6, "errors": ["HTTP 503"]},
        {},  # every message already sent: no evidence, skipped
        {"transient": 10, "errors": ["timeout"]},
    ]
    observations = [
        observation
        for step, outcome in enumerate(reported)
        if (observation := observation_from_outcome(outcome, at(step))) is not None
    ]

    state = fold(HealthState.from_dict(None), observations, thresholds)

    assert not state.healthy
    assert state.changed_at == at(3)
    assert state.last_error == "timeout"
    assert HealthState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
