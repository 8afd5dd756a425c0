"""Validation of an email submitted to the API and the shape of its status answer.

Messages are sentence-case and keyed by the wire format's camelCase names (DESIGN.md
section 4), and every failing field is reported at once.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from email_validator import EmailNotValidError, validate_email
from rest_framework import serializers

from emails import attachments
from emails.errors import first_message
from emails.models import Email
from emails.senders import NOT_ALLOWED, is_allowed_sender
from emails.wire import CONTENT_FIELDS, WIRE_FIELDS, Attachment, Mailbox, WireEmail, mailboxes_json

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


class InputField(serializers.Field):
    """A field of the request only (optional; null is absent), validated by
    ``to_internal_value``; the answer is never built from it."""

    def __init__(self, label: str) -> None:
        super().__init__(required=False, allow_null=True, label=label)

    def to_representation(self, value: Any) -> Any:
        return value


def _place(key: str, index: int, sub: str = "") -> str:
    return f"{key}[{index}]" + (f".{sub}" if sub else "")


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "email": {"type": "string", "format": "email"},
                "name": {"type": "string"},
            },
            "required": ["email"],
        },
        "example": [{"email": "ada@example.org", "name": "Ada Lovelace"}],
    }
)
class RecipientListField(InputField):
    """``to``, ``cc`` or ``bcc``: a list of ``{"email", "name"?}``, each error keyed by its
    place (``[2].email``, made ``to[2].email`` by the error handler)."""

    def __init__(self, label: str) -> None:
        self.address = AddressField(f"{label} email", required=True)
        self.name = TextField(f"{label} name", header=True, max_length=MAX_NAME_LENGTH)
        super().__init__(label)

    def to_internal_value(self, data: Any) -> tuple[Mailbox, ...]:
        if not isinstance(data, list):
            raise serializers.ValidationError(f"{self.label} must be a list of recipients")
        mailboxes, errors = [], {}
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                errors[f"[{index}]"] = f"{self.label} recipient must be an object"
                continue
            mailbox = {}
            for sub, field in (("email", self.address), ("name", self.name)):
                if sub == "name" and item.get("name") is None:
                    continue  # DRF would skip the whole list for an absent optional value
                try:
                    mailbox[sub] = field.run_validation(item.get(sub, serializers.empty))
                except serializers.ValidationError as exc:
                    errors[f"[{index}].{sub}"] = first_message(exc.detail)
            if not errors:
                mailboxes.append(Mailbox(mailbox["email"], mailbox.get("name") or ""))
        if errors:
            raise serializers.ValidationError(errors)
        return tuple(mailboxes)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "email"},
            {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 10},
        ],
        "example": "support@example.com",
    }
)
class ReplyToField(InputField):
    """``replyTo``: one address or a list of them."""

    MAX_ADDRESSES = 10

    def __init__(self) -> None:
        self.address = AddressField("Reply-to address", required=True)
        super().__init__("Reply-to")

    def to_internal_value(self, data: Any) -> tuple[str, ...]:
        items = [data] if isinstance(data, str) else data
        if not isinstance(items, list) or not items or len(items) > self.MAX_ADDRESSES:
            raise serializers.ValidationError(
                f"Reply-to must be an address or a list of 1 to {self.MAX_ADDRESSES} addresses"
            )
        addresses, errors = [], {}
        for index, item in enumerate(items):
            try:
                addresses.append(self.address.run_validation(item))
            except serializers.ValidationError as exc:
                key = "" if isinstance(data, str) else f"[{index}]"
                errors[key] = first_message(exc.detail)
        if errors:
            raise serializers.ValidationError(errors.get("", errors))
        return tuple(addresses)


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "Custom headers named in api.allowed_headers; one line each.",
        "example": {"List-Unsubscribe": "<https://example.com/unsubscribe/42>"},
    }
)
class HeadersField(InputField):
    """``headers``: custom headers named in ``api.allowed_headers`` (any case, written in the
    allowlist's), values on one line of at most 998 characters."""

    def __init__(self) -> None:
        self.value = TextField("Header value", header=True, max_length=MAX_SUBJECT_LENGTH)
        super().__init__("Headers")

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Headers must be an object of names and values")
        allowed = {name.lower(): name for name in settings.GOMAIL.api.allowed_headers}
        headers, errors = {}, {}
        for name, value in data.items():
            canonical = allowed.get(name.lower())
            if canonical is None:
                names = ", ".join(allowed.values()) or "none"
                errors[name] = f"Header {name} is not allowed (allowed: {names})"
                continue
            try:
                headers[canonical] = self.value.run_validation(value)
            except serializers.ValidationError as exc:
                errors[name] = first_message(exc.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return headers


@extend_schema_field(
    {"type": "array", "items": {"type": "string"}, "example": ["welcome", "onboarding"]}
)
class TagsField(InputField):
    """``tags``: up to ``api.max_tags`` short one-line strings (duplicates merged)."""

    def __init__(self) -> None:
        super().__init__("Tags")

    def to_internal_value(self, data: Any) -> tuple[str, ...]:
        limits = settings.GOMAIL.api
        if not isinstance(data, list):
            raise serializers.ValidationError("Tags must be a list of strings")
        if len(data) > limits.max_tags:
            raise serializers.ValidationError(f"At most {limits.max_tags} tags")
        errors = {}
        for index, tag in enumerate(data):
            if not isinstance(tag, str) or not tag.strip():
                errors[f"[{index}]"] = "Tag must be a non-empty string"
            elif len(tag) > limits.max_tag_length:
                errors[f"[{index}]"] = f"Tag must be at most {limits.max_tag_length} characters"
            elif not tag.isprintable():
                errors[f"[{index}]"] = "Tag must not contain line breaks or control characters"
        if errors:
            raise serializers.ValidationError(errors)
        return tuple(dict.fromkeys(data))


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "example": {"customerId": "c-1234", "plan": "pro"},
    }
)
class MetadataField(InputField):
    """``metadata``: a flat object of strings, at most ``api.max_metadata_bytes`` as JSON."""

    def __init__(self) -> None:
        super().__init__("Metadata")

    def to_internal_value(self, data: Any) -> dict[str, str]:
        limit = settings.GOMAIL.api.max_metadata_bytes
        if not isinstance(data, dict):
            raise serializers.ValidationError("Metadata must be an object of strings")
        errors = {}
        for key, value in data.items():
            if not key.strip() or not key.isprintable():
                raise serializers.ValidationError(
                    "Metadata keys must be printable, non-empty strings"
                )
            elif not isinstance(value, str):
                errors[key] = "Metadata value must be a string"
            elif not value.isprintable():
                errors[key] = "Metadata value must not contain line breaks or control characters"
        if errors:
            raise serializers.ValidationError(errors)
        size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > limit:
            raise serializers.ValidationError(f"Metadata must be at most {limit} bytes as JSON")
        return dict(data)


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "filename": {"type": "string"},
                "contentType": {"type": "string"},
                "content": {"type": "string", "format": "byte", "description": "base64"},
                "contentId": {
                    "type": "string",
                    "description": "Makes it an inline part, referenced as cid:<id> in html",
                },
            },
            "required": ["filename", "contentType", "content"],
        },
        "example": [{"filename": "hello.txt", "contentType": "text/plain", "content": "SGVsbG8h"}],
    }
)
class AttachmentsField(InputField):
    """``attachments``: ``[{"filename", "contentType", "content" (base64), "contentId"?}]``
    within the configured limits; see ``emails.attachments`` for what is refused."""

    def __init__(self) -> None:
        super().__init__("Attachments")

    def to_internal_value(self, data: Any) -> tuple[Attachment, ...]:
        limits = settings.GOMAIL.api
        if not isinstance(data, list):
            raise serializers.ValidationError("Attachments must be a list")
        if len(data) > limits.max_attachments:
            raise serializers.ValidationError(f"At most {limits.max_attachments} attachments")
        attachments, errors, total = [], {}, 0
        for index, item in enumerate(data):
            try:
                attachment = self._attachment(item, limits)
            except _PlaceError as exc:
                errors[f"[{index}]" + (f".{exc.sub}" if exc.sub else "")] = str(exc)
                continue
            total += len(attachment.content)
            attachments.append(attachment)
        if errors:
            raise serializers.ValidationError(errors)
        if total > limits.max_attachments_bytes:
            raise serializers.ValidationError(
                f"Attachments must be at most {limits.max_attachments_bytes} bytes in total"
            )
        ids = [a.content_id for a in attachments if a.content_id]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate:
            raise serializers.ValidationError(f"Content ID {duplicate} is used twice")
        return tuple(attachments)

    @staticmethod
    def _attachment(item: Any, limits: Any) -> Attachment:
        if not isinstance(item, dict):
            raise _PlaceError("", "Attachment must be an object")
        values = {}
        for sub, label in (
            ("filename", "Filename"),
            ("contentType", "Content type"),
            ("content", "Content"),
        ):
            value = item.get(sub)
            if not isinstance(value, str) or not value:
                raise _PlaceError(sub, f"{label} is required")
            values[sub] = value
        content_id = item.get("contentId")
        if content_id is not None and (
            not isinstance(content_id, str) or not attachments.CONTENT_ID.fullmatch(content_id)
        ):
            raise _PlaceError(
                "contentId", "Content ID must be letters, digits and . _ @ - (at most 100)"
            )
        try:
            filename = attachments.sanitized_filename(values["filename"])
        except attachments.AttachmentError as exc:
            raise _PlaceError("filename", str(exc)) from None
        extension = attachments.denied_extension(filename, limits.denied_extensions)
        if extension:
            raise _PlaceError("filename", f"Files ending in .{extension} are not allowed")
        try:
            content_type = attachments.checked_content_type(
                values["contentType"], limits.denied_content_types
            )
        except attachments.AttachmentError as exc:
            raise _PlaceError("contentType", str(exc)) from None
        try:
            content = attachments.decoded_content(values["content"], limits.max_attachment_bytes)
        except attachments.AttachmentError as exc:
            raise _PlaceError("content", str(exc)) from None
        return Attachment(filename, content_type, content, content_id or "")


