"""The one error family every provider raises: what kind of failure, and what is known about it.

Callers decide retry, failover, dead-lettering and health from ``ProviderError.kind`` alone, so
no code outside ``dispatch/providers/`` needs to know a provider's status codes or error names
(DESIGN.md section 6).
"""

from __future__ import annotations

import re
from enum import StrEnum

# A reason is stored in the email record and the dead-letter queue, and logged: keep it short.
MAX_REASON_LENGTH = 500

_WHITESPACE = re.compile(r"\s+")


class ErrorKind(StrEnum):
    """Whose fault a failed send was; the values are stable strings, safe to store."""

    TRANSIENT = "transient"
    """The provider's fault (5xx, timeout, connection error, throttling): retry later, maybe
    elsewhere; counts against the provider's health."""

    PROVIDER_CONFIG = "provider_config"
    """Our account or configuration at the provider is wrong (credentials, permissions, sending
    paused). Retried like a transient error and counts against health: every message would fail
    the same way through this provider, so traffic must move away from it."""

    PERMANENT = "permanent"
    """The message's fault (rejected content or address): this provider will never accept it.
    Does not count against health; the message may be tried once on another provider."""


def clean_reason(text: str, limit: int = MAX_REASON_LENGTH) -> str:
    """Return ``text`` on one line (whitespace collapsed), cut to at most ``limit`` characters.

    Reasons are logged and stored, so a provider's multi-line answer must not forge log lines.
    """
    single_line = _WHITESPACE.sub(" ", text).strip()
    if len(single_line) <= limit:
        return single_line
    return single_line[: limit - 1] + "…"


class ProviderError(Exception):
    """A send through a provider failed; raised by ``Provider.send`` and nothing else is.

    Attributes:
        kind: whose fault it was (see ``ErrorKind``).
        provider: the provider's name (``Provider.name``), e.g. ``"ses"``.
        reason: short one-line text, safe to log and store: it never holds an API key or the
            email body.
        status_code: the provider's HTTP status, when an answer arrived.
        code: the provider's error code (SES ``MessageRejected``) or the name of the local
            exception (``ReadTimeoutError``), when there is one.
        retry_after_seconds: how long the provider asked us to wait (throttling), if it said.
        outcome_unknown: True when the request may have reached the provider and been acted on
            (e.g. a timeout while waiting for the answer): a retry may deliver a duplicate, which
            the caller counts (DESIGN.md section 9, invariant 3). False means not sent.
    """

    def __init__(
        self,
        *,
        kind: ErrorKind,
        provider: str,
        reason: str,
        status_code: int | None = None,
        code: str | None = None,
        retry_after_seconds: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.kind = ErrorKind(kind)
        self.provider = provider
        self.reason = clean_reason(reason)
        self.status_code = status_code
        self.code = code
        self.retry_after_seconds = retry_after_seconds
        self.outcome_unknown = outcome_unknown
        super().__init__(f"{provider}: {self.kind.value}: {self.reason}")

    @property
    def counts_against_health(self) -> bool:
        """True for the provider's failures (transient, provider config); False for permanent."""
        return self.kind is not ErrorKind.PERMANENT

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only __init__ defeats Exception's default pickling (it replays self.args
        # positionally); errors may cross process boundaries in a Celery result or log record.
        return (_rebuild_provider_error, (self._fields(),))

    def _fields(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "provider": self.provider,
            "reason": self.reason,
            "status_code": self.status_code,
            "code": self.code,
            "retry_after_seconds": self.retry_after_seconds,
            "outcome_unknown": self.outcome_unknown,
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._fields().items())
        return f"ProviderError({fields})"


def _rebuild_provider_error(fields: dict[str, object]) -> ProviderError:
    return ProviderError(**fields)  # type: ignore[arg-type]
