"""Step 7 of the pipeline: provider health as a pure state machine (DESIGN §5.6, §6, §7).

No I/O, no clock: time comes in with each observation. The pipeline is the single writer of
health state: it loads each provider's `HealthState` from the cache (`HealthState.from_dict`),
turns the batch outcomes its workers reported into observations
(`observation_from_outcome`), folds them in dispatch order (`fold`), and stores the result
(`to_dict`) before the next split.

The rules:

- A failing observation increments `consecutive_failures` and resets `consecutive_passes`; a
  passing one does the opposite. The two streaks are always the length of the current run of
  identical outcomes (at most one of them is non-zero), and they are *not* reset when the
  health changes, so the admin can show "failing for 37 batches".
- A healthy provider turns unhealthy on the observation that brings `consecutive_failures` to
  `thresholds.unhealthy`; the state returned by that very observation is unhealthy, so the next
  split already routes around it (the original turned one observation late). An unhealthy one
  turns healthy the same way at `thresholds.healthy` consecutive passes.
- The comparisons are "at least", not "equal", so lowering a threshold in the configuration
  takes effect on the next observation instead of never.
- `changed_at` is the time of the observation that caused the latest change (None: never
  changed). `last_error` keeps the latest error text of a failing observation; passes keep it,
  so the admin still shows why a recovered provider was down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: How many distinct error texts of one batch go into its observation's error.
MAX_ERRORS_PER_OBSERVATION = 3


@dataclass(frozen=True)
class Thresholds:
    """Consecutive observations needed to change health (config `healthy_threshold`,
    `unhealthy_threshold`).

    `healthy`: passes that turn an unhealthy provider healthy; `unhealthy`: failures that turn
    a healthy one unhealthy. Raises ValueError unless both are integers >= 1.
    """

    healthy: int
    unhealthy: int

    def __post_init__(self) -> None:
        for name in ("healthy", "unhealthy"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} threshold must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class HealthState:
    """One provider's health as the pipeline last decided it; new providers start healthy."""

    healthy: bool = True
    consecutive_failures: int = 0
    consecutive_passes: int = 0
    changed_at: datetime | None = None
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict for the cache: plain types, `changed_at` as ISO-8601 or None."""
        return {
            "healthy": self.healthy,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_passes": self.consecutive_passes,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HealthState:
        """Rebuild a state from `to_dict` output.

        Missing keys (a dict written by an older version) and None (nothing stored yet) take the
        defaults; unknown keys are ignored. Raises ValueError when `changed_at` is not ISO-8601,
        `healthy` is not a boolean or a counter is not a non-negative integer.
        """
        data = data or {}
        changed_at = data.get("changed_at")
        counters = {}
        for name in ("consecutive_failures", "consecutive_passes"):
            value = data.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
            counters[name] = value
        if changed_at is not None and not isinstance(changed_at, str):
            raise ValueError(f"changed_at must be an ISO-8601 string, got {changed_at!r}")
        healthy = data.get("healthy", True)
        if not isinstance(healthy, bool):
            raise ValueError(f"healthy must be a boolean, got {healthy!r}")
        return cls(
            healthy=healthy,
            changed_at=datetime.fromisoformat(changed_at) if changed_at else None,
            last_error=str(data.get("last_error") or ""),
            **counters,
        )


@dataclass(frozen=True)
class Observation:
    """One verdict on a provider: did a batch pass, when was it settled, and why it failed."""

    passed: bool
    at: datetime
    error: str = ""


@dataclass(frozen=True)
class BatchOutcome:
    """What a `send_batch` task reports about its batch, as counts (JSON via `to_dict`).

    `sent`: delivered; `transient`: failed for a reason on the provider's side (5xx, timeout,
    throttling, unknown outcome); `provider_config`: failed because the provider refused us
    (credentials, sending paused); `permanent`: rejected because of the message itself.
    `errors`: the texts of the failures that count against health (transient and
    provider_config), in the order they happened.
    """

    sent: int = 0
    transient: int = 0
    provider_config: int = 0
    permanent: int = 0
    errors: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("sent", "transient", "provider_config", "permanent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.errors, str | bytes):
            # A bare string would silently become one "error" per character.
            raise ValueError("errors must be a sequence of strings, not a string")
        # Frozen and hashable even when built from a JSON list.
        object.__setattr__(self, "errors", tuple(str(error) for error in self.errors))

    @property
    def health_failures(self) -> int:
        """Failures that count against the provider's health."""
        return self.transient + self.provider_config

    @property
    def provider_answers(self) -> int:
        """Messages on which the provider gave a verdict: evidence about its health."""
        return self.sent + self.permanent + self.health_failures

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the worker stores it under a key unique to its batch)."""
        return {
            "sent": self.sent,
            "transient": self.transient,
            "provider_config": self.provider_config,
            "permanent": self.permanent,
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchOutcome:
        """Rebuild an outcome from `to_dict` output; missing keys are 0 / no errors.

        Unknown keys are ignored. Raises ValueError on a negative or non-integer count.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: data[name] for name in names if data.get(name) is not None})


