"""Accepting an email: its record and its SQS message, both or neither (DESIGN.md invariant 1).

Used by the API and by the admin's *resend*.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, transaction

from emails.models import ApiKey, Email
from emails.queueing import MessageTooLarge, QueueUnavailable, choose_queue, enqueue
from emails.records import record_accepted
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

    Raises ``MessageTooLarge`` (nothing done) or ``NotAccepted``. The record commits only if
    SQS took the message; if the commit itself fails after SendMessage, the message is still
    delivered and the worker recreates the record.
    """
    queue_name = choose_queue()
    with bound_message(email.id):
        try:
            with transaction.atomic():
                record = record_accepted(
                    email, queue_name, api_key=api_key, user=user, resent_from=resent_from
                )
                enqueue(email, queue_name)
        except QueueUnavailable as exc:
            raise NotAccepted(str(exc)) from exc
        except DatabaseError as exc:
            logger.exception("could not record email %s", email.id)
            raise NotAccepted("database unavailable") from exc
        EMAILS_ACCEPTED.inc()
        logger.info("accepted email %s on %s", email.id, queue_name)
    return record
