"""What a provider worker does with one email (DESIGN.md section 6), decided without I/O.

Which providers to try and in what order, what each provider's answer means for the next
step, what becomes of a message no provider took this time, and when Gomail gives up on an
email. ``dispatch.sending.deliver`` is the thin loop that makes the calls this plan asks for
and records them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dispatch.providers.errors import ErrorKind


def try_order(
    own: str,
    configured: Sequence[str],
    rejections: Collection[str],
    drained: Collection[str] = (),
) -> list[str]:
    """The providers to try for one email, in order: after a permanent rejection, the next.

    The batch's ``own`` provider first (chosen by the pipeline's split, drained or not: the
    batch was dispatched to it), then every other ``configured`` (enabled) one in configuration
    order, leaving out those that already rejected the email and the ``drained`` ones. A
    provider no longer configured is not tried, not even as ``own``. So one delivery makes at
    most ``len(configured)`` calls, which the start-up timing check budgets for
    (``gomail_site.config``: a batch's rounds times the number of enabled providers).
    """
    ordered = [own] if own in configured else []
    ordered += [name for name in configured if name != own and name not in drained]
    return [name for name in ordered if name not in rejections]


class Step(StrEnum):
    """What follows one provider call."""

    DONE = "done"  # sent: record it, delete the message
    NEXT = "next"  # rejected for good by this provider: try the next one
    RETRY = "retry"  # failed for now (or unknown): back to the queue with a backoff


def after_call(kind: ErrorKind | None) -> Step:
    """The step after a call that sent (``kind`` None) or failed with ``kind``."""
    if kind is None:
        return Step.DONE
    if kind is ErrorKind.PERMANENT:
        return Step.NEXT
    return Step.RETRY


@dataclass(frozen=True)
class Unsent:
    """No provider took the email this time, for a reason other than a transient failure."""

    dead: bool  # True: every configured provider rejected it for good
    reason: str


def when_tried_out(configured: Sequence[str], rejections: Mapping[str, str]) -> Unsent:
    """The email went through ``try_order`` without being sent or failing transiently.

    Rejected by every configured provider: a dead letter, each rejection in its reason.
    Otherwise a provider is left that was not reached this time (drained): the message is
    tried again later.
    """
    if configured and all(name in rejections for name in configured):
        reasons = "; ".join(f"{name}: {why}" for name, why in rejections.items())
        return Unsent(dead=True, reason=f"rejected by every provider: {reasons}")
    return Unsent(dead=False, reason="retrying on another provider")


def give_up_reason(
    age_seconds: float,
    max_age_seconds: float,
    attempts: int,
    last_error: str,
    receives: int = 0,
    receive_limit: int | None = None,
) -> str | None:
    """Why Gomail stops trying an email it could not send this time, or None to keep trying.

    An email older than ``max_age_seconds`` (``delivery.max_age_hours``) goes to the
    dead-letter queue with this reason, by Gomail, long before SQS's own redrive or retention
    could move or delete it without one. So does one whose message was received
    ``receive_limit`` times (``receive_limit_for``), however young: SQS's redrive would move it
    a few receives later.
    """
    too_old = age_seconds >= max_age_seconds
    too_often = receive_limit is not None and receives >= receive_limit
    if not (too_old or too_often):
        return None
    hours = age_seconds / 3600
    received = f", received {receives} times" if too_often else ""
    return (
        f"gave up after {attempts} attempt{'s' if attempts != 1 else ''} over {hours:.1f} hours"
        f"{received}; last error: {last_error or 'none'}"
    )


def receive_limit_for(max_receive_count: int) -> int:
    """The receives after which Gomail gives up on a message itself: a few short of SQS's
    ``max_receive_count``, so that SQS's redrive never moves a message Gomail reads."""
    return max(1, max_receive_count - max(1, max_receive_count // 20))


def hand_back_delay(receives: int, attempts: int, floor: float, cap: float) -> float:
    """How long a message handed back untried (its provider's breaker open) stays hidden:
    ``floor`` the first time, doubling with each receive that made no call, up to ``cap``.
    Quick at first, so that health routes it on; growing, so that a long outage of every
    provider does not spend the message's receives (SQS counts each one)."""
    untried = max(receives - attempts, 0)
    return min(cap, floor * 2 ** min(untried, 30))


@dataclass(frozen=True)
class Waiting:
    """A message read while no provider can take it: how old its email is, how often tried."""

    age_seconds: float | None  # None: not known (no record, no acceptedAt)
    attempts: int = 0


def hold_or_give_up(
    waiting: Waiting, max_age_seconds: float, hold_seconds: float, last_error: str
) -> tuple[str | None, float]:
    """What the pipeline does with a message it read while every provider is drained or none
    is enabled: ``(reason, 0)`` to dead-letter it (it is past the max age), else ``(None,
    seconds)`` to hide it again for that long: ``hold_seconds``, or less when it reaches the
    max age sooner, so that it is given up on time. Pure."""
    if waiting.age_seconds is None:
        return None, hold_seconds
    reason = give_up_reason(waiting.age_seconds, max_age_seconds, waiting.attempts, last_error)
    if reason is not None:
        return reason, 0
    return None, max(1.0, min(hold_seconds, max_age_seconds - waiting.age_seconds))