class _PlaceError(ValueError):
    def __init__(self, sub: str, message: str) -> None:
        super().__init__(message)
        self.sub = sub


RECIPIENT_LISTS = ("to", "cc", "bcc")


class SendEmailSerializer(serializers.Serializer):
    """The ``email`` object of ``POST /email/send``; unknown keys are ignored.

    Recipients come either as the original's ``toEmail``/``toName`` or as ``to`` (with
    ``cc``/``bcc`` beside either), at most ``api.max_recipients`` in total; an address given
    twice (in any list, any case) is refused at its second place. ``body`` (text) and ``html``:
    at least one.

    ``context["allowed_senders"]``: the sender policy's entries for the caller (see
    ``emails.senders``); without it, the configuration's ``api.allowed_senders`` alone.
    """

    fromEmail = AddressField("From email", required=True)
    fromName = TextField("From name", header=True, max_length=MAX_NAME_LENGTH)
    toEmail = AddressField("To email")
    toName = TextField("To name", header=True, max_length=MAX_NAME_LENGTH)
    to = RecipientListField("To")
    cc = RecipientListField("Cc")
    bcc = RecipientListField("Bcc")
    subject = TextField("Subject", header=True, max_length=MAX_SUBJECT_LENGTH)
    body = TextField("Body")
    html = TextField("HTML")
    replyTo = ReplyToField()
    headers = HeadersField()
    tags = TagsField()
    metadata = MetadataField()
    attachments = AttachmentsField()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # What is missing or does not fit across fields is read from the raw data, so that it
        # is reported with the fields' own errors, all at once. A field's own error wins,
        # except over "... is required" for the original's required fields: a null or blank
        # toEmail or body is answered as the original answered it.
        across = self._across(data)
        try:
            attrs = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"base": exc.detail}
            required = {key: across[key] for key in ("toEmail", "body") if key in across}
            raise serializers.ValidationError({**across, **detail, **required}) from None
        if across:
            raise serializers.ValidationError(across)
        # A null new field is an absent one.
        return {key: value for key, value in attrs.items() if value is not None}

    @classmethod
    def _across(cls, data: Any) -> dict[str, str]:
        def filled(key: str) -> bool:
            value = data.get(key)
            return value is not None and (not isinstance(value, str) or bool(value.strip()))

        errors = {}
        has_to = data.get("to") is not None
        if has_to and (data.get("toEmail") is not None or data.get("toName") is not None):
            errors["to"] = "Give either toEmail and toName or to, not both"
        elif has_to and data["to"] == []:
            errors["to"] = "To must name at least one recipient"
        elif not has_to and not filled("toEmail"):
            errors["toEmail"] = "To email is required"
        if not filled("body") and not filled("html"):
            errors["body"] = "Body is required"
        errors.update(cls._recipient_errors(data))
        errors.update(cls._content_id_errors(data))
        return errors

    @staticmethod
    def _recipient_errors(data: dict[str, Any]) -> dict[str, str]:
        places: list[tuple[str, str]] = []
        if isinstance(data.get("toEmail"), str) and data.get("to") is None:
            places.append(("toEmail", data["toEmail"]))
        for key in RECIPIENT_LISTS:
            items = data.get(key)
            if isinstance(items, list):
                places.extend(
                    (_place(key, i, "email"), item["email"])
                    for i, item in enumerate(items)
                    if isinstance(item, dict) and isinstance(item.get("email"), str)
                )
        limit = settings.GOMAIL.api.max_recipients
        if len(places) > limit:
            return {"recipients": f"At most {limit} recipients (to, cc and bcc together)"}
        seen: dict[str, str] = {}
        errors = {}
        for place, address in places:
            folded = address.strip().casefold()
            if folded in seen:
                errors[place] = f"{address} is already a recipient ({seen[folded]})"
            else:
                seen[folded] = place
        return errors

    @staticmethod
    def _content_id_errors(data: dict[str, Any]) -> dict[str, str]:
        html = data.get("html") if isinstance(data.get("html"), str) else ""
        items = data.get("attachments")
        if not isinstance(items, list):
            return {}
        return {
            _place("attachments", i, "contentId"): (
                f"Content ID {item['contentId']} is not referenced in the HTML "
                f"(cid:{item['contentId']})"
            )
            for i, item in enumerate(items)
            if isinstance(item, dict)
            and isinstance(item.get("contentId"), str)
            and item["contentId"]
            and f"cid:{item['contentId']}" not in html
        }

    def wire_email(self, email_id: str, accepted_at: datetime) -> WireEmail:
        """The validated email as it travels (call after ``is_valid``)."""
        fields = self.validated_data
        return WireEmail(
            id=email_id,
            accepted_at=accepted_at,
            **{attribute: fields.get(key, "") for key, attribute in WIRE_FIELDS.items()},
            # An absent one keeps Content's default (a null one was dropped as absent).
            **{
                attribute: fields[key] for key, attribute in CONTENT_FIELDS.items() if key in fields
            },
        )

    def validate_fromEmail(self, value: str) -> str:
        allowed = self.context.get("allowed_senders")
        if allowed is None:
            allowed = settings.GOMAIL.api.allowed_senders
        if not is_allowed_sender(value, allowed):
            # Reported with the other fields' errors: DRF collects validate_<field> failures.
            raise serializers.ValidationError(NOT_ALLOWED)
        return value


