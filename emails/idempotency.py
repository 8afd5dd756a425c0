"""``Idempotency-Key`` on ``POST /email/send`` (IETF draft-ietf-httpapi-idempotency-key-header).

A caller that sends the header may retry a request whose answer it did not get: the same key
with the same request answers the first request's ``200 {"messageId"}`` and queues nothing
again; the same key with another request is a 422; a duplicate while the first request is
still being accepted is a 409. A key belongs to one caller (``owner_of``) and is remembered
for ``api.idempotency_retention_hours``.

Across API processes the ``IdempotencyKey`` row decides, never a cache: a request inserts its
row first (the unique constraint on (owner, key) lets exactly one insert win) and carries the
row's pre-assigned ``email_id`` as its email's id. Every later change of a row is a
conditional UPDATE or DELETE on that ``email_id``, which each takeover replaces, so of two
requests acting on what they read only one succeeds.

A row left *in progress* past ``in_progress_window`` belongs to a request that cannot still be
running: the database failed under it (docs/reliability.md, the ambiguous 503). Its email's
record then says what happened: a record that is not ``withdrawn`` may be on its way, so its id
is the answer; otherwise nothing was queued and the key is taken over.

The decisions are the pure functions ``parse_key``, ``fingerprint``, ``judge`` and
``judge_stale``; ``reserved`` is the I/O around them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from emails import records
from emails.errors import ApiError
from emails.models import ApiKey, Email, IdempotencyKey
from emails.queueing import enqueue_wait_seconds

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
INVALID_KEY = f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
DIFFERENT_REQUEST = f"{HEADER} reused with a different request"
IN_PROGRESS = f"A request with this {HEADER} is in progress"

# Beyond enqueue's own wait for SQS: the record's write before it and the withdrawal after it
# (each may queue on SQLite's busy timeout), and the clocks of two API hosts.
IN_PROGRESS_MARGIN_SECONDS = 30.0
# Inserts tried when the row found in the way is gone by the time it is read (released after
# a 503, or taken over by another request): beyond that, the key is busy.
RESERVE_ATTEMPTS = 3


# --- the pure decisions ------------------------------------------------------------------------


def parse_key(raw: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` header value; None when there is no header.

    The draft makes it a Structured Field string (``"abc"``, with ``\\"`` and ``\\\\``
    escapes); a bare ``abc`` is accepted too, as most clients send it. Either way the key is 1
    to ``MAX_KEY_LENGTH`` printable ASCII characters, or ``ApiError`` (400).
    """
    if raw is None:
        return None
    key = raw
    if raw.startswith('"'):
        key = _sf_string(raw)
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise ApiError(INVALID_KEY)
    return key


def _sf_string(raw: str) -> str:
    # RFC 8941 section 4.2.5: only \" and \\ are escapes; an unescaped quote ends the string.
    chars: list[str] = []
    rest = iter(raw[1:])
    for char in rest:
        if char == "\\":
            escaped = next(rest, "")
            if escaped not in ('"', "\\"):
                raise ApiError(INVALID_KEY)
            chars.append(escaped)
        elif char == '"':
            if next(rest, None) is not None:  # something after the closing quote
                raise ApiError(INVALID_KEY)
            return "".join(chars)
        else:
            chars.append(char)
    raise ApiError(INVALID_KEY)  # no closing quote


