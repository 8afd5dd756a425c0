"""The SQS message body: the wire format shared with the original service (DESIGN.md section 3).

``{"email": {"fromEmail", "fromName", "toEmail", "toName", "subject", "body"},
"id": "<uuid>", "acceptedAt": "<ISO-8601 UTC>"}``. ``id`` and ``acceptedAt`` are ours and
optional on read: another producer's message gets an id derived from its SQS MessageId.

The fields a real email needs are added beside these, only when used, so an original-format
email encodes exactly as before: ``to``/``cc``/``bcc`` (lists of ``{"email", "name"}``;
``toEmail``/``toName`` are then the first ``to``), ``html``, ``replyTo`` (addresses),
``headers`` (an object), ``tags`` (strings), ``metadata`` (string to string) and
``attachments`` (``{"filename", "contentType", "content": base64, "contentId"?}``). An email
too large for SQS or a send task travels as a *claim check*: the envelope's ``payload``
(``{"bucket", "key", "sha256", "size"}``) names the S3 object holding the whole message body,
and its ``email`` keeps only the fields that say who and what (``emails.claim_check``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

# The JSON keys of an email and the attribute each maps to, in wire order.
WIRE_FIELDS = {
    "fromEmail": "from_email",
    "fromName": "from_name",
    "toEmail": "to_email",
    "toName": "to_name",
    "subject": "subject",
    "body": "body",
}
# The real emails' JSON keys (the API's and the wire format's) and the ``Content`` attribute
# each maps to.
CONTENT_FIELDS = {
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "html": "html",
    "replyTo": "reply_to",
    "headers": "headers",
    "tags": "tags",
    "metadata": "metadata",
    "attachments": "attachments",
}
REQUIRED_WIRE_FIELDS = ("fromEmail", "toEmail")
# What a claim check's SQS message keeps of its email (who and what, for the admin and logs).
SUMMARY_FIELDS = ("fromEmail", "fromName", "toEmail", "toName", "subject")

# What SQS accepts in a message body: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
# #x10000-#x10FFFF. moto accepts more, so the API must check this itself.
SQS_DISALLOWED_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# A send_batch task carries the SQS bodies of its batch (Celery's JSON, base64 in kombu's
# envelope) and is itself an SQS message of at most 256 KiB; this much is for the bodies.
TASK_PAYLOAD_LIMIT = 240_000
# What else a message costs in a task besides its body: its fields as JSON at SQS's documented
# maxima (receipt handle 1,024 characters, message id 100, queue name 80, keys, receive
# count and read time: 1,325 bytes), and the task's own arguments (provider, batch id: about
# 120 bytes).
MESSAGE_OVERHEAD_BYTES = 1_536

# A fixed namespace so that the same foreign SQS message always derives the same id.
FOREIGN_ID_NAMESPACE = uuid.UUID("6b1f4e8e-3c55-4a8e-9d51-6d2f0f7c1a10")


class UndecodableMessage(ValueError):
    """The SQS body is not a Gomail/original message; it belongs in the dead-letter queue."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One recipient: an address and an optional display name."""

    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attached file; ``content_id`` set makes it an inline part (``cid:`` in the HTML)."""

    filename: str
    content_type: str
    content: bytes = field(repr=False)
    content_id: str = ""


@dataclass(frozen=True, slots=True)
class PayloadRef:
    """Where a claim-checked email's message body is (S3), and what it must hash to."""

    bucket: str
    key: str
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class Content:
    """What a real email carries beside the original's fields, the same on the wire and in a
    provider's ``OutgoingEmail``. ``to`` is the whole To list; built from ``to_email``/
    ``to_name`` alone (the original's fields), it is that one recipient, and those two are
    always its first. The content is left out of ``repr``: logging an email never logs it."""

    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    html: str = field(default="", repr=False)
    reply_to: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        align_recipients(self)


def content_of(email: Content) -> dict[str, Any]:
    """``email``'s ``Content`` fields, to build another kind of email with them."""
    return {f.name: getattr(email, f.name) for f in fields(Content)}


