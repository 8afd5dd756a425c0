"""Claim checks: an email too large for its SQS queue or a send task travels through S3.

The API puts the whole SQS message body (``WireEmail.encode``) in the payloads bucket under
``payloads/<email id>.json`` and queues a summary whose ``payload`` names the object and its
SHA-256 (``emails.wire``). The worker fetches and verifies it before sending
(``fetch``); a missing or corrupt object is the email's end, dead-lettered with the reason.

An object is deleted once its email is sent (``discard``, by the worker), at once when the
API withdrew the email, and otherwise by the cleanup (``cleanup``): an object of an email that
is sent or withdrawn once it is ``payloads.cleanup_after_hours`` old; of a dead email only
once no dead letter of it can be left to redrive (the dead-letter queue's retention after it
died); of an unknown one (no record) once it is older than an email can live. The bucket's
lifecycle rule is a safety net under that, longer than any email can live (checked by the
configuration).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from emails.wire import (
    TASK_PAYLOAD_LIMIT,
    PayloadRef,
    UndecodableMessage,
    WireEmail,
    decode,
    decode_claimed,
    dispatch_bytes,
)
from gomail_site.aws import aws_client, endpoint_of, queue_url
from gomail_site.config import SQS_MAX_MESSAGE_BYTES, SQS_MAX_RETENTION_SECONDS, PayloadsConfig

logger = logging.getLogger(__name__)

KEY_PREFIX = "payloads/"
# S3 answers these when the object is not there: the payload is gone. A missing bucket is
# not among them: that is a worker's configuration (endpoint, region), retried, not every
# claim check's end.
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# A dead email's object outlives any dead letter of it (the dead-letter queue's retention
# from the moment it died, and a day): until then a redrive may still need it.
DEAD_KEEP = timedelta(seconds=SQS_MAX_RETENTION_SECONDS) + timedelta(days=1)


class PayloadError(Exception):
    """The payload of a claim check could not be used."""


class PayloadMissing(PayloadError):
    """The object is not in the bucket: the email cannot be sent, ever."""


class PayloadCorrupt(PayloadError):
    """The object is not what the claim check says (its SHA-256, size or content)."""


class PayloadUnavailable(PayloadError):
    """S3 could not be reached or refused the call: try again later."""


def object_key(email_id: str) -> str:
    return f"{KEY_PREFIX}{email_id}.json"


def email_id_of_key(key: str) -> str | None:
    """The email id an object key names, or None for a key that is not ours."""
    if not (key.startswith(KEY_PREFIX) and key.endswith(".json")):
        return None
    try:
        return str(uuid.UUID(key[len(KEY_PREFIX) : -len(".json")]))
    except ValueError:
        return None


def needs_claim_check(body: str, max_message_bytes: int) -> bool:
    """True when the SQS body ``body`` is over what its queue takes or a send task carries."""
    return (
        len(body.encode("utf-8")) > max_message_bytes or dispatch_bytes(body) > TASK_PAYLOAD_LIMIT
    )


_queue_limits: dict[tuple[str, str], int] = {}
_queue_limits_lock = threading.Lock()


def queue_max_message_bytes(queue_name: str) -> int:
    """The queue's ``MaximumMessageSize`` (looked up once per process); SQS's oldest limit,
    256 KiB, when it cannot be read (the claim check then starts sooner, never later)."""
    aws = settings.GOMAIL.aws
    key = (endpoint_of(aws) or aws.region, queue_name)
    with _queue_limits_lock:
        cached = _queue_limits.get(key)
    if cached is not None:
        return cached
    try:
        attributes = aws_client("sqs").get_queue_attributes(
            QueueUrl=queue_url(queue_name), AttributeNames=["MaximumMessageSize"]
        )["Attributes"]
        limit = int(attributes["MaximumMessageSize"])
    except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
        # Kept too: the oldest limit is never wrong, and asking again on every request would
        # add a call to each while SQS has trouble.
        logger.warning("cannot read MaximumMessageSize of %s: %s", queue_name, exc)
        limit = SQS_MAX_MESSAGE_BYTES
    with _queue_limits_lock:
        _queue_limits[key] = limit
    return limit


def _s3(attempts: int = 3) -> Any:
    return aws_client("s3", attempts=attempts)


def store(email: WireEmail, body: str) -> WireEmail:
    """Put ``body`` (``email``'s SQS body) in the bucket; returns the claim check to queue.
    Raises ``PayloadUnavailable`` when S3 did not take it."""
    content = body.encode("utf-8")
    ref = PayloadRef(
        bucket=settings.GOMAIL.payloads.bucket,
        key=object_key(email.id),
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
    )
    try:
        _s3().put_object(
            Bucket=ref.bucket, Key=ref.key, Body=content, ContentType="application/json"
        )
    except (BotoCoreError, ClientError) as exc:
        raise PayloadUnavailable(f"S3 did not take the payload: {exc}") from exc
    return email.summary(ref)


def fetch(summary: WireEmail) -> WireEmail:
    """The whole email of the claim check ``summary``, verified against its SHA-256 and size.

    Raises ``PayloadMissing``, ``PayloadCorrupt`` or ``PayloadUnavailable``.
    """
    ref = summary.payload
    assert ref is not None, "not a claim check"
    try:
        # One attempt: a worker's claim is running (a failed fetch is retried by the queue).
        answer = _s3(attempts=1).get_object(Bucket=ref.bucket, Key=ref.key)
        content = answer["Body"].read(ref.size + 1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING_CODES:
            raise PayloadMissing(f"payload s3://{ref.bucket}/{ref.key} is missing") from exc
        raise PayloadUnavailable(f"payload could not be read: {exc}") from exc
    except BotoCoreError as exc:
        raise PayloadUnavailable(f"payload could not be read: {exc}") from exc
    if len(content) != ref.size or hashlib.sha256(content).hexdigest() != ref.sha256:
        raise PayloadCorrupt(
            f"payload s3://{ref.bucket}/{ref.key} is corrupt (its SHA-256 or size differs)"
        )
    try:
        return decode_claimed(content, summary)
    except UndecodableMessage as exc:
        raise PayloadCorrupt(f"payload s3://{ref.bucket}/{ref.key} is corrupt: {exc}") from exc


def discard(ref: PayloadRef, email_id: str) -> bool:
    """Delete the object of an email that will never need it again (sent or withdrawn);
    a failure leaves it to the cleanup. Returns True when it is gone."""
    from emails import records  # records imports the models; this module stays light

    try:
        _s3().delete_object(Bucket=ref.bucket, Key=ref.key)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("could not delete payload %s (the cleanup will): %s", ref.key, exc)
        return False
    records.payload_deleted(email_id)
    return True


def renew(body: str) -> None:
    """A redrive queues the SQS body ``body`` again: when it is a claim check, its object
    starts its lifecycle afresh (copied onto itself), so that the safety net's days count
    from the redrive, as the email's life does. A failure is logged, not raised: the rule's
    days are long, and a missing object is the worker's to report."""
    try:
        ref = decode(body, "redriven").payload
    except UndecodableMessage:
        return
    if ref is None:
        return
    try:
        _s3().copy_object(
            Bucket=ref.bucket,
            Key=ref.key,
            CopySource={"Bucket": ref.bucket, "Key": ref.key},
            MetadataDirective="REPLACE",
            ContentType="application/json",
        )
    except (BotoCoreError, ClientError) as exc:
        logger.warning("could not renew payload %s for its redrive: %s", ref.key, exc)


def ensure_bucket(config: PayloadsConfig) -> None:
    """Create the payloads bucket (idempotently) with its lifecycle rule, the safety net."""
    s3 = _s3()
    region = settings.GOMAIL.aws.region
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=config.bucket)
        else:
            s3.create_bucket(
                Bucket=config.bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        }:
            raise
    s3.put_bucket_lifecycle_configuration(
        Bucket=config.bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "gomail-payloads-safety-net",
                    "Filter": {"Prefix": KEY_PREFIX},
                    "Status": "Enabled",
                    "Expiration": {"Days": config.lifecycle_days},
                }
            ]
        },
    )


