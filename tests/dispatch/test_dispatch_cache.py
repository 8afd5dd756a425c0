"""The dispatch cache (its own DatabaseCache alias and table): nothing else written to the
default cache can cull provider health, pending batches or outcomes; its own culling never
drops a live key; beat's purge removes its expired rows only; the scheduled records cleanup
runs the ``cleanup_emails`` command's work."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from dispatch import health_store, tasks
from dispatch.health import BatchOutcome, HealthState
from dispatch.health_store import PendingBatch
from emails.models import Email
from tests.dispatch.email_records import record

pytestmark = pytest.mark.django_db

UNHEALTHY = HealthState(healthy=False, consecutive_failures=5, last_error="HTTP 503")


def with_options(settings: Any, alias: str, **options: int) -> None:
    """Change one cache alias's OPTIONS (Django rebuilds its cache handlers on the change)."""
    changed = {
        **settings.CACHES[alias],
        "OPTIONS": {**settings.CACHES[alias]["OPTIONS"], **options},
    }
    settings.CACHES = {**settings.CACHES, alias: changed}


def write_dispatch_state() -> tuple[PendingBatch, BatchOutcome]:
    batch = PendingBatch(uuid.uuid4().hex, 10, timezone.now().isoformat())
    outcome = BatchOutcome(sent=9, transient=1, errors=["HTTP 500"])
    health_store.save_state("ses", UNHEALTHY)
    health_store.save_pending("ses", [batch])
    health_store.write_outcome(batch.batch_id, outcome)
    health_store.next_run_number()
    return batch, outcome


def assert_dispatch_state_intact(batch: PendingBatch, outcome: BatchOutcome) -> None:
    assert health_store.load_state("ses") == UNHEALTHY
    assert health_store.load_pending("ses") == [batch]
    assert health_store.read_outcomes([batch.batch_id]) == {batch.batch_id: outcome.to_dict()}
    assert health_store.next_run_number() == 1


def rows(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        return cursor.fetchone()[0]


def test_filling_the_default_cache_past_max_entries_drops_no_dispatch_key(settings):
    # Culling deletes the lowest keys first: ":1:dispatch:..." sorts before most others.
    with_options(settings, "default", MAX_ENTRIES=5, CULL_FREQUENCY=2)
    batch, outcome = write_dispatch_state()

    for number in range(40):
        caches["default"].set(f"filler-{number}", "x")

    assert_dispatch_state_intact(batch, outcome)


def test_the_dispatch_cache_never_culls_a_live_key_even_past_max_entries(settings):
    # Its size is bounded by design (two keys per provider, one outcome per batch in flight);
    # were MAX_ENTRIES ever passed, culling must still drop nothing live (health sorts first).
    with_options(settings, "dispatch", MAX_ENTRIES=5)
    batch, outcome = write_dispatch_state()
    others = [uuid.uuid4().hex for _ in range(40)]

    for batch_id in others:
        health_store.write_outcome(batch_id, BatchOutcome(sent=1))

    assert_dispatch_state_intact(batch, outcome)
    assert len(health_store.read_outcomes(others)) == len(others)


def test_the_purge_task_removes_expired_dispatch_rows_only():
    batch, outcome = write_dispatch_state()
    dispatch_cache = caches[health_store.DISPATCH_CACHE]
    table = django_settings.CACHES[health_store.DISPATCH_CACHE]["LOCATION"]
    # timeout=0: written already expired, as a late outcome is once its day has passed.
    for number in range(3):
        dispatch_cache.set(f"dispatch:outcome:expired-{number}", {"sent": 1}, timeout=0)
    assert rows(table) == 4 + 3

    purged = tasks.purge_dispatch_cache()

    assert purged == 3
    assert rows(table) == 4
    assert_dispatch_state_intact(batch, outcome)


def test_the_dispatch_cache_is_a_table_of_its_own():
    dispatch_cache = django_settings.CACHES[health_store.DISPATCH_CACHE]
    default_table = django_settings.CACHES["default"]["LOCATION"]
    assert dispatch_cache["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert dispatch_cache["LOCATION"] != default_table

    write_dispatch_state()

    assert (rows(dispatch_cache["LOCATION"]), rows(default_table)) == (4, 0)


def test_the_scheduled_cleanup_deletes_old_final_records_only(settings):
    days = settings.GOMAIL.records.retention_days
    old = timedelta(days=days + 1)
    old_sent, old_dead = record(Email.Status.SENT, old), record(Email.Status.DEAD, old)
    kept = [
        record(Email.Status.QUEUED, old),
        record(Email.Status.FAILED, old),
        record(Email.Status.SENT, timedelta(days=days - 1)),
    ]

    report = tasks.cleanup_emails()

    assert report == f"deleted 2 row(s) older than {days} days"
    remaining = set(Email.objects.values_list("id", flat=True))
    assert remaining == {email.id for email in kept}
    assert not remaining & {old_sent.id, old_dead.id}
