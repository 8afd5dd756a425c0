"""A provider worker's batch: send each email, settle each SQS message, report the outcome.

DESIGN.md sections 2 (steps 5-7) and 6. ``deliver`` decides what happens to one message and
records it; ``send_batch`` runs it over a batch concurrently, then settles the batch's SQS
messages and writes the batch's outcome for the pipeline to fold into provider health.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import structlog
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F

from dispatch import send_rate
from dispatch.breaker import ProcessBreakers
from dispatch.controls import drained_providers
from dispatch.health import BatchOutcome
from dispatch.health_store import write_outcome
from dispatch.inbox import ReceivedMessage
from dispatch.providers import OutgoingEmail, Provider, ProviderError, SendGridProvider, SesProvider
from dispatch.providers.errors import ErrorKind
from dispatch.settlement import (
    Action,
    Verdict,
    apply_settlement,
    extend_visibility,
    needs_extension,
    plan_settlement,
)
from emails import records
from emails.models import Email
from emails.records import Claim, ClaimResult
from emails.wire import UndecodableMessage, WireEmail, decode
from gomail_site.aws import aws_client
from gomail_site.metrics import DEAD_LETTERED, EMAILS_FAILED, EMAILS_SENT, UNKNOWN_OUTCOMES

logger = logging.getLogger(__name__)


# A message its provider's breaker held back is read again this soon: by then the pipeline
# has usually folded the failures into health and routes it elsewhere.
BREAKER_RETRY_SECONDS = 1.0

BREAKERS = ProcessBreakers(
    trip_after=lambda: settings.GOMAIL.health.breaker_failures,
    cooldown=lambda: settings.GOMAIL.health.breaker_cooldown_seconds,
)


@dataclass(frozen=True)
class Call:
    """One provider call made for a message, as the batch outcome counts it."""

    provider: str
    outcome: str  # "sent" or an ErrorKind value
    error: str = ""


def build_providers() -> dict[str, Provider]:
    """Every enabled provider, built from the configuration and the environment's secrets."""
    config = settings.GOMAIL.providers
    builders: dict[str, Callable[[], Provider]] = {
        # One attempt: botocore retrying a send after a read timeout could deliver it twice.
        "ses": lambda: SesProvider(aws_client("ses", attempts=1)),
        "sendgrid": lambda: SendGridProvider(
            api_key=settings.SENDGRID_API_KEY,
            host=str(config.sendgrid.host).rstrip("/"),
            timeout_seconds=config.sendgrid.timeout_seconds,
        ),
    }
    return {name: builders[name]() for name in settings.GOMAIL.enabled_providers}


@lru_cache(maxsize=1)
def _process_providers() -> dict[str, Provider]:
    return build_providers()


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _send_pool(concurrency: int) -> ThreadPoolExecutor:
    """This process's sending threads for batches of ``concurrency``: made once, not per batch
    (each new thread would open a database connection of its own for one message)."""
    key = (os.getpid(), concurrency)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(concurrency, thread_name_prefix="send")
        return pool


