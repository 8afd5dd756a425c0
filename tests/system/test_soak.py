"""Soak mode (opt-in): mixed traffic for a long while, with a fault injected periodically.

``GOMAIL_SOAK_MINUTES=20 .venv/bin/pytest tests/system/test_soak.py`` runs it; without the
variable it is skipped, so the default suite stays short. Traffic goes in through the API the
whole time (a few emails a second from concurrent clients); every ``CYCLE_SECONDS`` one fault of
``FAULTS`` (in turn) is on for ``FAULT_SECONDS``, then everything is healed. At the end the
same ledger check as the scenarios: every email the API answered 200 for is sent or
dead-lettered with a reason; duplicates only where an outcome was unknown (timeouts and the
worker kill are among the faults), never more than the record's ``unknown_outcomes``. While SQS
is cut the API answers 503: those emails were never accepted, and none of them may be delivered.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from tests import harness
from tests.system.conftest import Scenario
from tests.system.faults import THROTTLE, UNREACHABLE
from tests.system.stack import SENDGRID_TIMEOUT_SECONDS, Ingest, Stack

SOAK_MINUTES = float(os.environ.get("GOMAIL_SOAK_MINUTES") or 0)
CYCLE_SECONDS = 40
FAULT_SECONDS = 20

pytestmark = [
    pytest.mark.system,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not SOAK_MINUTES,
        reason="soak mode is opt-in: set GOMAIL_SOAK_MINUTES (e.g. 20) to run it",
    ),
]


def _kill_providers(stack: Stack) -> None:
    stack.processes["providers"].kill()
    stack.start_role("providers")


FAULTS: list[tuple[str, Callable[[Stack], None]]] = [
    ("sendgrid 500", lambda s: s.stub.configure(failRate=1, failStatus=500)),
    ("ses throttling", lambda s: s.aws_fault("ses", THROTTLE)),
    ("sendgrid every other send 503", lambda s: s.stub.configure(failRate=0.5, failStatus=503)),
    ("sqs unreachable", lambda s: s.aws_fault("sqs", UNREACHABLE)),
    (
        "sendgrid timeout",
        lambda s: s.stub.configure(delayMs=int(SENDGRID_TIMEOUT_SECONDS * 1000) + 1000),
    ),
    ("ses unreachable", lambda s: s.aws_fault("ses", UNREACHABLE)),
    ("sendgrid 429", lambda s: s.stub.configure(failRate=1, failStatus=429, retryAfterSeconds=2)),
    ("provider worker killed", _kill_providers),
]


@pytest.mark.timeout(int(SOAK_MINUTES * 60) + 900)
def test_soak(scenario: Scenario) -> None:
    stack = scenario.stack
    ingest = Ingest()
    stop = threading.Event()

    traffic_errors: list[BaseException] = []

    def traffic() -> None:
        sent = 0
        try:
            while not stop.is_set():
                ingest.extend(stack.send(scenario.key, 4, clients=2, start=sent))
                sent += 4
                stop.wait(1.0)
        except BaseException as exc:  # the soak must not go on without traffic
            traffic_errors.append(exc)
            raise

    feeder = threading.Thread(target=traffic, name="soak-traffic", daemon=True)
    feeder.start()
    injected: list[str] = []
    deadline = time.monotonic() + SOAK_MINUTES * 60
    try:
        while time.monotonic() < deadline:
            name, inject = FAULTS[len(injected) % len(FAULTS)]
            injected.append(name)
            inject(stack)
            time.sleep(min(FAULT_SECONDS, max(0.0, deadline - time.monotonic())))
            stack.heal()
            time.sleep(min(CYCLE_SECONDS - FAULT_SECONDS, max(0.0, deadline - time.monotonic())))
    finally:
        stop.set()
        feeder.join(120)
        scenario.heal()
    assert not traffic_errors, f"the traffic thread failed: {traffic_errors[0]!r}"
    assert not feeder.is_alive(), "the traffic thread did not stop"
    # Traffic went on through every fault: a few emails a second, a stall at most per fault.
    expected = SOAK_MINUTES * 60 * 4 / 2
    assert len(ingest.accepted) + len(ingest.refused) >= expected, (len(ingest.accepted), expected)
    refused_subjects = {subject for _, _, subject in ingest.refused}
    assert all(status == 503 for status, _, _ in ingest.refused), ingest.refused[:3]
    drain = scenario.wait_drained(ingest.accepted, 600)
    scenario.check(
        ingest.accepted,
        drain,
        duplicates_allowed=True,
        note=f"{SOAK_MINUTES:g} min, {len(ingest.refused)} x 503, faults: {', '.join(injected)}",
    )
    delivered = {m.get("subject") for m in harness.ses_messages(stack.moto_url)} | {
        m["payload"].get("subject") for m in stack.stub.snapshot()["messages"]
    }
    assert not refused_subjects & delivered, "an email the API refused was delivered"
