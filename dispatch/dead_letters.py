"""The dead-letter queue, for operators: look without losing, redrive, delete; and the
reconciliation of the messages SQS moved there by itself.

Peeking receives messages (so SQS hides them for a moment) and then makes every one of them
visible again at once, so a look never delays or hides anything.

A redrive queues the email's record again *before* it sends the copy (a worker reading the
copy at once must find it claimable), and deletes a dead letter only once its copy is known
to be in an incoming queue: what does not go through is left, visible, and reported. Only a
``dead`` record goes back to ``queued`` (``plan_redrive``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from dispatch.sqs_batches import SQS_BATCH_LIMIT, change_visibility, delete_messages
from emails import claim_check, records
from emails.models import Email
from emails.wire import UndecodableMessage, decode, email_id_of
from gomail_site.aws import aws_client, queue_url

logger = logging.getLogger(__name__)

# Long enough that repeated receives during one scan return other messages, short enough
# that a crash mid-scan hides nothing for long.
SCAN_VISIBILITY_SECONDS = 30
PREVIEW_LENGTH = 200
# The messages one reconciliation run looks at: a scan costs a receive per ten, and the
# messages SQS moved are a few among Gomail's own (SQS returns them in no fixed order, so
# successive runs see others).
RECONCILE_LIMIT = 200
LOST_HOLD = "SQS would not keep it hidden (another receive may hold it): not redriven"


def moved_by_sqs_reason(receives: int) -> str:
    return f"moved by SQS after {receives} receives"


@dataclass(frozen=True)
class DeadLetterMessage:
    sqs_message_id: str
    receipt_handle: str
    body: str
    reason: str
    source_queue: str
    email_id: str
    receive_count: int
    dead_lettered_at: datetime | None
    # SQS's own redrive (``maxReceiveCount``) moved it: no attributes of Gomail's, the email
    # id read from the body.
    moved_by_sqs: bool = False

    @property
    def summary(self) -> str:
        """What the message is, without its body: addresses and subject, or a preview."""
        try:
            email = decode(self.body, self.sqs_message_id)
        except UndecodableMessage:
            preview = self.body[:PREVIEW_LENGTH]
            return f"(undecodable) {preview!r}"
        return f"{email.from_email} → {email.to_email}: {email.subject!r}"


def _dead_letter_queue() -> str:
    return settings.GOMAIL.sqs.dead_letter_queue


def _parse(message: dict) -> DeadLetterMessage:
    attributes = {
        name: value.get("StringValue", "")
        for name, value in message.get("MessageAttributes", {}).items()
    }
    system = message.get("Attributes", {})
    sent = system.get("SentTimestamp")
    common = {
        "sqs_message_id": message["MessageId"],
        "receipt_handle": message["ReceiptHandle"],
        "body": message["Body"],
        "dead_lettered_at": datetime.fromtimestamp(int(sent) / 1000, tz=UTC) if sent else None,
    }
    if attributes.get("reason"):
        receives = attributes.get("receiveCount")
        return DeadLetterMessage(
            **common,
            reason=attributes["reason"],
            source_queue=attributes.get("sourceQueue", ""),
            email_id=attributes.get("emailId", ""),
            receive_count=int(receives or system.get("ApproximateReceiveCount", 0)),
        )
    # SQS's count goes on in the dead-letter queue: this scan's own receive is not the
    # source queue's (earlier looks are counted too; the first look, the reconciliation's
    # usually, reads the source's exactly).
    receives = max(int(system.get("ApproximateReceiveCount", 1)) - 1, 0)
    return DeadLetterMessage(
        **common,
        reason=moved_by_sqs_reason(receives),
        source_queue="",
        email_id=email_id_of(message["Body"], message["MessageId"]) or "",
        receive_count=receives,
        moved_by_sqs=True,
    )


def _receive(count: int) -> list[DeadLetterMessage]:
    """One receive of up to ``count`` (at most ten) messages, hidden for the scan's moment."""
    answer = aws_client("sqs").receive_message(
        QueueUrl=queue_url(_dead_letter_queue()),
        MaxNumberOfMessages=count,
        VisibilityTimeout=SCAN_VISIBILITY_SECONDS,
        WaitTimeSeconds=0,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )
    return [_parse(item) for item in answer.get("Messages", [])]


