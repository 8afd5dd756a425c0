"""Email records, the API keys that send them, and the senders keys and users may use.

The body of an email stays in SQS; a record holds what the admin, the status endpoint and
idempotent redelivery need (DESIGN.md section 7).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from emails.senders import validate_entries

API_KEY_PREFIX = "gm"
PREFIX_PATTERN = re.compile(r"[0-9a-f]{12}")
# Touching last_used_at on every request would make every API call a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash_key(raw_key: str) -> str:
    # Keys carry 256 random bits, so a fast digest is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


class ApiKey(models.Model):
    """A bearer key for ``POST /email/send``. Only its SHA-256 is stored; the key is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="Optional owner; emails sent with the key are visible to them too.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    allowed_senders = models.TextField(
        blank=True,
        validators=[validate_entries],
        help_text=(
            "Sender addresses (billing@example.com) or domains (example.com) this key may send "
            "from, one per line, besides the configuration's api.allowed_senders and its "
            "user's."
        ),
    )

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({API_KEY_PREFIX}_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def assign_new_key(self) -> str:
        """Give this (unsaved or existing) key a fresh secret; returns the raw key to show once."""
        self.prefix = secrets.token_hex(6)
        raw_key = f"{API_KEY_PREFIX}_{self.prefix}_{secrets.token_urlsafe(32)}"
        self.key_hash = _hash_key(raw_key)
        return raw_key

    @classmethod
    def create_key(cls, name: str, user: models.Model | None = None) -> tuple[ApiKey, str]:
        """Create and save a key; returns it with the raw key, which is not stored anywhere."""
        api_key = cls(name=name, user=user)
        raw_key = api_key.assign_new_key()
        api_key.save()
        return api_key, raw_key

    @classmethod
    def find_active(cls, raw_key: str) -> ApiKey | None:
        """The active key matching ``raw_key``, compared in constant time, or None."""
        parts = raw_key.split("_", 2)
        # Only a well-formed prefix reaches the database (PostgreSQL refuses NUL in text).
        if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not PREFIX_PATTERN.fullmatch(parts[1]):
            return None
        candidate = cls.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
        if candidate is None or not hmac.compare_digest(candidate.key_hash, _hash_key(raw_key)):
            return None
        return candidate

    def touch(self) -> None:
        """Record a use, at most once per ``LAST_USED_RESOLUTION``."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now


class SenderAllowance(models.Model):
    """The sender addresses and domains one user may send from (with any of their API keys
    too), besides the configuration's ``api.allowed_senders``: see ``emails.senders``."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="sender_allowance",
    )
    allowed_senders = models.TextField(
        blank=True,
        validators=[validate_entries],
        help_text=(
            "Sender addresses (billing@example.com) or domains (example.com) this user may "
            "send from, one per line, besides the configuration's api.allowed_senders."
        ),
    )

    class Meta:
        verbose_name = "allowed senders of a user"
        verbose_name_plural = "allowed senders of users"

    def __str__(self) -> str:
        return f"allowed senders of {self.user}"


class Email(models.Model):
    """One accepted email, keyed by the id the API assigned (the wire format's ``id``)."""

    class Status(models.TextChoices):
        # Written before SendMessage (no database lock is held across the call): a worker may
        # claim it as soon as SQS has the message.
        QUEUED = "queued"
        # SendMessage failed and the API answered 503: a copy SQS may have kept after all (an
        # answer lost) is dropped by the worker, never delivered.
        WITHDRAWN = "withdrawn"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        DEAD = "dead"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    from_email = models.CharField(max_length=320)
    from_name = models.CharField(max_length=256, blank=True)
    to_email = models.CharField(max_length=320, db_index=True)
    to_name = models.CharField(max_length=256, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    provider = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    provider_message_id = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    # Providers that rejected the message as its own fault, with their reasons: it is not
    # offered to them again, and when every enabled provider is in here it is dead-lettered.
    rejections = models.JSONField(default=dict, blank=True)
    # Set while a worker sends it; a claim older than the queue's visibility timeout is stale.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Attempts whose outcome was unknown (a timeout after submission, a worker lost mid-send):
    # each may have delivered a copy, so a later success may be a duplicate.
    unknown_outcomes = models.PositiveIntegerField(default=0)
    queue = models.CharField(max_length=80, blank=True, help_text="Incoming SQS queue")
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="emails"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="emails",
    )
    resent_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resends",
        help_text="The dead email this one is a copy of (the admin's resend)",
    )
    # Set on a dead email when a resend claims it (``records.claim_resend``), before its copy
    # is made; cleared if the copy could not be queued. Makes one copy of two resends at once.
    resent_at = models.DateTimeField(null=True, blank=True)
    # When a redrive queued it again: delivery.max_age_hours counts from here then, and a
    # dead letter older than this is not its email's end any more (the reconciliation).
    requeued_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # {"to": [{"email", "name"?}], "cc": [...], "bcc": [...]}; {} for an original-format
    # email, whose one recipient is to_email/to_name.
    recipients = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # [{"filename", "contentType", "size", "contentId"?}]: what was attached, not the content.
    attachments = models.JSONField(default=list, blank=True)
    # The S3 key of its claim check (emails.claim_check) when it travels as one; cleared once
    # the object is deleted.
    payload_key = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-accepted_at"]

    def __str__(self) -> str:
        return f"{self.id} to {self.to_email} ({self.status})"


class EmailTag(models.Model):
    """One tag of one email, a row of its own so that the admin can filter by tag on both
    databases (the email's ``tags`` list is what the API answers)."""

    email = models.ForeignKey(Email, on_delete=models.CASCADE, related_name="tag_rows")
    tag = models.CharField(max_length=255, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["email", "tag"], name="unique_tag_per_email")
        ]

    def __str__(self) -> str:
        return self.tag


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` one caller sent (``emails.idempotency``): the unique constraint
    on (owner, key) is what makes two API processes agree on which request is the first."""

    # "key:<id>", "user:<id>" or "anonymous" (require_auth off).
    owner = models.CharField(max_length=80)
    key = models.CharField(max_length=255)
    # SHA-256 of the request's canonical JSON: the same key with another request is a 422.
    fingerprint = models.CharField(max_length=64)
    email_id = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Set once the email was accepted (its 200 may be replayed); null while in progress.
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="unique_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"{self.owner}: {self.key}"


class Attempt(models.Model):
    """One provider call for one email: the delivery history the admin shows."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        TRANSIENT = "transient"
        PROVIDER_CONFIG = "provider_config"
        PERMANENT = "permanent"

    email = models.ForeignKey(Email, on_delete=models.CASCADE, related_name="attempt_log")
    provider = models.CharField(max_length=32)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    outcome_unknown = models.BooleanField(default=False)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.provider}: {self.outcome}"


class RateHistory(models.Model):
    """One caller's recent requests in one rate-limit scope (``emails.throttling``): the
    timestamps DRF's throttle keeps, newest first, in a row locked while it is updated."""

    key = models.CharField(max_length=200, primary_key=True)
    history = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key
