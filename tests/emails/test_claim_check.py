"""The claim checks' objects: which the cleanup deletes (pure), the cleanup and its command
against moto's S3, and a worker's fetch of a missing, corrupt or unreachable payload."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from emails import claim_check, records
from emails.models import Email
from emails.wire import WireEmail
from gomail_site.aws import aws_client

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("status", "died_days_ago", "stored_days_ago", "deleted"),
    [
        # No record (its record deleted by cleanup_emails, say): once no dead letter of it
        # can be left (10 days of incoming retention, 14 in the dead-letter queue, a day).
        (None, None, 26, True),
        (None, None, 24, False),
        ("sent", None, 2, True),
        ("withdrawn", None, 2, True),
        ("queued", None, 300, False),  # can still be delivered, whatever its age
        ("sending", None, 300, False),
        ("failed", None, 300, False),
        ("dead", 3, 30, False),  # its dead letter may still be redriven
        ("dead", 16, 30, True),  # past the dead-letter queue's 14 days, and a day
    ],
)
def test_may_delete(status, died_days_ago, stored_days_ago, deleted):
    died_at = NOW - died_days_ago * DAY if died_days_ago is not None else None

    assert claim_check.may_delete(status, died_at, NOW - stored_days_ago * DAY, NOW) is deleted


def test_only_our_keys_name_an_email():
    email_id = str(uuid.uuid4())

    assert claim_check.email_id_of_key(claim_check.object_key(email_id)) == email_id
    assert claim_check.email_id_of_key("payloads/not-a-uuid.json") is None
    assert claim_check.email_id_of_key(f"other/{email_id}.json") is None


def wire(**fields) -> WireEmail:
    return WireEmail(
        id=str(uuid.uuid4()),
        from_email="sender@example.com",
        to_email="reader@example.org",
        body="x" * 1000,
        accepted_at=timezone.now(),
        **fields,
    )


def stored(email: WireEmail) -> WireEmail:
    return claim_check.store(email, email.encode())


def keys() -> set[str]:
    answer = aws_client("s3").list_objects_v2(Bucket=settings.GOMAIL.payloads.bucket)
    return {item["Key"] for item in answer.get("Contents", [])}


@pytest.mark.django_db
def test_the_cleanup_deletes_what_no_email_needs_and_keeps_the_rest(aws):
    def record(status: str) -> WireEmail:
        email = wire()
        summary = stored(email)
        records.record_accepted(email, "q", payload_key=summary.payload.key)
        Email.objects.filter(id=email.id).update(status=status)
        return email

    sent, withdrawn, queued, failed, dead = (
        record(s) for s in ("sent", "withdrawn", "queued", "failed", "dead")
    )
    unknown = wire()
    stored(unknown)
    later = timezone.now() + timedelta(hours=settings.GOMAIL.payloads.cleanup_after_hours + 1)

    report = claim_check.cleanup(now=later)

    kept = {claim_check.object_key(e.id) for e in (queued, failed, dead, unknown)}
    assert keys() == kept
    assert (report.examined, report.deleted, report.kept) == (6, 2, 4)
    # An unknown email's object once no dead letter of it can be left.
    assert claim_check.cleanup(now=later + timedelta(days=25)).deleted == 2  # and the dead one
    assert keys() == {claim_check.object_key(e.id) for e in (queued, failed)}
    assert Email.objects.get(id=sent.id).payload_key == ""
    assert Email.objects.get(id=withdrawn.id).payload_key == ""
    assert Email.objects.get(id=queued.id).payload_key == claim_check.object_key(queued.id)


@pytest.mark.django_db
def test_the_cleanup_keeps_young_objects(aws):
    stored(wire())

    report = claim_check.cleanup()

    assert (report.deleted, report.kept) == (0, 1)


@pytest.mark.django_db
def test_the_command_reports_what_it_deleted(aws):
    stored(wire())
    out = io.StringIO()

    call_command("cleanup_payloads", stdout=out)

    assert out.getvalue().strip() == "deleted 0 of 1 payload(s), kept 1"


def test_fetch_verifies_the_object(aws):
    email = wire(html="<p>x</p>")
    summary = stored(email)
    s3, bucket = aws_client("s3"), settings.GOMAIL.payloads.bucket

    assert claim_check.fetch(summary) == email
    s3.put_object(Bucket=bucket, Key=summary.payload.key, Body=email.encode().encode() + b" ")
    with pytest.raises(claim_check.PayloadCorrupt, match="SHA-256 or size"):
        claim_check.fetch(summary)
    s3.delete_object(Bucket=bucket, Key=summary.payload.key)
    with pytest.raises(claim_check.PayloadMissing, match="is missing"):
        claim_check.fetch(summary)


def test_another_emails_object_under_the_key_is_corrupt(aws):
    mine, other = wire(), wire()
    summary = stored(mine)
    body = other.encode().encode()
    aws_client("s3").put_object(
        Bucket=settings.GOMAIL.payloads.bucket, Key=summary.payload.key, Body=body
    )
    forged = summary.summary(
        summary.payload.__class__(
            summary.payload.bucket, summary.payload.key, hashlib.sha256(body).hexdigest(), len(body)
        )
    )

    with pytest.raises(claim_check.PayloadCorrupt, match="not this email's"):
        claim_check.fetch(forged)


def test_s3_unreachable_is_unavailable_not_missing(aws, gomail_config):
    summary = stored(wire())
    gomail_config(aws={"endpoint_url": "http://127.0.0.1:9"})

    with pytest.raises(claim_check.PayloadUnavailable):
        claim_check.fetch(summary)


def test_a_redrive_renews_the_objects_lifecycle(aws):
    summary = stored(wire())
    s3, bucket = aws_client("s3"), settings.GOMAIL.payloads.bucket
    before = s3.head_object(Bucket=bucket, Key=summary.payload.key)["LastModified"]
    time.sleep(1.1)  # S3's LastModified has whole seconds

    claim_check.renew(summary.encode())
    claim_check.renew(wire().encode())  # not a claim check: nothing to renew

    after = s3.head_object(Bucket=bucket, Key=summary.payload.key)
    assert after["LastModified"] > before
    assert claim_check.fetch(summary).id == summary.id  # the same content
