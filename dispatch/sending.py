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
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import structlog
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from dispatch import delivery, send_rate
from dispatch.breaker import ProcessBreakers
from dispatch.controls import drained_providers
from dispatch.health import BatchOutcome
from dispatch.health_store import write_outcome
from dispatch.inbox import ReceivedMessage
from dispatch.providers import OutgoingEmail, Provider, ProviderError
from dispatch.providers.errors import ErrorKind
from dispatch.settlement import (
    Action,
    Verdict,
    apply_settlement,
    extend_visibility,
    needs_extension,
    plan_settlement,
)
from emails import claim_check, records
from emails.records import Claim, ClaimResult
from emails.wire import UndecodableMessage, WireEmail, content_of, decode, email_id_of
from gomail_site.config import provider_type
from gomail_site.metrics import DEAD_LETTERED, EMAILS_FAILED, EMAILS_SENT, UNKNOWN_OUTCOMES

logger = logging.getLogger(__name__)


# A message its provider's breaker held back is read again this soon the first time (by then
# the pipeline has usually folded the failures into health and routes it elsewhere), later
# each time it comes back untried again (``delivery.hand_back_delay``).
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
    """Every enabled provider instance, built by its module from the configuration and the
    environment's secrets. One that cannot be built is left out, logged: its batches are sent
    by the others (``delivery.try_order``) rather than no provider sending anything."""
    providers = settings.GOMAIL.providers
    built: dict[str, Provider] = {}
    for name in settings.GOMAIL.enabled_providers:
        try:
            built[name] = provider_type(providers[name].type).build(
                name, providers[name], os.environ
            )
        except Exception:
            logger.exception("provider %s cannot be built: left out of this worker", name)
    return built


@lru_cache(maxsize=1)
def _process_providers() -> dict[str, Provider]:
    return build_providers()


def close_providers() -> None:
    """Let this process's providers release what they hold (SMTP connections), at a worker
    process's shutdown; the next send builds them afresh."""
    if _process_providers.cache_info().currsize:
        for provider in _process_providers().values():
            try:
                provider.close()
            except Exception:
                logger.exception("closing provider %s failed", provider.name)
        _process_providers.cache_clear()


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _send_pool() -> ThreadPoolExecutor:
    """This process's sending threads, made once: as many as the largest
    ``send_concurrency`` (a worker process sends one batch at a time). Each keeps its
    database connection from one email to the next (``CONN_MAX_AGE``), so a provider worker
    process holds at most that many connections, plus its main thread's."""
    pid = os.getpid()  # a forked pool child must not use its parent's threads
    with _pools_lock:
        pool = _pools.get(pid)
        if pool is None:
            # Only the enabled ones send (a disabled one's leftover batches are sent by them).
            providers = settings.GOMAIL.providers
            size = max(
                (providers[name].send_concurrency for name in settings.GOMAIL.enabled_providers),
                default=1,
            )
            pool = _pools[pid] = ThreadPoolExecutor(size, thread_name_prefix="send")
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
        **content_of(email),
    )


