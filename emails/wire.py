"""The SQS message body: the wire format shared with the original service (DESIGN.md section 3).

``{"email": {"fromEmail", "fromName", "toEmail", "toName", "subject", "body"},
"id": "<uuid>", "acceptedAt": "<ISO-8601 UTC>"}``. ``id`` and ``acceptedAt`` are ours and
optional on read: another producer's message gets an id derived from its SQS MessageId.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

# The JSON keys of an email and the attribute each maps to, in wire order.
WIRE_FIELDS = {
    "fromEmail": "from_email",
    "fromName": "from_name",
    "toEmail": "to_email",
    "toName": "to_name",
    "subject": "subject",
    "body": "body",
}
REQUIRED_WIRE_FIELDS = ("fromEmail", "toEmail", "body")

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


@dataclass(frozen=True)
class WireEmail:
    """One email as it travels through SQS."""

    id: str
    from_email: str
    to_email: str
    body: str
    from_name: str = ""
    to_name: str = ""
    subject: str = ""
    accepted_at: datetime | None = None

    def encode(self) -> str:
        """The SQS message body. Non-ASCII stays literal so the size is the text's own."""
        email = {key: getattr(self, attribute) for key, attribute in WIRE_FIELDS.items()}
        envelope: dict[str, object] = {"email": email, "id": self.id}
        if self.accepted_at is not None:
            envelope["acceptedAt"] = self.accepted_at.astimezone(UTC).isoformat()
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))


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
    if missing:
        raise UndecodableMessage(f"missing required field(s): {', '.join(missing)}")
    return WireEmail(
        id=_message_id(envelope.get("id"), sqs_message_id),
        accepted_at=_parse_time(envelope.get("acceptedAt")),
        **values,
    )


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
