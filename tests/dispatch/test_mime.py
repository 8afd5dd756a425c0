"""dispatch.providers.mime.build_mime_message: the one MIME builder, read back with the email
package. Pure: no I/O."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime

import pytest

from dispatch.providers.mime import RESERVED_HEADERS, UncarriableEmail, build_mime_message
from emails.wire import Attachment, Mailbox
from tests.dispatch.realparts import (
    LOGO_CID,
    header_block,
    logo,
    outgoing_email,
    parsed,
    part_by_filename,
    real_email,
)


def content_types(raw: bytes) -> list[str]:
    return [part.get_content_type() for part in parsed(raw).walk()]


def test_text_only_is_text_plain_quoted_printable() -> None:
    built = build_mime_message(outgoing_email())

    message = parsed(built.content)
    assert content_types(built.content) == ["text/plain"]
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_content().replace("\r\n", "\n").rstrip("\n") == "Line 1\nLine 2 ✓"


def test_html_only_is_text_html() -> None:
    built = build_mime_message(outgoing_email(body="", html="<p>Hi ✓</p>"))

    assert content_types(built.content) == ["text/html"]
    assert parsed(built.content).get_content().strip() == "<p>Hi ✓</p>"


def test_text_and_html_are_alternatives_text_first() -> None:
    built = build_mime_message(outgoing_email(body="Plain ✓", html="<p>HTML ✓</p>"))

    message = parsed(built.content)
    assert content_types(built.content) == ["multipart/alternative", "text/plain", "text/html"]
    text, html = message.iter_parts()
    assert text.get_content().strip() == "Plain ✓"
    assert html.get_content().strip() == "<p>HTML ✓</p>"


def test_recipients_headers_and_the_envelope() -> None:
    built = build_mime_message(real_email())

    message = parsed(built.content)
    assert getaddresses([message["To"]]) == [
        ("Doe, John", "reader@example.org"),
        ("", "leser@xn--bcher-kva.example"),
    ]
    assert getaddresses([message["Cc"]]) == [("Çopy", "copy@example.org")]
    assert getaddresses([message["Reply-To"]]) == [
        ("", "answers@example.com"),
        ("", "help@xn--bcher-kva.example"),
    ]
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@example.com>"
    assert built.sender == "sender@example.com"
    assert built.recipients == (
        "reader@example.org",
        "leser@xn--bcher-kva.example",
        "copy@example.org",
        "hidden@example.org",
    )
    assert built.needs_smtputf8 is False


def test_bcc_is_in_the_envelope_and_in_no_header() -> None:
    built = build_mime_message(real_email(attachments=(logo(),)))

    assert "hidden@example.org" in built.recipients
    assert "Bcc" not in parsed(built.content)
    assert "hidden" not in header_block(built.content).lower()
    assert b"hidden@example.org" not in built.content


def test_an_address_in_to_and_bcc_is_one_envelope_recipient() -> None:
    email = outgoing_email(bcc=(Mailbox("reader@example.org"),), cc=(Mailbox("c@example.org"),))

    assert build_mime_message(email).recipients == ("reader@example.org", "c@example.org")


def test_headers_are_ascii_with_encoded_names_and_subject() -> None:
    built = build_mime_message(real_email())

    raw_headers = built.content.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()
    assert b"Subject: =?utf-8?" in raw_headers
    message = parsed(built.content)
    assert message["Subject"] == "Grüße ✓"
    assert getaddresses([message["From"]]) == [("Zoë Sender", "sender@example.com")]


def test_message_id_date_and_gomail_id() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    built = build_mime_message(outgoing_email(message_id="abc-1"), now=now)

    message = parsed(built.content)
    assert built.message_id_header == "<gomail-abc-1@example.com>"
    assert message["Message-ID"] == built.message_id_header
    assert message["X-Gomail-Id"] == "abc-1"
    assert parsedate_to_datetime(message["Date"]) == now


def test_an_untame_id_gets_a_random_message_id() -> None:
    first = build_mime_message(outgoing_email(message_id="sqs:a/b+c"))
    second = build_mime_message(outgoing_email(message_id="sqs:a/b+c"))

    assert first.message_id_header != second.message_id_header
    assert first.message_id_header.endswith("@example.com>")


def test_inline_image_is_a_related_part_after_the_html() -> None:
    built = build_mime_message(real_email(attachments=(logo(),)))

    message = parsed(built.content)
    assert content_types(built.content) == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    related = next(p for p in message.walk() if p.get_content_type() == "multipart/related")
    html, image = related.iter_parts()
    assert f"cid:{LOGO_CID}" in html.get_content()
    assert image["Content-ID"] == f"<{LOGO_CID}>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == logo().content


def test_attachments_wrap_everything_in_mixed_and_keep_their_bytes() -> None:
    content = os.urandom(300_000)
    report = Attachment("Bericht ä.pdf", "application/pdf", content)

    built = build_mime_message(real_email(attachments=(logo(), report)))

    assert content_types(built.content)[:2] == ["multipart/mixed", "multipart/alternative"]
    part = part_by_filename(parsed(built.content), "Bericht ä.pdf")
    assert part.get_content_disposition() == "attachment"
    assert part.get_content_type() == "application/pdf"
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_content() == content


def test_inline_part_without_html_is_attached() -> None:
    built = build_mime_message(outgoing_email(attachments=(logo(),)))

    assert content_types(built.content) == ["multipart/mixed", "text/plain", "image/png"]
    image = part_by_filename(parsed(built.content), "logo.png")
    assert image["Content-ID"] == f"<{LOGO_CID}>"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/csv; charset=utf-8", "text/csv"),
        ("not a type", "application/octet-stream"),
        ("multipart/mixed", "application/octet-stream"),
        ("message/rfc822", "application/octet-stream"),
    ],
)
def test_attachment_types(content_type: str, expected: str) -> None:
    attachment = Attachment("file", content_type, b"a,b\n")

    built = build_mime_message(outgoing_email(attachments=(attachment,)))

    part = part_by_filename(parsed(built.content), "file")
    assert part.get_content_type() == expected
    assert part.get_payload(decode=True) == b"a,b\n"


def test_a_non_ascii_local_part_makes_it_smtputf8() -> None:
    built = build_mime_message(outgoing_email(cc=(Mailbox("jörg@example.org"),)))

    assert built.needs_smtputf8 is True
    assert "jörg@example.org".encode() in built.content.split(b"\r\n\r\n", 1)[0]


def test_a_non_ascii_bcc_local_part_needs_smtputf8_but_stays_out_of_the_headers() -> None:
    built = build_mime_message(outgoing_email(bcc=(Mailbox("jörg@example.org"),)))

    assert built.needs_smtputf8 is True
    assert "jörg".encode() not in built.content


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"cc": (Mailbox("c@example.org", "Eve\r\nBcc: x@evil.example"),)}, "recipient name"),
        ({"to_name": "Eve\nBcc: x@evil.example"}, "recipient name"),
        ({"from_name": "Eve\rX: y"}, "sender name"),
        ({"bcc": (Mailbox("no-at-sign"),)}, "recipient address"),
        ({"reply_to": ("someone@exa\u200dmple.org",)}, "reply-to address"),
        ({"headers": {"X-Entity-Ref-ID": "a\r\nBcc: x@evil.example"}}, "line break"),
        ({"headers": {"Bcc": "x@evil.example"}}, "written by Gomail"),
        ({"headers": {"message-id": "<x@y>"}}, "written by Gomail"),
    ],
)
def test_what_a_message_cannot_carry_is_refused(overrides: dict, reason: str) -> None:
    with pytest.raises(UncarriableEmail, match=reason):
        build_mime_message(outgoing_email(**overrides))


def test_reserved_headers_cover_every_header_the_builder_writes() -> None:
    built = build_mime_message(real_email(attachments=(logo(),), headers={}))

    written = {name.lower() for part in parsed(built.content).walk() for name in part}
    assert written <= RESERVED_HEADERS
