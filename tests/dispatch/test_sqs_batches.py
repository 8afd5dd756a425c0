"""``dispatch.sqs_batches`` against the test moto's SQS: ten entries a call, and the failed
entries reported by their index in the caller's list (not in their call's)."""

from __future__ import annotations

from typing import Any

from dispatch.sqs_batches import change_visibility, delete_messages
from tests.dispatch.realparts import incoming_queue, levels, put, receive_exactly
from tests.dispatch.sqs_hooks import sqs_hook, unreachable


def test_delete_in_calls_of_ten(aws):
    for index in range(23):
        put(f'{{"n": {index}}}')
    handles = [message.receipt_handle for message in receive_exactly(23)]
    calls: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        calls.append(len(params["Entries"]))

    with sqs_hook("before-parameter-build.sqs.DeleteMessageBatch", count):
        failed = delete_messages(incoming_queue(), handles)

    assert failed == set()
    assert calls == [10, 10, 3]
    assert levels(incoming_queue()) == (0, 0)


def test_a_failed_call_reports_its_entries_by_their_index_in_the_whole_list(aws):
    for index in range(12):
        put(f'{{"n": {index}}}')
    messages = receive_exactly(12)
    calls = 0

    def fail_the_second_call(**kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            unreachable(**kwargs)

    with sqs_hook("before-call.sqs.ChangeMessageVisibilityBatch", fail_the_second_call):
        failed = change_visibility(incoming_queue(), [(m.receipt_handle, 0) for m in messages])

    assert failed == {10, 11}
    assert levels(incoming_queue()) == (10, 2)
