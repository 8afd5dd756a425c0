"""Resending a dead email: a new email (new id) with the same content, linked to the original.

The body is not in the database (DESIGN.md section 7): it is taken from the email's message
in the dead-letter queue, which the copy then replaces. The original is claimed first
(``records.claim_resend``, one conditional UPDATE), so that two operators, or a double
submit, make one copy; the claim is given back when no copy could be queued.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from django.utils import timezone

from dispatch import dead_letters
from emails import claim_check, records
from emails.accepting import MessageTooLarge, NotAccepted, accept
from emails.models import Email
from emails.wire import UndecodableMessage, decode

ALREADY_RESENT = "already resent (or being resent)"


@dataclass(frozen=True)
class ResendOutcome:
    copy: Email | None = None
    refusal: str = ""


def refusal_for_status(status: str) -> str:
    """Why an email of ``status`` is not resent (empty: it may be). Pure."""
    if status == Email.Status.DEAD:
        return ""
    if status == Email.Status.FAILED:
        return f"not dead ({status}): a failed email is retried automatically"
    return f"not dead ({status})"


def resend(email: Email) -> ResendOutcome:
    """Queue a copy of the dead ``email``; its dead-letter message is deleted once the copy is
    queued. Only ``dead`` emails: a ``failed`` one is still queued and retried by itself; and
    only once (a copy that dies can be resent in its turn)."""
    refusal = refusal_for_status(email.status)
    if refusal:
        return ResendOutcome(refusal=refusal)
    if not records.claim_resend(str(email.id)):
        # Another resend claimed it, or it left ``dead`` since it was read (a redrive).
        email.refresh_from_db(fields=["status"])
        return ResendOutcome(refusal=refusal_for_status(email.status) or ALREADY_RESENT)
    try:
        outcome, dead_letter_id = _queue_copy(email)
    except Exception:
        records.release_resend(str(email.id))
        raise
    if outcome.copy is None:
        records.release_resend(str(email.id))
        return outcome
    # The copy is queued: the claim stays, whatever becomes of the dead letter (a leftover
    # that is not deleted is never redriven: its record is claimed).
    dead_letters.delete([dead_letter_id])
    return outcome


def _queue_copy(email: Email) -> tuple[ResendOutcome, str]:
    """The copy of ``email`` queued (or why not), and the id of the dead letter it replaces."""
    message = dead_letters.find_body(str(email.id))
    if message is None:
        return ResendOutcome(refusal="its message is no longer in the dead-letter queue"), ""
    try:
        original = decode(message.body, message.sqs_message_id)
    except UndecodableMessage as exc:
        return ResendOutcome(refusal=f"its message cannot be decoded: {exc}"), ""
    if original.payload is not None:
        # The copy gets an object of its own (under its own id): the original's is deleted
        # with the original, whatever becomes of the copy.
        try:
            original = claim_check.fetch(original)
        except claim_check.PayloadError as exc:
            return ResendOutcome(refusal=f"its payload cannot be read: {exc}"), ""
    copy = replace(original, id=str(uuid.uuid4()), accepted_at=timezone.now())
    try:
        record = accept(copy, api_key=email.api_key, user=email.user, resent_from=email)
    except (MessageTooLarge, NotAccepted) as exc:
        return ResendOutcome(refusal=f"could not queue the copy: {exc}"), ""
    return ResendOutcome(copy=record), message.sqs_message_id