@dataclass(frozen=True)
class WireEmail(Content):
    """One email as it travels through SQS; ``payload`` is set on a claim check's summary,
    whose content is in S3."""

    id: str
    from_email: str
    to_email: str
    body: str
    from_name: str = ""
    to_name: str = ""
    subject: str = ""
    accepted_at: datetime | None = None
    payload: PayloadRef | None = None

    @property
    def is_original_format(self) -> bool:
        """True when the email has nothing the original's wire format could not carry."""
        return (
            len(self.to) == 1
            and not (self.cc or self.bcc or self.html or self.reply_to or self.headers)
            and not (self.tags or self.metadata or self.attachments or self.payload)
        )

    def encode(self) -> str:
        """The SQS message body. Non-ASCII stays literal so the size is the text's own."""
        email: dict[str, Any] = {
            key: getattr(self, attribute) for key, attribute in WIRE_FIELDS.items()
        }
        if self.payload is not None:
            email = {key: email[key] for key in SUMMARY_FIELDS}
        elif not self.is_original_format:
            email.update(_extension_fields(self))
        envelope: dict[str, object] = {"email": email, "id": self.id}
        if self.accepted_at is not None:
            envelope["acceptedAt"] = self.accepted_at.astimezone(UTC).isoformat()
        if self.payload is not None:
            envelope["payload"] = {
                "bucket": self.payload.bucket,
                "key": self.payload.key,
                "sha256": self.payload.sha256,
                "size": self.payload.size,
            }
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))

    def summary(self, payload: PayloadRef) -> WireEmail:
        """The claim check of this email: who and what, and where the rest is."""
        return WireEmail(
            id=self.id,
            from_email=self.from_email,
            from_name=self.from_name,
            to_email=self.to_email,
            to_name=self.to_name,
            subject=self.subject,
            body="",
            accepted_at=self.accepted_at,
            payload=payload,
        )


def align_recipients(email: Any) -> None:
    """Make a frozen email's ``to`` and its ``to_email``/``to_name`` agree (``__post_init__``
    of ``WireEmail`` and of the providers' ``OutgoingEmail``): a ``to`` list wins."""
    if not email.to:
        object.__setattr__(email, "to", (Mailbox(email.to_email, email.to_name),))
    elif (email.to_email, email.to_name) != (email.to[0].email, email.to[0].name):
        object.__setattr__(email, "to_email", email.to[0].email)
        object.__setattr__(email, "to_name", email.to[0].name)


def mailboxes_json(mailboxes: tuple[Mailbox, ...]) -> list[dict[str, str]]:
    """Recipients as the wire format (and the API) write them; no ``name`` when it has none."""
    return [{"email": m.email, "name": m.name} if m.name else {"email": m.email} for m in mailboxes]


def _extension_fields(email: WireEmail) -> dict[str, Any]:
    fields: dict[str, Any] = {"to": mailboxes_json(email.to)}
    if email.cc:
        fields["cc"] = mailboxes_json(email.cc)
    if email.bcc:
        fields["bcc"] = mailboxes_json(email.bcc)
    if email.html:
        fields["html"] = email.html
    if email.reply_to:
        fields["replyTo"] = list(email.reply_to)
    if email.headers:
        fields["headers"] = dict(email.headers)
    if email.tags:
        fields["tags"] = list(email.tags)
    if email.metadata:
        fields["metadata"] = dict(email.metadata)
    if email.attachments:
        fields["attachments"] = [
            {
                "filename": a.filename,
                "contentType": a.content_type,
                "content": base64.b64encode(a.content).decode("ascii"),
                **({"contentId": a.content_id} if a.content_id else {}),
            }
            for a in email.attachments
        ]
    return fields


def has_disallowed_characters(text: str) -> bool:
    """True when ``text`` holds a character SQS refuses in a message body."""
    return SQS_DISALLOWED_CHARACTERS.search(text) is not None


