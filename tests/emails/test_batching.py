"""The API's SendMessageBatch gathering: the pure grouping and answer reading, then the
batcher's thread with a recording ``send_batch`` in place of SQS (its SQS calls are proven
against moto by the send API tests)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from emails.batching import EntryFailed, Pending, SendBatcher, entry_outcomes, next_batch


def pending(queue: str, size: int = 1) -> Pending:
    return Pending(queue_url=queue, body="x" * size, size=size)


def test_a_batch_takes_the_oldest_queue_up_to_ten_in_order():
    entries = [pending("a") for _ in range(12)] + [pending("b")]
    batch, rest = next_batch(entries, max_entries=10, max_bytes=1000)
    assert batch == entries[:10]
    assert rest == entries[10:]


def test_other_queues_wait_in_place_and_the_oldest_always_goes():
    a1, b1, a2, b2 = pending("a"), pending("b"), pending("a"), pending("b")
    batch, rest = next_batch([b1, a1, a2, b2], max_entries=10, max_bytes=1000)
    assert batch == [b1, b2]
    assert rest == [a1, a2]


def test_the_byte_limit_holds_but_an_oversized_oldest_still_goes_alone():
    big, small1, small2 = pending("a", 900), pending("a", 60), pending("a", 60)
    batch, rest = next_batch([big, small1, small2], max_entries=10, max_bytes=1000)
    assert batch == [big, small1]
    assert rest == [small2]
    assert next_batch([], 10, 1000) == ([], [])


def test_each_entry_gets_its_own_outcome_and_silence_is_a_failure():
    answer = {
        "Successful": [{"Id": "2", "MessageId": "m2"}, {"Id": "0", "MessageId": "m0"}],
        "Failed": [{"Id": "1", "Code": "InternalError", "Message": "try again"}],
    }
    first, second, third, fourth = entry_outcomes(answer, 4)
    assert (first, third) == ("m0", "m2")
    assert isinstance(second, EntryFailed) and str(second) == "InternalError: try again"
    assert isinstance(fourth, EntryFailed)


class RecordingSqs:
    """Answers every entry but the bodies listed in ``refuse``; records each call's size.
    Each call waits on ``gate`` so that a test can let requests gather behind it."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.refuse = refuse
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, url: str, entries: list[dict[str, str]]) -> dict:
        self.gate.wait(5)
        self.calls.append([e["MessageBody"] for e in entries])
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": f"id-{e['MessageBody']}"}
                for e in entries
                if e["MessageBody"] not in self.refuse
            ],
            "Failed": [
                {"Id": e["Id"], "Code": "Refused", "Message": "no"}
                for e in entries
                if e["MessageBody"] in self.refuse
            ],
        }


def test_concurrent_messages_leave_together_and_each_hears_its_own_answer():
    sqs = RecordingSqs(refuse=frozenset({"m3"}))
    batcher = SendBatcher(sqs, linger=lambda: 0.0, max_bytes=262_144)
    sqs.gate.clear()  # the first call holds on: the other nineteen gather behind it

    def send(i: int) -> str:
        try:
            return batcher.send("q", f"m{i}", 2, timeout=10)
        except EntryFailed as exc:
            return f"failed: {exc}"

    with ThreadPoolExecutor(20) as pool:
        results = [pool.submit(send, i) for i in range(20)]
        threading.Timer(0.3, sqs.gate.set).start()
        answers = [r.result(15) for r in results]

    assert answers[3] == "failed: Refused: no"
    assert [a for i, a in enumerate(answers) if i != 3] == [f"id-m{i}" for i in range(20) if i != 3]
    assert sorted(b for call in sqs.calls for b in call) == sorted(f"m{i}" for i in range(20))
    assert len(sqs.calls) <= 4  # one first call, then batches of up to ten
    assert all(len(call) <= 10 for call in sqs.calls)


def test_a_failed_call_fails_every_entry_of_its_batch_only():
    outcomes = iter([RuntimeError("connection reset"), None])

    def flaky(url: str, entries: list[dict[str, str]]) -> dict:
        failure = next(outcomes)
        if failure:
            raise failure
        return {"Successful": [{"Id": e["Id"], "MessageId": "ok"} for e in entries]}

    batcher = SendBatcher(flaky, linger=lambda: 0.0, max_bytes=262_144)
    with pytest.raises(EntryFailed, match="connection reset"):
        batcher.send("q", "first", 5, timeout=5)
    assert batcher.send("q", "second", 6, timeout=5) == "ok"


def test_a_batch_waits_for_an_announced_message_but_not_for_ever():
    sqs = RecordingSqs()
    batcher = SendBatcher(sqs, linger=lambda: 2.0, max_bytes=262_144)
    announced = threading.Event()
    release = threading.Event()

    def slow_request() -> str:
        with batcher.arriving() as arrival:
            announced.set()
            release.wait(5)  # its record is being written
            return arrival.send("q", "late", 4, timeout=5)

    with ThreadPoolExecutor(2) as pool:
        late = pool.submit(slow_request)
        announced.wait(5)
        early = pool.submit(batcher.send, "q", "early", 5, 5)
        threading.Timer(0.2, release.set).start()
        assert (early.result(10), late.result(10)) == ("id-early", "id-late")
    assert sqs.calls == [["early", "late"]]

    # An announcement that never sends (its record failed) holds a batch for the linger only.
    batcher_short = SendBatcher(sqs, linger=lambda: 0.05, max_bytes=262_144)
    with batcher_short.arriving():
        assert batcher_short.send("q", "alone", 5, timeout=5) == "id-alone"