def fingerprint(data: Any) -> str:
    """SHA-256 (hex) of the parsed request body as canonical JSON: key order and whitespace
    do not make two requests different."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def owner_of(api_key: ApiKey | None, user: Any) -> str:
    """Whose keys these are: the API key's, else the signed-in user's, else everyone's (only
    with ``api.require_auth`` off, on a trusted network)."""
    if api_key is not None:
        return f"key:{api_key.pk}"
    if user is not None:
        return f"user:{user.pk}"
    return "anonymous"


@dataclass(frozen=True)
class Policy:
    retention: timedelta
    # How long a request may still be running on its row (see ``in_progress_window``).
    in_progress: timedelta


@dataclass(frozen=True)
class Seen:
    """What a request found in the row of its key."""

    fingerprint: str
    created_at: datetime
    completed_at: datetime | None


class Verdict(StrEnum):
    REPLAY = "replay"  # answer the row's email id: 200, nothing queued
    DIFFERENT_REQUEST = "different_request"  # 422
    IN_PROGRESS = "in_progress"  # 409: its first request may still be running
    LOOK_AT_RECORD = "look_at_record"  # stale, in progress: its email's record decides
    WITHDRAW = "withdraw"  # stale, its record queued: withdraw it, then take over
    TAKE_OVER = "take_over"  # accept this request anew under the key


def judge(seen: Seen, request_fingerprint: str, now: datetime, policy: Policy) -> Verdict:
    """What a request with ``request_fingerprint`` does about the row ``seen`` of its key."""
    age = now - seen.created_at
    # Never while its request may still run, even with a retention shorter than that.
    if age >= max(policy.retention, policy.in_progress):
        return Verdict.TAKE_OVER  # expired: as if the key had never been sent
    if seen.fingerprint != request_fingerprint:
        return Verdict.DIFFERENT_REQUEST
    if seen.completed_at is not None:
        return Verdict.REPLAY
    if age < policy.in_progress:
        return Verdict.IN_PROGRESS
    return Verdict.LOOK_AT_RECORD


def judge_stale(record_status: str | None) -> Verdict:
    """A row in progress past its window, whose email's record has ``record_status`` (None: no
    record). No record, or a withdrawn one: nothing will be delivered, the key is free again.
    A record a worker claimed (sending, sent, failed, dead) was in SQS: its id is the answer.
    A ``queued`` one may or may not be in SQS (its request died, or its withdrawal failed):
    ``WITHDRAW``, and the key is free once the withdrawal wins over any worker's claim."""
    if record_status is None or record_status == Email.Status.WITHDRAWN:
        return Verdict.TAKE_OVER
    if record_status == Email.Status.QUEUED:
        return Verdict.WITHDRAW
    return Verdict.REPLAY


def in_progress_window() -> timedelta:
    """Longer than any request can hold its row in progress: ``emails.queueing.enqueue``'s
    wait for SQS, as long again for a claim check's upload to S3 (the same client timeouts
    and attempts), and a margin."""
    return timedelta(seconds=2 * enqueue_wait_seconds() + IN_PROGRESS_MARGIN_SECONDS)


def policy() -> Policy:
    hours = settings.GOMAIL.api.idempotency_retention_hours
    return Policy(retention=timedelta(hours=hours), in_progress=in_progress_window())


# --- the rows ------------------------------------------------------------------------------------


@dataclass
class Reservation:
    """The id a request's email gets; ``replayed``: answered before, accept nothing."""

    email_id: str
    replayed: bool = False
    # The row this request holds (None: no header, or a replay).
    row_id: int | None = None

    def complete(self) -> None:
        """The email was accepted: its 200 may be replayed. A database failing now leaves the
        row in progress; a retry past the window finds the record and answers it all the same."""
        if self.row_id is None:
            return
        try:
            _mine(self).update(completed_at=timezone.now())
        except DatabaseError:
            logger.exception("could not complete %s of email %s", HEADER, self.email_id)

    def confirm(self) -> bool:
        """Right before the email is recorded: whether this request still holds its key (a
        retry past the window may have taken it over while this one was slow). It also
        renews the row's in-progress window, so that no retry takes it over from now on."""
        if self.row_id is None:
            return True
        try:
            return bool(_mine(self).update(created_at=timezone.now()))
        except DatabaseError:
            # The record's write decides then: it fails too, or the row's own window (long
            # enough for the request) still holds it.
            logger.exception("could not renew %s of email %s", HEADER, self.email_id)
            return True

    def release(self) -> None:
        """Nothing was accepted (a 503, a message too large): forget the key so the client may
        retry with it. Kept when the email's record says it may be on its way after all (its
        withdrawal failed): a retry past the window is then answered with this id."""
        if self.row_id is None:
            return
        try:
            record_status = _record_status(self.email_id)
            if judge_stale(record_status) is Verdict.TAKE_OVER:
                _mine(self).delete()
        except DatabaseError:
            logger.exception("could not release %s of email %s", HEADER, self.email_id)


