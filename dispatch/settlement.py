"""Settling a batch's SQS messages: delete the sent, hand back the failed, dead-letter the lost.

``plan_settlement`` decides (pure); ``apply_settlement`` does the SQS calls (thin I/O).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from botocore.exceptions import BotoCoreError, ClientError

from dispatch.inbox import ReceivedMessage
from dispatch.sqs_batches import change_visibility, delete_messages
from emails.wire import SQS_DISALLOWED_CHARACTERS
from gomail_site.aws import aws_client, queue_url
from gomail_site.config import SQS_MAX_MESSAGE_BYTES
from gomail_site.logs import bound_message

logger = logging.getLogger(__name__)

SQS_MAX_VISIBILITY_SECONDS = 43_200
MAX_REASON_LENGTH = 1_000


class Action(StrEnum):
    DELETE = "delete"  # sent (now or before): the message is done
    RETRY = "retry"  # back to the queue after a backoff, for any provider
    DEAD_LETTER = "dead_letter"  # to the dead-letter queue with its reason, then deleted
    RECHECK = "recheck"  # another worker holds it: look again after exactly retry_after


@dataclass(frozen=True)
class Verdict:
    """What becomes of one message of a batch."""

    message: ReceivedMessage
    action: Action
    reason: str = ""
    retry_after_seconds: float | None = None
    email_id: str | None = None
    # RETRY: the email's provider calls so far (its record's attempts), the backoff's exponent.
    # None: its receives stand in (a message handed back unsent is received again too, so
    # they overcount: a backlog held back by a breaker would otherwise back off for minutes).
    failures: int | None = None


@dataclass
class SettlementPlan:
    deletes: dict[str, list[ReceivedMessage]] = field(default_factory=lambda: defaultdict(list))
    retries: dict[str, list[tuple[ReceivedMessage, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    dead_letters: list[Verdict] = field(default_factory=list)


def backoff_seconds(
    receive_count: int, base: int, cap: int, retry_after: float | None = None
) -> int:
    """How long a failed message stays invisible: ``base * 2^(failures-1)`` up to ``cap``,
    but never less than a provider's own ``retry_after``, and within SQS's 12 hours."""
    exponent = min(max(receive_count - 1, 0), 30)
    delay = min(cap, base * 2**exponent)
    if retry_after is not None:
        delay = max(delay, math.ceil(retry_after))
    return min(delay, SQS_MAX_VISIBILITY_SECONDS)


def plan_settlement(verdicts: Sequence[Verdict], base: int, cap: int) -> SettlementPlan:
    """Group verdicts into the SQS calls that settle them. Pure."""
    plan = SettlementPlan()
    for verdict in verdicts:
        message = verdict.message
        if verdict.action is Action.DELETE:
            plan.deletes[message.queue].append(message)
        elif verdict.action is Action.RETRY:
            count = verdict.failures if verdict.failures is not None else message.receive_count
            delay = backoff_seconds(count, base, cap, verdict.retry_after_seconds)
            plan.retries[message.queue].append((message, delay))
        elif verdict.action is Action.RECHECK:
            # Not a failure: no backoff, just the time until the other holder's claim lapses.
            delay = min(
                max(1, math.ceil(verdict.retry_after_seconds or 0)), SQS_MAX_VISIBILITY_SECONDS
            )
            plan.retries[message.queue].append((message, delay))
        elif verdict.action is Action.DEAD_LETTER:
            plan.dead_letters.append(verdict)
    return plan


def apply_settlement(plan: SettlementPlan, dead_letter_queue: str) -> list[Verdict]:
    """Make the SQS calls of ``plan``; returns the dead-letter verdicts that reached the DLQ.

    A message is deleted from its queue only after its dead-letter copy was accepted; any
    call that fails leaves the message to reappear after its visibility timeout, so a
    failure here can delay a message but never lose it.
    """
    dead_lettered = [v for v in plan.dead_letters if _send_to_dead_letters(v, dead_letter_queue)]
    deletes = {queue: list(messages) for queue, messages in plan.deletes.items()}
    for verdict in dead_lettered:
        deletes.setdefault(verdict.message.queue, []).append(verdict.message)
    for queue, messages in deletes.items():
        delete_messages(queue, [message.receipt_handle for message in messages])
    for queue, delayed in plan.retries.items():
        change_visibility(queue, [(message.receipt_handle, delay) for message, delay in delayed])
    return dead_lettered


# A batch whose oldest message was read longer ago than this part of the visibility timeout
# extends its messages' visibility before sending; a younger one has most of it left, and
# nobody else can have read its messages yet.
EXTEND_AFTER_FRACTION = 1 / 6


def needs_extension(messages: Sequence[ReceivedMessage], now: float, visibility: int) -> bool:
    """Whether a batch starting at ``now`` must extend its messages' visibility first. Pure.

    A message read at an unknown time (``received_at`` 0) always does."""
    oldest = min((message.received_at for message in messages), default=now)
    return now - oldest > visibility * EXTEND_AFTER_FRACTION


def extend_visibility(messages: Sequence[ReceivedMessage], seconds: int) -> list[ReceivedMessage]:
    """Hide ``messages`` for ``seconds`` more, before sending them; returns those it could.

    A batch that starts late must not race a second read of its messages: a message whose
    receipt handle SQS refuses was read again by someone else and is left to them.
    """
    kept: list[ReceivedMessage] = []
    by_queue: dict[str, list[ReceivedMessage]] = defaultdict(list)
    for message in messages:
        by_queue[message.queue].append(message)
    for queue, queued in by_queue.items():
        failed = change_visibility(queue, [(message.receipt_handle, seconds) for message in queued])
        kept.extend(message for index, message in enumerate(queued) if index not in failed)
    return kept


# What SQS counts for one String attribute besides its name and value ("String").
ATTRIBUTE_TYPE_BYTES = len("String")


def fit_attributes(attributes: dict[str, str], budget: int) -> dict[str, str]:
    """The attributes, in order of importance, that fit in ``budget`` bytes (SQS counts the
    body and every attribute's name, type and value against one 256 KiB limit). The first,
    the reason, is cut to fit rather than dropped while a few bytes remain. Pure."""
    kept: dict[str, str] = {}
    for index, (name, value) in enumerate(attributes.items()):
        cost = len(name) + ATTRIBUTE_TYPE_BYTES
        room = budget - cost
        encoded = value.encode("utf-8")
        if len(encoded) <= room:
            kept[name] = value
            budget -= cost + len(encoded)
        elif index == 0 and room > 16:
            kept[name] = encoded[: room - 3].decode("utf-8", errors="ignore") + "..."
            budget -= cost + len(kept[name].encode("utf-8"))
    return kept


def _send_to_dead_letters(verdict: Verdict, dead_letter_queue: str) -> bool:
    message = verdict.message
    # SQS refuses the whole message for one character outside its set in an attribute: the
    # copy would never be accepted and the message would come back forever.
    reason = SQS_DISALLOWED_CHARACTERS.sub("\ufffd", verdict.reason[:MAX_REASON_LENGTH])
    wanted = {
        "reason": reason or "unknown",
        "emailId": verdict.email_id or "",
        "sourceQueue": message.queue,
        "sourceMessageId": message.sqs_message_id,
        "receiveCount": str(message.receive_count),
    }
    attributes = fit_attributes(
        {name: value for name, value in wanted.items() if value},
        SQS_MAX_MESSAGE_BYTES - len(message.body.encode("utf-8")),
    )
    with bound_message(verdict.email_id):
        return _send_copy(message, attributes, dead_letter_queue, verdict.email_id)


def _send_copy(
    message: ReceivedMessage,
    attributes: dict[str, str],
    dead_letter_queue: str,
    email_id: str | None,
) -> bool:
    try:
        aws_client("sqs").send_message(
            QueueUrl=queue_url(dead_letter_queue),
            MessageBody=message.body,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in attributes.items()
            },
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning("could not dead-letter %s: %s", message.sqs_message_id, exc)
        return False
    logger.info(
        "dead-lettered message %s (email %s): %s",
        message.sqs_message_id,
        email_id,
        attributes.get("reason", ""),
    )
    return True
