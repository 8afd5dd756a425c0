"""The fault configuration both local stand-ins take over ``POST /_stub/config`` (camelCase
JSON, validated all or nothing) and the arithmetic of their failure rate."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from fractions import Fraction
from typing import Any, ClassVar, Self, TypeGuard

# The longest injected delay: beyond any client timeout the suite uses.
MAX_DELAY_MS = 600_000


class ConfigError(ValueError):
    """An invalid fault configuration; ``field`` names the offending key."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def camel(name: str) -> str:
    """``fail_rate`` -> ``failRate``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def is_integer(value: object) -> TypeGuard[int]:
    # JSON true/false arrive as bool, a subclass of int; they are not numbers here.
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> TypeGuard[int | float]:
    return is_integer(value) or (isinstance(value, float) and math.isfinite(value))


def valid_fail_rate(key: str, value: object) -> float:
    if is_real(value) and 0 <= value <= 1:
        return float(value)
    raise ConfigError(key, f"{key} must be a number from 0 to 1.")


def valid_delay_ms(key: str, value: object) -> int:
    if is_integer(value) and 0 <= value <= MAX_DELAY_MS:
        return value
    raise ConfigError(key, f"{key} must be an integer from 0 to {MAX_DELAY_MS}.")


def fails(n: int, rate: float) -> bool:
    """Whether the n-th send (1-based) fails at ``rate``: ``floor(n*r) > floor((n-1)*r)``."""
    # Exact decimal arithmetic: with floats, 29 * 0.29 lands just below an integer and the
    # failure would move by one send.
    exact = Fraction(repr(rate))
    return math.floor(n * exact) > math.floor((n - 1) * exact)


class FaultConfig:
    """A stand-in's fault configuration (a frozen dataclass deriving from this): its JSON is
    camelCase, and ``VALIDATORS`` checks each key's value."""

    VALIDATORS: ClassVar[Mapping[str, Callable[[str, object], Any]]]

    def to_json(self) -> dict[str, Any]:
        return {camel(f.name): getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def merged(self, updates: Mapping[str, object]) -> Self:
        """A copy with camelCase ``updates`` applied; :class:`ConfigError` if any is invalid."""
        known = {camel(f.name): f.name for f in fields(self)}  # type: ignore[arg-type]
        changes: dict[str, Any] = {}
        for key, value in updates.items():
            if key not in known:
                raise ConfigError(
                    key, f"Unknown config key {key!r}; expected one of {sorted(known)}."
                )
            changes[known[key]] = self.VALIDATORS[key](key, value)
        return replace(self, **changes)  # type: ignore[type-var]


class FaultState:
    """The configuration part of a stand-in's state, behind the lock its record shares."""

    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self._config = config

    def config(self) -> Any:
        with self._lock:
            return self._config

    def configure(self, updates: Mapping[str, object]) -> Any:
        """Merge camelCase ``updates`` atomically (all or nothing); return the new config."""
        with self._lock:
            self._config = self._config.merged(updates)
            return self._config