def _scan(limit: int) -> list[DeadLetterMessage]:
    """Receive up to ``limit`` distinct messages; they stay hidden until ``_restore``."""
    found: dict[str, DeadLetterMessage] = {}
    while len(found) < limit:
        messages = _receive(min(SQS_BATCH_LIMIT, limit - len(found)))
        fresh = [message for message in messages if message.sqs_message_id not in found]
        if not fresh:
            break
        found.update((message.sqs_message_id, message) for message in fresh)
    return list(found.values())


def _restore(messages: Collection[DeadLetterMessage]) -> None:
    # One that fails stays hidden for the scan's visibility timeout, not longer.
    change_visibility(_dead_letter_queue(), [(m.receipt_handle, 0) for m in messages])


def _renew_hold(messages: list[DeadLetterMessage]) -> set[str]:
    """Hide ``messages`` for the scan's moment again, from now; returns the ids of those SQS
    did not hide (their receipt may be stale: another receive may hold them now)."""
    failed = change_visibility(
        _dead_letter_queue(), [(m.receipt_handle, SCAN_VISIBILITY_SECONDS) for m in messages]
    )
    return {message.sqs_message_id for index, message in enumerate(messages) if index in failed}


def _delete(messages: list[DeadLetterMessage]) -> list[DeadLetterMessage]:
    """Delete ``messages``; returns those SQS did not delete (still hidden, for a moment)."""
    failed = delete_messages(_dead_letter_queue(), [m.receipt_handle for m in messages])
    return [message for index, message in enumerate(messages) if index in failed]


def peek(limit: int = 100) -> list[DeadLetterMessage]:
    """Up to ``limit`` dead-letter messages, oldest first; none is hidden afterwards."""
    messages = _scan(limit)
    _restore(messages)
    return sorted(messages, key=lambda m: m.dead_lettered_at or datetime.min.replace(tzinfo=UTC))


def _select(
    ids: Collection[str] | None, limit: int
) -> tuple[list[DeadLetterMessage], list[DeadLetterMessage]]:
    scanned = _scan(limit)
    chosen = [m for m in scanned if ids is None or m.sqs_message_id in ids]
    others = [m for m in scanned if ids is not None and m.sqs_message_id not in ids]
    return chosen, others


def _reconcile(messages: Iterable[DeadLetterMessage]) -> int:
    # A claim younger than the incoming queues' visibility timeout is a worker's, sending.
    claimed_before = datetime.now(tz=UTC) - timedelta(
        seconds=settings.GOMAIL.sqs.visibility_timeout_seconds
    )
    return sum(
        records.record_moved_by_sqs(
            message.email_id,
            message.reason,
            sent_at=message.dead_lettered_at,
            claimed_before=claimed_before,
        )
        for message in messages
        if message.moved_by_sqs and message.email_id
    )


def reconcile_moved_by_sqs(limit: int = RECONCILE_LIMIT) -> int:
    """Mark ``dead`` the records of the messages SQS moved to the dead-letter queue by itself
    (after ``sqs.max_receive_count`` receives, without a reason), among the first ``limit``;
    a record already final stays as it is. Hides nothing. Returns how many records changed."""
    reconciled = _reconcile(peek(limit))
    if reconciled:
        logger.warning("%d email(s) moved to the dead-letter queue by SQS marked dead", reconciled)
    return reconciled


# The records one sweep marks: a few at most in practice (each is a rare failure's), bounded
# all the same; the next run takes the rest.
EXPIRE_LIMIT = 1000


def no_message_reason(retention_seconds: int) -> str:
    return (
        "no message left: older than the incoming queues' retention "
        f"({retention_seconds / 86_400:g} days)"
    )


