"""SesProvider against a real moto server over HTTP (no mocks of boto3).

The error tables are also checked by classifying real botocore exception objects built with each
code or class: that is data, not a mock.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pickle
import re
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import exceptions as boto_errors
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.moto_server import MotoServer, start_moto_server
from dispatch.providers import ErrorKind, ProviderError
from dispatch.providers.ses import (
    BOTOCORE_ERROR_RULES,
    SES_ERROR_KINDS,
    SesProvider,
    botocore_error_rule,
    ses_message_tags,
)
from emails.wire import Attachment, Mailbox
from tests.dispatch.realparts import (
    LOGO_CID,
    SENDER,
    header_block,
    logo,
    outgoing_email,
    parsed,
    part_by_filename,
    real_email,
)
from tests.harness.queues import ses_messages
from tests.ports import unused_port

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with start_moto_server(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials only, and no way to find real ones (files, profiles, instance metadata)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def moto_ses(moto: MotoServer) -> MotoServer:
    """The shared moto server, emptied, with SENDER verified."""
    moto.reset()
    ses_client(moto.url).verify_email_identity(EmailAddress=SENDER)
    return moto


def ses_client(endpoint_url: str, *, read_timeout: float = 10.0) -> Any:
    # A fresh session each time, so credentials are looked up now, not cached from an earlier
    # test. Retries off, as production builds it: botocore's own retries would hide what happened.
    return boto3.session.Session().client(
        "ses",
        region_name=REGION,
        endpoint_url=endpoint_url,
        config=Config(
            retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=read_timeout
        ),
    )


def client_error(code: str, status: int = 400, message: str = "details") -> boto_errors.ClientError:
    response = {
        "Error": {"Code": code, "Message": message, "Type": "Sender"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return boto_errors.ClientError(response, "SendEmail")  # type: ignore[arg-type]


# --- sending through moto ------------------------------------------------------------------


def test_send_delivers_encoded_names_idn_subject_and_body(moto_ses: MotoServer) -> None:
    provider = SesProvider(ses_client(moto_ses.url))
    email = outgoing_email(
        from_name="Zoë Ünïcode",
        to_email="leser@bücher.example",
        to_name="Doe, John",
        subject="Grüße ✓ 日本",
        body="Zeile 1\nZeile 2 ✓",
    )

    result = provider.send(email)

    [message] = ses_messages(moto_ses.url)
    assert result.provider_message_id == message["id"]
    assert message["source"].isascii()
    assert message["source"] == "=?utf-8?b?Wm/DqyDDnG7Dr2NvZGU=?= <sender@example.com>"
    assert str(make_header(decode_header(message["source"]))) == "Zoë Ünïcode <sender@example.com>"
    # IDN domain in punycode; an ASCII name with a comma is quoted, not encoded.
    assert message["destinations"] == {"ToAddresses": ['"Doe, John" <leser@xn--bcher-kva.example>']}
    assert message["subject"] == "Grüße ✓ 日本"
    assert message["body"] == "Zeile 1\nZeile 2 ✓"


def test_send_without_names_uses_bare_addresses(moto_ses: MotoServer) -> None:
    SesProvider(ses_client(moto_ses.url)).send(outgoing_email(from_name="", to_name=""))

    [message] = ses_messages(moto_ses.url)
    assert message["source"] == SENDER
    assert message["destinations"] == {"ToAddresses": ["reader@example.org"]}


def test_empty_subject_is_sent_as_empty(moto_ses: MotoServer) -> None:
    SesProvider(ses_client(moto_ses.url)).send(outgoing_email(subject=""))

    [message] = ses_messages(moto_ses.url)
    assert message["subject"] == ""


def test_payload_carries_utf8_charsets_and_the_gomail_id_tag() -> None:
    payload = SesProvider(client=None).build_payload(outgoing_email())

    assert payload["Message"]["Subject"]["Charset"] == "UTF-8"
    assert payload["Message"]["Body"]["Text"]["Charset"] == "UTF-8"
    assert payload["Tags"] == [{"Name": "gomail_id", "Value": outgoing_email().message_id}]


def test_message_id_ses_cannot_tag_is_sent_untagged() -> None:
    payload = SesProvider(client=None).build_payload(outgoing_email(message_id="sqs:id/with+chars"))

    assert "Tags" not in payload


def ses_raw_messages(moto_url: str) -> list[dict[str, Any]]:
    """Every ``SendRawEmail`` moto's SES accepted since its last reset: ``{"id", "source",
    "destinations", "raw_data"}`` (``ses_messages`` has the ``SendEmail`` ones)."""
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json", timeout=30) as answer:
        return json.load(answer).get("ses", {}).get("RawMessage", [])


def recording_requests(client: Any) -> list[dict[str, list[str]]]:
    """The form fields of every request ``client`` sends from now on, as they go to moto (a
    botocore hook that reads the request and lets it through). moto keeps only some of what
    SES takes (one body part, no tags, no reply-to), so what was sent is read here."""
    sent: list[dict[str, list[str]]] = []

    def record(request: Any, **kwargs: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        sent.append(urllib.parse.parse_qs(body))

    client.meta.events.register("before-send.ses.*", record)
    return sent


def sent_tags(fields: dict[str, list[str]]) -> dict[str, str]:
    names = {k: v[0] for k, v in fields.items() if k.startswith("Tags.member.")}
    count = sum(1 for k in names if k.endswith(".Name"))
    return {
        names[f"Tags.member.{n}.Name"]: names[f"Tags.member.{n}.Value"] for n in range(1, count + 1)
    }


def test_cc_bcc_text_html_reply_to_and_tags_go_through_send_email(moto_ses: MotoServer) -> None:
    client = ses_client(moto_ses.url)
    sent = recording_requests(client)

    result = SesProvider(client).send(real_email(headers={}))

    [message] = ses_messages(moto_ses.url)
    assert result.provider_message_id == message["id"]
    assert message["destinations"] == {
        "ToAddresses": ['"Doe, John" <reader@example.org>', "leser@xn--bcher-kva.example"],
        "CcAddresses": ["=?utf-8?b?w4dvcHk=?= <copy@example.org>"],
        "BccAddresses": ["Hidden One <hidden@example.org>"],
    }
    assert message["body"] == real_email().html  # moto keeps the HTML part of the two
    [fields] = sent
    assert fields["Action"] == ["SendEmail"]
    assert fields["Message.Body.Text.Data"] == ["Plain ✓"]
    assert fields["Message.Body.Html.Data"] == [real_email().html]
    assert fields["ReplyToAddresses.member.1"] == ["answers@example.com"]
    assert fields["ReplyToAddresses.member.2"] == ["help@xn--bcher-kva.example"]
    # "week 12" and the note's value are outside SES's tag characters: not tagged.
    assert sent_tags(fields) == {
        "gomail_id": real_email().message_id,
        "campaign": "spring-7",
        "newsletter": "true",
    }


def test_html_only_sends_no_text_part() -> None:
    payload = SesProvider(client=None).build_payload(outgoing_email(body="", html="<p>x</p>"))

    assert payload["Message"]["Body"] == {"Html": {"Data": "<p>x</p>", "Charset": "UTF-8"}}


def test_attachments_go_through_send_raw_email_byte_identical(moto_ses: MotoServer) -> None:
    client = ses_client(moto_ses.url)
    sent = recording_requests(client)
    content = os.urandom(3 * 1024 * 1024)
    report = Attachment("report.bin", "application/octet-stream", content)

    result = SesProvider(client).send(real_email(attachments=(logo(), report)))

    [message] = ses_raw_messages(moto_ses.url)
    assert result.provider_message_id == message["id"]
    assert str(make_header(decode_header(message["source"]))) == "Zoë Sender <sender@example.com>"
    # moto adds the To/Cc headers' mailboxes to the Destinations given; Bcc came from those.
    assert "hidden@example.org" in message["destinations"]
    raw = message["raw_data"]
    assert "hidden" not in header_block(raw).lower()
    mime = parsed(raw)
    assert part_by_filename(mime, "report.bin").get_content() == content
    image = part_by_filename(mime, "logo.png")
    assert image.get_content_disposition() == "inline"
    assert image["Content-ID"] == f"<{LOGO_CID}>"
    related = next(p for p in mime.walk() if p.get_content_type() == "multipart/related")
    assert [p.get_content_type() for p in related.iter_parts()] == ["text/html", "image/png"]
    alternative = next(p for p in mime.walk() if p.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "multipart/related",
    ]
    assert mime["Reply-To"] == "answers@example.com, help@xn--bcher-kva.example"
    assert mime["List-Unsubscribe"] == "<mailto:unsubscribe@example.com>"
    [fields] = sent
    assert fields["Action"] == ["SendRawEmail"]
    [source] = fields["Source"]
    assert source.isascii()
    assert str(make_header(decode_header(source))) == "Zoë Sender <sender@example.com>"
    assert [fields[f"Destinations.member.{n}"][0] for n in range(1, 5)] == [
        "reader@example.org",
        "leser@xn--bcher-kva.example",
        "copy@example.org",
        "hidden@example.org",
    ]
    assert sent_tags(fields)["gomail_id"] == real_email().message_id


def test_a_custom_header_alone_goes_raw(moto_ses: MotoServer) -> None:
    SesProvider(ses_client(moto_ses.url)).send(outgoing_email(headers={"X-Entity-Ref-ID": "ref-1"}))

    [message] = ses_raw_messages(moto_ses.url)
    assert parsed(message["raw_data"])["X-Entity-Ref-ID"] == "ref-1"


@pytest.mark.parametrize(
    ("overrides", "reason_part"),
    [
        ({"cc": (Mailbox("jörg@example.org"),)}, "non-ASCII recipient local part"),
        ({"bcc": (Mailbox("b@example.org", "Eve\nBcc: x@evil.example"),)}, "line break"),
        ({"reply_to": ("jörg@example.org",)}, "non-ASCII reply-to local part"),
        ({"headers": {"Bcc": "x@evil.example"}}, "written by Gomail"),
    ],
)
def test_what_ses_cannot_carry_in_the_new_fields_is_permanent(
    moto_ses: MotoServer, overrides: dict[str, Any], reason_part: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        SesProvider(ses_client(moto_ses.url)).send(outgoing_email(**overrides))

    assert caught.value.kind is ErrorKind.PERMANENT
    assert reason_part in caught.value.reason
    assert ses_messages(moto_ses.url) == ses_raw_messages(moto_ses.url) == []


def test_message_tags_skip_what_ses_cannot_carry_and_keep_gomail_id() -> None:
    email = outgoing_email(
        message_id="id-1",
        metadata={"gomail_id": "forged", "ok": "yes", "bad key": "v", "k": "bad value", "x": ""},
        tags=("ok", "fresh", "with space", "x" * 257),
    )

    assert ses_message_tags(email) == [
        {"Name": "gomail_id", "Value": "id-1"},
        {"Name": "ok", "Value": "yes"},
        {"Name": "fresh", "Value": "true"},
    ]


def test_gomail_id_is_reserved_even_when_the_id_cannot_be_tagged() -> None:
    email = outgoing_email(message_id="sqs:a/b", metadata={"gomail_id": "forged"})

    assert ses_message_tags(email) == []


def test_unverified_sender_is_permanent(moto_ses: MotoServer) -> None:
    provider = SesProvider(ses_client(moto_ses.url))

    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing_email(from_email="stranger@unverified.example"))

    error = caught.value
    assert error.kind is ErrorKind.PERMANENT
    assert error.code == "MessageRejected"
    assert error.status_code == 400
    assert error.provider == "ses"
    assert error.outcome_unknown is False
    assert error.counts_against_health is False
    assert "MessageRejected" in error.reason
    assert ses_messages(moto_ses.url) == []


@pytest.mark.parametrize(
    ("overrides", "reason_part"),
    [
        ({"to_email": "jörg@example.org"}, "non-ASCII recipient local part"),
        ({"to_email": "no-at-sign"}, "recipient address"),
        ({"to_email": "someone@exa\u200dmple.org"}, "recipient address"),  # ZWJ: invalid IDNA
        ({"from_name": "Evil\r\nBcc: victim@example.org"}, "sender name contains a line break"),
        ({"to_name": "Evil\nBcc: victim@example.org"}, "recipient name contains a line break"),
    ],
)
def test_addresses_ses_cannot_carry_are_permanent_and_not_sent(
    moto_ses: MotoServer, overrides: dict[str, str], reason_part: str
) -> None:
    provider = SesProvider(ses_client(moto_ses.url))

    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing_email(**overrides))

    assert caught.value.kind is ErrorKind.PERMANENT
    assert caught.value.outcome_unknown is False
    assert reason_part in caught.value.reason
    assert ses_messages(moto_ses.url) == []


def test_unreachable_endpoint_is_transient_and_known_not_sent() -> None:
    provider = SesProvider(ses_client(f"http://127.0.0.1:{unused_port()}"))

    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing_email())

    error = caught.value
    assert error.kind is ErrorKind.TRANSIENT
    assert error.code == "EndpointConnectionError"
    assert error.outcome_unknown is False
    assert error.counts_against_health is True


def read_whole_request(conn: socket.socket) -> None:
    """Read one HTTP request, head and ``Content-Length`` body, from ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += conn.recv(65536)