def observe(
    state: HealthState,
    passed: bool,
    thresholds: Thresholds,
    now: datetime,
    error: str = "",
) -> HealthState:
    """Apply one observation to `state` and return the new state (rules in the module docstring).

    `now` is the observation's time and becomes `changed_at` when health changes; it must be
    timezone-aware, so that states compare and serialise without ambiguity. `error` is kept as
    `last_error` when the observation fails and it is not empty.

    Raises ValueError when `now` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"observation time must be timezone-aware, got {now!r}")
    if passed:
        passes, failures = state.consecutive_passes + 1, 0
        last_error = state.last_error
        healthy = state.healthy or passes >= thresholds.healthy
    else:
        passes, failures = 0, state.consecutive_failures + 1
        last_error = error or state.last_error
        healthy = state.healthy and failures < thresholds.unhealthy
    return HealthState(
        healthy=healthy,
        consecutive_failures=failures,
        consecutive_passes=passes,
        changed_at=now if healthy != state.healthy else state.changed_at,
        last_error=last_error,
    )


def fold(
    state: HealthState,
    observations: Iterable[Observation],
    thresholds: Thresholds,
) -> HealthState:
    """Apply `observations` to `state` in the order given and return the final state.

    The pipeline passes batch outcomes in dispatch order, so a streak means consecutive
    batches. No observations returns `state` unchanged. Raises ValueError as `observe` does.
    """
    for observation in observations:
        state = observe(state, observation.passed, thresholds, observation.at, observation.error)
    return state


def observation_from_outcome(
    outcome: BatchOutcome | Mapping[str, Any],
    at: datetime,
) -> Observation | None:
    """Turn a batch outcome (the dataclass or its `to_dict` form) into a health observation.

    Any transient or provider-config failure makes a failing observation whose error joins the
    first few distinct error texts; only sent messages and permanent rejections (the provider
    answered, the message was at fault) make a passing one. A batch on which the provider gave
    no verdict at all (every message skipped, e.g. already sent) says nothing about its health
    and returns None: counting it as a pass would let a provider recover without evidence.

    Raises ValueError on an invalid outcome mapping.
    """
    if not isinstance(outcome, BatchOutcome):
        outcome = BatchOutcome.from_dict(outcome)
    if outcome.provider_answers == 0:
        return None
    if outcome.health_failures == 0:
        return Observation(passed=True, at=at)
    distinct = list(dict.fromkeys(error for error in outcome.errors if error))
    error = "; ".join(distinct[:MAX_ERRORS_PER_OBSERVATION])
    if len(distinct) > MAX_ERRORS_PER_OBSERVATION:
        error += f" (and {len(distinct) - MAX_ERRORS_PER_OBSERVATION} more)"
    return Observation(passed=False, at=at, error=error)
