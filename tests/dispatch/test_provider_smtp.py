"""SmtpProvider against the real SMTP stand-in (devtools/smtp_stub.py, aiosmtpd) over TCP on
127.0.0.1, through the real ``smtplib``: delivery (envelope, headers, body), connection reuse
per thread, the error table on real replies, lost connections and timeouts; and the pure error
table. No mocks."""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email import message_from_string
from email.policy import default as default_policy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

import pytest

from devtools.smtp_stub import SmtpStub, start_smtp_stub
from dispatch.providers import ErrorKind, OutgoingEmail, ProviderError
from dispatch.providers.smtp import (
    AUTH_REPLY_CODES,
    SmtpProvider,
    SmtpStage,
    classify_smtp_failure,
    reply_code_kind,
)
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
from tests.ports import unused_port

USER, PASSWORD = "relay-user", "relay-password-never-in-reasons"
BODY_MARKER = "body-marker-never-in-reasons"

# aiosmtpd's own AUTH code sets the attribute it deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")


@pytest.fixture
def relay() -> Iterator[SmtpStub]:
    """A plain relay without AUTH (a local Postfix)."""
    with start_smtp_stub() as stub:
        yield stub


@pytest.fixture
def secure_relay() -> Iterator[SmtpStub]:
    """STARTTLS with a self-signed certificate, and AUTH required."""
    with start_smtp_stub(credentials=(USER, PASSWORD), tls_mode="starttls") as stub:
        yield stub


def provider_for(stub: SmtpStub, **overrides: Any) -> SmtpProvider:
    options: dict[str, Any] = {
        "host": stub.smtp_host,
        "port": stub.smtp_port,
        "security": "none",
        "timeout_seconds": 5.0,
        "local_hostname": "gomail.test",
    }
    if stub.tls_mode != "none":
        options |= {"security": stub.tls_mode, "ssl_context": stub.client_ssl_context()}
    if stub.username:
        options |= {"username": stub.username, "password": stub.password}
    name = overrides.pop("name", "relay")
    return SmtpProvider(name, **(options | overrides))


@pytest.fixture
def closing() -> Iterator[list[SmtpProvider]]:
    """Providers appended here are closed after the test."""
    providers: list[SmtpProvider] = []
    yield providers
    for provider in providers:
        provider.close()


def send_expecting_error(provider: SmtpProvider, email: OutgoingEmail) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.send(email)
    return caught.value


def assert_no_secrets(error: ProviderError) -> None:
    for text in (error.reason, str(error), repr(error)):
        assert PASSWORD not in text
        assert BODY_MARKER not in text


# --- delivery ------------------------------------------------------------------------------


def test_delivery_has_the_envelope_headers_and_body(
    secure_relay: SmtpStub, closing: list[SmtpProvider]
) -> None:
    provider = provider_for(secure_relay)
    closing.append(provider)
    email = outgoing_email(body="Line 1\nLine 2 ✓\n.a line starting with a dot\nÜnïcödé")

    result = provider.send(email)

    [message] = secure_relay.messages()
    assert message["mailFrom"] == "sender@example.com"
    assert message["rcptTos"] == ["reader@example.org"]
    assert message["login"] == USER
    headers = message["headers"]
    assert getaddresses([headers["From"]]) == [("Zoë Sender", "sender@example.com")]
    assert getaddresses([headers["To"]]) == [("Doe, John", "reader@example.org")]
    assert headers["Subject"] == "Grüße ✓"
    assert headers["Message-ID"] == result.provider_message_id
    assert result.provider_message_id == f"<gomail-{email.message_id}@example.com>"
    assert headers["X-Gomail-Id"] == email.message_id
    assert abs(time.time() - parsedate_to_datetime(headers["Date"]).timestamp()) < 60
    assert headers["Content-Type"] == 'text/plain; charset="utf-8"'
    # On the wire the headers are ASCII: the non-ASCII subject and name are RFC 2047 words.
    raw = message["data"]
    raw_headers = raw.split("\r\n\r\n", 1)[0]
    assert raw_headers.isascii()
    assert "Subject: =?utf-8?" in raw_headers
    # The body, decoded, is the email's, line breaks as CRLF (SMTP's), dot line included.
    assert message["text"] == email.body.replace("\n", "\r\n") + "\r\n"
    parsed = message_from_string(raw, policy=default_policy)
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == email.body


