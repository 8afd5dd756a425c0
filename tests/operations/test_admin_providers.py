"""The provider health page's actions, against moto, the database and the DB cache: drain
really stops traffic (probes included), resume brings it back, reset health is applied by the
next pipeline run. Each action is in Django's admin log under the operator's name."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dispatch import health_store
from dispatch.health import HealthState
from dispatch.health_store import PendingBatch
from dispatch.models import ProviderControl
from dispatch.pipeline import run_pipeline
from emails.models import Attempt, Email
from tests.dispatch.realparts import (
    dead_letter_reason,
    dead_letters,
    incoming_queue,
    levels,
    put,
    wire_email,
)
from tests.operations.support import RecordingDispatcher, queued_record, receive_all

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

CHANGELIST = "admin:dispatch_providercontrol_changelist"
UNHEALTHY = HealthState(
    healthy=False,
    consecutive_failures=7,
    consecutive_passes=0,
    changed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    last_error="HTTP 503 from SES",
)


def act(client: Client, action: str, *names: str):
    """Run a changelist action on the named providers, as the admin's form posts it."""
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": list(names), "index": 0},
        follow=True,
    )


def queue_emails(count: int) -> list[str]:
    emails = [wire_email(subject=f"message {n}") for n in range(count)]
    for email in emails:
        put(email.encode())
    return [email.id for email in emails]


def test_drain_stops_even_probes_and_resume_brings_them_back(aws, staff_client, staff_user):
    health_store.save_state("ses", UNHEALTHY)

    # Before: the unhealthy provider gets exactly its probe (the test can see a probe).
    queue_emails(4)
    before = RecordingDispatcher()
    assert run_pipeline(before).read == 4
    assert len(before.messages_for("ses")) == 1
    assert len(before.messages_for("sendgrid")) == 3

    response = act(staff_client, "drain", "ses")
    assert response.status_code == 200
    assert "Drained: ses" in response.content.decode()
    assert ProviderControl.objects.get(name="ses").drained
    assert ProviderControl.objects.get(name="ses").changed_by == "operator"

    queue_emails(4)
    drained = RecordingDispatcher()
    report = run_pipeline(drained)
    assert report.read == 4
    assert drained.messages_for("ses") == []
    assert "ses" not in drained.providers
    assert len(drained.messages_for("sendgrid")) == 4

    page = staff_client.get(reverse(CHANGELIST)).content.decode()
    assert "drained" in page

    response = act(staff_client, "resume", "ses")
    assert "Resumed: ses" in response.content.decode()
    assert not ProviderControl.objects.get(name="ses").drained

    queue_emails(4)
    resumed = RecordingDispatcher()
    assert run_pipeline(resumed).read == 4
    assert len(resumed.messages_for("ses")) == 1  # the probe again
    assert len(resumed.messages_for("sendgrid")) == 3

    log = LogEntry.objects.filter(user=staff_user, action_flag=CHANGE).order_by("id")
    messages = [entry.get_change_message() for entry in log]
    assert messages == ["Drained ses", "Resumed ses"]
    assert {entry.object_id for entry in log} == {"ses"}


def test_draining_a_healthy_provider_sends_everything_to_the_other(aws, staff_client):
    act(staff_client, "drain", "sendgrid")
    queue_emails(6)

    dispatcher = RecordingDispatcher()
    run_pipeline(dispatcher)

    assert dispatcher.providers == {"ses"}
    assert len(dispatcher.messages_for("ses")) == 6


def test_every_provider_drained_reads_nothing(aws, staff_client):
    act(staff_client, "drain", "ses", "sendgrid")
    ids = queue_emails(3)

    dispatcher = RecordingDispatcher()
    report = run_pipeline(dispatcher)

    assert report.read == 0
    assert dispatcher.calls == []
    # Nothing was taken off the queue: every message is still visible.
    assert len(receive_all(incoming_queue())) == len(ids)


