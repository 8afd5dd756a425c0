"""Validation of an email submitted to the API and the shape of its status answer.

Messages are sentence-case and keyed by the wire format's camelCase names (DESIGN.md
section 4), and every failing field is reported at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from email_validator import EmailNotValidError, validate_email
from rest_framework import serializers

from emails.models import Email
from emails.senders import NOT_ALLOWED, is_allowed_sender
from emails.wire import WIRE_FIELDS, WireEmail

LINE_BREAKS = frozenset("\r\n\x0b\x0c\x85\u2028\u2029")
MAX_NAME_LENGTH = 256
MAX_SUBJECT_LENGTH = 998  # RFC 5322's line limit: a longer subject cannot be a header.


class TextField(serializers.CharField):
    """A string and only a string: DRF would otherwise turn ``5`` into ``"5"``."""

    def __init__(self, label: str, *, required: bool = False, header: bool = False, **kwargs: Any):
        self.header = header
        messages = {
            "required": f"{label} is required",
            "blank": f"{label} is required",
            "null": f"{label} is required" if required else f"{label} must be a string",
            "invalid": f"{label} must be a string",
            "max_length": f"{label} must be at most {{max_length}} characters",
        }
        super().__init__(
            required=required,
            allow_blank=not required,
            trim_whitespace=False,
            error_messages=messages,
            label=label,
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if self.required and not data.strip():
            self.fail("blank")
        if self.header and any(character in LINE_BREAKS for character in data):
            # A line break in a header value would let the sender add headers of its own.
            raise serializers.ValidationError(f"{self.label} must not contain line breaks")
        return super().to_internal_value(data)


class AddressField(TextField):
    """An email address as real mail systems accept it: IDN domains, long TLDs, any case."""

    def __init__(self, label: str, **kwargs: Any) -> None:
        super().__init__(label, header=True, max_length=320, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        address = super().to_internal_value(data)
        try:
            validate_email(address, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError:
            raise serializers.ValidationError(f"{self.label} is not a valid email") from None
        return address


class SendEmailSerializer(serializers.Serializer):
    """The ``email`` object of ``POST /email/send``; unknown keys are ignored.

    ``context["allowed_senders"]``: the sender policy's entries for the caller (see
    ``emails.senders``); without it, the configuration's ``api.allowed_senders`` alone.
    """

    fromEmail = AddressField("From email", required=True)
    fromName = TextField("From name", header=True, max_length=MAX_NAME_LENGTH)
    toEmail = AddressField("To email", required=True)
    toName = TextField("To name", header=True, max_length=MAX_NAME_LENGTH)
    subject = TextField("Subject", header=True, max_length=MAX_SUBJECT_LENGTH)
    body = TextField("Body", required=True)

    def wire_email(self, email_id: str, accepted_at: datetime) -> WireEmail:
        """The validated email as it travels (call after ``is_valid``)."""
        fields = self.validated_data
        return WireEmail(
            id=email_id,
            accepted_at=accepted_at,
            **{attribute: fields.get(key, "") for key, attribute in WIRE_FIELDS.items()},
        )

    def validate_fromEmail(self, value: str) -> str:
        allowed = self.context.get("allowed_senders")
        if allowed is None:
            allowed = settings.GOMAIL.api.allowed_senders
        if not is_allowed_sender(value, allowed):
            # Reported with the other fields' errors: DRF collects validate_<field> failures.
            raise serializers.ValidationError(NOT_ALLOWED)
        return value


class EmailStatusSerializer(serializers.ModelSerializer):
    """The answer of ``GET /email/<id>``."""

    messageId = serializers.CharField(source="id")
    lastError = serializers.CharField(source="last_error")
    acceptedAt = serializers.DateTimeField(source="accepted_at")
    # None until a provider accepted it: documented as nullable, as it is answered.
    sentAt = serializers.DateTimeField(source="sent_at", allow_null=True)

    class Meta:
        model = Email
        fields = [
            "messageId",
            "status",
            "provider",
            "attempts",
            "lastError",
            "acceptedAt",
            "sentAt",
        ]


class RecentEmailSerializer(EmailStatusSerializer):
    """One line of ``GET /email/recent``: the status plus what the email was."""

    toEmail = serializers.CharField(source="to_email")
    toName = serializers.CharField(source="to_name")
    subject = serializers.CharField()

    class Meta(EmailStatusSerializer.Meta):
        fields = [*EmailStatusSerializer.Meta.fields, "toEmail", "toName", "subject"]