def deliver(
    message: ReceivedMessage,
    provider_name: str,
    providers: Mapping[str, Provider],
    stale_after: timedelta,
    drained: Collection[str] = (),
    claimed: ClaimResult | None = None,
    calls: list[Call] | None = None,
    *,
    probe: bool = False,
) -> tuple[Verdict, list[Call]]:
    """Deliver one message through ``provider_name`` (then, after a permanent rejection, the
    next provider of ``delivery.try_order``) and record every step.

    Before each provider call it waits (briefly) for a send slot of that provider's
    ``max_send_rate_per_second`` (``dispatch.send_rate``); without one in time the message goes
    back to its queue unsent (``_handed_back``), as when that provider's breaker is open
    (``dispatch.breaker``). An email that is not sent this time and is older than
    ``delivery.max_age_hours`` is dead-lettered instead (``delivery.give_up_reason``).

    Returns what to do with the SQS message and the provider calls made (also appended to
    ``calls`` as they are made, so that a caller sees them even when a record write fails).
    """
    calls = calls if calls is not None else []
    try:
        email = decode(message.body, message.sqs_message_id)
    except UndecodableMessage as exc:
        return Verdict(message, Action.DEAD_LETTER, reason=f"undecodable message: {exc}"), calls
    # Every log line from here on is about this email (cleared by the caller's thread).
    structlog.contextvars.bind_contextvars(message_id=email.id)

    # The batch's claim when it settled this email (``records.claim_batch``), else its own.
    claimed = claimed or records.claim(email, message.queue, stale_after)
    if claimed.claim in (Claim.ALREADY_SENT, Claim.ALREADY_DEAD, Claim.WITHDRAWN):
        return Verdict(message, Action.DELETE, email_id=email.id), calls
    if claimed.claim is Claim.BUSY:
        # Another worker holds it. If that worker is alive, the message is sent (and then only
        # deleted) by the time we look again; if it died, we may take over as soon as its
        # claim is stale, rather than a whole visibility timeout later.
        wait = (claimed.stale_in or timedelta(0)).total_seconds()
        return Verdict(message, Action.RECHECK, retry_after_seconds=wait, email_id=email.id), calls

    unsent = _Unsent(message, email.id, claimed, probe)
    claim_ticket = email.payload
    if claim_ticket is not None:
        try:
            email = claim_check.fetch(email)
        except (claim_check.PayloadMissing, claim_check.PayloadCorrupt) as exc:
            # Nothing could ever send it: its end, with the reason, not a retry until it expires.
            return Verdict(message, Action.DEAD_LETTER, reason=str(exc), email_id=email.id), calls
        except claim_check.PayloadUnavailable as exc:
            # S3's trouble, no provider's: no call, health untouched, tried again later.
            records.record_failure(email.id, "", str(exc), False)
            return unsent.retry(str(exc)), calls
    rejections = dict(claimed.rejections)
    slot_wait = send_rate.slot_wait_seconds(stale_after.total_seconds())
    for name in delivery.try_order(provider_name, list(providers), rejections, drained):
        if not BREAKERS.allows(name):
            return unsent.handed_back(
                name,
                calls,
                Action.RECHECK,
                f"{name} keeps failing: not tried",
                delivery.hand_back_delay(
                    message.receive_count,
                    claimed.attempts,
                    BREAKER_RETRY_SECONDS,
                    settings.GOMAIL.pipeline.backoff_max_seconds,
                ),
            ), calls
        if not send_rate.take_slot(name, slot_wait):
            return unsent.handed_back(
                name,
                calls,
                Action.RETRY,
                f"send rate limit of {name} reached",
                send_rate.retry_after_seconds(name),
            ), calls
        error = _call(providers[name], name, email, calls)
        step = delivery.after_call(error.kind if error else None)
        if step is delivery.Step.DONE:
            if claim_ticket is not None:
                claim_check.discard(claim_ticket, email.id)
            return Verdict(message, Action.DELETE, email_id=email.id), calls
        assert error is not None
        if step is delivery.Step.NEXT:
            rejections[name] = error.reason
            records.record_rejection(email.id, name, error.reason)
            continue
        records.record_failure(email.id, name, error.reason, error.outcome_unknown)
        return unsent.retry(error.reason, error.retry_after_seconds), calls

    tried_out = delivery.when_tried_out(list(providers), rejections)
    if tried_out.dead:
        return Verdict(
            message, Action.DEAD_LETTER, reason=tried_out.reason, email_id=email.id
        ), calls
    # Rejected here, and the provider left to try was not reached this time: try it later.
    records.record_failure(email.id, provider_name, tried_out.reason, False)
    return unsent.retry(tried_out.reason), calls