def expire_messageless(limit: int = EXPIRE_LIMIT) -> int:
    """Mark ``dead`` the waiting records older than the incoming queues' retention
    (``sqs.message_retention_seconds``, from their acceptance or their redrive): SQS has
    deleted their message for sure, so nothing will ever deliver them nor dead-letter them
    (the database failed after a failed SQS call, before the withdrawal; a queue removed from
    the configuration). A claim younger than the visibility timeout is a worker's, left
    alone. Returns how many records changed."""
    sqs = settings.GOMAIL.sqs
    now = datetime.now(tz=UTC)
    expired = records.expire_unqueued(
        now - timedelta(seconds=sqs.message_retention_seconds),
        now - timedelta(seconds=sqs.visibility_timeout_seconds),
        no_message_reason(sqs.message_retention_seconds),
        limit,
    )
    if expired:
        logger.warning("%d email(s) older than the incoming queues' retention marked dead", expired)
    return expired


class RedriveStep(StrEnum):
    REQUEUE = "requeue"  # a dead record: queued again, then its copy sent
    MOVE = "move"  # no record (undecodable, another producer's): the copy alone
    LEFTOVER = "leftover"  # its email was sent: the dead letter is deleted, nothing sent
    SKIP = "skip"  # left in the dead-letter queue, with why


@dataclass(frozen=True)
class RecordState:
    status: str
    resend_claimed: bool = False


def plan_redrive(record: RecordState | None) -> tuple[RedriveStep, str]:
    """What a redrive does with a dead letter whose email's record is ``record`` (None: no
    record), and why when it is not redriven. Pure.

    Only a dead record goes back to ``queued``: a second copy of a sent email would otherwise
    flip it and have it sent again. A queued, sending or failed one has a copy on its way
    already (a dead letter an earlier redrive could not delete); a withdrawn one was answered
    503 and must not be delivered; a dead one a resend claimed is being replaced by its copy.
    """
    if record is None:
        return RedriveStep.MOVE, ""
    if record.status == Email.Status.SENT:
        return RedriveStep.LEFTOVER, "its email was sent: a leftover copy, deleted"
    if record.status != Email.Status.DEAD:
        return RedriveStep.SKIP, f"its email is {record.status}, not dead: not redriven"
    if record.resend_claimed:
        return RedriveStep.SKIP, "its email is resent (or being resent) as a copy: not redriven"
    return RedriveStep.REQUEUE, ""


