"""The pipeline lease (dispatch/lease.py): a lock that really excludes, between threads and
between OS processes, on the real database (SQLite or PostgreSQL)."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from dispatch import lease
from dispatch.models import Lease
from tests.harness.together import run_together

pytestmark = pytest.mark.django_db


def fresh_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_acquire_and_release():
    name = fresh_name()

    assert lease.acquire(name, "me", 60) is True
    row = Lease.objects.get(name=name)
    assert row.holder == "me"
    assert timezone.now() + timedelta(seconds=55) < row.expires_at
    lease.release(name, "me")

    row = Lease.objects.get(name=name)
    assert (row.holder, row.expires_at) == ("", None)
    assert lease.acquire(name, "you", 60) is True


def test_a_second_holder_is_refused_while_it_is_held():
    name = fresh_name()
    assert lease.acquire(name, "first", 60)

    assert lease.acquire(name, "second", 60) is False
    lease.release(name, "second")  # not the holder: changes nothing

    assert Lease.objects.get(name=name).holder == "first"
    assert lease.acquire(name, "second", 60) is False
    assert lease.acquire(name, "first", 60) is True  # the holder may renew it


def test_an_expired_lease_can_be_taken_and_its_old_holder_cannot_release_it():
    name = fresh_name()
    assert lease.acquire(name, "crashed", 60)
    Lease.objects.filter(name=name).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert lease.acquire(name, "next", 60) is True
    lease.release(name, "crashed")

    assert Lease.objects.get(name=name).holder == "next"
    assert lease.acquire(name, "third", 60) is False


def test_a_lease_expires_by_itself():
    name = fresh_name()
    assert lease.acquire(name, "short", 0.5)

    assert lease.acquire(name, "other", 60) is False
    time.sleep(0.7)
    assert lease.acquire(name, "other", 60) is True


def test_held_gives_the_block_to_one_caller_and_releases_it():
    name = fresh_name()
    with lease.held(name, 60) as mine:
        assert mine is True
        with lease.held(name, 60) as also_mine:
            assert also_mine is False
        assert Lease.objects.get(name=name).holder != ""  # the refused one released nothing
    assert Lease.objects.get(name=name).holder == ""

    with pytest.raises(RuntimeError), lease.held(name, 60) as mine:
        raise RuntimeError("the run failed")
    assert Lease.objects.get(name=name).holder == ""  # released on the way out of a failure


# transaction=True: threads with their own connections must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("row_exists", [True, False])
def test_concurrent_acquirers_in_threads_exactly_one_wins(row_exists):
    threads = 8

    def attempt(name: str, holder: str, barrier: threading.Barrier) -> bool:
        try:
            barrier.wait(timeout=10)
            return lease.acquire(name, holder, 60)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for round_ in range(10):
            name = fresh_name()
            if row_exists:
                Lease.objects.create(name=name)
            barrier = threading.Barrier(threads)
            holders = [f"h{index}" for index in range(threads)]
            won = list(pool.map(attempt, [name] * threads, holders, [barrier] * threads))

            assert won.count(True) == 1, f"round {round_}: {won}"
            assert Lease.objects.get(name=name).holder == holders[won.index(True)]


# The child: says it is ready (Django set up, connected), waits for the start instant from the
# test, then takes part in ``rounds`` races, each on its own lease name, at the same wall-clock
# instants as the other child; prints the list of what it won.
CHILD = """
import json, sys, time
import django
django.setup()
from django.db import connection
from dispatch import lease
prefix, holder, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection.ensure_connection()
print("ready", flush=True)
start = float(sys.stdin.readline())
early = time.time() < start
won = []
for index in range(rounds):
    delay = start + index * 0.15 - time.time()
    if delay > 0:
        time.sleep(delay)
    won.append(lease.acquire(f"{prefix}-{index}", holder, 60))
print(json.dumps({"early": early, "won": won}), flush=True)
"""


# transaction=True: the child processes must see the test's committed rows.
@pytest.mark.django_db(transaction=True)
def test_concurrent_acquirers_in_two_processes_exactly_one_wins(tmp_path):
    rounds = 12
    prefix = fresh_name()
    # Half the races on an existing row, half on a row both processes try to create.
    for index in range(0, rounds, 2):
        Lease.objects.create(name=f"{prefix}-{index}")
    outputs = run_together(
        tmp_path,
        CHILD,
        [[prefix, holder, str(rounds)] for holder in ("process-a", "process-b")],
        timeout=60,
    )

    # Both were ready before the first race started: they really raced.
    assert [output["early"] for output in outputs] == [True, True]
    won_a, won_b = (output["won"] for output in outputs)
    assert len(won_a) == len(won_b) == rounds
    for index in range(rounds):
        assert won_a[index] != won_b[index], f"round {index}: a={won_a[index]} b={won_b[index]}"
        expected = "process-a" if won_a[index] else "process-b"
        assert Lease.objects.get(name=f"{prefix}-{index}").holder == expected
