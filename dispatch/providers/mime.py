"""The one builder of an email's MIME message (RFC 5322 with MIME parts), for every provider
that hands a relay or an API the raw message: SMTP always, SES when ``needs_mime``.

Why one builder: what a recipient sees (headers, the parts and their order, inline images)
must not depend on which provider carried the email, and every rule that keeps a header safe
(punycode domains, RFC 2047 names, no line breaks, no Bcc header) is written once.

The shape of the body (``email`` package, ``EmailMessage``):

- text only: ``text/plain``; HTML only: ``text/html``; both: ``multipart/alternative``
  (``text/plain`` first, then ``text/html``, as clients show the last one they can render);
- attachments with a ``content_id``: ``multipart/related`` around the HTML, each an inline
  part whose ``Content-ID`` is what the HTML's ``cid:`` references (without an HTML part
  they have nothing to be referenced from and are attached like the others);
- other attachments: ``multipart/mixed`` around all of the above.

Text parts are quoted-printable UTF-8 so that any relay carries them (8BITMIME or not);
attachments are base64.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.utils import format_datetime

from dispatch.providers.base import OutgoingEmail, with_ascii_domain
from emails.wire import Attachment

# A Message-ID's local part built from our id only when it is this tame; else a random one.
_MESSAGE_ID_SAFE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_LINE_BREAK = re.compile(r"[\r\n]")
_CONTENT_TYPE = re.compile(r"([A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*)/([A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*)")

# Headers the builder writes itself: a custom header of one of these names would duplicate or
# contradict them (a second From, a Bcc in the headers), so it is refused, never merged.
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "X-Gomail-Id",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Content-ID",
        "Sender",
        "Return-Path",
    )
)


class UncarriableEmail(ValueError):
    """The email cannot be written as a MIME message: an address, a name or a header. The
    message names the role (``sender``, ``recipient``, ``reply-to``, ``header``), never the
    email's content; a provider raises it as its ``PERMANENT`` error."""


@dataclass(frozen=True, slots=True)
class MimeMessage:
    """A built message: the envelope's sender and recipients (ASCII domains; the recipients
    are every To, Cc and Bcc address, in that order, each once), the Message-ID header, the
    bytes (CRLF line ends) and whether an address needs SMTPUTF8 (a non-ASCII local part)."""

    sender: str
    recipients: tuple[str, ...]
    message_id_header: str
    content: bytes = field(repr=False)
    needs_smtputf8: bool = False


def build_mime_message(email: OutgoingEmail, *, now: datetime | None = None) -> MimeMessage:
    """The MIME message of ``email`` (see the module docstring for its parts).

    Headers: From, To, Cc (when any), Reply-To (when any), Subject (when not empty, one line,
    RFC 2047 encoded when not ASCII), Date (``now``, default the current time), Message-ID
    ``<gomail-<id>@<sender domain>>`` (a random local part when the id is not tame),
    X-Gomail-Id, then the custom headers. Bcc recipients are in ``recipients`` only, never in
    a header. IDN domains go in punycode; a non-ASCII local part makes the message SMTPUTF8
    (its headers then UTF-8, as RFC 6532 allows).

    Raises ``UncarriableEmail`` for an address without a valid domain, a display name with a
    line break, or a custom header that is reserved or has a line break.
    """
    sender = _ascii_domain(email.from_email, role="sender")
    to = tuple((m.name, _ascii_domain(m.email, role="recipient")) for m in email.to)
    cc = tuple((m.name, _ascii_domain(m.email, role="recipient")) for m in email.cc)
    bcc = tuple(_ascii_domain(m.email, role="recipient") for m in email.bcc)
    reply_to = tuple(_ascii_domain(address, role="reply-to") for address in email.reply_to)
    written = (sender, *(a for _, a in to), *(a for _, a in cc), *reply_to)
    # Bcc addresses are in no header, but the envelope must carry them all the same.
    needs_smtputf8 = not all(address.isascii() for address in (*written, *bcc))
    policy = SMTPUTF8_POLICY if needs_smtputf8 else SMTP_POLICY
    domain = sender.rpartition("@")[2]
    local = email.message_id if _MESSAGE_ID_SAFE.fullmatch(email.message_id) else _random_id()
    message_id_header = f"<gomail-{local}@{domain}>"

    message = EmailMessage(policy=policy)
    message["From"] = _mailbox(email.from_name, sender, role="sender")
    message["To"] = [_mailbox(name, address, role="recipient") for name, address in to]
    if cc:
        message["Cc"] = [_mailbox(name, address, role="recipient") for name, address in cc]
    if reply_to:
        message["Reply-To"] = [_mailbox("", address, role="reply-to") for address in reply_to]
    if email.subject:
        # A subject is one line; folding is the email package's job, not the caller's.
        message["Subject"] = _LINE_BREAK.sub(" ", email.subject)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_header
    if not _LINE_BREAK.search(email.message_id):
        message["X-Gomail-Id"] = email.message_id
    for name, value in email.headers.items():
        _add_custom_header(message, name, value)
    _add_body(message, email)
    for part in message.walk():
        if part is not message:
            # The email package stamps every part it builds; only the message's own counts.
            del part["MIME-Version"]
    return MimeMessage(
        sender=sender,
        recipients=tuple(dict.fromkeys((*(a for _, a in to), *(a for _, a in cc), *bcc))),
        message_id_header=message_id_header,
        content=message.as_bytes(policy=policy),
        needs_smtputf8=needs_smtputf8,
    )