def test_a_real_email_reaches_the_relay_whole(relay: SmtpStub, closing: list) -> None:
    provider = provider_for(relay)
    closing.append(provider)
    content = os.urandom(3 * 1024 * 1024)
    report = Attachment("report.bin", "application/octet-stream", content)

    provider.send(real_email(attachments=(logo(), report)))

    [message] = relay.messages()
    assert message["rcptTos"] == [
        "reader@example.org",
        "leser@xn--bcher-kva.example",
        "copy@example.org",
        "hidden@example.org",
    ]
    raw = message["data"]
    assert "hidden" not in header_block(raw).lower()
    mime = parsed(raw)
    assert getaddresses([mime["Cc"]]) == [("Çopy", "copy@example.org")]
    assert mime["Reply-To"] == "answers@example.com, help@xn--bcher-kva.example"
    assert mime["List-Unsubscribe"] == "<mailto:unsubscribe@example.com>"
    assert part_by_filename(mime, "report.bin").get_content() == content
    alternative = next(p for p in mime.walk() if p.get_content_type() == "multipart/alternative")
    text, related = alternative.iter_parts()
    assert text.get_content().strip() == "Plain ✓"
    html, image = related.iter_parts()
    assert (related.get_content_type(), html.get_content_type()) == (
        "multipart/related",
        "text/html",
    )
    assert f"cid:{LOGO_CID}" in html.get_content()
    assert image["Content-ID"] == f"<{LOGO_CID}>"
    assert image.get_content_disposition() == "inline"


def test_text_and_html_arrive_as_alternatives(relay: SmtpStub, closing: list) -> None:
    provider = provider_for(relay)
    closing.append(provider)

    provider.send(outgoing_email(html="<p>HTML ✓</p>"))

    mime = parsed(relay.messages()[0]["data"])
    assert mime.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mime.iter_parts()] == ["text/plain", "text/html"]


def test_one_refused_recipient_refuses_the_message_for_all(relay: SmtpStub, closing: list) -> None:
    provider = provider_for(relay)
    closing.append(provider)
    relay.configure(fail_rate=0.5, fail_code=550, fail_stage="rcpt")  # the second RCPT

    error = send_expecting_error(provider, outgoing_email(bcc=(Mailbox("b@example.org"),)))

    assert error.kind is ErrorKind.PERMANENT
    assert relay.messages() == []


def test_a_reserved_custom_header_is_permanent_and_not_sent(relay: SmtpStub, closing: list) -> None:
    provider = provider_for(relay)
    closing.append(provider)

    error = send_expecting_error(provider, outgoing_email(headers={"Bcc": "x@evil.example"}))

    assert error.kind is ErrorKind.PERMANENT
    assert "written by Gomail" in error.reason
    assert relay.connections() == 0


def test_absent_names_and_subject_are_left_out(relay: SmtpStub, closing: list) -> None:
    provider = provider_for(relay)
    closing.append(provider)

    provider.send(outgoing_email(from_name="", to_name="", subject=""))

    headers = relay.messages()[0]["headers"]
    assert headers["From"] == "sender@example.com"
    assert headers["To"] == "reader@example.org"
    assert "Subject" not in headers


def test_idn_domain_goes_in_punycode_and_a_non_ascii_local_part_uses_smtputf8(
    relay: SmtpStub, closing: list
) -> None:
    provider = provider_for(relay)
    closing.append(provider)

    provider.send(outgoing_email(to_email="leser@bücher.example"))
    provider.send(outgoing_email(to_email="jörg@example.org"))

    first, second = relay.messages()
    assert first["rcptTos"] == ["leser@xn--bcher-kva.example"]
    assert second["rcptTos"] == ["jörg@example.org"]  # the stand-in offers SMTPUTF8
    assert "jörg@example.org" in second["headers"]["To"]