def dispatch_bytes(body: str) -> int:
    """How many bytes the SQS body ``body`` takes in a ``send_batch`` task (an upper bound)."""
    text = len(json.dumps(body, ensure_ascii=False).encode("utf-8")) + MESSAGE_OVERHEAD_BYTES
    return -(-text // 3) * 4  # base64


def derive_id(sqs_message_id: str) -> str:
    """The id of a message another producer sent without one (stable across redeliveries)."""
    return str(uuid.uuid5(FOREIGN_ID_NAMESPACE, sqs_message_id))


def decode(body: str, sqs_message_id: str) -> WireEmail:
    """Parse an SQS body. Raises ``UndecodableMessage`` with the reason when it is not one."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise UndecodableMessage(f"body is not JSON: {exc}") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("email"), dict):
        raise UndecodableMessage('body is not an object with an "email" object')
    email = envelope["email"]
    values: dict[str, str] = {}
    for key, attribute in WIRE_FIELDS.items():
        # Another producer may send null for an absent optional field: that is "" here.
        value = email.get(key)
        value = "" if value is None else value
        if not isinstance(value, str):
            raise UndecodableMessage(f'"email.{key}" is not a string')
        values[attribute] = value
    missing = [key for key in REQUIRED_WIRE_FIELDS if not values[WIRE_FIELDS[key]].strip()]
    payload = _payload_ref(envelope.get("payload"))
    extensions = {} if payload is not None else _decode_extensions(email)
    if payload is None and not (values["body"].strip() or extensions.get("html", "").strip()):
        missing.append("body")
    if missing:
        raise UndecodableMessage(f"missing required field(s): {', '.join(missing)}")
    return WireEmail(
        id=_message_id(envelope.get("id"), sqs_message_id),
        accepted_at=_parse_time(envelope.get("acceptedAt")),
        payload=payload,
        **values,
        **extensions,
    )


def decode_claimed(content: bytes, summary: WireEmail) -> WireEmail:
    """The whole email of the claim check ``summary``, from its S3 object's ``content``
    (already verified against its SHA-256). Raises ``UndecodableMessage``."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise UndecodableMessage("payload is not UTF-8") from None
    whole = decode(text, summary.id)
    if whole.payload is not None or whole.id != summary.id:
        raise UndecodableMessage("payload is not this email's")
    return replace(whole, accepted_at=summary.accepted_at or whole.accepted_at)


def _decode_extensions(email: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("to", "cc", "bcc"):
        if email.get(key):
            fields[key] = tuple(_mailbox(item, key) for item in _list(email[key], key))
    html = email.get("html")
    if html:
        fields["html"] = _text(html, "html")
    if email.get("replyTo"):
        fields["reply_to"] = tuple(
            _text(item, "replyTo") for item in _list(email["replyTo"], "replyTo")
        )
    if email.get("headers"):
        fields["headers"] = _string_map(email["headers"], "headers")
    if email.get("tags"):
        fields["tags"] = tuple(_text(item, "tags") for item in _list(email["tags"], "tags"))
    if email.get("metadata"):
        fields["metadata"] = _string_map(email["metadata"], "metadata")
    if email.get("attachments"):
        fields["attachments"] = tuple(
            _attachment(item) for item in _list(email["attachments"], "attachments")
        )
    return fields


def _list(value: object, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise UndecodableMessage(f'"email.{key}" is not a list')
    return value


def _text(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise UndecodableMessage(f'"email.{key}" holds a value that is not a string')
    return value


def _string_map(value: object, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UndecodableMessage(f'"email.{key}" is not an object of strings')
    return dict(value)


def _mailbox(item: object, key: str) -> Mailbox:
    if not isinstance(item, dict):
        raise UndecodableMessage(f'"email.{key}" holds a recipient that is not an object')
    name = item.get("name")
    return Mailbox(_text(item.get("email"), key), "" if name is None else _text(name, key))


def _attachment(item: object) -> Attachment:
    if not isinstance(item, dict):
        raise UndecodableMessage('"email.attachments" holds an item that is not an object')
    try:
        content = base64.b64decode(_text(item.get("content"), "attachments"), validate=True)
    except (binascii.Error, ValueError):
        raise UndecodableMessage('"email.attachments" holds content that is not base64') from None
    content_id = item.get("contentId")
    return Attachment(
        filename=_text(item.get("filename"), "attachments"),
        content_type=_text(item.get("contentType"), "attachments"),
        content=content,
        content_id="" if content_id is None else _text(content_id, "attachments"),
    )


def _payload_ref(value: object) -> PayloadRef | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UndecodableMessage('"payload" is not an object')
    bucket, key, digest, size = (value.get(k) for k in ("bucket", "key", "sha256", "size"))
    if not (isinstance(bucket, str) and isinstance(key, str) and isinstance(digest, str)):
        raise UndecodableMessage('"payload" needs "bucket", "key" and "sha256" strings')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise UndecodableMessage('"payload.size" is not a byte count')
    return PayloadRef(bucket=bucket, key=key, sha256=digest, size=size)


def email_id_of(body: str, sqs_message_id: str) -> str | None:
    """The id of the email in an SQS body (another producer's message derives it from its
    MessageId, which SQS keeps when it moves one); None when the body is undecodable."""
    try:
        return decode(body, sqs_message_id).id
    except UndecodableMessage:
        return None


def _message_id(value: object, sqs_message_id: str) -> str:
    # Records are keyed by UUID: a foreign producer's own non-UUID id is mapped to a stable one.
    if not isinstance(value, str) or not value:
        return derive_id(sqs_message_id)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return derive_id(value)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