class MailboxSerializer(serializers.Serializer):
    email = serializers.EmailField()
    name = serializers.CharField(required=False)


class AttachmentInfoSerializer(serializers.Serializer):
    filename = serializers.CharField()
    contentType = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes, decoded")
    contentId = serializers.CharField(required=False)


class EmailStatusSerializer(serializers.ModelSerializer):
    """The answer of ``GET /email/<id>``. ``bcc`` is shown only to the email's sender
    (``context["show_bcc"]``): with ``api.require_auth`` off, anyone may read a status."""

    messageId = serializers.CharField(source="id")
    lastError = serializers.CharField(source="last_error")
    acceptedAt = serializers.DateTimeField(source="accepted_at")
    # None until a provider accepted it: documented as nullable, as it is answered.
    sentAt = serializers.DateTimeField(source="sent_at", allow_null=True)
    to = serializers.SerializerMethodField()
    cc = serializers.SerializerMethodField()
    bcc = serializers.SerializerMethodField()
    tags = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField(child=serializers.CharField())
    attachments = AttachmentInfoSerializer(many=True)

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
            "to",
            "cc",
            "bcc",
            "tags",
            "metadata",
            "attachments",
        ]

    @extend_schema_field(MailboxSerializer(many=True))
    def get_to(self, email: Email) -> list[dict[str, str]]:
        if "to" in email.recipients:
            return email.recipients["to"]
        return mailboxes_json((Mailbox(email.to_email, email.to_name),))

    @extend_schema_field(MailboxSerializer(many=True))
    def get_cc(self, email: Email) -> list[dict[str, str]]:
        return email.recipients.get("cc", [])

    @extend_schema_field(MailboxSerializer(many=True))
    def get_bcc(self, email: Email) -> list[dict[str, str]]:
        return email.recipients.get("bcc", []) if self.context.get("show_bcc") else []


class RecentEmailSerializer(EmailStatusSerializer):
    """One line of ``GET /email/recent``: the status plus what the email was."""

    toEmail = serializers.CharField(source="to_email")
    toName = serializers.CharField(source="to_name")
    subject = serializers.CharField()

    class Meta(EmailStatusSerializer.Meta):
        fields = [*EmailStatusSerializer.Meta.fields, "toEmail", "toName", "subject"]