def _mine(reservation: Reservation) -> Any:
    # Conditional on the email id: a row taken over since is another request's.
    return IdempotencyKey.objects.filter(pk=reservation.row_id, email_id=reservation.email_id)


def _record_status(email_id: Any) -> str | None:
    return Email.objects.filter(id=email_id).values_list("status", flat=True).first()


@contextmanager
def reserved(key: str | None, owner: str, data: Any) -> Iterator[Reservation]:
    """Reserve ``key`` of ``owner`` for the request body ``data`` (parsed, validated) around
    its acceptance: the body of the ``with`` accepts the email under the reservation's id,
    unless it is ``replayed``. A normal exit completes the key, an exception releases it.

    Raises ``ApiError`` 422 (the key was used with another request) or 409 (its first request
    is in progress). No ``key``: a fresh id, no row.
    """
    if key is None:
        yield Reservation(str(uuid.uuid4()))
        return
    reservation = _reserve(owner, key, fingerprint(data))
    if reservation.replayed:
        yield reservation
        return
    try:
        yield reservation
    except BaseException:
        reservation.release()
        raise
    reservation.complete()


def _reserve(owner: str, key: str, request_fingerprint: str) -> Reservation:
    rules = policy()
    for _ in range(RESERVE_ATTEMPTS):
        email_id = uuid.uuid4()
        try:
            # Its own savepoint: the failed insert must not spoil an enclosing transaction
            # (PostgreSQL aborts it).
            with transaction.atomic():
                row = IdempotencyKey.objects.create(
                    owner=owner, key=key, fingerprint=request_fingerprint, email_id=email_id
                )
            return Reservation(str(email_id), row_id=row.pk)
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(owner=owner, key=key).first()
        if existing is None:
            continue  # released or deleted since the insert failed: try again
        seen = Seen(existing.fingerprint, existing.created_at, existing.completed_at)
        verdict = judge(seen, request_fingerprint, timezone.now(), rules)
        if verdict is Verdict.LOOK_AT_RECORD:
            verdict = judge_stale(_record_status(existing.email_id))
            if verdict is Verdict.WITHDRAW:
                # A worker that claims it first makes it a replay: it was in SQS after all.
                withdrawn = records.withdraw_id(existing.email_id)
                verdict = Verdict.TAKE_OVER if withdrawn else Verdict.REPLAY
            if verdict is Verdict.REPLAY:
                IdempotencyKey.objects.filter(
                    pk=existing.pk, email_id=existing.email_id, completed_at__isnull=True
                ).update(completed_at=timezone.now())
        if verdict is Verdict.REPLAY:
            return Reservation(str(existing.email_id), replayed=True)
        if verdict is Verdict.DIFFERENT_REQUEST:
            raise ApiError(DIFFERENT_REQUEST, status.HTTP_422_UNPROCESSABLE_ENTITY)
        if verdict is Verdict.IN_PROGRESS:
            raise ApiError(IN_PROGRESS, status.HTTP_409_CONFLICT)
        if _take_over(existing, request_fingerprint, email_id):
            return Reservation(str(email_id), row_id=existing.pk)
    raise ApiError(IN_PROGRESS, status.HTTP_409_CONFLICT)


def _take_over(row: IdempotencyKey, request_fingerprint: str, email_id: uuid.UUID) -> bool:
    """Make ``row`` (as read) this request's, in progress under ``email_id``: one conditional
    UPDATE on the email id read, so of two requests that read the same row only one takes it."""
    # On the created_at read too: a heartbeat of the row's request (``Reservation.confirm``)
    # since then says it is alive, and it keeps the key.
    taken = IdempotencyKey.objects.filter(
        pk=row.pk, email_id=row.email_id, created_at=row.created_at
    ).update(
        fingerprint=request_fingerprint,
        email_id=email_id,
        created_at=timezone.now(),
        completed_at=None,
    )
    return bool(taken)


def delete_expired(now: datetime | None = None) -> int:
    """Delete the keys older than the retention (and past their in-progress window); returns
    how many. The daily ``cleanup_emails`` runs it; until then ``judge`` replaces them."""
    rules = policy()
    cutoff = (now or timezone.now()) - max(rules.retention, rules.in_progress)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
