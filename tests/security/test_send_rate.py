"""Per-provider send-rate limits on the workers (dispatch/send_rate.py), on the real database.

The limiter's arithmetic is pure; its slots are taken with one conditional UPDATE, so the
limit holds between threads with their own connections and between OS processes; ``deliver``
waits for a slot before each provider call and hands a message back, unsent and not lost,
when none comes in time.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from dispatch import send_rate
from dispatch.health import BatchOutcome
from dispatch.inbox import ReceivedMessage
from dispatch.models import SendRateWindow
from dispatch.providers import ErrorKind, ProviderError, SendResult
from dispatch.send_rate import Budget, acquire, budget, try_acquire
from dispatch.sending import deliver, send_batch
from dispatch.settlement import Action
from emails.models import Attempt, Email
from tests.dispatch.realparts import incoming_queue, levels, put, receive_exactly, wire_email
from tests.harness import with_overrides
from tests.harness.together import run_together

pytestmark = pytest.mark.django_db


def provider_name() -> str:
    """A provider name of its own per test: the rows of earlier tests do not interfere."""
    return f"p-{uuid.uuid4().hex[:12]}"


# --- the budget, pure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (1, Budget(seconds=1, sends=1)),
        (14, Budget(seconds=1, sends=14)),
        (14.9, Budget(seconds=1, sends=14)),  # never above the rate: rounded down
        (10_000, Budget(seconds=1, sends=10_000)),
        (0.5, Budget(seconds=2, sends=1)),
        (0.3, Budget(seconds=4, sends=1)),
        (0.1, Budget(seconds=10, sends=1)),
        (0.01, Budget(seconds=100, sends=1)),
    ],
)
def test_budget(rate: float, expected: Budget) -> None:
    allowance = budget(rate)

    assert allowance == expected
    assert allowance.sends / allowance.seconds <= rate


def test_budget_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        budget(0)


# --- one slot, one UPDATE ---------------------------------------------------------------------


def test_a_window_grants_its_sends_then_refuses_until_the_next() -> None:
    name = provider_name()
    allowance = Budget(seconds=1, sends=3)
    now = 1_000_000.25

    granted = [try_acquire(name, allowance, now + 0.1 * index) for index in range(5)]

    assert granted == [1_000_000, 1_000_000, 1_000_000, None, None]
    assert try_acquire(name, allowance, 1_000_001.0) == 1_000_001
    row = SendRateWindow.objects.get(provider=name)
    assert (row.window, row.count) == (1_000_001, 1)


def test_longer_windows_for_rates_under_one_per_second() -> None:
    name = provider_name()
    allowance = budget(0.25)  # one send per four seconds

    assert try_acquire(name, allowance, 4_000.0) == 1_000
    assert try_acquire(name, allowance, 4_003.9) is None
    assert try_acquire(name, allowance, 4_004.0) == 1_001


def test_a_window_far_ahead_of_the_clock_is_stale_not_a_blockage() -> None:
    name = provider_name()
    allowance = Budget(seconds=1, sends=1)
    # Written by a clock that was an hour ahead (or before this one was stepped back).
    SendRateWindow.objects.create(provider=name, window=5_000 + 3_600, count=1)
    assert try_acquire(name, allowance, 5_000.5) == 5_000

    # A little ahead (a worker whose clock is slightly fast) is respected, not reset.
    SendRateWindow.objects.filter(provider=name).update(window=5_002, count=1)
    assert try_acquire(name, allowance, 5_001.5) is None


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_acquire_waits_for_the_next_window_within_its_timeout() -> None:
    name = provider_name()
    clock = FakeClock(2_000.7)
    try_acquire(name, Budget(1, 1), clock.now)

    window = acquire(name, 1, timeout=2, clock=clock, sleep=clock.sleep)

    assert window == 2_001
    [slept] = clock.sleeps
    assert 0.3 <= slept <= 0.3 + send_rate.JITTER_FRACTION + 1e-9


def test_acquire_gives_up_at_once_when_the_next_window_is_past_its_timeout() -> None:
    name = provider_name()
    clock = FakeClock(3_000.2)
    try_acquire(name, Budget(1, 1), clock.now)

    assert acquire(name, 1, timeout=0.5, clock=clock, sleep=clock.sleep) is None
    assert clock.sleeps == []


def test_acquire_never_sleeps_past_its_deadline() -> None:
    name = provider_name()
    clock = FakeClock(3_000.0)
    try_acquire(name, Budget(1, 1), clock.now)

    # The next window starts exactly at the deadline: the jitter must not overshoot it.
    assert acquire(name, 1, timeout=1.0, clock=clock, sleep=clock.sleep) == 3_001
    assert clock.now <= 3_001.0


# --- concurrent takers: threads with their own connections, and two OS processes --------------


def grants_per_window(grants: list[tuple[int, float, float]]) -> Counter[int]:
    return Counter(window for window, _, _ in grants)


def assert_rate_held(grants: list[tuple[int, float, float]], rate: int, expected: int) -> None:
    """No window granted more than ``rate``; each grant happened within its window's second;
    the whole took as long as the rate demands."""
    assert len(grants) == expected
    per_window = grants_per_window(grants)
    assert max(per_window.values()) <= rate, per_window
    for window, before, after in grants:
        # The UPDATE ran between ``before`` and ``after``: its window must overlap that span.
        assert before < window + 1 and after >= window, (window, before, after)
    # ``expected / rate`` windows at least, the first and last possibly only just touched.
    span = max(after for _, _, after in grants) - min(before for _, before, _ in grants)
    assert span > math.ceil(expected / rate) - 2, (span, per_window)


def take(name: str, rate: int, count: int, barrier: threading.Barrier | None = None) -> list:
    grants = []
    try:
        if barrier is not None:
            barrier.wait(timeout=30)
        for _ in range(count):
            before = time.time()
            window = acquire(name, rate, timeout=60)
            grants.append((window, before, time.time()))
    finally:
        connection.close()
    return grants


# transaction=True: threads with their own connections must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
def test_threads_with_their_own_connections_never_exceed_the_rate() -> None:
    name, rate, threads, each = provider_name(), 5, 8, 2
    barrier = threading.Barrier(threads)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda _: take(name, rate, each, barrier), range(threads)))

    assert_rate_held([grant for result in results for grant in result], rate, threads * each)


# The child: Django set up and connected, says "ready", waits for the start instant from the
# test, then runs ``threads`` threads (each with its own connection) taking ``each`` slots.
CHILD = """
import json, sys, threading, time
import django
django.setup()
from django.db import connection
from dispatch.send_rate import acquire
name, rate, threads, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
connection.ensure_connection()
print("ready", flush=True)
start = float(sys.stdin.readline())
grants, lock = [], threading.Lock()
def run():
    from django.db import connection
    time.sleep(max(0.0, start - time.time()))
    try:
        for _ in range(each):
            before = time.time()
            window = acquire(name, rate, timeout=60)
            with lock:
                grants.append((window, before, time.time()))
    finally:
        connection.close()
