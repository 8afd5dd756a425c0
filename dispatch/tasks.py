"""Celery tasks: thin wrappers that take plain data and call the pipeline or a batch send."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown
from django.core.management import call_command

from dispatch import dead_letters, health_store
from dispatch.inbox import ReceivedMessage
from dispatch.pipeline import run_pipeline as run_pipeline_once
from dispatch.sending import close_providers, close_send_pools
from dispatch.sending import send_batch as send_batch_now

logger = logging.getLogger(__name__)


def dispatch_batch(
    provider: str, batch_id: str, messages: Sequence[ReceivedMessage], probe: bool = False
) -> None:
    """Put one batch on ``provider``'s Celery queue (each provider has its own)."""
    send_batch.apply_async(
        args=[provider, batch_id, [message.to_task() for message in messages]],
        # Only when set: a task without it is read the same by a worker of the last version.
        kwargs={"probe": True} if probe else {},
        queue=provider,
    )


@shared_task(name="dispatch.tasks.run_pipeline", ignore_result=True)
def run_pipeline() -> dict[str, Any]:
    report = run_pipeline_once(dispatch_batch)
    return {"ran": report.ran, "read": report.read, "dispatched": report.dispatched}


@shared_task(name="dispatch.tasks.send_batch", ignore_result=True)
def send_batch(
    provider: str, batch_id: str, messages: list[dict[str, Any]], probe: bool = False
) -> dict[str, Any]:
    outcome = send_batch_now(
        provider, batch_id, [ReceivedMessage.from_task(m) for m in messages], probe=probe
    )
    return outcome.to_dict()


@shared_task(name="dispatch.tasks.purge_dispatch_cache", ignore_result=True)
def purge_dispatch_cache() -> int:
    return health_store.purge_expired()


def _command_report(name: str) -> str:
    # The command's own code, so that beat and an operator delete exactly the same things.
    # Its line is logged: a worker logs what a task prints as a warning.
    out = io.StringIO()
    call_command(name, stdout=out)
    report = out.getvalue().strip()
    logger.info("%s: %s", name, report)
    return report


@shared_task(name="dispatch.tasks.cleanup_emails", ignore_result=True)
def cleanup_emails() -> str:
    return _command_report("cleanup_emails")


@shared_task(name="dispatch.tasks.cleanup_payloads", ignore_result=True)
def cleanup_payloads() -> str:
    return _command_report("cleanup_payloads")


@shared_task(name="dispatch.tasks.reconcile_dead_letters", ignore_result=True)
def reconcile_dead_letters() -> dict[str, int]:
    # And the records with no message left (older than the incoming queues' retention).
    return {
        "reconciled": dead_letters.reconcile_moved_by_sqs(),
        "expired": dead_letters.expire_messageless(),
    }


@worker_process_shutdown.connect
def _release_connections(**kwargs: Any) -> None:
    """A provider worker's pool process ends: its sending threads and its providers'
    connections (an SMTP relay's) go with it, closed rather than dropped."""
    close_send_pools()
    close_providers()