def test_implicit_tls(closing: list) -> None:
    with start_smtp_stub(tls_mode="tls") as stub:
        provider = provider_for(stub)
        closing.append(provider)

        provider.send(outgoing_email())

        assert len(stub.messages()) == 1


def test_the_name_is_per_instance(relay: SmtpStub) -> None:
    first = provider_for(relay, name="relay-a")
    second = provider_for(relay, name="relay-b")

    assert (first.name, second.name, SmtpProvider.name) == ("relay-a", "relay-b", "smtp")
    relay.configure(fail_rate=1, fail_code=451)
    assert send_expecting_error(second, outgoing_email()).provider == "relay-b"
    first.close()
    second.close()


# --- connections ---------------------------------------------------------------------------


def test_one_connection_is_reused_by_a_thread(relay: SmtpStub, closing: list) -> None:
    provider = provider_for(relay)
    closing.append(provider)

    provider.send(outgoing_email(message_id="one"))
    provider.send(outgoing_email(message_id="two"))

    assert relay.connections() == 1
    assert [m["headers"]["X-Gomail-Id"] for m in relay.messages()] == ["one", "two"]
    assert provider.open_connections == 1


def test_each_thread_has_its_own_connection_and_close_closes_all(
    relay: SmtpStub, closing: list
) -> None:
    provider = provider_for(relay)
    closing.append(provider)
    both_sent = threading.Barrier(2)
    errors: list[BaseException] = []

    def sender(name: str) -> None:
        try:
            provider.send(outgoing_email(message_id=f"{name}-1"))
            both_sent.wait(10)  # both connections open at once
            provider.send(outgoing_email(message_id=f"{name}-2"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert relay.connections() == 2
    assert len(relay.messages()) == 4
    assert provider.open_connections == 2

    provider.close()
    assert provider.open_connections == 0
    # A send after close() opens a new connection.
    provider.send(outgoing_email())
    assert relay.connections() == 3


def test_a_connection_the_relay_closed_is_replaced_transparently(
    relay: SmtpStub, closing: list
) -> None:
    provider = provider_for(relay)
    closing.append(provider)
    provider.send(outgoing_email(message_id="before"))

    assert relay.disconnect_all() == 1  # the relay's idle timeout
    result = provider.send(outgoing_email(message_id="after"))

    assert result.provider_message_id
    assert relay.connections() == 2
    assert [m["headers"]["X-Gomail-Id"] for m in relay.messages()] == ["before", "after"]


def test_a_refused_message_leaves_the_connection_usable(relay: SmtpStub, closing: list) -> None:
    provider = provider_for(relay)
    closing.append(provider)
    relay.configure(fail_rate=0.5, fail_code=550, fail_stage="rcpt")

    provider.send(outgoing_email(message_id="first"))
    send_expecting_error(provider, outgoing_email(message_id="second"))
    provider.send(outgoing_email(message_id="third"))

    assert relay.connections() == 1
    assert [m["headers"]["X-Gomail-Id"] for m in relay.messages()] == ["first", "third"]


# --- error replies: the table on real answers --------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "code", "kind"),
    [
        ("data", 451, ErrorKind.TRANSIENT),
        ("data", 452, ErrorKind.TRANSIENT),
        ("rcpt", 450, ErrorKind.TRANSIENT),
        ("data", 554, ErrorKind.PERMANENT),
        ("data", 552, ErrorKind.PERMANENT),
        ("rcpt", 550, ErrorKind.PERMANENT),
        ("rcpt", 553, ErrorKind.PERMANENT),
        ("data", 535, ErrorKind.PROVIDER_CONFIG),
        ("rcpt", 530, ErrorKind.PROVIDER_CONFIG),
    ],
)
def test_injected_reply_is_classified_by_the_table(
    relay: SmtpStub, closing: list, stage: str, code: int, kind: ErrorKind
) -> None:
    provider = provider_for(relay)
    closing.append(provider)
    relay.configure(fail_rate=1, fail_code=code, fail_stage=stage)

    error = send_expecting_error(provider, outgoing_email(body=BODY_MARKER))

    assert error.kind is kind
    assert error.code == str(code)
    assert error.provider == "relay"
    assert error.outcome_unknown is False  # the relay answered: it did not take the message
    assert error.counts_against_health is (kind is not ErrorKind.PERMANENT)
    assert f"{code} " in error.reason and "Injected failure" in error.reason
    assert_no_secrets(error)
    assert relay.messages() == []


def test_a_wrong_password_is_provider_config_and_never_quoted(
    secure_relay: SmtpStub, closing: list
) -> None:
    provider = provider_for(secure_relay, password="wrong-" + PASSWORD)
    closing.append(provider)

    error = send_expecting_error(provider, outgoing_email(body=BODY_MARKER))

    assert error.kind is ErrorKind.PROVIDER_CONFIG
    assert error.code == "535"
    assert error.outcome_unknown is False
    assert error.counts_against_health is True
    assert_no_secrets(error)
    assert secure_relay.messages() == []


def test_no_login_where_the_relay_requires_one_is_provider_config(closing: list) -> None:
    with start_smtp_stub(credentials=(USER, PASSWORD)) as stub:
        provider = provider_for(stub, username="", password="")
        closing.append(provider)

        error = send_expecting_error(provider, outgoing_email())

    assert error.kind is ErrorKind.PROVIDER_CONFIG
    assert error.code == "530"


def test_starttls_required_but_not_offered_is_provider_config(
    relay: SmtpStub, closing: list
) -> None:
    provider = provider_for(relay, security="starttls")
    closing.append(provider)

    error = send_expecting_error(provider, outgoing_email())

    assert error.kind is ErrorKind.PROVIDER_CONFIG
    assert error.outcome_unknown is False
    assert relay.messages() == []


def test_an_untrusted_certificate_is_provider_config(secure_relay: SmtpStub, closing: list) -> None:
    provider = provider_for(secure_relay, ssl_context=ssl.create_default_context())
    closing.append(provider)

    error = send_expecting_error(provider, outgoing_email())

    assert error.kind is ErrorKind.PROVIDER_CONFIG
    assert error.code == "SSLCertVerificationError"


# --- no answer --------------------------------------------------------------------------------


def test_a_connection_dropped_after_data_is_transient_with_unknown_outcome(
    relay: SmtpStub, closing: list
) -> None:
    provider = provider_for(relay)
    closing.append(provider)
    relay.configure(drop_connection=True)

    error = send_expecting_error(provider, outgoing_email(body=BODY_MARKER))

    assert error.kind is ErrorKind.TRANSIENT
    assert error.outcome_unknown is True
    assert error.code == "SMTPServerDisconnected"
    assert_no_secrets(error)
    # And the outcome really was unknown: the relay had the message.
    assert len(relay.messages()) == 1
    # The next send opens a new connection and goes through.
    relay.heal()
    provider.send(outgoing_email())
    assert relay.connections() == 2


def test_an_answer_slower_than_the_timeout_after_data_is_unknown(
    relay: SmtpStub, closing: list
) -> None:
    provider = provider_for(relay, timeout_seconds=0.3)
    closing.append(provider)
    relay.configure(delay_ms=2000)

    started = time.monotonic()
    error = send_expecting_error(provider, outgoing_email())
    elapsed = time.monotonic() - started

    assert elapsed < 1.6  # the 0.3 s timeout (5 times over, for a slow machine), not the delay
    assert error.kind is ErrorKind.TRANSIENT
    assert error.outcome_unknown is True
    assert error.code == "TimeoutError"
    assert len(relay.messages()) == 1


def test_a_closed_port_is_transient_and_known_not_sent() -> None:
    provider = SmtpProvider("relay", host="127.0.0.1", port=unused_port(), security="none")

    error = send_expecting_error(provider, outgoing_email())

    assert error.kind is ErrorKind.TRANSIENT
    assert error.outcome_unknown is False
    assert error.code == "ConnectionRefusedError"
    assert error.counts_against_health is True
    assert provider.open_connections == 0


def test_a_relay_that_never_greets_is_a_connect_timeout_known_not_sent() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        provider = SmtpProvider(
            "relay",
            host="127.0.0.1",
            port=silent.getsockname()[1],
            security="none",
            timeout_seconds=0.3,
        )

        error = send_expecting_error(provider, outgoing_email())

    assert error.kind is ErrorKind.TRANSIENT
    assert error.outcome_unknown is False


# --- the pure error table ---------------------------------------------------------------------


def test_reply_code_table() -> None:
    assert set(AUTH_REPLY_CODES) == {530, 534, 535, 538}
    cases = {
        (421, SmtpStage.MAIL): ErrorKind.TRANSIENT,
        (450, SmtpStage.RCPT): ErrorKind.TRANSIENT,
        (451, SmtpStage.FINAL_ANSWER): ErrorKind.TRANSIENT,
        (454, SmtpStage.CONNECT): ErrorKind.TRANSIENT,
        (550, SmtpStage.RCPT): ErrorKind.PERMANENT,
        (552, SmtpStage.FINAL_ANSWER): ErrorKind.PERMANENT,
        (554, SmtpStage.DATA): ErrorKind.PERMANENT,
        (553, SmtpStage.MAIL): ErrorKind.PERMANENT,
        (554, SmtpStage.CONNECT): ErrorKind.PROVIDER_CONFIG,  # a refused session, not a message
        (530, SmtpStage.MAIL): ErrorKind.PROVIDER_CONFIG,
        (534, SmtpStage.CONNECT): ErrorKind.PROVIDER_CONFIG,
        (535, SmtpStage.FINAL_ANSWER): ErrorKind.PROVIDER_CONFIG,
        (538, SmtpStage.CONNECT): ErrorKind.PROVIDER_CONFIG,
        (-1, SmtpStage.RCPT): ErrorKind.TRANSIENT,  # smtplib's unreadable reply
        (354, SmtpStage.FINAL_ANSWER): ErrorKind.TRANSIENT,
        (600, SmtpStage.MAIL): ErrorKind.TRANSIENT,
    }
    assert {case: reply_code_kind(*case) for case in cases} == cases


def _timed_out_disconnect() -> smtplib.SMTPServerDisconnected:
    # What smtplib raises when a read times out: the TimeoutError is the context.
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as exc:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed") from exc
    except smtplib.SMTPServerDisconnected as disconnected:
        return disconnected


T, P, C = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.PROVIDER_CONFIG
S = SmtpStage
ERROR_TABLE: list[tuple[str, BaseException, SmtpStage | None, ErrorKind, bool]] = [
    ("auth error", smtplib.SMTPAuthenticationError(535, b"bad"), S.CONNECT, C, False),
    ("auth error 454", smtplib.SMTPAuthenticationError(454, b"later"), S.CONNECT, C, False),
    ("greeting 554", smtplib.SMTPConnectError(554, b"no service"), S.CONNECT, C, False),
    ("greeting 421", smtplib.SMTPConnectError(421, b"busy"), S.CONNECT, T, False),
    ("helo 501", smtplib.SMTPHeloError(501, b"bad"), S.CONNECT, C, False),
    ("sender 451", smtplib.SMTPSenderRefused(451, b"later", "a@b"), S.MAIL, T, False),
    ("sender 553", smtplib.SMTPSenderRefused(553, b"no", "a@b"), S.MAIL, P, False),
    ("sender 530", smtplib.SMTPSenderRefused(530, b"auth", "a@b"), S.MAIL, C, False),
    ("rcpt 450", smtplib.SMTPRecipientsRefused({"r@x": (450, b"busy")}), S.RCPT, T, False),
    ("rcpt 550", smtplib.SMTPRecipientsRefused({"r@x": (550, b"unknown")}), S.RCPT, P, False),
    ("rcpt 535", smtplib.SMTPRecipientsRefused({"r@x": (535, b"auth")}), S.RCPT, C, False),
    ("data cmd 554", smtplib.SMTPDataError(554, b"no"), S.DATA, P, False),
    ("final 451", smtplib.SMTPDataError(451, b"later"), S.FINAL_ANSWER, T, False),
    ("final 552", smtplib.SMTPDataError(552, b"too big"), S.FINAL_ANSWER, P, False),
    ("final 535", smtplib.SMTPDataError(535, b"auth"), S.FINAL_ANSWER, C, False),
    ("final garbled", smtplib.SMTPDataError(-1, b"??"), S.FINAL_ANSWER, T, True),
    ("no starttls", smtplib.SMTPNotSupportedError("STARTTLS"), S.CONNECT, C, False),
    ("no auth method", smtplib.SMTPException("No suitable"), S.CONNECT, C, False),
    ("cert", ssl.SSLCertVerificationError("self-signed"), S.CONNECT, C, False),
    ("tls failure", ssl.SSLError("handshake"), S.CONNECT, T, False),
    ("refused", ConnectionRefusedError(111, "refused"), S.CONNECT, T, False),
    ("dns", socket.gaierror(-2, "Name or service not known"), S.CONNECT, T, False),
    ("connect timeout", TimeoutError(), S.CONNECT, T, False),
    ("greeting lost", smtplib.SMTPServerDisconnected("closed"), S.CONNECT, T, False),
    ("lost at mail", smtplib.SMTPServerDisconnected("closed"), S.MAIL, T, False),
    ("lost at rcpt", smtplib.SMTPServerDisconnected("closed"), S.RCPT, T, False),
    ("lost writing data", smtplib.SMTPServerDisconnected("closed"), S.DATA, T, False),
    ("reset writing data", ConnectionResetError(), S.DATA, T, False),
    ("lost before answer", smtplib.SMTPServerDisconnected("closed"), S.FINAL_ANSWER, T, True),
    ("timeout before answer", _timed_out_disconnect(), S.FINAL_ANSWER, T, True),
    ("raw timeout before answer", TimeoutError(), S.FINAL_ANSWER, T, True),
    ("lost, stage unknown", smtplib.SMTPServerDisconnected("closed"), None, T, True),
    ("bug before data", RuntimeError("bug"), S.RCPT, T, False),
    ("bug after data", RuntimeError("bug"), S.FINAL_ANSWER, T, True),
    ("bug, stage unknown", RuntimeError("bug"), None, T, True),
]


@pytest.mark.parametrize(
    ("error", "stage", "kind", "unknown"),
    [case[1:] for case in ERROR_TABLE],
    ids=[case[0] for case in ERROR_TABLE],
)
def test_error_table(
    error: BaseException, stage: SmtpStage | None, kind: ErrorKind, unknown: bool
) -> None:
    failure = classify_smtp_failure(error, stage)

    assert (failure.kind, failure.outcome_unknown) == (kind, unknown)
    assert failure.description


def test_only_smtp_error_replies_are_ever_permanent() -> None:
    for _, error, _stage, kind, _ in ERROR_TABLE:
        if kind is ErrorKind.PERMANENT:
            assert isinstance(error, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused)


def test_a_timeout_is_reported_by_its_root_cause() -> None:
    provider = SmtpProvider("relay", host="relay.example", security="none")

    from dispatch.providers.smtp import SmtpExchangeError

    error = provider.classify_error(SmtpExchangeError(S.FINAL_ANSWER, _timed_out_disconnect()))

    assert (error.kind, error.outcome_unknown, error.code) == (T, True, "TimeoutError")
    assert "relay.example:587" in error.reason


# --- construction (offline) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "host": "h"}, "name"),
        ({"host": ""}, "host"),
        ({"host": "h", "security": "ssl"}, "security"),
        ({"host": "h", "password": "p"}, "username"),
        ({"host": "h", "timeout_seconds": 0}, "timeout"),
    ],
)
def test_invalid_construction_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmtpProvider(**kwargs)


def test_repr_has_no_password() -> None:
    provider = SmtpProvider("relay", host="h", username="u", password=PASSWORD)

    assert PASSWORD not in repr(provider)
    provider.open()  # a no-op hook
    provider.close()  # nothing open: no error


def test_a_display_name_with_a_line_break_is_permanent() -> None:
    provider = SmtpProvider("relay", host="127.0.0.1", port=unused_port(), security="none")

    error = send_expecting_error(provider, outgoing_email(to_name="Eve\r\nBcc: x@evil.example"))

    assert error.kind is ErrorKind.PERMANENT
    assert error.outcome_unknown is False
