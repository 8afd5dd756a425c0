"""``dispatch.pipeline.run_pipeline`` on the real parts: incoming queues in the test moto, the
lease and health in the database, with a dispatcher that records batches (or sends them
in-process through ``dispatch.sending.send_batch``)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from dispatch import health_store, lease
from dispatch.health import BatchOutcome, HealthState
from dispatch.health_store import PendingBatch
from dispatch.inbox import ReceivedMessage
from dispatch.pipeline import PIPELINE_LEASE, run_pipeline
from dispatch.sending import send_batch
from emails.models import Email
from emails.wire import TASK_PAYLOAD_LIMIT, dispatch_bytes
from tests.dispatch.realparts import (
    dead_letter_reason,
    dead_letters,
    levels,
    put,
    wire_email,
)
from tests.harness.queues import ses_messages

pytestmark = pytest.mark.django_db


@dataclass
class Recorder:
    """A dispatcher that keeps every batch it is given."""

    batches: list[tuple[str, str, list[ReceivedMessage]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, provider: str, batch_id: str, messages: Sequence[ReceivedMessage], probe: bool = False
    ) -> None:
        with self.lock:
            self.batches.append((provider, batch_id, list(messages)))

    def messages(self, provider: str | None = None) -> list[ReceivedMessage]:
        return [m for p, _, ms in self.batches for m in ms if provider in (None, p)]


@pytest.fixture(autouse=True)
def fresh_state(aws) -> None:
    """An empty cache, fresh queues, and nobody holding the pipeline lease."""


def fill(count: int) -> set[str]:
    """Put ``count`` emails on the incoming queues, alternating; returns their SQS ids."""
    queues = settings.GOMAIL.sqs.incoming_queues
    return {put(wire_email().encode(), queues[index % len(queues)]) for index in range(count)}


def remaining() -> int:
    return sum(sum(levels(queue)) for queue in settings.GOMAIL.sqs.incoming_queues)


def visible() -> int:
    return sum(levels(queue)[0] for queue in settings.GOMAIL.sqs.incoming_queues)


def set_capacity(gomail_config, **capacities: int) -> None:
    current = settings.GOMAIL.providers
    gomail_config(
        providers={
            name: getattr(current, name).model_copy(update={"max_in_flight": value})
            for name, value in capacities.items()
        }
    )


def test_everything_read_is_dispatched_once_split_between_healthy_providers(gomail_config):
    gomail_config(pipeline={"batch_size": 4})
    sent_ids = fill(27)
    recorder = Recorder()

    report = run_pipeline(recorder)

    assert report.ran is True
    assert report.read == 27
    dispatched = [m.sqs_message_id for m in recorder.messages()]
    assert sorted(dispatched) == sorted(sent_ids)  # every message once, none twice
    ses, sendgrid = recorder.messages("ses"), recorder.messages("sendgrid")
    assert abs(len(ses) - len(sendgrid)) <= 1
    assert report.dispatched == {"ses": len(ses), "sendgrid": len(sendgrid)}
    assert all(len(ms) <= 4 for _, _, ms in recorder.batches)
    assert report.batches == len(recorder.batches) == 4 + 4  # 14 and 13 in batches of 4
    assert report.health == {"ses": True, "sendgrid": True}
    # Each batch is registered as pending for its provider, in dispatch order.
    for name in ("ses", "sendgrid"):
        expected = [(b, len(ms)) for p, b, ms in recorder.batches if p == name]
        assert [(b.batch_id, b.size) for b in health_store.load_pending(name)] == expected
    assert visible() == 0  # all read: in flight until the workers settle them


def test_a_second_run_reads_what_came_since(gomail_config):
    recorder = Recorder()
    first = fill(5)
    run_pipeline(recorder)
    second = fill(7)

    report = run_pipeline(recorder)

    assert report.read == 7
    assert sorted(m.sqs_message_id for m in recorder.messages()) == sorted(first | second)


def test_an_unhealthy_provider_gets_exactly_one_probe_per_run():
    health_store.save_state("sendgrid", HealthState(healthy=False, consecutive_failures=3))
    for run in range(3):
        fill(15)
        recorder = Recorder()

        report = run_pipeline(recorder)

        assert report.health == {"ses": True, "sendgrid": False}
        assert len(recorder.messages("sendgrid")) == 1, f"run {run}"
        assert len(recorder.messages("ses")) == 14, f"run {run}"


def test_a_provider_turns_unhealthy_from_outcomes_before_the_split():
    # Three failing batches of SendGrid's arrived since the last run (threshold 3).
    pending = [PendingBatch(uuid.uuid4().hex, 1, timezone.now().isoformat()) for _ in range(3)]
    health_store.save_pending("sendgrid", pending)
    for batch in pending:
        health_store.write_outcome(
            batch.batch_id,
            BatchOutcome(transient=1, errors=["HTTP 500"]),
        )
    fill(10)
    recorder = Recorder()

    report = run_pipeline(recorder)

    assert report.health["sendgrid"] is False
    assert len(recorder.messages("sendgrid")) == 1
    assert health_store.load_state("sendgrid").healthy is False


def test_backpressure_a_provider_at_its_limit_does_not_stop_the_others(gomail_config):
    """Its workers may have stopped consuming: the others take what they have room for."""
    set_capacity(gomail_config, ses=8, sendgrid=8)
    health_store.save_pending("ses", [PendingBatch("busy", 8, timezone.now().isoformat())])
    fill(20)
    recorder = Recorder()

    report = run_pipeline(recorder)

    assert report.ran is True
    assert report.read == 8
    assert recorder.messages("ses") == []
    assert len(recorder.messages("sendgrid")) == 8
    assert visible() == 12


def test_backpressure_every_provider_at_its_limit_stops_the_reading(gomail_config):
    set_capacity(gomail_config, ses=8, sendgrid=8)
    for name in ("ses", "sendgrid"):
        health_store.save_pending(name, [PendingBatch("busy", 8, timezone.now().isoformat())])
    fill(20)
    recorder = Recorder()

    report = run_pipeline(recorder)

    assert report.ran is True
    assert report.read == 0
    assert recorder.batches == []
    assert visible() == 20  # nothing was taken off the queues


def test_backpressure_limits_what_is_read_to_the_headroom(gomail_config):
    set_capacity(gomail_config, ses=8, sendgrid=8)
    health_store.save_pending("ses", [PendingBatch("busy", 5, timezone.now().isoformat())])
    fill(20)
    recorder = Recorder()

    report = run_pipeline(recorder)

    # SES has room for 3 and the split is equal: 3 each.
    assert report.read == 6
    assert len(recorder.messages("ses")) == 3
    assert len(recorder.messages("sendgrid")) == 3
    assert visible() == 14
    in_flight = {name: sum(b.size for b in health_store.load_pending(name)) for name in ("ses",)}
    assert in_flight == {"ses": 8}


def test_a_run_while_another_holds_the_lease_does_nothing():
    fill(6)
    assert lease.acquire(PIPELINE_LEASE, "another-run", 60)
    recorder = Recorder()

    report = run_pipeline(recorder)

    assert report.ran is False
    assert report.read == 0
    assert recorder.batches == []
    assert visible() == 6
    lease.release(PIPELINE_LEASE, "another-run")
    assert run_pipeline(recorder).read == 6


# transaction=True: threads with their own connections must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_never_overlap():
    fill(30)
    recorder = Recorder()
    inside, overlapped = [0], []
    guard = threading.Lock()

    def slow_dispatch(
        provider: str, batch_id: str, messages: Sequence[ReceivedMessage], probe: bool = False
    ) -> None:
        with guard:
            inside[0] += 1
            overlapped.append(inside[0] > 1)
        time.sleep(0.05)  # a dispatch takes a while: overlapping runs would meet here
        recorder(provider, batch_id, messages)
        with guard:
            inside[0] -= 1

    barrier = threading.Barrier(4)
    ran: list[bool] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            ran.append(run_pipeline(slow_dispatch).ran)
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert len(ran) == 4
    assert ran.count(True) >= 1
    assert not any(overlapped)  # no two runs were ever dispatching at the same time
    dispatched = [m.sqs_message_id for m in recorder.messages()]
    assert len(dispatched) == len(set(dispatched)) == 30
    # The single writer of the pending lists lost none of them.
    registered = {
        b.batch_id for name in ("ses", "sendgrid") for b in health_store.load_pending(name)
    }
    assert registered == {batch_id for _, batch_id, _ in recorder.batches}


def test_a_failed_dispatch_is_not_registered_as_pending():
    fill(4)

    def broken(
        provider: str, batch_id: str, messages: Sequence[ReceivedMessage], probe: bool = False
    ) -> None:
        if provider == "sendgrid":
            raise ConnectionError("broker unreachable")

    report = run_pipeline(broken)

    assert report.read == 4
    assert report.dispatched == {"ses": 2}
    assert health_store.load_pending("sendgrid") == []
    assert [b.size for b in health_store.load_pending("ses")] == [2]


def test_a_message_too_large_for_any_task_is_dead_lettered_not_dispatched():
    # Another producer's message: within SQS's limit, but once escaped and base64-encoded in a
    # send_batch task it could never fit in one (the API refuses such messages up front).
    huge = json.dumps(
        {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": '"' * 90_000}}
    )
    assert dispatch_bytes(huge) > TASK_PAYLOAD_LIMIT
    huge_id = put(huge)
    small_ids = fill(3)
    recorder = Recorder()

    report = run_pipeline(recorder)

    assert report.read == 4
    assert sorted(m.sqs_message_id for m in recorder.messages()) == sorted(small_ids)
    [dead] = dead_letters()
    assert dead["Body"] == huge
    assert "too large" in dead_letter_reason(dead)
    assert dead["MessageAttributes"]["sourceMessageId"]["StringValue"] == huge_id
    assert remaining() == 3  # the three dispatched ones, in flight; the huge one is gone


# transaction=True: send_batch delivers in threads, each with its own database connection.
@pytest.mark.django_db(transaction=True)
def test_end_to_end_in_process_every_message_is_sent_once(
    providers, sendgrid_stub, moto_server, gomail_config
):
    gomail_config(pipeline={"batch_size": 3})
    emails = [wire_email(to_email=f"e2e{index}@example.org") for index in range(13)]
    queues = settings.GOMAIL.sqs.incoming_queues
    for index, email in enumerate(emails):
        put(email.encode(), queues[index % len(queues)])

    def dispatch(
        provider: str, batch_id: str, messages: Sequence[ReceivedMessage], probe: bool = False
    ) -> None:
        send_batch(provider, batch_id, messages, providers=providers)

    report = run_pipeline(dispatch)

    assert report.read == 13
    via_sendgrid = [
        m["payload"]["personalizations"][0]["to"][0]["email"] for m in sendgrid_stub.messages()
    ]
    via_ses = [
        m["destinations"]["ToAddresses"][0].split("<")[-1].rstrip(">")
        for m in ses_messages(moto_server.url)
    ]
    assert sorted(via_sendgrid + via_ses) == sorted(e.to_email for e in emails)
    assert abs(len(via_sendgrid) - len(via_ses)) <= 1
    assert remaining() == 0
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.SENT}

    # The next run folds the 5 batch outcomes (all passing) and finds nothing pending.
    report = run_pipeline(dispatch)
    assert report.read == 0
    assert health_store.load_pending("ses") == health_store.load_pending("sendgrid") == []
    assert health_store.load_state("ses").consecutive_passes >= 2
    assert health_store.load_state("sendgrid").consecutive_passes >= 2