@dataclass
class RedriveReport:
    """What a redrive did, by dead-letter message id."""

    moved: int = 0  # copies now in an incoming queue
    leftovers: list[str] = field(default_factory=list)  # of sent emails, deleted unsent
    skipped: dict[str, str] = field(default_factory=dict)  # left, with why
    failed: dict[str, str] = field(default_factory=dict)  # copy refused by SQS: left
    # Copied (or leftovers) whose dead letter SQS did not delete: left, and not redriven
    # again while their email is on its way (``plan_redrive``).
    undeleted: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line for each message not simply moved, for the operator."""
        lines = [f"{message_id}: {why}" for message_id, why in self.skipped.items()]
        lines += [
            f"{message_id}: SQS refused the copy ({error}): left"
            for message_id, error in self.failed.items()
        ]
        lines += [
            f"{message_id}: its email was sent: a leftover, deleted"
            for message_id in self.leftovers
            if message_id not in self.undeleted
        ]
        lines += [f"{message_id}: SQS did not delete it: left" for message_id in self.undeleted]
        return lines


def _record_states(messages: Iterable[DeadLetterMessage]) -> Mapping[str, RecordState]:
    ids = {message.email_id for message in messages if _is_uuid(message.email_id)}
    rows = Email.objects.filter(id__in=ids).values_list("id", "status", "resent_at")
    return {
        str(email_id): RecordState(status, resent_at is not None)
        for email_id, status, resent_at in rows
    }


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def redrive(ids: Collection[str] | None = None, limit: int = 1000) -> RedriveReport:
    """Move the messages ``ids`` (all when None) back to an incoming queue: the one they came
    from when it is still configured, else the first. A dead record is queued again first,
    its provider rejections forgotten, and dead again if SQS refused the copy; a message SQS
    moved by itself has its record marked dead first (``reconcile_moved_by_sqs``). A dead
    letter is deleted only once its copy is in an incoming queue (or its email was sent).

    In chunks of one receive (ten dead letters at most): each chunk is done, its dead
    letters deleted, before the next is received, so that the redrive never acts on a dead
    letter whose hold (``SCAN_VISIBILITY_SECONDS``) ran out, one that a reconciliation or a
    look could be receiving at the same time. What is left (not chosen, not redriven, not
    deleted) stays hidden until the end, so that the receives move on, then visible at once.
    """
    wanted = None if ids is None else set(ids)
    report = RedriveReport()
    seen: set[str] = set()
    left: dict[str, DeadLetterMessage] = {}
    try:
        while len(seen) < limit and (wanted is None or not wanted <= seen):
            received_at = time.monotonic()
            received = _receive(min(SQS_BATCH_LIMIT, limit - len(seen)))
            for message in received:
                if message.sqs_message_id in left:  # its hold ran out: the new receipt
                    left[message.sqs_message_id] = message
            fresh = [message for message in received if message.sqs_message_id not in seen]
            if not fresh:
                break
            seen.update(message.sqs_message_id for message in fresh)
            chosen = [m for m in fresh if wanted is None or m.sqs_message_id in wanted]
            picked = {m.sqs_message_id for m in chosen}
            left.update((m.sqs_message_id, m) for m in fresh if m.sqs_message_id not in picked)
            _redrive_chunk(chosen, received_at, report, left)
    finally:
        _restore(list(left.values()))
    return report


def _redrive_chunk(
    chosen: list[DeadLetterMessage],
    received_at: float,
    report: RedriveReport,
    left: dict[str, DeadLetterMessage],
) -> None:
    """Redrive one receive's ``chosen`` dead letters (received at ``received_at``, monotonic)
    and delete those done; what is not done (or not deleted) goes to ``left``. Before each
    step, a hold half run out is renewed; a dead letter whose hold SQS would not renew is
    not acted on."""
    incoming = settings.GOMAIL.sqs.incoming_queues
    done: list[DeadLetterMessage] = []  # copied, or leftovers: to delete
    held_since = received_at
    unheld: set[str] = set()  # their hold could not be renewed: not acted on
    try:
        _reconcile(chosen)
        states = _record_states(chosen)
        for message in chosen:
            if time.monotonic() - held_since >= SCAN_VISIBILITY_SECONDS / 2:
                held_since = time.monotonic()
                unheld |= _renew_hold(chosen)
            if message.sqs_message_id in unheld:
                report.skipped[message.sqs_message_id] = LOST_HOLD
                continue
            step, why = plan_redrive(states.get(message.email_id))
            if step is RedriveStep.SKIP:
                report.skipped[message.sqs_message_id] = why
                continue
            if step is RedriveStep.LEFTOVER:
                report.leftovers.append(message.sqs_message_id)
                done.append(message)
                continue
            target = message.source_queue if message.source_queue in incoming else incoming[0]
            before = None
            if step is RedriveStep.REQUEUE:
                before = records.requeue_dead(message.email_id, target)
                if before is None:
                    report.skipped[message.sqs_message_id] = "its email changed meanwhile"
                    continue
            claim_check.renew(message.body)
            try:
                aws_client("sqs").send_message(QueueUrl=queue_url(target), MessageBody=message.body)
            except (BotoCoreError, ClientError) as exc:
                logger.warning("could not redrive %s: %s", message.sqs_message_id, exc)
                if before is not None:
                    records.return_to_dead(before)
                report.failed[message.sqs_message_id] = str(exc)
                continue
            report.moved += 1
            done.append(message)
    finally:
        # What is not known to be copied (or a leftover) stays, visible again at the end.
        undeleted = _delete(done)
        report.undeleted += [message.sqs_message_id for message in undeleted]
        handled = {message.sqs_message_id for message in done}
        untouched = [message for message in chosen if message.sqs_message_id not in handled]
        left.update((message.sqs_message_id, message) for message in [*undeleted, *untouched])


def delete(ids: Collection[str], limit: int = 1000) -> int:
    """Delete the dead-letter messages ``ids`` for good; returns how many were deleted."""
    chosen, others = _select(set(ids), limit)
    undeleted = _delete(chosen)
    _restore([*others, *undeleted])
    return len(chosen) - len(undeleted)


def find_body(email_id: str, limit: int = 1000) -> DeadLetterMessage | None:
    """The dead-letter message of email ``email_id``, if it is there (left visible)."""
    scanned = _scan(limit)
    _restore(scanned)
    for message in scanned:
        if message.email_id == email_id:
            return message
    return None