workers = [threading.Thread(target=run) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps(grants), flush=True)
"""


# transaction=True: the child processes must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
def test_two_processes_never_exceed_the_rate_together(tmp_path: Path) -> None:
    name, rate, threads, each = provider_name(), 8, 4, 2
    outputs = run_together(
        tmp_path, CHILD, [[name, str(rate), str(threads), str(each)]] * 2, timeout=120
    )
    per_child = [[tuple(grant) for grant in output] for output in outputs]

    assert all(len(grants) == threads * each for grants in per_child)
    grants = [grant for grants in per_child for grant in grants]
    assert_rate_held(grants, rate, 2 * threads * each)
    # Both processes asked at once (the first requests of each within one window), so the
    # budget held against real competition, whichever process won the first window's slots.
    first_asks = [min(before for _, before, _ in grants) for grants in per_child]
    assert abs(first_asks[0] - first_asks[1]) < 1.0, first_asks


# --- the hook in deliver ----------------------------------------------------------------------


class FakeProvider:
    """Records each call's time; sends, or raises ``error``."""

    def __init__(self, error: ProviderError | None = None) -> None:
        self.calls: list[float] = []
        self.error = error
        self.lock = threading.Lock()

    def send(self, email: Any) -> SendResult:
        with self.lock:
            self.calls.append(time.time())
        if self.error is not None:
            raise self.error
        return SendResult(provider_message_id=f"fake-{uuid.uuid4().hex}")


