"""The operators' management commands, against moto's SQS and the database."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dispatch import health_store
from dispatch.health import HealthState
from dispatch.models import ProviderControl
from dispatch.pipeline import run_pipeline
from emails.models import ApiKey, Attempt, Email
from tests.clients import keyed, post_email
from tests.dispatch.realparts import incoming_queue, put, wire_email
from tests.operations.support import (
    RecordingDispatcher,
    dead_letter_queue,
    put_dead_letter,
    queued_record,
    receive_all,
)

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def dead_letter_ids() -> set[str]:
    return {m["MessageId"] for m in receive_all(dead_letter_queue())}


# --- provider -----------------------------------------------------------------------------


def test_provider_drain_and_resume_change_the_control_row(db):
    assert run("provider", "drain", "sendgrid").strip() == "sendgrid: drained"
    control = ProviderControl.objects.get(name="sendgrid")
    assert control.drained
    assert control.changed_by.endswith("(manage.py)")
    assert control.changed_at is not None

    assert run("provider", "resume", "sendgrid").strip() == "sendgrid: resumed"
    assert not ProviderControl.objects.get(name="sendgrid").drained


def test_provider_drain_is_obeyed_by_the_pipeline(aws):
    run("provider", "drain", "ses")
    for _ in range(3):
        put(wire_email().encode())

    dispatcher = RecordingDispatcher()
    run_pipeline(dispatcher)

    assert dispatcher.providers == {"sendgrid"}


def test_provider_reset_requests_a_reset_the_pipeline_applies(aws):
    health_store.save_state("ses", HealthState(healthy=False, consecutive_failures=4))

    assert run("provider", "reset", "ses").strip() == "ses: health reset requested"
    assert ProviderControl.objects.get(name="ses").reset_requested_at is not None

    run_pipeline(RecordingDispatcher())

    assert health_store.load_state("ses") == HealthState()
    assert ProviderControl.objects.get(name="ses").reset_requested_at is None


def test_provider_unknown_name_is_an_error(db):
    with pytest.raises(CommandError, match="no provider named 'mailgun'"):
        run("provider", "drain", "mailgun")
    assert not ProviderControl.objects.exists()


def test_provider_health_shows_the_cached_state():
    health_store.save_state(
        "sendgrid",
        HealthState(healthy=False, consecutive_failures=5, last_error="HTTP 503 from SendGrid"),
    )

    lines = run("provider_health").splitlines()

    [ses] = [line for line in lines if line.startswith("ses ")]
    [sendgrid] = [line for line in lines if line.startswith("sendgrid ")]
    assert ses.split()[:5] == ["ses", "yes", "yes", "0", "0"]
    assert sendgrid.split()[:5] == ["sendgrid", "yes", "NO", "5", "0"]
    assert sendgrid.endswith("HTTP 503 from SendGrid")
    assert "unhealthy after 3 failing batches" in lines[-1]


# --- dead_letters -------------------------------------------------------------------------


def test_dead_letters_list_shows_each_and_hides_none(aws):
    email = wire_email(subject="Listed")
    first = put_dead_letter(email.encode(), reason="rejected: bad box", email_id=email.id)
    second = put_dead_letter("garbage", reason="undecodable message", receive_count=9)

    lines = run("dead_letters", "list").splitlines()

    assert len(lines) == 2
    [line] = [line for line in lines if line.startswith(first)]
    assert f"email={email.id}" in line
    assert "rejected: bad box" in line
    assert "'Listed'" in line
    [line] = [line for line in lines if line.startswith(second)]
    assert "receives=9" in line
    assert "email=-" in line
    assert dead_letter_ids() == {first, second}


def test_dead_letters_redrive_selected_and_all(aws):
    moved_email = wire_email()
    queued_record(moved_email, status=Email.Status.DEAD, rejections={"ses": "no"})
    moved = put_dead_letter(moved_email.encode(), email_id=moved_email.id)
    kept = put_dead_letter(wire_email().encode())

    assert run("dead_letters", "redrive", moved).strip() == "redrove 1 message(s)"
    assert dead_letter_ids() == {kept}
    assert [m["Body"] for m in receive_all(incoming_queue(0))] == [moved_email.encode()]
    record = Email.objects.get(id=moved_email.id)
    assert (record.status, record.rejections) == (Email.Status.QUEUED, {})

    assert run("dead_letters", "redrive", "--all").strip() == "redrove 1 message(s)"
    assert dead_letter_ids() == set()
    assert len(receive_all(incoming_queue(0))) == 2


def test_dead_letters_redrive_needs_ids_or_all(aws):
    kept = put_dead_letter(wire_email().encode())

    with pytest.raises(CommandError, match="--all"):
        run("dead_letters", "redrive")
    assert dead_letter_ids() == {kept}


def test_dead_letters_delete_refuses_without_yes(aws):
    gone = put_dead_letter(wire_email().encode())
    kept = put_dead_letter(wire_email().encode())

    with pytest.raises(CommandError, match="--yes"):
        run("dead_letters", "delete", gone)
    assert dead_letter_ids() == {gone, kept}

    with pytest.raises(CommandError, match="name the message ids"):
        run("dead_letters", "delete", "--yes")
    assert dead_letter_ids() == {gone, kept}

    assert run("dead_letters", "delete", gone, "--yes").strip() == "deleted 1 message(s)"
    assert dead_letter_ids() == {kept}


# --- cleanup_emails -----------------------------------------------------------------------


def _aged(status: str, days: float) -> Email:
    record = queued_record(wire_email(), status=status)
    Email.objects.filter(id=record.id).update(accepted_at=timezone.now() - timedelta(days=days))
    Attempt.objects.create(email=record, provider="ses", outcome="sent")
    return record


def test_cleanup_emails_deletes_only_final_records_older_than_retention(db, gomail_config):
    gomail_config(records={"retention_days": 30})
    old_sent = _aged(Email.Status.SENT, 31)
    old_dead = _aged(Email.Status.DEAD, 45)
    kept = {
        str(_aged(Email.Status.SENT, 29).id),  # final but young
        str(_aged(Email.Status.DEAD, 1).id),
        str(_aged(Email.Status.QUEUED, 400).id),  # old but still on its way
        str(_aged(Email.Status.SENDING, 400).id),
        str(_aged(Email.Status.FAILED, 400).id),
    }

    output = run("cleanup_emails")

    assert "older than 30 days" in output
    assert {str(id_) for id_ in Email.objects.values_list("id", flat=True)} == kept
    assert not Attempt.objects.filter(email_id__in=[old_sent.id, old_dead.id]).exists()
    assert Attempt.objects.count() == len(kept)


def test_cleanup_emails_days_overrides_the_configuration(db, gomail_config):
    gomail_config(records={"retention_days": 90})
    ten_days = _aged(Email.Status.SENT, 10)
    two_days = _aged(Email.Status.SENT, 2)

    run("cleanup_emails", "--days", "5")

    assert [str(id_) for id_ in Email.objects.values_list("id", flat=True)] == [str(two_days.id)]
    assert not Email.objects.filter(id=ten_days.id).exists()


def test_cleanup_deletes_in_chunks_each_its_own_transaction(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from emails import records

    old = [_aged(Email.Status.SENT if n % 2 else Email.Status.DEAD, 40) for n in range(5)]
    kept = _aged(Email.Status.QUEUED, 40)
    copy = queued_record(wire_email(), status=Email.Status.QUEUED, resent_from=old[0])

    with CaptureQueriesContext(connection) as queries:
        deleted = records.delete_final_before(timezone.now() - timedelta(days=30), chunk_size=2)

    assert deleted == 10  # five records, their five attempts: as one delete reports them
    assert {str(id_) for id_ in Email.objects.values_list("id", flat=True)} == {
        str(kept.id),
        str(copy.id),
    }
    assert Email.objects.get(id=copy.id).resent_from is None  # SET_NULL, as before
    email_deletes = [
        query["sql"] for query in queries if query["sql"].startswith('DELETE FROM "emails_email"')
    ]
    assert len(email_deletes) == 3  # 2 + 2 + 1: no transaction holds more than a chunk
    # Each chunk its own transaction (a savepoint inside the test's own).
    assert sum(query["sql"].startswith("SAVEPOINT") for query in queries) >= 3


# --- create_api_key -----------------------------------------------------------------------


def test_create_api_key_prints_a_working_key(aws):
    raw_key = run("create_api_key", "reporting").strip().splitlines()[-1]

    response = post_email(
        keyed(raw_key), {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi"}
    )
    assert response.status_code == 200
    assert ApiKey.objects.get().name == "reporting"


def test_create_api_key_for_an_unknown_user_is_an_error(db):
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        run("create_api_key", "x", "--user", "ghost")
    assert not ApiKey.objects.exists()


def test_provider_queues_lists_every_configured_provider_for_the_worker():
    """The Procfile's provider worker consumes what this prints: a disabled provider's queue
    too (the test configuration's SMTP relay), so nothing dispatched to it is stranded."""
    out = io.StringIO()
    call_command("provider_queues", stdout=out)
    assert out.getvalue().strip() == "ses,sendgrid,smtp"