@contextmanager
def one_connection(
    handle: Callable[[socket.socket, threading.Event], None],
) -> Iterator[tuple[int, threading.Event]]:
    """A loopback listener that hands its first connection to ``handle`` (with an event for it
    to set once the request has arrived), in a thread. Yields its port and that event."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        received = threading.Event()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                handle(conn, received)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1], received
        thread.join(5)


@contextmanager
def server_that_never_answers(*, hang_up: bool) -> Iterator[tuple[str, threading.Event]]:
    """A real HTTP listener that reads one whole request and never answers it.

    Yields its URL and an event set once the complete request has arrived. With ``hang_up`` it
    then closes the connection; without, it holds it open until the client gives up.
    """

    def handle(conn: socket.socket, received: threading.Event) -> None:
        read_whole_request(conn)
        received.set()
        if not hang_up:
            while conn.recv(65536):
                pass

    with one_connection(handle) as (port, received):
        yield f"http://127.0.0.1:{port}", received


def test_no_answer_before_read_timeout_is_transient_with_unknown_outcome() -> None:
    with server_that_never_answers(hang_up=False) as (url, received):
        provider = SesProvider(ses_client(url, read_timeout=0.5))

        with pytest.raises(ProviderError) as caught:
            provider.send(outgoing_email())

    assert received.is_set()
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.code == "ReadTimeoutError"
    assert caught.value.outcome_unknown is True


def test_connection_closed_after_the_request_is_transient_with_unknown_outcome() -> None:
    # botocore's ConnectionClosedError comes after the request was written: the provider had it
    # and may have acted on it, so a retry may duplicate the email.
    with server_that_never_answers(hang_up=True) as (url, received):
        provider = SesProvider(ses_client(url))

        with pytest.raises(ProviderError) as caught:
            provider.send(outgoing_email())

    assert received.is_set()
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.code == "ConnectionClosedError"
    assert caught.value.outcome_unknown is True


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def tls_server_that_answers_garbage(directory: Path) -> Iterator[tuple[str, Path, threading.Event]]:
    """A real HTTPS listener: a good handshake, one whole request read, then bytes that are no
    TLS record where the answer should be (the client's TLS layer fails while reading it).

    Yields its URL, the CA file that trusts it and an event set once the request has arrived.
    """
    cert_path, key_path = self_signed_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)

    def handle(raw: socket.socket, received: threading.Event) -> None:
        with context.wrap_socket(raw, server_side=True) as conn:
            read_whole_request(conn)
            received.set()
            # Under the TLS layer: an application-data header, then bytes no key decrypts.
            os.write(conn.fileno(), b"\x17\x03\x03\x00\x10" + b"not a TLS record")
            with contextlib.suppress(OSError):  # the client answers with a TLS alert
                conn.recv(1)

    with one_connection(handle) as (port, received):
        yield f"https://127.0.0.1:{port}", cert_path, received


def test_tls_failure_while_reading_the_answer_is_transient_with_unknown_outcome(
    tmp_path: Path,
) -> None:
    # botocore's SSLError is one of its ConnectionErrors, but urllib3 raises it for a TLS
    # failure at any point, here after SES had the whole request: it may have sent the email.
    with tls_server_that_answers_garbage(tmp_path) as (url, ca_file, received):
        client = boto3.session.Session().client(
            "ses",
            region_name=REGION,
            endpoint_url=url,
            verify=str(ca_file),
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )

        with pytest.raises(ProviderError) as caught:
            SesProvider(client).send(outgoing_email())

    assert received.is_set()
    assert caught.value.code == "SSLError"
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.outcome_unknown is True


def test_proxy_dropping_the_connection_after_the_request_is_unknown_outcome() -> None:
    # A forwarding proxy that read the whole request (and may have passed it on) hangs up:
    # http.client closes the connection, urllib3 then sees one "not connected to the proxy"
    # and calls it a ProxyError, so botocore's ProxyConnectionError does not mean "not sent".
    with server_that_never_answers(hang_up=True) as (proxy_url, received):
        client = boto3.session.Session().client(
            "ses",
            region_name=REGION,
            endpoint_url=f"http://127.0.0.1:{unused_port()}",
            config=Config(
                retries={"total_max_attempts": 1},
                connect_timeout=2,
                read_timeout=5,
                proxies={"http": proxy_url},
            ),
        )

        with pytest.raises(ProviderError) as caught:
            SesProvider(client).send(outgoing_email())

    assert received.is_set()
    assert caught.value.code == "ProxyConnectionError"
    assert caught.value.outcome_unknown is True


def test_missing_credentials_are_provider_config(
    moto_ses: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    provider = SesProvider(ses_client(moto_ses.url))

    with pytest.raises(ProviderError) as caught:
        provider.send(outgoing_email())

    assert caught.value.kind is ErrorKind.PROVIDER_CONFIG
    assert caught.value.code == "NoCredentialsError"
    assert caught.value.counts_against_health is True


def test_unexpected_exception_is_transient_unknown_and_keeps_the_body_out(
    moto_ses: MotoServer,
) -> None:
    # A botocore event hook (the fault-injection point DESIGN.md names) raising a bug-like error
    # after the request is built: send() must still raise only ProviderError.
    client = ses_client(moto_ses.url)
    secret_body = "the confidential body"

    def explode(**kwargs: Any) -> None:
        raise RuntimeError(f"bug quoting {secret_body}")

    client.meta.events.register("before-send.ses.SendEmail", explode)

    with pytest.raises(ProviderError) as caught:
        SesProvider(client).send(outgoing_email(body=secret_body))

    error = caught.value
    assert error.kind is ErrorKind.TRANSIENT
    assert error.outcome_unknown is True
    assert error.code == "RuntimeError"
    assert secret_body not in error.reason
    assert isinstance(error.__cause__, RuntimeError)


def test_bug_while_building_the_request_is_transient_and_known_not_sent(
    moto_ses: MotoServer,
) -> None:
    # A malformed email (None where text belongs) makes build_payload fail: a bug, not the
    # message's fault, so never PERMANENT; nothing left the process, so the outcome is known.
    email = outgoing_email(from_name=None)  # type: ignore[arg-type]

    with pytest.raises(ProviderError) as caught:
        SesProvider(ses_client(moto_ses.url)).send(email)

    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.outcome_unknown is False
    assert caught.value.code == "TypeError"
    assert ses_messages(moto_ses.url) == []


# --- the tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "kind"), sorted(SES_ERROR_KINDS.items()))
def test_ses_error_code_table(code: str, kind: ErrorKind) -> None:
    error = SesProvider(client=None).classify_error(client_error(code, status=400))

    assert error.kind is kind
    assert error.code == code
    assert error.status_code == 400
    assert error.outcome_unknown is False  # SES answered: it did not take the message
    assert error.counts_against_health is (kind is not ErrorKind.PERMANENT)


def test_ses_error_code_table_matches_the_design() -> None:
    expected = {
        "MessageRejected": ErrorKind.PERMANENT,
        "InvalidParameterValue": ErrorKind.PERMANENT,
        "Throttling": ErrorKind.TRANSIENT,
        "ThrottlingException": ErrorKind.TRANSIENT,
        "ServiceUnavailable": ErrorKind.TRANSIENT,
        "InternalFailure": ErrorKind.TRANSIENT,
        "AccountSendingPausedException": ErrorKind.PROVIDER_CONFIG,
        "MailFromDomainNotVerifiedException": ErrorKind.PROVIDER_CONFIG,
        "ConfigurationSetDoesNotExist": ErrorKind.PROVIDER_CONFIG,
        "AccessDenied": ErrorKind.PROVIDER_CONFIG,
        "InvalidClientTokenId": ErrorKind.PROVIDER_CONFIG,
        "SignatureDoesNotMatch": ErrorKind.PROVIDER_CONFIG,
        "UnrecognizedClientException": ErrorKind.PROVIDER_CONFIG,
    }
    assert expected == SES_ERROR_KINDS


@pytest.mark.parametrize("status", [400, 403, 404, 500, 503])
def test_unknown_ses_error_code_is_transient_whatever_the_status(status: int) -> None:
    error = SesProvider(client=None).classify_error(client_error("SomethingNew", status=status))

    assert error.kind is ErrorKind.TRANSIENT
    assert error.status_code == status


@pytest.mark.parametrize(
    ("exception", "kind", "outcome_unknown"),
    [
        (boto_errors.EndpointConnectionError(endpoint_url="http://x"), ErrorKind.TRANSIENT, False),
        (boto_errors.ConnectTimeoutError(endpoint_url="http://x"), ErrorKind.TRANSIENT, False),
        # Any of these may come after the request was written (see the real-part tests above).
        (
            boto_errors.ProxyConnectionError(proxy_url="http://proxy"),
            ErrorKind.TRANSIENT,
            True,
        ),
        (boto_errors.SSLError(endpoint_url="https://x", error="bad"), ErrorKind.TRANSIENT, True),
        (boto_errors.ConnectionError(error="a new kind"), ErrorKind.TRANSIENT, True),
        (boto_errors.ResponseStreamingError(error="cut"), ErrorKind.TRANSIENT, True),
        (boto_errors.ReadTimeoutError(endpoint_url="http://x"), ErrorKind.TRANSIENT, True),
        # Raised when the connection drops after the request was written: may have been sent.
        (
            boto_errors.ConnectionClosedError(endpoint_url="http://x"),
            ErrorKind.TRANSIENT,
            True,
        ),
        (boto_errors.HTTPClientError(error="boom"), ErrorKind.TRANSIENT, True),
        (boto_errors.NoCredentialsError(), ErrorKind.PROVIDER_CONFIG, False),
        (
            boto_errors.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            ErrorKind.PROVIDER_CONFIG,
            False,
        ),
        (boto_errors.NoRegionError(), ErrorKind.PROVIDER_CONFIG, False),
        (boto_errors.ParamValidationError(report="bad"), ErrorKind.TRANSIENT, False),
        (ValueError("not botocore at all"), ErrorKind.TRANSIENT, True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_botocore_exception_table(
    exception: Exception, kind: ErrorKind, outcome_unknown: bool
) -> None:
    error = SesProvider(client=None).classify_error(exception)

    assert error.kind is kind
    assert error.outcome_unknown is outcome_unknown
    assert error.code == type(exception).__name__
    assert error.status_code is None


def test_every_botocore_rule_is_reachable() -> None:
    # First match wins: a rule shadowed by an earlier, broader one would be dead.
    for index, rule in enumerate(BOTOCORE_ERROR_RULES):
        for earlier in BOTOCORE_ERROR_RULES[:index]:
            assert not issubclass(rule.exception, earlier.exception), (rule, earlier)


def test_only_failures_to_open_a_connection_are_known_not_sent() -> None:
    # The exchange's failures (not the local ones: credentials, validation) are of unknown
    # outcome unless botocore raises them before writing the request.
    exchange = (boto_errors.ConnectionError, boto_errors.HTTPClientError)
    known_not_sent = {
        rule.exception
        for rule in BOTOCORE_ERROR_RULES
        if issubclass(rule.exception, exchange) and not rule.outcome_unknown
    }

    assert known_not_sent == {boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError}


def test_botocore_error_rule_is_the_first_match() -> None:
    tls = boto_errors.SSLError(endpoint_url="https://x", error="bad record mac")

    assert botocore_error_rule(tls).exception is boto_errors.SSLError
    assert botocore_error_rule(ValueError("not botocore")) is None


def test_botocore_reasons_never_quote_the_request() -> None:
    report = "Invalid type for parameter Message.Body.Text.Data, value: the confidential body"

    error = SesProvider(client=None).classify_error(boto_errors.ParamValidationError(report=report))

    assert "confidential" not in error.reason


# --- the shared contract, seen through SES -------------------------------------------------


def test_provider_error_survives_pickling() -> None:
    error = SesProvider(client=None).classify_error(client_error("Throttling", status=400))

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert repr(copy) == repr(error)
    assert copy.kind is ErrorKind.TRANSIENT
    assert str(copy) == str(error)


def test_reasons_are_one_short_line() -> None:
    message = "line one\nline two " + "x" * 2000

    error = SesProvider(client=None).classify_error(client_error("Throttling", message=message))

    assert "\n" not in error.reason
    assert len(error.reason) <= 500


def test_outgoing_email_repr_leaves_the_body_out() -> None:
    assert "Line 1" not in repr(outgoing_email())


def test_ses_is_registered_under_its_name() -> None:
    """The configuration's ``type: ses`` is this module, and builds this provider."""
    from gomail_site.config import provider_type

    declared = provider_type("ses")
    config = declared.config.model_validate({"type": "ses"})
    assert declared.secrets(config) == ()
    assert SesProvider.name == "ses"