@pytest.fixture
def rates(settings: Any):
    """``rates(ses=0.01)``: providers.<name>.max_send_rate_per_second for this test."""

    def change(**per_provider: float | None) -> None:
        settings.GOMAIL = with_overrides(
            settings.GOMAIL,
            {
                "providers": {
                    name: {"max_send_rate_per_second": rate} for name, rate in per_provider.items()
                }
            },
        )

    return change


def message_for(email: Any) -> ReceivedMessage:
    return ReceivedMessage(
        queue="gomail-test-incoming-1",
        receipt_handle=f"handle-{email.id}",
        sqs_message_id=str(uuid.uuid4()),
        body=email.encode(),
    )


def record(email: Any) -> Email:
    return Email.objects.create(
        id=email.id, from_email=email.from_email, to_email=email.to_email, queue="q"
    )


FROZEN = 7_000_000.5


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    """The limiter's clock stands still: which window a send falls in is decided here."""
    monkeypatch.setattr(send_rate, "wall_clock", lambda: FROZEN)
    return FROZEN


def no_slot_left(provider: str, rate: float) -> None:
    """Use up ``provider``'s current window (the clock being frozen)."""
    allowance = budget(rate)
    for _ in range(allowance.sends):
        assert try_acquire(provider, allowance, FROZEN) is not None
    assert try_acquire(provider, allowance, FROZEN) is None


STALE_AFTER = timedelta(seconds=30)


def test_deliver_takes_a_slot_before_the_call(rates):
    rates(ses=0.01)
    email = wire_email()
    record(email)
    ses = FakeProvider()

    verdict, calls = deliver(message_for(email), "ses", {"ses": ses}, STALE_AFTER)

    assert verdict.action is Action.DELETE
    assert [call.outcome for call in calls] == ["sent"]
    assert len(ses.calls) == 1
    assert SendRateWindow.objects.get(provider="ses").count == 1


def test_no_slot_in_time_hands_the_message_back_unsent_and_untouched(
    rates, monkeypatch, frozen_clock
):
    rates(ses=0.01)
    monkeypatch.setattr(send_rate, "MAX_SLOT_WAIT_SECONDS", 0.2)
    no_slot_left("ses", 0.01)
    email = wire_email()
    record(email)
    ses = FakeProvider()
    started = time.monotonic()

    verdict, calls = deliver(message_for(email), "ses", {"ses": ses}, STALE_AFTER)

    assert time.monotonic() - started < 2
    assert ses.calls == [] and calls == []
    assert verdict.action is Action.RETRY  # back to its queue: not lost, not dead-lettered
    assert verdict.reason == "send rate limit of ses reached"
    assert verdict.retry_after_seconds == 100  # one window of 0.01/s
    row = Email.objects.get(id=email.id)
    # Nothing failed: the record is as the API left it, and no attempt is on its history.
    assert (row.status, row.attempts, row.claimed_at) == (Email.Status.QUEUED, 0, None)
    assert not Attempt.objects.filter(email_id=email.id).exists()


