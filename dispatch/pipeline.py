"""The pipeline run (DESIGN.md section 5): fold health, read the queues, split, dispatch.

One run at a time (a database lease). Each step's decision is a pure function from
``reading``, ``splitting`` and ``health``; this module only gathers their inputs and acts.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from dispatch import controls, delivery, health_store, lease
from dispatch.health import HealthState, Thresholds
from dispatch.health_store import PendingBatch
from dispatch.inbox import ReceivedMessage, read_levels, read_messages
from dispatch.reading import plan_reads, read_allowance, routes_with_room
from dispatch.settlement import Action, Verdict, apply_settlement, plan_settlement
from dispatch.splitting import (
    ProviderRoute,
    batches_within,
    is_probe_turn,
    plan_split,
    rotate_routes,
)
from emails import records
from emails.wire import TASK_PAYLOAD_LIMIT, dispatch_bytes, email_id_of
from gomail_site.metrics import observe_pipeline_run

logger = logging.getLogger(__name__)

PIPELINE_LEASE = "pipeline"

# Sends one batch to a provider's Celery queue: ``(provider, batch_id, messages, probe=...)``.
Dispatcher = Callable[..., None]


@dataclass
class RunReport:
    """What one run did, for logs, metrics and tests."""

    ran: bool
    read: int = 0
    dispatched: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    too_large: int = 0
    health: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0


def fold_health(providers: Sequence[str], thresholds: Thresholds) -> dict[str, HealthState]:
    """Fold every available batch outcome into its provider's health; return the states.

    An operator's reset request (``controls.request_health_reset``) starts a provider's
    health afresh first: applied here because the pipeline is the only writer of health.
    """
    now = timezone.now()
    resets = controls.take_reset_requests(providers)
    # A batch is settled within the visibility timeout (DESIGN.md section 8), or its messages
    # are back in their queues and its provider's workers are not keeping up.
    deadline = now - timedelta(seconds=settings.GOMAIL.sqs.visibility_timeout_seconds)
    states = {}
    for name in providers:
        pending = health_store.load_pending(name)
        outcomes = health_store.read_outcomes(batch.batch_id for batch in pending)
        before = HealthState() if name in resets else health_store.load_state(name)
        state, still_pending = health_store.fold_pending(
            before, pending, outcomes, thresholds, now, deadline
        )
        if state != before or name in resets:
            health_store.save_state(name, state)
            if state.healthy != before.healthy:
                logger.warning(
                    "provider %s is now %s (%s)",
                    name,
                    "healthy" if state.healthy else "unhealthy",
                    state.last_error or "recovered",
                )
        if len(still_pending) != len(pending):
            health_store.save_pending(name, still_pending)
        health_store.forget_outcomes(outcomes)
        states[name] = state
    return states


def run_pipeline(dispatch: Dispatcher) -> RunReport:
    """One pipeline run, or none if another run holds the lease."""
    gomail = settings.GOMAIL
    with lease.held(PIPELINE_LEASE, gomail.pipeline.lease_seconds) as mine:
        if not mine:
            logger.info("pipeline run skipped: another run is in progress")
            return RunReport(ran=False)
        return _run(dispatch)


def _run(dispatch: Dispatcher) -> RunReport:
    started = time.monotonic()
    gomail = settings.GOMAIL
    providers = gomail.enabled_providers
    if not providers:
        logger.error("no provider is enabled: only emails past their max age are read")
        return _finished(_hold_or_give_up("no provider is enabled"), started)
    thresholds = Thresholds(
        healthy=gomail.health.healthy_threshold, unhealthy=gomail.health.unhealthy_threshold
    )
    states = fold_health(providers, thresholds)
    drained = controls.drained_providers(providers)
    routable = [name for name in providers if name not in drained]
    if not routable:
        logger.warning("every enabled provider is drained: only emails past their max age are read")
        report = _hold_or_give_up("every enabled provider is drained")
        report.health = {n: s.healthy for n, s in states.items()}
        return _finished(report, started)
    run_number = health_store.next_run_number()
    every = gomail.health.low_traffic_probe_every_runs
    pending = {name: health_store.load_pending(name) for name in providers}
    capacity = {name: gomail.providers[name].max_in_flight for name in routable}
    in_flight = {name: sum(batch.size for batch in batches) for name, batches in pending.items()}
    routes = routes_with_room(
        rotate_routes(
            [
                ProviderRoute(name, states[name].healthy, gomail.providers[name].weight)
                for name in routable
            ],
            run_number,
        ),
        capacity,
        in_flight,
    )
    allowance = read_allowance(routes, capacity, in_flight)
    queues = gomail.sqs.incoming_queues
    with ThreadPoolExecutor(max_workers=gomail.pipeline.max_readers) as pool:
        levels = read_levels(queues, pool)
        quotas = plan_reads(
            levels,
            max_in_flight=gomail.pipeline.max_in_flight_per_queue,
            max_readers=gomail.pipeline.max_readers,
            receives_per_reader=gomail.pipeline.receives_per_reader,
            allowance=allowance,
        )
        readers = [
            (queue, quota) for queue, plan in zip(queues, quotas, strict=True) for quota in plan
        ]
        messages = read_messages(readers, pool)

    report = RunReport(
        ran=True, read=len(messages), health={n: s.healthy for n, s in states.items()}
    )
    messages, too_large = _fitting(messages)
    report.too_large = len(too_large)
    now = timezone.now().isoformat()
    probe_turn = run_number // every if is_probe_turn(run_number, every) else None
    healthy = {route.name for route in routes if route.healthy}
    for name, share in plan_split(messages, routes, probe_turn).items():
        # A batch for an unhealthy provider beside healthy ones is a probe: its failure is not
        # the email's (a short backoff, then most likely a healthy provider).
        probe = bool(healthy) and name not in healthy
        for batch in batches_within(
            share, gomail.pipeline.batch_size, TASK_PAYLOAD_LIMIT, lambda m: dispatch_bytes(m.body)
        ):
            batch_id = uuid.uuid4().hex
            try:
                dispatch(name, batch_id, batch, probe=probe)
            except Exception:
                # The messages stay invisible until their timeout, then are read again.
                logger.exception("could not dispatch batch %s to %s", batch_id, name)
                continue
            pending[name].append(PendingBatch(batch_id, len(batch), now))
            report.batches += 1
            report.dispatched[name] = report.dispatched.get(name, 0) + len(batch)
        health_store.save_pending(name, pending[name])
    _finished(report, started)
    if report.read:
        logger.info(
            "pipeline run: read %d, dispatched %s in %d batches (%.2fs)",
            report.read,
            report.dispatched,
            report.batches,
            report.seconds,
        )
    return report


def _finished(report: RunReport, started: float) -> RunReport:
    report.seconds = time.monotonic() - started
    observe_pipeline_run(report.seconds, report.read)
    return report


# While no provider can take mail and some email is past its max age, each run reads this many
# messages per queue at most and hides those not yet too old for pipeline.backoff_max_seconds
# (each receive counts towards SQS's max_receive_count): a deep backlog is gone through slowly.
HOLD_READ_PER_QUEUE = 100


def _hold_or_give_up(why: str) -> RunReport:
    """No provider can take mail: dead-letter what is past ``delivery.max_age_hours`` (as a
    worker would, so nothing waits for SQS's own timers), hide the rest again. Nothing is read
    while no record is that old: the mail stays visible, for a provider resumed soon."""
    gomail = settings.GOMAIL
    max_age = gomail.delivery.max_age_hours * 3600
    oldest = records.oldest_waiting_accepted_at()
    if oldest is None or (timezone.now() - oldest).total_seconds() < max_age:
        return RunReport(ran=True)
    queues = gomail.sqs.incoming_queues
    with ThreadPoolExecutor(max_workers=min(len(queues), gomail.pipeline.max_readers)) as pool:
        messages = read_messages([(queue, HOLD_READ_PER_QUEUE) for queue in queues], pool)
    if not messages:
        return RunReport(ran=True)
    ids = [email_id_of(message.body, message.sqs_message_id) for message in messages]
    waiting = records.waiting(ids)
    verdicts = []
    for message, email_id in zip(messages, ids, strict=True):
        age, attempts = waiting.get(email_id or "", (None, 0))
        reason, hold = delivery.hold_or_give_up(
            delivery.Waiting(age, attempts),
            max_age,
            gomail.pipeline.backoff_max_seconds,
            why,
        )
        if reason:
            verdicts.append(Verdict(message, Action.DEAD_LETTER, reason=reason, email_id=email_id))
        else:
            verdicts.append(Verdict(message, Action.RECHECK, retry_after_seconds=hold))
    plan = plan_settlement(verdicts, 0, 0)
    for verdict in apply_settlement(plan, gomail.sqs.dead_letter_queue):
        logger.warning("email %s: %s", verdict.email_id, verdict.reason)
        records.record_dead(verdict.email_id, verdict.reason)
    return RunReport(ran=True, read=len(messages))


def _fitting(
    messages: Sequence[ReceivedMessage],
) -> tuple[list[ReceivedMessage], list[Verdict]]:
    """Dead-letter the messages too large to fit in any ``send_batch`` task; return the rest.

    Only another producer can queue one (the API refuses them). Dispatched, its task would be
    refused by SQS on every run until the queue's redrive moved it without a reason.
    """
    fitting: list[ReceivedMessage] = []
    too_large: list[Verdict] = []
    for message in messages:
        size = dispatch_bytes(message.body)
        if size <= TASK_PAYLOAD_LIMIT:
            fitting.append(message)
            continue
        email_id = email_id_of(message.body, message.sqs_message_id)
        reason = f"too large to dispatch: {size} bytes in a task, over {TASK_PAYLOAD_LIMIT}"
        logger.warning("message %s: %s", message.sqs_message_id, reason)
        too_large.append(Verdict(message, Action.DEAD_LETTER, reason=reason, email_id=email_id))
    if too_large:
        gomail = settings.GOMAIL
        dead_lettered = apply_settlement(
            plan_settlement(too_large, 0, 0), gomail.sqs.dead_letter_queue
        )
        for verdict in dead_lettered:
            if verdict.email_id:
                records.record_dead(verdict.email_id, verdict.reason)
    return fitting, too_large
