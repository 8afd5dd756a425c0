"""Resending a dead email: a new email (new id) with the same content, linked to the original.

The body is not in the database (DESIGN.md section 7): it is taken from the email's message
in the dead-letter queue, which the copy then replaces.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from django.utils import timezone

from dispatch import dead_letters
from emails.accepting import MessageTooLarge, NotAccepted, accept
from emails.models import Email
from emails.wire import UndecodableMessage, decode


@dataclass(frozen=True)
class ResendOutcome:
    copy: Email | None = None
    refusal: str = ""


def resend(email: Email) -> ResendOutcome:
    """Queue a copy of the dead ``email``; its dead-letter message is deleted once the copy is
    queued. Only ``dead`` emails: a ``failed`` one is still queued and retried by itself."""
    if email.status != Email.Status.DEAD:
        return ResendOutcome(
            refusal=f"not dead ({email.status}): a failed email is retried automatically"
            if email.status == Email.Status.FAILED
            else f"not dead ({email.status})"
        )
    message = dead_letters.find_body(str(email.id))
    if message is None:
        return ResendOutcome(refusal="its message is no longer in the dead-letter queue")
    try:
        original = decode(message.body, message.sqs_message_id)
    except UndecodableMessage as exc:
        return ResendOutcome(refusal=f"its message cannot be decoded: {exc}")
    copy = replace(original, id=str(uuid.uuid4()), accepted_at=timezone.now())
    try:
        record = accept(copy, api_key=email.api_key, user=email.user, resent_from=email)
    except (MessageTooLarge, NotAccepted) as exc:
        return ResendOutcome(refusal=f"could not queue the copy: {exc}")
    dead_letters.delete([message.sqs_message_id])
    return ResendOutcome(copy=record)
