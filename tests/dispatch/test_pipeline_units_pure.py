"""Pure parts of the delivery pipeline: backoff, settlement plans, size-bounded batches, the
task-size estimate, folding pending outcomes, and what a batch's outcome counts. No I/O."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.serialization import dumps as kombu_dumps

from dispatch.health import BatchOutcome, HealthState, Thresholds
from dispatch.health_store import PendingBatch, fold_pending
from dispatch.inbox import ReceivedMessage
from dispatch.providers.errors import ErrorKind
from dispatch.sending import Call, batch_outcome
from dispatch.settlement import (
    SQS_MAX_VISIBILITY_SECONDS,
    Action,
    Verdict,
    backoff_seconds,
    needs_extension,
    plan_settlement,
)
from dispatch.splitting import batches_within
from emails.wire import TASK_PAYLOAD_LIMIT, WireEmail, dispatch_bytes
from gomail_site.celery import app

# --- backoff_seconds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("receive_count", "base", "cap", "retry_after", "expected"),
    [
        # Growth: base * 2^(receives - 1).
        (1, 10, 900, None, 10),
        (2, 10, 900, None, 20),
        (3, 10, 900, None, 40),
        (7, 10, 900, None, 640),
        # Cap.
        (8, 10, 900, None, 900),
        (1_000, 10, 900, None, 900),
        (10**9, 10, 900, None, 900),  # a huge count neither overflows nor takes forever
        # A count below 1 (no attribute) is treated as the first receive.
        (0, 10, 900, None, 10),
        (-3, 10, 900, None, 10),
        # retry_after wins over a shorter backoff, rounded up; a shorter one changes nothing.
        (1, 10, 900, 120, 120),
        (1, 1, 2, 1.2, 2),
        (1, 10, 900, 0.5, 10),
        (3, 10, 900, 5, 40),
        # ... even over the configured cap: the provider said so.
        (1, 10, 900, 3_600, 3_600),
        # SQS's 12 hours bound everything.
        (1, 10, 900, 10**6, SQS_MAX_VISIBILITY_SECONDS),
        (40, 43_200, 43_200, None, SQS_MAX_VISIBILITY_SECONDS),
        (40, 60_000, 90_000, None, SQS_MAX_VISIBILITY_SECONDS),
        # A zero base means no wait unless the provider asked for one.
        (5, 0, 900, None, 0),
        (5, 0, 900, 3, 3),
    ],
)
def test_backoff_seconds(receive_count, base, cap, retry_after, expected):
    delay = backoff_seconds(receive_count, base, cap, retry_after)

    assert delay == expected
    assert isinstance(delay, int)  # SQS wants whole seconds


@given(
    receive_count=st.integers(min_value=-5, max_value=10_000),
    base=st.integers(min_value=0, max_value=43_200),
    extra=st.integers(min_value=0, max_value=43_200),
    retry_after=st.none() | st.floats(min_value=0, max_value=10**7),
)
def test_backoff_seconds_is_monotonic_and_bounded(receive_count, base, extra, retry_after):
    cap = base + extra

    delay = backoff_seconds(receive_count, base, cap, retry_after)
    later = backoff_seconds(receive_count + 1, base, cap, retry_after)

    assert 0 <= delay <= later <= SQS_MAX_VISIBILITY_SECONDS
    if retry_after is None:
        assert delay <= cap
    else:
        assert delay >= min(retry_after, SQS_MAX_VISIBILITY_SECONDS)


# --- plan_settlement ----------------------------------------------------------------------


def received(queue: str = "in-1", receive_count: int = 1, tag: str = "") -> ReceivedMessage:
    tag = tag or uuid.uuid4().hex[:8]
    return ReceivedMessage(
        queue=queue,
        receipt_handle=f"handle-{tag}",
        sqs_message_id=f"id-{tag}",
        body=f'{{"n":"{tag}"}}',
        receive_count=receive_count,
    )


def test_plan_settlement_groups_verdicts_by_action_and_queue():
    d1, d2, d3 = received("in-1", tag="d1"), received("in-2", tag="d2"), received("in-1", tag="d3")
    r1 = received("in-1", receive_count=1, tag="r1")
    r2 = received("in-2", receive_count=3, tag="r2")
    r3 = received("in-1", receive_count=2, tag="r3")
    x1, x2 = received("in-2", tag="x1"), received("in-1", tag="x2")
    busy = received("in-1", receive_count=7, tag="b1")
    verdicts = [
        Verdict(d1, Action.DELETE, email_id="e-d1"),
        Verdict(r1, Action.RETRY, reason="HTTP 500"),
        Verdict(x1, Action.DEAD_LETTER, reason="not JSON"),
        Verdict(busy, Action.RECHECK, retry_after_seconds=12.3),
        Verdict(d2, Action.DELETE),
        Verdict(r2, Action.RETRY, reason="HTTP 503"),
        Verdict(r3, Action.RETRY, reason="HTTP 429", retry_after_seconds=75.2),
        Verdict(d3, Action.DELETE),
        Verdict(x2, Action.DEAD_LETTER, reason="rejected by every provider", email_id="e-x2"),
    ]

    plan = plan_settlement(verdicts, base=10, cap=900)

    assert {queue: list(messages) for queue, messages in plan.deletes.items()} == {
        "in-1": [d1, d3],
        "in-2": [d2],
    }
    assert {queue: list(delayed) for queue, delayed in plan.retries.items()} == {
        "in-1": [(r1, 10), (busy, 13), (r3, 76)],
        "in-2": [(r2, 40)],
    }
    assert [(v.message, v.reason, v.email_id) for v in plan.dead_letters] == [
        (x1, "not JSON", None),
        (x2, "rejected by every provider", "e-x2"),
    ]
    # RECHECK is not a failure: exactly the time asked for, no backoff by receive count.


def test_plan_settlement_of_nothing_is_empty():
    plan = plan_settlement([], base=10, cap=900)

    assert not plan.deletes
    assert not plan.retries
    assert plan.dead_letters == []


# --- batches_within -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "batch_size", "max_total", "expected"),
    [
        # Count bound only.
        ([1] * 7, 3, 100, [[1, 1, 1], [1, 1, 1], [1]]),
        ([1] * 6, 3, 100, [[1, 1, 1], [1, 1, 1]]),
        # Byte bound only.
        ([4, 4, 4, 4], 10, 10, [[4, 4], [4, 4]]),
        ([5, 5, 5], 10, 10, [[5, 5], [5]]),  # an exact fit stays together
        ([6, 5, 5, 9, 1], 10, 10, [[6], [5, 5], [9, 1]]),
        # Both: whichever is reached first cuts.
        ([2, 2, 2, 2, 9, 1, 1], 3, 10, [[2, 2, 2], [2], [9, 1], [1]]),
        # An item over the bound on its own gets a batch of its own, wherever it is.
        ([3, 20, 3], 10, 10, [[3], [20], [3]]),
        ([20, 1], 10, 10, [[20], [1]]),
        ([1, 20], 10, 10, [[1], [20]]),
        ([20, 30], 10, 10, [[20], [30]]),
        # Zero-sized items only count against the number.
        ([0, 0, 0], 2, 0, [[0, 0], [0]]),
        ([], 10, 10, []),
    ],
)
def test_batches_within(sizes, batch_size, max_total, expected):
    items = [(index, size) for index, size in enumerate(sizes)]

    result = batches_within(items, batch_size, max_total, lambda item: item[1])

    assert [[size for _, size in batch] for batch in result] == expected
    assert [item for batch in result for item in batch] == items  # order kept, nothing lost


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batches_within_refuses_a_batch_size_below_one(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        batches_within([1, 2], batch_size, 10, lambda item: item)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=50), max_size=60),
    batch_size=st.integers(min_value=1, max_value=12),
    max_total=st.integers(min_value=0, max_value=120),
)
def test_batches_within_is_greedy_bounded_and_ordered(sizes, batch_size, max_total):
    items = list(enumerate(sizes))

    result = batches_within(items, batch_size, max_total, lambda item: item[1])

    assert [item for batch in result for item in batch] == items
    for index, batch in enumerate(result):
        total = sum(size for _, size in batch)
        assert 1 <= len(batch) <= batch_size
        assert total <= max_total or len(batch) == 1
        if index + 1 < len(result):
            # Greedy: a batch is cut only when the next item would break a bound.
            following = result[index + 1][0][1]
            assert len(batch) == batch_size or total + following > max_total


# --- dispatch_bytes -----------------------------------------------------------------------

# The kinds of text a body may hold (SQS accepts all of them): each costs a different number of
# bytes once JSON-escaped twice (in the SQS body, then in the task) and UTF-8 encoded.
BODY_PIECES = {
    "ascii": "Hello, world. Plain ASCII text with digits 0123456789. ",
    "quotes": 'She said "hi" \\ and \'bye\' / "\\n" is not a newline. ',
    "accents": "Café, naïve, résumé, Zoë, garçon, Ålesund, ß, é. ",
    "cjk": "日本語のテキスト、中文文本 한국어 텍스트。",
    "emoji": "🚀🎉👩‍👩‍👧‍👦🇫🇷✉️😀",
    "controls": "line\nbreak\ttab\r\nwindows line\n\n",
    "mixed": 'Grüße "🚀" 日本\\ \n\t',
}

# Receipt handles as real SQS hands them out (base64 of an opaque blob, ~400 characters) and the
# longest queue name SQS allows: the per-message overhead at its largest realistic value.
LONGEST_QUEUE_NAME = "q" * 80


def real_looking_receipt_handle(length: int = 512) -> str:
    raw = base64.b64encode(os.urandom(length)).decode("ascii")
    return ("AQEB" + raw)[:length]


def message_with(piece: str, repeat: int, *, receive_count: int = 1) -> ReceivedMessage:
    email = WireEmail(
        id=str(uuid.uuid4()),
        from_email="sender@example.com",
        from_name='Zoë "the" Sender',
        to_email="reader@example.org",
        to_name="読者",
        subject=f"Subject {piece[:20]}",
        body=piece * repeat,
        accepted_at=datetime(2026, 11, 30, 7, 0, tzinfo=UTC),
    )
    return ReceivedMessage(
        queue=LONGEST_QUEUE_NAME,
        receipt_handle=real_looking_receipt_handle(),
        sqs_message_id=str(uuid.uuid4()),
        body=email.encode(),
        receive_count=receive_count,
    )


def task_body_bytes(messages: list[ReceivedMessage]) -> int:
    """The bytes of the ``send_batch`` task body as Celery serialises it before kombu's SQS
    channel base64-encodes it into its envelope: the real protocol-2 body through the
    configured serializer, then base64."""
    args = ["sendgrid", uuid.uuid4().hex, [message.to_task() for message in messages]]
    task = app.amqp.as_task_v2(str(uuid.uuid4()), "dispatch.tasks.send_batch", args=args)
    _, encoding, payload = kombu_dumps(task.body, serializer=app.conf.task_serializer)
    data = payload.encode(encoding) if isinstance(payload, str) else payload
    return len(base64.b64encode(data))


@pytest.mark.parametrize("kind", sorted(BODY_PIECES))
@pytest.mark.parametrize("repeat", [1, 37, 400])
def test_dispatch_bytes_bounds_one_message_in_a_task(kind, repeat):
    message = message_with(BODY_PIECES[kind], repeat, receive_count=999)

    assert task_body_bytes([message]) <= dispatch_bytes(message.body)


@pytest.mark.parametrize("kind", ["ascii", "emoji"])
def test_dispatch_bytes_bounds_a_message_at_the_sqs_identifier_maxima(kind):
    # SQS documents up to 1,024 characters for a receipt handle, 100 for a message id and 80
    # for a queue name; the estimate must hold for all of them at once.
    message = ReceivedMessage(
        queue=LONGEST_QUEUE_NAME,
        receipt_handle=real_looking_receipt_handle(1_024),
        sqs_message_id="m" * 100,
        body=message_with(BODY_PIECES[kind], 1).body,
        receive_count=1_000,
    )

    assert task_body_bytes([message]) <= dispatch_bytes(message.body)


def test_the_task_serializer_keeps_non_ascii_literal():
    # dispatch_bytes counts UTF-8 bytes of literal text; a serializer escaping to \\uXXXX
    # (Celery's own json) would cost up to 12 bytes per emoji and break the bound.
    assert app.conf.task_serializer == "gomail-json"
    _, _, payload = kombu_dumps(["é🚀"], serializer=app.conf.task_serializer)
    assert "é🚀" in (payload.decode("utf-8") if isinstance(payload, bytes) else payload)


def test_a_batch_cut_at_the_task_limit_serialises_within_the_estimate():
    # Many kinds of text, in messages of varied sizes, enough for several batches at the limit.
    kinds = itertools.cycle(sorted(BODY_PIECES))
    repeats = itertools.cycle([300, 700, 120, 1_000, 40, 900])
    candidates = [message_with(BODY_PIECES[next(kinds)], next(repeats)) for _ in range(60)]

    batches = batches_within(
        candidates, 100, TASK_PAYLOAD_LIMIT, lambda message: dispatch_bytes(message.body)
    )

    assert len(batches) >= 3
    for batch in batches:
        estimate = sum(dispatch_bytes(message.body) for message in batch)
        assert estimate <= TASK_PAYLOAD_LIMIT
        assert task_body_bytes(batch) <= estimate
    # The first batches were cut because the next message did not fit: they are at the limit.
    assert sum(dispatch_bytes(m.body) for m in batches[0]) > TASK_PAYLOAD_LIMIT * 0.9


# --- fold_pending -------------------------------------------------------------------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GIVE_UP_BEFORE = NOW - timedelta(minutes=10)
FAILING = BatchOutcome(transient=1, errors=["HTTP 500"]).to_dict()
PASSING = BatchOutcome(sent=3).to_dict()
SILENT = BatchOutcome().to_dict()  # no provider verdict at all (e.g. every message already sent)


def pending(batch_id: str, minutes_ago: float = 1) -> PendingBatch:
    return PendingBatch(batch_id, 10, (NOW - timedelta(minutes=minutes_ago)).isoformat())


def test_fold_pending_folds_outcomes_in_dispatch_order_not_arrival_order():
    batches = [pending("b1"), pending("b2"), pending("b3")]
    # Arrived in the reverse order: a fold in dict order would end on two failures.
    outcomes = {"b3": PASSING, "b2": FAILING, "b1": FAILING}
    thresholds = Thresholds(healthy=2, unhealthy=2)

    state, still = fold_pending(HealthState(), batches, outcomes, thresholds, NOW, GIVE_UP_BEFORE)

    assert state.healthy is False
    assert (state.consecutive_failures, state.consecutive_passes) == (0, 1)
    assert state.changed_at == NOW
    assert state.last_error == "HTTP 500"
    assert still == []


def test_fold_pending_keeps_batches_without_an_outcome_pending():
    batches = [pending("b1"), pending("b2"), pending("b3"), pending("b4")]
    outcomes = {"b1": FAILING, "b3": FAILING}

    state, still = fold_pending(
        HealthState(), batches, outcomes, Thresholds(healthy=3, unhealthy=3), NOW, GIVE_UP_BEFORE
    )

    assert still == [batches[1], batches[3]]  # in dispatch order
    assert state.consecutive_failures == 2  # a missing outcome does not break the streak
    assert state.healthy is True


def test_fold_pending_counts_a_batch_with_no_outcome_by_its_deadline_as_a_failure():
    """Its workers did not settle it in time (stopped consuming): a failing observation, not
    a batch forgotten, or a provider nobody consumes for stays healthy for ever."""
    batches = [
        pending("old", minutes_ago=11),
        pending("edge", minutes_ago=10),  # dispatched exactly at the deadline: kept
        pending("recent", minutes_ago=1),
        pending("old-with-outcome", minutes_ago=60),
    ]
    outcomes = {"old-with-outcome": FAILING}
    before = HealthState(consecutive_failures=1)

    state, still = fold_pending(
        before, batches, outcomes, Thresholds(healthy=3, unhealthy=3), NOW, GIVE_UP_BEFORE
    )

    assert [batch.batch_id for batch in still] == ["edge", "recent"]
    assert state.consecutive_failures == 3
    assert state.healthy is False
    assert state.last_error == "HTTP 500"  # the latest observation's, in dispatch order


def test_fold_pending_says_why_a_silent_batch_failed():
    state, still = fold_pending(
        HealthState(),
        [pending("old", minutes_ago=11)],
        {},
        Thresholds(healthy=1, unhealthy=1),
        NOW,
        GIVE_UP_BEFORE,
    )

    assert still == []
    assert state.healthy is False
    assert "had no outcome by its deadline" in state.last_error


def test_fold_pending_skips_outcomes_without_a_provider_verdict():
    unhealthy = HealthState(healthy=False, consecutive_failures=5, last_error="HTTP 500")
    batches = [pending("b1"), pending("b2"), pending("b3")]
    outcomes = {"b1": SILENT, "b2": SILENT, "b3": SILENT}

    state, still = fold_pending(
        unhealthy, batches, outcomes, Thresholds(healthy=1, unhealthy=1), NOW, GIVE_UP_BEFORE
    )

    assert state == unhealthy  # silence is not evidence of recovery
    assert still == []  # but the batches are settled


def test_fold_pending_with_nothing_pending_changes_nothing():
    before = HealthState(healthy=False, consecutive_failures=4)

    state, still = fold_pending(
        before, [], {"stray": PASSING}, Thresholds(healthy=1, unhealthy=1), NOW, GIVE_UP_BEFORE
    )

    assert state == before  # an outcome for a batch not pending here is not this provider's
    assert still == []


# --- batch_outcome ------------------------------------------------------------------------


def test_batch_outcome_counts_only_the_batch_own_provider():
    calls = [
        Call("sendgrid", ErrorKind.PERMANENT.value, "HTTP 400: bad address"),
        Call("ses", "sent"),
        Call("sendgrid", "sent"),
        Call("sendgrid", ErrorKind.TRANSIENT.value, "HTTP 500"),
        Call("ses", ErrorKind.TRANSIENT.value, "ServiceUnavailable"),
        Call("sendgrid", ErrorKind.PROVIDER_CONFIG.value, "HTTP 401"),
        Call("ses", ErrorKind.PROVIDER_CONFIG.value, "AccessDenied"),
        Call("ses", ErrorKind.PERMANENT.value, "MessageRejected"),
    ]

    sendgrid = batch_outcome("sendgrid", calls)
    ses = batch_outcome("ses", calls)

    assert sendgrid == BatchOutcome(
        sent=1, transient=1, provider_config=1, permanent=1, errors=["HTTP 500", "HTTP 401"]
    )
    assert ses == BatchOutcome(
        sent=1,
        transient=1,
        provider_config=1,
        permanent=1,
        errors=["ServiceUnavailable", "AccessDenied"],
    )


def test_batch_outcome_of_a_failover_does_not_blame_the_provider_that_sent():
    # SendGrid's batch: SendGrid rejected (the message's fault), SES then failed transiently.
    calls = [Call("sendgrid", "permanent", "HTTP 400"), Call("ses", "transient", "Throttling")]

    outcome = batch_outcome("sendgrid", calls)

    assert outcome == BatchOutcome(permanent=1)
    assert outcome.health_failures == 0


def test_batch_outcome_without_calls_is_silent():
    assert batch_outcome("ses", []) == BatchOutcome()
    assert batch_outcome("ses", [Call("sendgrid", "sent")]).provider_answers == 0


# -- fit_attributes: a dead-letter copy must fit in SQS's limit with its attributes -----------


def test_every_attribute_is_kept_when_there_is_room():
    from dispatch.settlement import fit_attributes

    attributes = {"reason": "rejected", "emailId": "e-1", "sourceQueue": "q"}

    assert fit_attributes(attributes, 10_000) == attributes


def test_the_reason_is_cut_and_the_rest_dropped_when_the_body_leaves_little_room():
    from dispatch.settlement import fit_attributes

    attributes = {"reason": "r" * 500, "emailId": "e" * 36, "sourceQueue": "q" * 20}

    kept = fit_attributes(attributes, 100)

    assert list(kept) == ["reason"]
    assert kept["reason"].endswith("...")
    cost = sum(len(k) + len("String") + len(v.encode()) for k, v in kept.items())
    assert cost <= 100


def test_nothing_is_kept_when_there_is_no_room_at_all():
    from dispatch.settlement import fit_attributes

    assert fit_attributes({"reason": "x" * 50}, 10) == {}


def test_multibyte_reasons_are_cut_on_a_character_boundary():
    from dispatch.settlement import fit_attributes

    kept = fit_attributes({"reason": "é" * 100}, 60)

    assert kept["reason"].endswith("...")
    assert len(kept["reason"].encode()) + len("reason") + len("String") <= 60


@pytest.mark.parametrize(
    ("ages", "extend"),
    [
        ([0.0, 1.0], False),  # read a second ago: most of the visibility timeout left
        ([1.0, 5.0], False),  # a sixth of 30 s
        ([1.0, 5.1], True),  # the oldest is past it
        ([None], True),  # read at an unknown time (an older version's task)
    ],
)
def test_a_batch_extends_visibility_only_when_it_starts_late(
    ages: list[float | None], extend: bool
) -> None:
    now = 1_000_000.0
    messages = [
        dataclasses.replace(received(), received_at=0.0 if age is None else now - age)
        for age in ages
    ]
    assert needs_extension(messages, now, visibility=30) is extend


def test_the_backoff_counts_failed_calls_not_receives() -> None:
    # Read seven times (held back by a breaker, a busy claim...), failed once: the first backoff.
    message = received(receive_count=7)
    failed_once = Verdict(message, Action.RETRY, reason="HTTP 500", failures=1)
    unknown = Verdict(received(receive_count=3), Action.RETRY, reason="HTTP 500")

    plan = plan_settlement([failed_once, unknown], base=10, cap=900)

    assert dict(plan.retries)["in-1"] == [(message, 10), (unknown.message, 40)]