def _call(
    provider: Provider, name: str, email: WireEmail, calls: list[Call]
) -> ProviderError | None:
    """One provider call, appended to ``calls`` as soon as it returns, with its breaker,
    metrics, attempt record and log line; a sent email's record says so before its message is
    deleted (a redelivery then only deletes). Returns the call's error, if it failed."""
    try:
        # Provider.send raises nothing else: a bug in a provider is a transient error there,
        # of unknown outcome once the request may have left.
        result = provider.send(_outgoing(email))
    except ProviderError as error:
        BREAKERS.record(name, failed=error.kind is not ErrorKind.PERMANENT)
        EMAILS_FAILED.labels(provider=name, kind=error.kind.value).inc()
        if error.outcome_unknown:
            UNKNOWN_OUTCOMES.labels(provider=name).inc()
        logger.warning(
            "%s refused email %s (%s%s): %s",
            name,
            email.id,
            error.kind.value,
            ", outcome unknown" if error.outcome_unknown else "",
            error.reason,
        )
        calls.append(Call(name, error.kind.value, error.reason))
        records.record_attempt(
            email.id, name, error.kind.value, error.reason, error.outcome_unknown
        )
        return error
    BREAKERS.record(name, failed=False)
    calls.append(Call(name, "sent"))
    EMAILS_SENT.labels(provider=name).inc()
    logger.info("sent email %s via %s (%s)", email.id, name, result.provider_message_id)
    # Sent is recorded first: were the attempt's row written first and this write to fail,
    # the claim would be taken over later and the email sent again.
    records.record_sent(email.id, name, result.provider_message_id)
    records.record_attempt(email.id, name, "sent")
    return None


@dataclass(frozen=True)
class _Unsent:
    """The verdicts of a claimed email that is not sent this time."""

    message: ReceivedMessage
    email_id: str
    claimed: ClaimResult
    probe: bool = False

    def retry(self, reason: str, retry_after: float | None = None) -> Verdict:
        """Back to the queue with a backoff, unless the email is too old to keep trying."""
        given_up = self._give_up(reason)
        if given_up:
            return given_up
        return Verdict(
            self.message,
            Action.RETRY,
            reason=reason,
            retry_after_seconds=retry_after,
            email_id=self.email_id,
            # A probe's failure does not grow the email's backoff (see ``send_batch``).
            failures=1 if self.probe else (self.claimed.attempts or None),
        )

    def handed_back(
        self, provider: str, calls: list[Call], action: Action, reason: str, retry_after: float
    ) -> Verdict:
        """The message goes back to its queue unsent, to be read again after
        ``retry_after``: its provider had no send slot in time (``max_send_rate_per_second``;
        RETRY, so the usual backoff applies when it keeps coming back), or its breaker is open
        (RECHECK: no backoff, health routes it on). Nothing failed: no attempt is recorded,
        the provider's health is untouched, and with no call made the record is queued again
        as it was."""
        given_up = self._give_up(reason)
        if given_up:
            return given_up
        if calls:
            # A provider rejected it before: as when the next provider is not reached this time.
            records.record_failure(self.email_id, provider, reason, False)
        else:
            records.hand_back(self.email_id)
        return Verdict(
            self.message,
            action,
            reason=reason,
            retry_after_seconds=retry_after,
            email_id=self.email_id,
        )

    def _give_up(self, last_error: str) -> Verdict | None:
        since = self.claimed.since
        if since is None:
            return None
        gomail = settings.GOMAIL
        reason = delivery.give_up_reason(
            (timezone.now() - since).total_seconds(),
            gomail.delivery.max_age_hours * 3600,
            self.claimed.attempts,
            last_error,
            self.message.receive_count,
            delivery.receive_limit_for(gomail.sqs.max_receive_count),
        )
        if reason is None:
            return None
        logger.warning("email %s: %s", self.email_id, reason)
        return Verdict(self.message, Action.DEAD_LETTER, reason=reason, email_id=self.email_id)


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