def _add_body(message: EmailMessage, email: OutgoingEmail) -> None:
    html_part: EmailMessage | None
    if email.html and email.body:
        message.set_content(email.body, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
        html_part = message.get_payload()[1]
    elif email.html:
        message.set_content(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
        html_part = message
    else:
        message.set_content(email.body, subtype="plain", charset="utf-8", cte="quoted-printable")
        html_part = None
    # Without an HTML part nothing can reference an inline part: it is attached instead.
    inline = tuple(a for a in email.attachments if a.content_id) if html_part is not None else ()
    if html_part is not None:
        for attachment in inline:
            # add_related turns the HTML part into multipart/related, the HTML first.
            html_part.add_related(
                attachment.content,
                *_maintype_subtype(attachment),
                disposition="inline",
                filename=_one_line(attachment.filename) or None,
                cid=f"<{_one_line(attachment.content_id)}>",
            )
    for attachment in email.attachments:
        if any(attachment is related for related in inline):
            continue
        # add_attachment wraps whatever the message is so far in multipart/mixed.
        message.add_attachment(
            attachment.content,
            *_maintype_subtype(attachment),
            filename=_one_line(attachment.filename) or None,
            cid=f"<{_one_line(attachment.content_id)}>" if attachment.content_id else None,
        )


def _maintype_subtype(attachment: Attachment) -> tuple[str, str]:
    # Parameters (";charset=...") are dropped: the bytes go base64 whatever their type.
    match = _CONTENT_TYPE.fullmatch(attachment.content_type.split(";", 1)[0].strip())
    if match is None or match.group(1).lower() in ("multipart", "message"):
        # The email package would try to parse these as MIME structure; they are files here.
        return "application", "octet-stream"
    return match.group(1).lower(), match.group(2).lower()


def _add_custom_header(message: EmailMessage, name: str, value: str) -> None:
    if name.lower() in RESERVED_HEADERS:
        raise UncarriableEmail(f"header {name!r} is written by Gomail itself")
    if _LINE_BREAK.search(name) or _LINE_BREAK.search(value):
        raise UncarriableEmail(f"header {name!r} contains a line break")
    try:
        message[name] = value
    except (ValueError, TypeError) as exc:  # a name the email package cannot write
        raise UncarriableEmail(f"header {name!r} is not valid ({type(exc).__name__})") from exc


def _ascii_domain(address: str, *, role: str) -> str:
    try:
        return with_ascii_domain(address)
    except ValueError as exc:
        raise UncarriableEmail(f"{role} address: {exc}") from exc


def _mailbox(display_name: str, address: str, *, role: str) -> Address:
    if _LINE_BREAK.search(display_name):
        raise UncarriableEmail(f"{role} name contains a line break")
    try:
        if not address.isascii():
            # The email package's parser refuses a non-ASCII local part even where SMTPUTF8
            # carries it; built from its parts, the SMTPUTF8 policy writes it as UTF-8.
            local, _, domain = address.rpartition("@")
            return Address(display_name=display_name, username=local, domain=domain)
        return Address(display_name=display_name, addr_spec=address)
    except (ValueError, IndexError) as exc:  # the email package's parser refused it
        raise UncarriableEmail(
            f"{role} address is not a valid mailbox ({type(exc).__name__})"
        ) from exc


def _one_line(text: str) -> str:
    return _LINE_BREAK.sub(" ", text)


def _random_id() -> str:
    return secrets.token_hex(16)
