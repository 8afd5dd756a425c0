"""Accepting an email: its record and its SQS message (DESIGN.md invariant 1).

Used by the API and by the admin's *resend*. No database lock is held across the SQS call:

1. the record is written ``queued`` (a short write of its own);
2. the message goes out in this process's next ``SendMessageBatch`` (``emails.queueing``);
3. SQS took it: the caller's 200. SQS did not: the record is ``withdrawn``, the caller's 503,
   and a copy SQS may have kept after all (its answer lost) is dropped by the worker, never
   delivered. If a worker claimed the message before the withdrawal, SQS did have it: it is
   delivered, and the caller gets its 200.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError

from emails import claim_check, records
from emails.models import ApiKey, Email
from emails.queueing import (
    MessageTooLarge,
    QueueUnavailable,
    arriving,
    checked_size,
    choose_queue,
    enqueue,
)
from emails.wire import PayloadRef, WireEmail
from gomail_site.logs import bound_message
from gomail_site.metrics import EMAILS_ACCEPTED

logger = logging.getLogger(__name__)

__all__ = ["MessageTooLarge", "NotAccepted", "accept"]


class NotAccepted(Exception):
    """Nothing is queued (or the record could not be written): the caller reports 503."""


def accept(
    email: WireEmail,
    *,
    api_key: ApiKey | None = None,
    user: Any = None,
    resent_from: Email | None = None,
    confirm: Callable[[], bool] | None = None,
) -> Email:
    """Record ``email`` and queue it on one incoming queue; returns the record.

    ``confirm``: asked right before the record is written, whether the caller may still
    accept it (an Idempotency-Key's reservation: ``emails.idempotency``); False is a
    ``NotAccepted`` with nothing recorded.

    Raises ``MessageTooLarge`` (nothing done) or ``NotAccepted`` (nothing will be delivered).

    An email over what its queue or a send task takes goes to S3 first (a claim check,
    ``emails.claim_check``), before the arrival is announced: the upload must not hold up the
    other requests' batch. Every path that ends in a 503 deletes the object again.
    """
    queue_name = choose_queue()
    body = email.encode()
    payload = None
    if claim_check.needs_claim_check(body, claim_check.queue_max_message_bytes(queue_name)):
        try:
            summary = claim_check.store(email, body)
        except claim_check.PayloadUnavailable as exc:
            logger.warning("could not store the payload of email %s: %s", email.id, exc)
            raise NotAccepted(str(exc)) from exc
        payload = summary.payload
        body = summary.encode()
    body = checked_size(body, email.id)
    if confirm is not None and not confirm():
        _discard(payload, email.id)
        raise NotAccepted("its Idempotency-Key was taken over by a retry")
    with bound_message(email.id), arriving() as arrival:
        try:
            record = records.record_accepted(
                email,
                queue_name,
                api_key=api_key,
                user=user,
                resent_from=resent_from,
                payload_key=payload.key if payload else "",
            )
        except DatabaseError as exc:
            logger.exception("could not record email %s", email.id)
            _discard(payload, email.id)
            raise NotAccepted("database unavailable") from exc
        try:
            enqueue(body, queue_name, arrival)
        except QueueUnavailable as exc:
            _withdraw_or_keep(record, exc, payload)
        EMAILS_ACCEPTED.inc()
        logger.info("accepted email %s on %s", email.id, queue_name)
    return record


def _discard(payload: PayloadRef | None, email_id: str) -> None:
    if payload is not None:
        claim_check.discard(payload, email_id)


def _withdraw_or_keep(record: Email, failure: QueueUnavailable, payload: PayloadRef | None) -> None:
    try:
        withdrawn = records.withdraw(record)
    except DatabaseError as exc:
        # Neither withdrawn nor known to be queued: the 503 is the truth unless SQS kept the
        # message after all and a worker delivers it (docs/reliability.md); so its payload
        # stays, for the cleanup to remove once the record says what became of it.
        logger.exception("could not withdraw email %s", record.id)
        raise NotAccepted(str(failure)) from exc
    if withdrawn:
        _discard(payload, str(record.id))
        raise NotAccepted(str(failure)) from failure
    logger.info("SQS did take email %s: a worker claimed it before its withdrawal", record.id)
    record.refresh_from_db()