def test_a_rejected_message_waiting_for_the_other_provider_is_handed_back(
    rates, monkeypatch, frozen_clock
):
    rates(sendgrid=2)
    monkeypatch.setattr(send_rate, "MAX_SLOT_WAIT_SECONDS", 0)
    no_slot_left("sendgrid", 2)
    email = wire_email()
    record(email)
    rejected = ProviderError(kind=ErrorKind.PERMANENT, provider="ses", reason="MessageRejected")
    ses, sendgrid = FakeProvider(rejected), FakeProvider()

    verdict, calls = deliver(
        message_for(email), "ses", {"ses": ses, "sendgrid": sendgrid}, STALE_AFTER
    )

    assert (len(ses.calls), sendgrid.calls) == (1, [])
    assert [call.provider for call in calls] == ["ses"]
    assert verdict.action is Action.RETRY
    row = Email.objects.get(id=email.id)
    assert row.status == Email.Status.FAILED  # as when the other provider is not reached
    assert row.rejections == {"ses": "MessageRejected"}
    assert row.last_error == "send rate limit of sendgrid reached"


def test_a_provider_without_a_rate_costs_no_database_row(rates):
    rates(ses=None)
    email = wire_email()
    record(email)

    verdict, _ = deliver(message_for(email), "ses", {"ses": FakeProvider()}, STALE_AFTER)

    assert verdict.action is Action.DELETE
    assert not SendRateWindow.objects.filter(provider="ses").exists()


# transaction=True: send_batch delivers in threads, each with its own database connection.
@pytest.mark.django_db(transaction=True)
def test_a_batch_is_sent_at_the_provider_rate(aws, rates, gomail_config, monkeypatch):
    gomail_config(pipeline={"backoff_base_seconds": 1, "backoff_max_seconds": 2})
    rate, count = 2, 6
    rates(sendgrid=rate)
    windows: list[int] = []
    real_acquire = send_rate.acquire

    def spy(*args: Any, **kwargs: Any) -> int | None:
        window = real_acquire(*args, **kwargs)
        windows.append(window)
        return window

    monkeypatch.setattr(send_rate, "acquire", spy)
    emails = [wire_email(to_email=f"r{index}@example.org") for index in range(count)]
    for email in emails:
        record(email)
        put(email.encode())
    sendgrid = FakeProvider()

    outcome = send_batch(
        "sendgrid", uuid.uuid4().hex, receive_exactly(count), providers={"sendgrid": sendgrid}
    )

    assert outcome == BatchOutcome(sent=count)
    assert len(windows) == len(sendgrid.calls) == count
    per_window = Counter(windows)
    assert max(per_window.values()) <= rate, per_window
    # Six sends at two a second need three windows: the last call is in the third.
    assert max(sendgrid.calls) - min(sendgrid.calls) > math.ceil(count / rate) - 2
    assert levels(incoming_queue()) == (0, 0)


# transaction=True: send_batch delivers in threads, each with its own database connection.
@pytest.mark.django_db(transaction=True)
def test_a_batch_over_the_rate_sends_what_it_can_and_hands_the_rest_back(
    aws, rates, gomail_config, monkeypatch, frozen_clock
):
    gomail_config(pipeline={"backoff_base_seconds": 1, "backoff_max_seconds": 2})
    monkeypatch.setattr(send_rate, "MAX_SLOT_WAIT_SECONDS", 0)
    rates(sendgrid=1)
    emails = [wire_email(to_email=f"r{index}@example.org") for index in range(4)]
    for email in emails:
        record(email)
        put(email.encode())
    sendgrid = FakeProvider()

    outcome = send_batch(
        "sendgrid", uuid.uuid4().hex, receive_exactly(4), providers={"sendgrid": sendgrid}
    )

    assert outcome == BatchOutcome(sent=1)  # the others made no call: health sees one
    assert len(sendgrid.calls) == 1
    statuses = Counter(Email.objects.values_list("status", flat=True))
    assert statuses == {Email.Status.SENT: 1, Email.Status.QUEUED: 3}
    assert set(Email.objects.values_list("attempts", flat=True)) == {0, 1}
    assert levels(incoming_queue()) == (0, 3)  # handed back, invisible for their backoff
    # ...and readable again after it: nothing was lost.
    assert len(receive_exactly(3)) == 3
