"""Is mail moving? The time of the last finished pipeline run and the age of the oldest email
still waiting, as metrics and on the admin's provider page (with a warning once the pipeline
has been quiet for several intervals)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from dispatch import admin as dispatch_admin
from dispatch import health_store
from dispatch.pipeline import run_pipeline
from emails import records
from emails.models import Email
from tests.dispatch.email_records import record
from tests.operations.support import RecordingDispatcher

CHANGELIST = "admin:dispatch_providercontrol_changelist"
NOW = datetime(2026, 12, 2, 6, 0, 0, tzinfo=UTC)


def scrape() -> dict[str, float]:
    """Every unlabelled sample of ``/metrics`` by name."""
    response = Client().get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if not sample.labels
    }


@pytest.fixture
def staff_client(db: None) -> Client:
    user = get_user_model().objects.create_user(
        username="operator", password="not-used", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(user)
    return client


def provider_page(client: Client) -> str:
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    return response.content.decode()


# Pure decisions.


def test_a_recent_run_is_shown_with_its_age_and_no_warning():
    status = dispatch_admin.last_run_status(NOW - timedelta(seconds=3), NOW, interval_seconds=2)

    assert status.text == "last pipeline run finished at 2026-12-02 05:59:57 UTC (3 s ago)"
    assert not status.warning


def warns(seconds_ago: int, interval_seconds: float) -> bool:
    finished_at = NOW - timedelta(seconds=seconds_ago)
    return dispatch_admin.last_run_status(finished_at, NOW, interval_seconds).warning


def test_a_run_older_than_a_few_intervals_is_a_warning():
    # Five intervals, never less than 30 s (a run reading a backlog takes several short ones).
    assert (warns(29, 2), warns(31, 2)) == (False, True)
    assert "(31 s ago)" in dispatch_admin.last_run_status(NOW - timedelta(seconds=31), NOW, 2).text
    assert (warns(299, 60), warns(301, 60)) == (False, True)


def test_no_finished_run_at_all_is_a_warning():
    status = dispatch_admin.last_run_status(None, NOW, interval_seconds=2)

    assert status.warning
    assert status.text == "no pipeline run has finished yet"


def test_the_oldest_waiting_email_is_shown_with_its_age():
    text = dispatch_admin.oldest_waiting_status(NOW - timedelta(minutes=2), NOW)

    assert text == "oldest email waiting: accepted at 2026-12-02 05:58:00 UTC (120 s ago)"
    assert dispatch_admin.oldest_waiting_status(None, NOW) == "no email waiting"


# On the real parts.


@pytest.mark.django_db
def test_oldest_waiting_is_the_oldest_queued_sending_or_failed_record():
    assert records.oldest_waiting_accepted_at() is None
    record(Email.Status.SENT, timedelta(days=3))
    record(Email.Status.DEAD, timedelta(days=2))
    record(Email.Status.WITHDRAWN, timedelta(days=2))
    failed = record(Email.Status.FAILED, timedelta(hours=5))
    record(Email.Status.QUEUED, timedelta(hours=1))
    record(Email.Status.SENDING, timedelta(minutes=1))

    assert records.oldest_waiting_accepted_at() == failed.accepted_at


@pytest.mark.django_db
def test_a_finished_run_sets_the_last_run_metric_and_the_admin_shows_it(aws: Any, staff_client):
    before = time.time()

    assert run_pipeline(RecordingDispatcher()).ran

    samples = scrape()
    assert before <= samples["gomail_pipeline_last_run_timestamp_seconds"] <= time.time()
    finished_at = health_store.load_last_run()
    assert finished_at is not None
    assert abs(finished_at.timestamp() - samples["gomail_pipeline_last_run_timestamp_seconds"]) < 1
    page = provider_page(staff_client)
    assert f"last pipeline run finished at {finished_at:%Y-%m-%d %H:%M:%S} UTC" in page
    assert "pipeline-stale" not in page


@pytest.mark.django_db
def test_the_admin_warns_when_the_pipeline_has_been_quiet(staff_client):
    health_store.save_last_run(timezone.now() - timedelta(hours=1))

    page = provider_page(staff_client)

    assert "pipeline-stale" in page
    assert "(3600 s ago)" in page or "(3601 s ago)" in page


@pytest.mark.django_db
def test_the_oldest_waiting_email_age_is_a_metric_and_on_the_admin(aws: Any, staff_client):
    assert scrape()["gomail_oldest_waiting_email_age_seconds"] == 0
    record(Email.Status.SENT, timedelta(days=1))
    waiting = record(Email.Status.QUEUED, timedelta(minutes=10))

    age = scrape()["gomail_oldest_waiting_email_age_seconds"]

    assert 600 <= age < 660
    page = provider_page(staff_client)
    assert f"oldest email waiting: accepted at {waiting.accepted_at:%Y-%m-%d %H:%M:%S} UTC" in page