def close_send_pools() -> None:
    """End this process's sending threads, each closing its database connection first (a
    test database cannot be dropped while they hold one)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        size = pool._max_workers
        everyone = threading.Barrier(size, timeout=10)

        def close_here(everyone: threading.Barrier = everyone) -> None:
            connection.close()
            with contextlib.suppress(threading.BrokenBarrierError):
                everyone.wait()  # holds this thread, so that each thread runs one of them

        for _ in range(size):
            pool.submit(close_here)
        pool.shutdown(wait=True)


def _outgoing(email: WireEmail) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=email.id,
        from_email=email.from_email,
        from_name=email.from_name,
        to_email=email.to_email,
        to_name=email.to_name,
        subject=email.subject,
        body=email.body,
    )


def deliver(
    message: ReceivedMessage,
    provider_name: str,
    providers: Mapping[str, Provider],
    stale_after: timedelta,
    drained: Collection[str] = (),
    claimed: ClaimResult | None = None,
) -> tuple[Verdict, list[Call]]:
    """Deliver one message through ``provider_name`` (or, after a permanent rejection, once
    through the next enabled provider that has not rejected it and is not ``drained``) and
    record every step.

    Before each provider call it waits (briefly) for a send slot of that provider's
    ``max_send_rate_per_second`` (``dispatch.send_rate``); without one in time the message goes
    back to its queue unsent (``_handed_back``), as when that provider's breaker is open
    (``dispatch.breaker``).

    Returns what to do with the SQS message and the provider calls made.
    """
    try:
        email = decode(message.body, message.sqs_message_id)
    except UndecodableMessage as exc:
        return Verdict(message, Action.DEAD_LETTER, reason=f"undecodable message: {exc}"), []
    # Every log line from here on is about this email (cleared by the caller's thread).
    structlog.contextvars.bind_contextvars(message_id=email.id)

    # The batch's claim when it settled this email (``records.claim_batch``), else its own.
    claimed = claimed or records.claim(email, message.queue, stale_after)
    if claimed.claim in (Claim.ALREADY_SENT, Claim.ALREADY_DEAD, Claim.WITHDRAWN):
        return Verdict(message, Action.DELETE, email_id=email.id), []
    if claimed.claim is Claim.BUSY:
        # Another worker holds it. If that worker is alive, the message is sent (and then only
        # deleted) by the time we look again; if it died, we may take over as soon as its
        # claim is stale, rather than a whole visibility timeout later.
        wait = (claimed.stale_in or timedelta(0)).total_seconds()
        return Verdict(message, Action.RECHECK, retry_after_seconds=wait, email_id=email.id), []

    rejections = dict(claimed.rejections)
    # The batch's own provider first, then the others in configuration order.
    candidates = [name for name in providers if name == provider_name] + [
        name for name in providers if name != provider_name
    ]
    untried = [
        name
        for name in candidates
        if name not in rejections and (name == provider_name or name not in drained)
    ]
    calls: list[Call] = []
    slot_wait = send_rate.slot_wait_seconds(stale_after.total_seconds())
    for name in untried[:2]:
        if not BREAKERS.allows(name):
            return _handed_back(
                message,
                email.id,
                name,
                calls,
                Action.RECHECK,
                reason=f"{name} keeps failing: not tried",
                retry_after=BREAKER_RETRY_SECONDS,
            ), calls
        if not send_rate.take_slot(name, slot_wait):
            return _handed_back(
                message,
                email.id,
                name,
                calls,
                Action.RETRY,
                reason=f"send rate limit of {name} reached",
                retry_after=send_rate.retry_after_seconds(name),
            ), calls
        try:
            result = providers[name].send(_outgoing(email))
        except ProviderError as error:
            BREAKERS.record(name, failed=error.kind is not ErrorKind.PERMANENT)
            calls.append(Call(name, error.kind.value, error.reason))
            EMAILS_FAILED.labels(provider=name, kind=error.kind.value).inc()
            if error.outcome_unknown:
                UNKNOWN_OUTCOMES.labels(provider=name).inc()
            records.record_attempt(
                email.id, name, error.kind.value, error.reason, error.outcome_unknown
            )
            logger.warning(
                "%s refused email %s (%s%s): %s",
                name,
                email.id,
                error.kind.value,
                ", outcome unknown" if error.outcome_unknown else "",
                error.reason,
            )
            if error.kind is ErrorKind.PERMANENT:
                rejections[name] = error.reason
                records.record_rejection(email.id, name, error.reason)
                continue
            records.record_failure(email.id, name, error.reason, error.outcome_unknown)
            return Verdict(
                message,
                Action.RETRY,
                reason=error.reason,
                retry_after_seconds=error.retry_after_seconds,
                email_id=email.id,
                failures=claimed.attempts or None,
            ), calls
        BREAKERS.record(name, failed=False)
        calls.append(Call(name, "sent"))
        EMAILS_SENT.labels(provider=name).inc()
        logger.info("sent email %s via %s (%s)", email.id, name, result.provider_message_id)
        records.record_attempt(email.id, name, "sent")
        # The record says sent before the message is deleted: a redelivery then only deletes.
        records.record_sent(email.id, name, result.provider_message_id)
        return Verdict(message, Action.DELETE, email_id=email.id), calls

    if all(name in rejections for name in providers):
        reason = "; ".join(f"{name}: {why}" for name, why in rejections.items())
        return Verdict(
            message,
            Action.DEAD_LETTER,
            reason=f"rejected by every provider: {reason}",
            email_id=email.id,
        ), calls
    # Rejected here, and the provider left to try was not reached this time: try it later.
    records.record_failure(email.id, provider_name, "retrying on another provider", False)
    return Verdict(
        message,
        Action.RETRY,
        reason="retrying on another provider",
        email_id=email.id,
        failures=claimed.attempts or None,
    ), calls


def _handed_back(
    message: ReceivedMessage,
    email_id: str,
    provider: str,
    calls: list[Call],
    action: Action,
    *,
    reason: str,
    retry_after: float,
) -> Verdict:
    """The message goes back to its queue unsent, to be read again after ``retry_after``:
    its provider had no send slot in time (``max_send_rate_per_second``; RETRY, so the usual
    backoff applies when it keeps coming back), or its breaker is open (RECHECK: no backoff,
    health routes it on). Nothing failed: no attempt is recorded, the provider's health is
    untouched, and with no call made the record is queued again as it was."""
    if calls:
        # A provider rejected it before: as when the next provider is not reached this time.
        records.record_failure(email_id, provider, reason, False)
    else:
        Email.objects.filter(id=email_id, status=Email.Status.SENDING).update(
            status=Email.Status.QUEUED, claimed_at=None, attempts=F("attempts") - 1
        )
    return Verdict(
        message, action, reason=reason, retry_after_seconds=retry_after, email_id=email_id
    )


def _batch_claims(messages: Sequence[ReceivedMessage]) -> list[ClaimResult | None]:
    """Each message's claim from one ``records.claim_batch`` for the batch, or None where the
    message is to claim its record itself (undecodable, no record yet, another worker's claim,
    or the same email a second time in the batch: only its first message may have it)."""
    firsts: dict[str, WireEmail] = {}
    owners: list[str | None] = []
    for message in messages:
        try:
            email = decode(message.body, message.sqs_message_id)
        except UndecodableMessage:
            owners.append(None)
            continue
        owners.append(email.id if email.id not in firsts else None)
        firsts.setdefault(email.id, email)
    claims = records.claim_batch(list(firsts.values())) if firsts else {}
    return [claims.get(owner) if owner else None for owner in owners]


def batch_outcome(provider_name: str, calls: Sequence[Call]) -> BatchOutcome:
    """Count the calls made to the batch's own provider (others' failures are not its own)."""
    own = [call for call in calls if call.provider == provider_name]
    count = lambda outcome: sum(1 for call in own if call.outcome == outcome)  # noqa: E731
    return BatchOutcome(
        sent=count("sent"),
        transient=count(ErrorKind.TRANSIENT.value),
        provider_config=count(ErrorKind.PROVIDER_CONFIG.value),
        permanent=count(ErrorKind.PERMANENT.value),
        errors=[
            call.error
            for call in own
            if call.outcome in (ErrorKind.TRANSIENT.value, ErrorKind.PROVIDER_CONFIG.value)
        ],
    )


def send_batch(
    provider_name: str,
    batch_id: str,
    messages: Sequence[ReceivedMessage],
    providers: Mapping[str, Provider] | None = None,
) -> BatchOutcome:
    """Send a batch through ``provider_name``, settle its SQS messages, write its outcome."""
    gomail = settings.GOMAIL
    providers = providers if providers is not None else _process_providers()
    visibility = gomail.sqs.visibility_timeout_seconds
    fresh = not needs_extension(messages, time.time(), visibility)
    live = list(messages) if fresh else extend_visibility(messages, visibility)
    concurrency = getattr(gomail.providers, provider_name).send_concurrency

    drained = drained_providers(providers)

    claims = _batch_claims(live)

    def deliver_in_thread(
        message: ReceivedMessage, claimed: ClaimResult | None
    ) -> tuple[Verdict, list[Call]]:
        try:
            return deliver(
                message, provider_name, providers, timedelta(seconds=visibility), drained, claimed
            )
        finally:
            structlog.contextvars.clear_contextvars()
            # Closed after each message: kept, every worker process would hold one connection
            # per sending thread (send_concurrency each), beyond PostgreSQL's max_connections
            # for a few workers (seen in a CI run).
            connection.close()

    results = list(_send_pool(concurrency).map(deliver_in_thread, live, claims))
    close_old_connections()

    verdicts = [verdict for verdict, _ in results]
    plan = plan_settlement(
        verdicts, gomail.pipeline.backoff_base_seconds, gomail.pipeline.backoff_max_seconds
    )
    dead_lettered = apply_settlement(plan, gomail.sqs.dead_letter_queue)
    for verdict in dead_lettered:
        DEAD_LETTERED.labels(cause="rejected" if verdict.email_id else "undecodable").inc()
        if verdict.email_id:
            records.record_dead(verdict.email_id, verdict.reason)
    refused = {id(v) for v in plan.dead_letters} - {id(v) for v in dead_lettered}
    for verdict in plan.dead_letters:
        if id(verdict) in refused and verdict.email_id:
            records.release_claim(verdict.email_id)

    outcome = batch_outcome(provider_name, [call for _, calls in results for call in calls])
    write_outcome(batch_id, outcome)
    logger.info(
        "batch %s on %s: %d messages, sent %d, transient %d, config %d, permanent %d",
        batch_id,
        provider_name,
        len(messages),
        outcome.sent,
        outcome.transient,
        outcome.provider_config,
        outcome.permanent,
    )
    return outcome