def test_reset_health_is_applied_by_the_next_pipeline_run(aws, staff_client, staff_user):
    health_store.save_state("ses", UNHEALTHY)

    response = act(staff_client, "reset_health", "ses")

    assert "Health reset requested for: ses" in response.content.decode()
    assert ProviderControl.objects.get(name="ses").reset_requested_at is not None
    # The pipeline is the only writer of health: nothing changes before it runs.
    assert health_store.load_state("ses") == UNHEALTHY

    run_pipeline(RecordingDispatcher())

    state = health_store.load_state("ses")
    assert state.healthy
    assert (state.consecutive_failures, state.consecutive_passes) == (0, 0)
    assert ProviderControl.objects.get(name="ses").reset_requested_at is None
    assert LogEntry.objects.get(user=staff_user).get_change_message() == (
        "Health reset requested for ses"
    )

    # The request was consumed: a later unhealthy state is not reset again.
    health_store.save_state("ses", UNHEALTHY)
    run_pipeline(RecordingDispatcher())
    assert health_store.load_state("ses") == UNHEALTHY


def test_reset_routes_the_provider_as_healthy_in_the_same_run(aws, staff_client):
    health_store.save_state("ses", UNHEALTHY)
    act(staff_client, "reset_health", "ses")
    queue_emails(4)

    dispatcher = RecordingDispatcher()
    report = run_pipeline(dispatcher)

    assert report.health == {"ses": True, "sendgrid": True}
    assert len(dispatcher.messages_for("ses")) == 2
    assert len(dispatcher.messages_for("sendgrid")) == 2


def test_health_page_shows_the_state_from_the_cache(aws, staff_client):
    health_store.save_state("ses", UNHEALTHY)
    health_store.save_pending("ses", [PendingBatch("b1", 7, "2026-01-02T03:04:05+00:00")])
    record = queued_record(wire_email())
    for outcome in ("sent", "sent", "transient"):
        Attempt.objects.create(email=record, provider="ses", outcome=outcome)
    Attempt.objects.filter(outcome="transient").update(at=timezone.now() - timedelta(hours=2))
    Attempt.objects.create(email=record, provider="ses", outcome="permanent")

    html = staff_client.get(reverse(CHANGELIST)).content.decode()

    assert "unhealthy" in html
    assert "7 / 0" in html  # failing / passing streak
    assert "HTTP 503 from SES" in html
    assert "unhealthy at 2026-01-02 03:04:05 UTC" in html
    cells = {
        column: re.findall(rf'<td class="field-{column}">(.*?)</td>', html)
        for column in ("in_flight", "last_hour")
    }
    # Rows in name order: sendgrid, ses, then the test configuration's disabled SMTP relay.
    # The attempt two hours old is not counted.
    assert cells == {"in_flight": ["0", "7", "0"], "last_hour": ["0 / 0", "2 / 1", "0 / 0"]}


def test_every_provider_drained_still_gives_up_on_emails_past_their_max_age(aws, staff_client):
    """Nothing would read them until SQS's redrive or retention acted: the pipeline does, for
    the emails past ``delivery.max_age_hours``, and hides the others until their own."""
    act(staff_client, "drain", "ses", "sendgrid")
    old, young = wire_email(), wire_email()
    for email, hours in ((old, 73), (young, 71)):
        queued_record(email, accepted_at=timezone.now() - timedelta(hours=hours))
        put(email.encode())
    old, young = old.id, young.id

    dispatcher = RecordingDispatcher()
    report = run_pipeline(dispatcher)

    assert dispatcher.calls == []
    assert report.read == 2
    record = Email.objects.get(id=old)
    assert record.status == Email.Status.DEAD
    assert record.last_error.startswith("gave up after 0 attempts over 73.0 hours")
    assert record.last_error.endswith("last error: every enabled provider is drained")
    assert Email.objects.get(id=young).status == Email.Status.QUEUED
    # The young one is hidden again (until its own max age, here within the hour), not lost.
    assert receive_all(incoming_queue()) == []
    assert levels(incoming_queue()) == (0, 1)
    [dead] = dead_letters()
    assert dead_letter_reason(dead) == record.last_error
