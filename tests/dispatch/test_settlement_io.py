"""``apply_settlement`` and ``extend_visibility`` against the real test moto server."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from dispatch.inbox import receive
from dispatch.settlement import (
    Action,
    Verdict,
    apply_settlement,
    extend_visibility,
    plan_settlement,
)
from emails.wire import has_disallowed_characters
from gomail_site.aws import aws_client, queue_url
from tests.dispatch.realparts import (
    dead_letter_reason,
    dead_letters,
    incoming_queue,
    levels,
    put,
    receive_exactly,
)

pytestmark = pytest.mark.django_db


def settle(verdicts, base=1, cap=2):
    return apply_settlement(
        plan_settlement(verdicts, base, cap), settings.GOMAIL.sqs.dead_letter_queue
    )


def test_delete_removes_the_messages_from_their_queues(aws):
    first, second = incoming_queue(0), incoming_queue(1)
    for index in range(12):  # more than one SQS batch call's worth on the first queue
        put(f'{{"n": {index}}}', first)
    put('{"n": "other"}', second)
    messages = receive_exactly(12, first) + receive_exactly(1, second)

    dead = settle([Verdict(message, Action.DELETE) for message in messages])

    assert dead == []
    assert levels(first) == (0, 0)
    assert levels(second) == (0, 0)


def test_retry_hides_the_message_for_its_backoff_then_it_comes_back(aws):
    queue = incoming_queue()
    put('{"n": 1}', queue)
    [message] = receive_exactly(1, queue)
    assert message.receive_count == 1
    # Make it visible at once first: what hides it afterwards is the settlement alone.
    aws_client("sqs").change_message_visibility(
        QueueUrl=queue_url(queue), ReceiptHandle=message.receipt_handle, VisibilityTimeout=0
    )

    started = time.monotonic()
    settle([Verdict(message, Action.RETRY, reason="HTTP 500")], base=1, cap=2)

    assert receive(queue, 10) == []  # not receivable right after
    again = []
    while not again and time.monotonic() - started < 15:
        time.sleep(0.1)
        again = receive(queue, 10)
    waited = time.monotonic() - started
    assert [m.sqs_message_id for m in again] == [message.sqs_message_id]
    assert again[0].receive_count == 2
    # Back after the backoff (1 s: base 1, first receive), long before the queue's 30 s
    # visibility timeout; the bound leaves a slow machine 15 times the backoff.
    assert 0.9 <= waited < 15


def test_retry_uses_the_provider_retry_after(aws):
    queue = incoming_queue()
    put('{"n": 1}', queue)
    [message] = receive_exactly(1, queue)
    # Visible at once first: what hides it afterwards is the settlement alone.
    aws_client("sqs").change_message_visibility(
        QueueUrl=queue_url(queue), ReceiptHandle=message.receipt_handle, VisibilityTimeout=0
    )

    settle([Verdict(message, Action.RETRY, retry_after_seconds=20)], base=1, cap=2)

    time.sleep(1.5)  # past the 1 s backoff: only retry_after (20 s) keeps it hidden
    assert receive(queue, 10) == []
    assert levels(queue) == (0, 1)


def test_dead_letter_copies_the_body_with_its_reason_then_deletes_the_original(aws):
    queue = incoming_queue(1)
    body = '{"email": {"toEmail": "x@example.org"}, "note": "é 🚀 \\"quoted\\""}'
    put(body, queue)
    [message] = receive_exactly(1, queue)
    verdict = Verdict(
        message, Action.DEAD_LETTER, reason="rejected by every provider", email_id="e-1"
    )

    dead = settle([verdict])

    assert dead == [verdict]
    assert levels(queue) == (0, 0)
    [copy] = dead_letters()
    assert copy["Body"] == body
    attributes = {name: value["StringValue"] for name, value in copy["MessageAttributes"].items()}
    assert attributes["reason"] == "rejected by every provider"
    assert attributes["sourceQueue"] == queue
    assert attributes["emailId"] == "e-1"
    assert attributes["sourceMessageId"] == message.sqs_message_id


def test_dead_letter_without_an_email_id_or_reason_still_says_why(aws):
    put("not json", incoming_queue())
    [message] = receive_exactly(1, incoming_queue())

    settle([Verdict(message, Action.DEAD_LETTER)])

    [copy] = dead_letters()
    assert dead_letter_reason(copy) == "unknown"
    assert "emailId" not in copy["MessageAttributes"]


def test_a_long_reason_is_cut_not_refused(aws):
    put("x", incoming_queue())
    [message] = receive_exactly(1, incoming_queue())

    dead = settle([Verdict(message, Action.DEAD_LETTER, reason="r" * 5_000)])

    assert len(dead) == 1
    assert len(dead_letter_reason(dead_letters()[0])) == 1_000


def test_a_reason_with_characters_sqs_refuses_is_cleaned_not_refused(aws):
    # Real SQS refuses an attribute value with such characters (moto accepts them): the copy
    # would never reach the dead-letter queue and the message would come back forever.
    put("x", incoming_queue())
    [message] = receive_exactly(1, incoming_queue())

    dead = settle([Verdict(message, Action.DEAD_LETTER, reason="bad \x00 address \ufffe\x1b.")])

    assert len(dead) == 1
    reason = dead_letter_reason(dead_letters()[0])
    assert not has_disallowed_characters(reason)
    assert reason.startswith("bad ") and reason.endswith(" address \ufffd\ufffd.")


def test_when_the_dead_letter_queue_is_missing_the_original_is_kept(aws):
    queue = incoming_queue()
    put('{"n": "keep me"}', queue)
    put('{"n": "delete me"}', queue)
    messages = receive_exactly(2, queue)
    keep = next(m for m in messages if "keep" in m.body)
    done = next(m for m in messages if "delete" in m.body)
    aws_client("sqs").delete_queue(QueueUrl=aws.dead_letter_url)

    dead = settle(
        [
            Verdict(keep, Action.DEAD_LETTER, reason="undecodable"),
            Verdict(done, Action.DELETE),
        ]
    )

    assert dead == []
    assert levels(queue) == (0, 1)  # the kept one is still in flight, the other is gone
    aws_client("sqs").change_message_visibility(
        QueueUrl=queue_url(queue), ReceiptHandle=keep.receipt_handle, VisibilityTimeout=0
    )
    assert [m.body for m in receive(queue, 10)] == [keep.body]


def test_extend_visibility_keeps_the_messages_hidden_longer(aws):
    queue = incoming_queue()
    put('{"n": 1}', queue)
    [message] = receive_exactly(1, queue)
    sqs = aws_client("sqs")
    sqs.change_message_visibility(
        QueueUrl=queue_url(queue), ReceiptHandle=message.receipt_handle, VisibilityTimeout=1
    )

    kept = extend_visibility([message], 30)

    assert kept == [message]
    time.sleep(1.5)
    assert receive(queue, 10) == []


def test_extend_visibility_leaves_out_what_it_could_not_extend(aws):
    queue = incoming_queue()
    put('{"n": 1}', queue)
    [message] = receive_exactly(1, queue)
    gone = type(message)(
        queue=queue,
        receipt_handle="not-a-receipt-handle",
        sqs_message_id="gone",
        body="{}",
    )

    kept = extend_visibility([gone, message], 30)

    assert kept == [message]
