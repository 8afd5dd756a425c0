"""The life of an email record, from its acceptance while workers deliver it (DESIGN.md
section 7).

The API (``emails.accepting``) creates the ``queued`` record with ``record_accepted`` before
it asks SQS (a short write of its own, no lock held across the call) and, when SQS did not
take the message, marks it ``withdrawn`` (``withdraw``). A
worker *claims* a record before calling a provider: one conditional UPDATE, so of two
workers holding the same message only one sends it, and a record already ``sent`` is never
sent again. A claim older than the incoming queue's visibility timeout belonged to a worker
that died; it may be taken over (and the attempt counted as of unknown outcome).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.db import transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from emails.models import ApiKey, Attempt, Email, EmailTag
from emails.wire import WireEmail, mailboxes_json


def record_accepted(
    email: WireEmail,
    queue: str,
    *,
    api_key: ApiKey | None = None,
    user: Any = None,
    resent_from: Email | None = None,
    payload_key: str = "",
) -> Email:
    """Create the ``queued`` record of ``email``, about to be sent to ``queue``
    (``payload_key``: the S3 key of its claim check, when it travels as one)."""
    fields: dict[str, Any] = {
        "id": email.id,
        "from_email": email.from_email,
        "from_name": email.from_name,
        "to_email": email.to_email,
        "to_name": email.to_name,
        "subject": email.subject,
        "queue": queue,
        "api_key": api_key,
        "user": user,
        "accepted_at": email.accepted_at,
        "resent_from": resent_from,
        "payload_key": payload_key,
    }
    if email.is_original_format:
        return Email.objects.create(**fields)
    with transaction.atomic():
        record = Email.objects.create(
            **fields,
            recipients={
                place: mailboxes_json(mailboxes)
                for place, mailboxes in (("to", email.to), ("cc", email.cc), ("bcc", email.bcc))
                if mailboxes
            },
            tags=list(email.tags),
            metadata=dict(email.metadata),
            attachments=[
                {
                    "filename": a.filename,
                    "contentType": a.content_type,
                    "size": len(a.content),
                    **({"contentId": a.content_id} if a.content_id else {}),
                }
                for a in email.attachments
            ],
        )
        EmailTag.objects.bulk_create(EmailTag(email=record, tag=tag) for tag in set(email.tags))
    return record


def payload_deleted(*email_ids: str) -> None:
    """The claim checks of ``email_ids`` are gone from S3 (``emails.claim_check``)."""
    Email.objects.filter(id__in=email_ids).update(payload_key="")


class Claim(StrEnum):
    CLAIMED = "claimed"  # this worker sends it now
    ALREADY_SENT = "already_sent"  # delete the message, send nothing
    ALREADY_DEAD = "already_dead"  # it was dead-lettered before: delete the leftover
    WITHDRAWN = "withdrawn"  # the API answered 503 for it: delete the copy, send nothing
    BUSY = "busy"  # another worker is sending it: look again once its claim would be stale


def withdraw(record: Email) -> bool:
    """SendMessage failed: withdraw ``record`` so that no copy SQS may hold is delivered.

    False when a worker claimed it first: SQS did take the message after all, and it is on its
    way (the caller then answers 200, not 503).
    """
    return withdraw_id(record.id)


def withdraw_id(email_id: Any) -> bool:
    """``withdraw`` by id: an Idempotency-Key's retry finding the record of a request that
    never finished (``emails.idempotency``) withdraws it the same way."""
    withdrawn = Email.objects.filter(id=email_id, status=Email.Status.QUEUED).update(
        status=Email.Status.WITHDRAWN
    )
    return bool(withdrawn)


# The dead-letter queue's operations (``dispatch.dead_letters``, ``emails.resending``). A dead
# record is either redriven (queued again, same id) or resent (a copy with a new id), never
# both: a redrive takes only a record no resend has claimed, a resend only a dead one.

FINAL = (Email.Status.SENT, Email.Status.DEAD, Email.Status.WITHDRAWN)


def requeue_dead(email_id: str, queue: str) -> Email | None:
    """Queue the dead record ``email_id`` again on ``queue``, its provider rejections
    forgotten: before its copy is sent, so that a worker reading the copy at once claims it.

    Returns the record as it was (for ``return_to_dead``), or None when it is not dead (any
    more) or a resend claimed it: then nothing may be sent for it.
    """
    dead = Email.objects.filter(id=email_id, status=Email.Status.DEAD, resent_at__isnull=True)
    before = dead.first()
    if before is None:
        return None
    requeued = dead.update(
        status=Email.Status.QUEUED,
        rejections={},
        last_error="",
        queue=queue,
        requeued_at=timezone.now(),
    )
    return before if requeued else None


def return_to_dead(before: Email) -> None:
    """The copy of a record ``requeue_dead`` queued could not be sent: dead again, as it was
    (unless a worker claimed a copy SQS kept after all)."""
    Email.objects.filter(id=before.id, status=Email.Status.QUEUED).update(
        status=Email.Status.DEAD,
        rejections=before.rejections,
        last_error=before.last_error,
        queue=before.queue,
    )


def claim_resend(email_id: str) -> bool:
    """Claim the dead record ``email_id`` for a resend: one conditional UPDATE, so that of two
    operators (or a double submit) only one makes a copy. False: not dead, or claimed before."""
    claimed = Email.objects.filter(
        id=email_id, status=Email.Status.DEAD, resent_at__isnull=True
    ).update(resent_at=timezone.now())
    return bool(claimed)


def release_resend(email_id: str) -> None:
    """No copy was queued: the record may be resent (or redriven) again."""
    Email.objects.filter(id=email_id).update(resent_at=None)


def record_moved_by_sqs(
    email_id: str, reason: str, *, sent_at: datetime | None, claimed_before: datetime
) -> bool:
    """SQS itself moved the email's message to the dead-letter queue (``maxReceiveCount``
    receives): its record is ``dead`` with ``reason``, unless it is final already (a copy of a
    sent email, or of a withdrawn one, is no news), or the message is not its end:

    - a redrive queued the record again after the dead letter was sent (``sent_at``, SQS's
      ``SentTimestamp``, kept on the move; unknown: any redrive): the move came before the
      redrive, whose copy is on its way (a dead letter the redrive has not deleted yet, or
      could not delete);
    - a worker claimed it after ``claimed_before`` (one visibility timeout ago): it is
      sending another copy now.

    True when the record changed."""
    requeued_since = Q(requeued_at__isnull=False)
    if sent_at is not None:
        requeued_since = Q(requeued_at__gt=sent_at)
    changed = (
        Email.objects.filter(id=email_id)
        .exclude(status__in=FINAL)
        .exclude(requeued_since)
        .exclude(status=Email.Status.SENDING, claimed_at__gte=claimed_before)
        .update(status=Email.Status.DEAD, last_error=reason, claimed_at=None)
    )
    return bool(changed)


def expire_unqueued(
    cutoff: datetime, claimed_before: datetime, reason: str, limit: int = 1000
) -> int:
    """Mark ``dead`` with ``reason`` the waiting records (``queued``, ``failed``, or
    ``sending`` with a claim from before ``claimed_before``: its worker died) accepted, and
    requeued if they were, before ``cutoff``: SQS has deleted any message they had (the
    retention). At most ``limit`` of them, in one conditional UPDATE; a record that changed
    meanwhile is left. Returns how many changed."""
    expired = (
        Q(accepted_at__lt=cutoff)
        & (Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff))
        & (
            Q(status__in=CLAIMABLE)
            | Q(status=Email.Status.SENDING, claimed_at__isnull=True)
            | Q(status=Email.Status.SENDING, claimed_at__lt=claimed_before)
        )
    )
    # The ids first, bounded (a LIMIT inside an UPDATE's IN is not portable); the UPDATE
    # repeats the condition, so a record claimed or sent since is not touched.
    ids = list(
        Email.objects.filter(expired).order_by("accepted_at").values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    return Email.objects.filter(expired, pk__in=ids).update(
        status=Email.Status.DEAD, last_error=reason, claimed_at=None
    )


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    rejections: dict[str, str] = field(default_factory=dict)
    # CLAIMED: the record's attempts, this one included (the backoff counts them).
    attempts: int = 0
    # BUSY: how long until the other worker's claim is stale (and may be taken over).
    stale_in: timedelta | None = None
    # CLAIMED: when ``delivery.max_age_hours`` started to count: the email's acceptance (the
    # first claim's for a message of another producer), or its last redrive.
    since: datetime | None = None


CLAIMABLE = (Email.Status.QUEUED, Email.Status.FAILED)


def _since(accepted_at: datetime, requeued_at: datetime | None) -> datetime:
    """Where ``delivery.max_age_hours`` counts from: a redrive starts it afresh."""
    return max(accepted_at, requeued_at) if requeued_at else accepted_at


def claim_batch(emails: Sequence[WireEmail]) -> dict[str, ClaimResult]:
    """Claim the records of a batch's ``emails`` (distinct ids) at once: one UPDATE, one SELECT.

    The answer holds the emails this settles: claimed now, or already sent, dead or withdrawn.
    The others (no record yet, or another worker's claim, stale or not) are the caller's to
    ``claim`` one by one. A record this UPDATE claimed is told by its ``claimed_at``, this
    call's own instant.
    """
    now = timezone.now()
    ids = [email.id for email in emails]
    Email.objects.filter(id__in=ids, status__in=CLAIMABLE).update(
        status=Email.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
    )
    settled_as = {
        Email.Status.SENT: Claim.ALREADY_SENT,
        Email.Status.DEAD: Claim.ALREADY_DEAD,
        Email.Status.WITHDRAWN: Claim.WITHDRAWN,
    }
    results: dict[str, ClaimResult] = {}
    rows = Email.objects.filter(id__in=ids).values_list(
        "id", "status", "rejections", "claimed_at", "attempts", "accepted_at", "requeued_at"
    )
    for email_id, status, rejections, claimed_at, attempts, accepted_at, requeued_at in rows:
        if status == Email.Status.SENDING and claimed_at == now:
            results[str(email_id)] = ClaimResult(
                Claim.CLAIMED,
                dict(rejections or {}),
                attempts,
                since=_since(accepted_at, requeued_at),
            )
        elif status in settled_as:
            results[str(email_id)] = ClaimResult(settled_as[status])
    return results


def claim(email: WireEmail, queue: str, stale_after: timedelta) -> ClaimResult:
    """Claim ``email``'s record for sending, creating it when another producer queued it."""
    now = timezone.now()
    records = Email.objects.filter(id=email.id)

    def take() -> int:
        return records.filter(status__in=CLAIMABLE).update(
            status=Email.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )

    # The record nearly always exists (the API wrote it): claim first, create only if missing.
    claimed = take()
    if not claimed and not records.exists():
        Email.objects.get_or_create(
            id=email.id,
            defaults={
                "from_email": email.from_email[:320],
                "from_name": email.from_name[:256],
                "to_email": email.to_email[:320],
                "to_name": email.to_name[:256],
                "subject": email.subject[:998],
                "queue": queue,
                "accepted_at": email.accepted_at or now,
            },
        )
        claimed = take()
    if not claimed:
        claimed = (
            records.filter(status=Email.Status.SENDING)
            .filter(Q(claimed_at__lt=now - stale_after) | Q(claimed_at__isnull=True))
            .update(
                claimed_at=now,
                attempts=F("attempts") + 1,
                unknown_outcomes=F("unknown_outcomes") + 1,
            )
        )
    status, rejections, claimed_at, attempts, accepted_at, requeued_at = records.values_list(
        "status", "rejections", "claimed_at", "attempts", "accepted_at", "requeued_at"
    ).get()
    if claimed:
        return ClaimResult(
            Claim.CLAIMED, dict(rejections or {}), attempts, since=_since(accepted_at, requeued_at)
        )
    if status == Email.Status.SENT:
        return ClaimResult(Claim.ALREADY_SENT)
    if status == Email.Status.DEAD:
        return ClaimResult(Claim.ALREADY_DEAD)
    if status == Email.Status.WITHDRAWN:
        return ClaimResult(Claim.WITHDRAWN)
    stale_in = (claimed_at + stale_after - now) if claimed_at else timedelta(0)
    return ClaimResult(Claim.BUSY, stale_in=max(stale_in, timedelta(0)))


def record_attempt(
    email_id: str, provider: str, outcome: str, error: str = "", outcome_unknown: bool = False
) -> None:
    Attempt.objects.create(
        email_id=email_id,
        provider=provider,
        outcome=outcome,
        error=error,
        outcome_unknown=outcome_unknown,
    )


def record_sent(email_id: str, provider: str, provider_message_id: str) -> None:
    Email.objects.filter(id=email_id).update(
        status=Email.Status.SENT,
        provider=provider,
        provider_message_id=provider_message_id[:255],
        sent_at=timezone.now(),
        claimed_at=None,
        last_error="",
    )


def record_rejection(email_id: str, provider: str, reason: str) -> None:
    # Only the claim holder writes this record now, so read-modify-write is safe.
    record = Email.objects.get(id=email_id)
    record.rejections = {**record.rejections, provider: reason}
    record.provider = provider
    record.last_error = reason
    record.save(update_fields=["rejections", "provider", "last_error", "updated_at"])


def record_failure(email_id: str, provider: str, error: str, outcome_unknown: bool) -> None:
    """A transient failure: the message goes back to the queue and the record says so."""
    Email.objects.filter(id=email_id).update(
        status=Email.Status.FAILED,
        provider=provider,
        last_error=error,
        claimed_at=None,
        unknown_outcomes=F("unknown_outcomes") + (1 if outcome_unknown else 0),
    )


def record_dead(email_id: str, reason: str) -> None:
    Email.objects.filter(id=email_id).update(
        status=Email.Status.DEAD, last_error=reason, claimed_at=None
    )


def waiting(email_ids: Sequence[str | None]) -> dict[str, tuple[float, int]]:
    """``(seconds its max age has run, attempts)`` of each not-final record of ``email_ids``;
    a final or missing record is left out."""
    now = timezone.now()
    rows = Email.objects.filter(
        id__in=[email_id for email_id in email_ids if email_id], status__in=WAITING
    ).values_list("id", "accepted_at", "requeued_at", "attempts")
    return {
        str(email_id): ((now - _since(accepted_at, requeued_at)).total_seconds(), attempts)
        for email_id, accepted_at, requeued_at, attempts in rows
    }


def hand_back(email_id: str) -> None:
    """The claim is given back with no provider called (a breaker open, no send slot): the
    record is ``queued`` again as it was, this attempt not counted."""
    Email.objects.filter(id=email_id, status=Email.Status.SENDING).update(
        status=Email.Status.QUEUED, claimed_at=None, attempts=F("attempts") - 1
    )


def release_claim(email_id: str) -> None:
    """Give a claim back unsent (the dead-letter queue refused it): it will be read again."""
    Email.objects.filter(id=email_id, status=Email.Status.SENDING).update(
        status=Email.Status.FAILED, claimed_at=None
    )


# Accepted and not final: what an operator watches for mail that is not moving.
WAITING = (Email.Status.QUEUED, Email.Status.SENDING, Email.Status.FAILED)


def oldest_waiting_accepted_at() -> datetime | None:
    """When the oldest email still waiting for delivery was accepted (None: none waits).

    Read at every scrape of ``/metrics`` and on the admin's provider page: the ``status``
    index narrows it to the waiting records, few beside the sent ones kept for weeks.
    """
    return Email.objects.filter(status__in=WAITING).aggregate(oldest=Min("accepted_at"))["oldest"]


# Records one cleanup transaction deletes: SQLite's write lock is held for one chunk only, and
# the rows Django loads (``resent_from`` is SET_NULL, so it must) are bounded.
DELETE_CHUNK_SIZE = 1000


def delete_final_before(cutoff: datetime, chunk_size: int = DELETE_CHUNK_SIZE) -> int:
    """Delete the final (``sent``, ``dead``) records accepted before ``cutoff``, with their
    attempts; an email still on its way is kept whatever its age. Returns the rows deleted.

    In chunks of ``chunk_size`` primary keys, each its own transaction, until none is left:
    workers and the API write between two chunks."""
    old = Email.objects.filter(
        accepted_at__lt=cutoff, status__in=[Email.Status.SENT, Email.Status.DEAD]
    )
    deleted = 0
    while True:
        with transaction.atomic():
            chunk = list(old.order_by("pk").values_list("pk", flat=True)[:chunk_size])
            if not chunk:
                return deleted
            # The filter again: a record that left its final status meanwhile (a redrive) stays.
            rows, _ = old.filter(pk__in=chunk).delete()
        deleted += rows