def _record_dead_letters(planned: Sequence[Verdict], dead_lettered: Sequence[Verdict]) -> None:
    """Each dead-lettered email's record says so; one the dead-letter queue refused is given
    back, to be read again. Each write on its own: one failing (the database, briefly) must
    not keep the others, or the batch's outcome, from being written."""
    done = {id(verdict) for verdict in dead_lettered}
    for verdict in planned:
        if id(verdict) in done:
            DEAD_LETTERED.labels(cause=_dead_letter_cause(verdict)).inc()
        if not verdict.email_id:
            continue
        try:
            if id(verdict) in done:
                records.record_dead(verdict.email_id, verdict.reason)
            else:
                records.release_claim(verdict.email_id)
        except Exception:
            logger.exception("could not record the dead letter of email %s", verdict.email_id)


def _dead_letter_cause(verdict: Verdict) -> str:
    if not verdict.email_id:
        return "undecodable"
    return "gave_up" if verdict.reason.startswith("gave up") else "rejected"


def _failed_here(
    message: ReceivedMessage, claimed: ClaimResult | None, calls: list[Call], exc: Exception
) -> Verdict:
    """The verdict of a message whose delivery raised: back to its queue with a backoff.

    The batch's claim is given back when no provider was called (best effort: the database
    may be what failed). Otherwise the claim stays: a call may have sent it, or the claim is
    not known to be this thread's; whoever reads it next takes it over once it is stale,
    counting an unknown outcome."""
    logger.exception("delivering message %s failed: %s", message.sqs_message_id, exc)
    email_id = email_id_of(message.body, message.sqs_message_id)
    if email_id and not calls and claimed is not None and claimed.claim is Claim.CLAIMED:
        with contextlib.suppress(Exception):
            records.release_claim(email_id)
    return Verdict(
        message,
        Action.RETRY,
        reason=f"internal error: {type(exc).__name__}",
        email_id=email_id or None,
    )


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
    probe: bool = False,
) -> BatchOutcome:
    """Send a batch through ``provider_name``, settle its SQS messages, write its outcome.

    A ``probe`` (a batch for a provider the pipeline holds unhealthy) that fails comes back
    after the shortest backoff, whatever its attempts: the failure says more about the
    provider than about the email, which the next run most likely sends elsewhere."""
    gomail = settings.GOMAIL
    providers = providers if providers is not None else _process_providers()
    visibility = gomail.sqs.visibility_timeout_seconds
    fresh = not needs_extension(messages, time.time(), visibility)
    live = list(messages) if fresh else extend_visibility(messages, visibility)
    concurrency = gomail.providers[provider_name].send_concurrency

    drained = drained_providers(providers)

    claims = _batch_claims(live)

    def deliver_in_thread(
        message: ReceivedMessage, claimed: ClaimResult | None
    ) -> tuple[Verdict, list[Call]]:
        calls: list[Call] = []
        try:
            return deliver(
                message,
                provider_name,
                providers,
                timedelta(seconds=visibility),
                drained,
                claimed,
                calls,
                probe=probe,
            )
        except Exception as exc:
            # One email's failure (its database write, a bug) is its own: the batch's other
            # messages still settle and its calls still count for health.
            return _failed_here(message, claimed, calls, exc), calls
        finally:
            structlog.contextvars.clear_contextvars()
            # The thread keeps its connection for the next email, unless it broke or aged.
            close_old_connections()

    # At most ``concurrency`` of the pool's threads at once for this provider's batch.
    running = threading.BoundedSemaphore(concurrency)

    def limited(
        message: ReceivedMessage, claimed: ClaimResult | None
    ) -> tuple[Verdict, list[Call]]:
        with running:
            return deliver_in_thread(message, claimed)

    results = list(_send_pool().map(limited, live, claims))
    close_old_connections()

    verdicts = [verdict for verdict, _ in results]
    plan = plan_settlement(
        verdicts, gomail.pipeline.backoff_base_seconds, gomail.pipeline.backoff_max_seconds
    )
    dead_lettered = apply_settlement(plan, gomail.sqs.dead_letter_queue)
    _record_dead_letters(plan.dead_letters, dead_lettered)

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
