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
from typing import Any

from django.db import DatabaseError

from emails import records
from emails.models import ApiKey, Email
from emails.queueing import (
    MessageTooLarge,
    QueueUnavailable,
    arriving,
    choose_queue,
    encode_for_queue,
    enqueue,
)
from emails.wire import WireEmail
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
) -> Email:
    """Record ``email`` and queue it on one incoming queue; returns the record.

    Raises ``MessageTooLarge`` (nothing done) or ``NotAccepted`` (nothing will be delivered).
    """
    body = encode_for_queue(email)
    queue_name = choose_queue()
    with bound_message(email.id), arriving() as arrival:
        try:
            record = records.record_accepted(
                email, queue_name, api_key=api_key, user=user, resent_from=resent_from
            )
        except DatabaseError as exc:
            logger.exception("could not record email %s", email.id)
            raise NotAccepted("database unavailable") from exc
        try:
            enqueue(body, queue_name, arrival)
        except QueueUnavailable as exc:
            _withdraw_or_keep(record, exc)
        EMAILS_ACCEPTED.inc()
        logger.info("accepted email %s on %s", email.id, queue_name)
    return record


def _withdraw_or_keep(record: Email, failure: QueueUnavailable) -> None:
    try:
        withdrawn = records.withdraw(record)
    except DatabaseError as exc:
        # Neither withdrawn nor known to be queued: the 503 is the truth unless SQS kept the
        # message after all and a worker delivers it (docs/reliability.md).
        logger.exception("could not withdraw email %s", record.id)
        raise NotAccepted(str(failure)) from exc
    if withdrawn:
        raise NotAccepted(str(failure)) from failure
    logger.info("SQS did take email %s: a worker claimed it before its withdrawal", record.id)
    record.refresh_from_db()