@dataclass(frozen=True)
class CleanupReport:
    examined: int
    deleted: int
    kept: int


def may_delete(
    status: str | None, died_at: datetime | None, stored_at: datetime, now: datetime
) -> bool:
    """Whether the cleanup deletes an object stored at ``stored_at`` whose email has
    ``status`` (None: no record) and, when dead, died at ``died_at`` (pure)."""
    from emails.models import Email

    old_enough = now - stored_at >= timedelta(hours=settings.GOMAIL.payloads.cleanup_after_hours)
    if status is None:
        # No record: written by an API that failed before it, or deleted by cleanup_emails
        # (records.retention_days) while its dead letter may still be redriven; so it waits
        # out the longest an email can live (a redrive renews the object).
        lifetime = timedelta(seconds=settings.GOMAIL.sqs.message_retention_seconds) + DEAD_KEEP
        return old_enough and now - stored_at >= lifetime
    if status in (Email.Status.SENT, Email.Status.WITHDRAWN):
        return old_enough
    if status == Email.Status.DEAD:
        return old_enough and died_at is not None and now - died_at >= DEAD_KEEP
    return False  # queued, sending or failed: it can still be delivered


def cleanup(now: datetime | None = None) -> CleanupReport:
    """Delete the objects no email can need any more (see ``may_delete``)."""
    now = now or timezone.now()
    bucket = settings.GOMAIL.payloads.bucket
    examined = deleted = 0
    # A listing's page holds at most 1000 keys, as many as one DeleteObjects takes.
    for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=KEY_PREFIX):
        stored = page.get("Contents", [])
        examined += len(stored)
        deleted += _delete_unneeded(bucket, stored, now)
    return CleanupReport(examined=examined, deleted=deleted, kept=examined - deleted)


def _delete_unneeded(bucket: str, stored: list[dict[str, Any]], now: datetime) -> int:
    from emails import records
    from emails.models import Email

    ids = {item["Key"]: email_id_of_key(item["Key"]) for item in stored}
    found = {
        str(r["id"]): r
        for r in Email.objects.filter(id__in=[i for i in ids.values() if i]).values(
            "id", "status", "updated_at"
        )
    }
    doomed = []
    for item in stored:
        record = found.get(ids[item["Key"]] or "")
        status, died_at = (record["status"], record["updated_at"]) if record else (None, None)
        if may_delete(status, died_at, item["LastModified"], now):
            doomed.append(item["Key"])
    if not doomed:
        return 0
    answer = _s3().delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": key} for key in doomed], "Quiet": True}
    )
    failed = {error["Key"] for error in answer.get("Errors", [])}
    records.payload_deleted(*(ids[key] for key in doomed if key not in failed and ids[key]))
    return len(doomed) - len(failed)
