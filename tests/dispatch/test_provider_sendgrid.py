"""SendGridProvider against the real SendGrid stand-in (devtools/sendgrid_stub.py) over HTTP,
through the real ``sendgrid`` library: no mocks.
"""

from __future__ import annotations

import base64
import os
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devtools.sendgrid_stub import SendGridStub
from dispatch.providers import ErrorKind, OutgoingEmail, ProviderError
from dispatch.providers.sendgrid import (
    SENDGRID_STATUS_KINDS,
    SendGridProvider,
    retry_after_from_headers,
)
from emails.wire import Attachment, Mailbox
from tests.dispatch.realparts import LOGO_CID, logo, outgoing_email, real_email
from tests.harness.fixtures import STUB_API_KEY
from tests.ports import unused_port

API_KEY = STUB_API_KEY  # the key of conftest's shared stand-in


@pytest.fixture
def sendgrid(sendgrid_stub: SendGridStub) -> SendGridStub:
    """conftest's shared stand-in, reset: no messages, counters or injected faults."""
    return sendgrid_stub


def provider_for(stub: SendGridStub, *, api_key: str = API_KEY, timeout: float = 5.0) -> Any:
    return SendGridProvider(api_key=api_key, host=stub.url, timeout_seconds=timeout)


def send_expecting_error(provider: SendGridProvider, email: OutgoingEmail) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.send(email)
    return caught.value


# --- success -------------------------------------------------------------------------------


def test_send_posts_names_subject_plain_text_and_custom_args(sendgrid: SendGridStub) -> None:
    result = provider_for(sendgrid).send(outgoing_email())

    [message] = sendgrid.messages()
    assert result.provider_message_id == message["messageId"]
    assert message["payload"] == {
        "from": {"email": "sender@example.com", "name": "Zoë Sender"},
        "personalizations": [{"to": [{"email": "reader@example.org", "name": "Doe, John"}]}],
        "subject": "Grüße ✓",
        "content": [{"type": "text/plain", "value": "Line 1\nLine 2 ✓"}],
        "custom_args": {"gomail_id": "0b6f2a1e-5c1d-4a8e-9d1f-2f0c1e9a7b33"},
    }


def test_a_real_email_reaches_every_field(sendgrid: SendGridStub) -> None:
    content = os.urandom(3 * 1024 * 1024)
    report = Attachment("report.bin", "application/octet-stream", content)
    email = real_email(
        attachments=(logo(), report), metadata={"campaign": "spring-7", "gomail_id": "forged"}
    )

    provider_for(sendgrid).send(email)

    [message] = sendgrid.messages()
    payload = message["payload"]
    assert payload["personalizations"] == [
        {
            "to": [
                {"email": "reader@example.org", "name": "Doe, John"},
                {"email": "leser@xn--bcher-kva.example"},
            ],
            "cc": [{"email": "copy@example.org", "name": "Çopy"}],
            "bcc": [{"email": "hidden@example.org", "name": "Hidden One"}],
        }
    ]
    assert payload["content"] == [
        {"type": "text/plain", "value": "Plain ✓"},
        {"type": "text/html", "value": email.html},
    ]
    assert payload["reply_to_list"] == [
        {"email": "answers@example.com"},
        {"email": "help@xn--bcher-kva.example"},
    ]
    assert "reply_to" not in payload
    assert payload["headers"] == {"List-Unsubscribe": "<mailto:unsubscribe@example.com>"}
    assert payload["categories"] == ["newsletter", "week 12"]
    # gomail_id is ours: a metadata key of that name cannot redirect SendGrid's events.
    assert payload["custom_args"] == {"campaign": "spring-7", "gomail_id": email.message_id}
    inline, attached = payload["attachments"]
    assert inline == {
        "content": base64.b64encode(logo().content).decode(),
        "type": "image/png",
        "filename": "logo.png",
        "disposition": "inline",
        "content_id": LOGO_CID,
    }
    assert attached["disposition"] == "attachment"
    assert "content_id" not in attached
    assert (attached["filename"], attached["type"]) == ("report.bin", "application/octet-stream")
    assert base64.b64decode(attached["content"]) == content


def test_one_reply_to_is_reply_to_and_html_alone_is_the_only_content(
    sendgrid: SendGridStub,
) -> None:
    email = outgoing_email(body="", html="<p>x</p>", reply_to=("answers@example.com",))

    provider_for(sendgrid).send(email)

    payload = sendgrid.messages()[0]["payload"]
    assert payload["reply_to"] == {"email": "answers@example.com"}
    assert "reply_to_list" not in payload
    assert payload["content"] == [{"type": "text/html", "value": "<p>x</p>"}]


def test_an_address_twice_among_the_recipients_is_sent_once(sendgrid: SendGridStub) -> None:
    # SendGrid refuses a personalization that repeats an address (the stand-in too).
    email = outgoing_email(
        cc=(Mailbox("READER@example.org"), Mailbox("c@example.org")),
        bcc=(Mailbox("c@example.org"),),
    )

    provider_for(sendgrid).send(email)

    [personalization] = sendgrid.messages()[0]["payload"]["personalizations"]
    assert personalization == {
        "to": [{"email": "reader@example.org", "name": "Doe, John"}],
        "cc": [{"email": "c@example.org"}],
    }


def test_a_bad_cc_or_reply_to_address_is_permanent_and_not_sent(sendgrid: SendGridStub) -> None:
    for email in (
        outgoing_email(cc=(Mailbox("no-at-sign"),)),
        outgoing_email(reply_to=("someone@exa\u200dmple.org",)),
    ):
        error = send_expecting_error(provider_for(sendgrid), email)
        assert error.kind is ErrorKind.PERMANENT
    assert sendgrid.messages() == []


def test_absent_names_are_left_out(sendgrid: SendGridStub) -> None:
    provider_for(sendgrid).send(outgoing_email(from_name="", to_name=""))

    payload = sendgrid.messages()[0]["payload"]
    assert payload["from"] == {"email": "sender@example.com"}
    assert payload["personalizations"][0]["to"] == [{"email": "reader@example.org"}]


def test_empty_subject_is_sent_as_a_single_space(sendgrid: SendGridStub) -> None:
    # SendGrid requires a non-empty subject; one space shows as blank in mail clients.
    provider_for(sendgrid).send(outgoing_email(subject=""))

    assert sendgrid.messages()[0]["payload"]["subject"] == " "


def test_idn_domain_is_sent_in_punycode(sendgrid: SendGridStub) -> None:
    provider_for(sendgrid).send(outgoing_email(to_email="leser@bücher.example"))

    to = sendgrid.messages()[0]["payload"]["personalizations"][0]["to"]
    assert to == [{"email": "leser@xn--bcher-kva.example", "name": "Doe, John"}]


def test_concurrent_sends_through_one_provider(sendgrid: SendGridStub) -> None:
    provider = provider_for(sendgrid)
    emails = [outgoing_email(message_id=f"id-{n}", to_email=f"r{n}@example.org") for n in range(16)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(provider.send, emails))

    messages = sendgrid.messages()
    assert sorted(m["messageId"] for m in messages) == sorted(
        r.provider_message_id for r in results
    )
    assert sorted(m["payload"]["custom_args"]["gomail_id"] for m in messages) == sorted(
        e.message_id for e in emails
    )


# --- error answers: the status table -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.PERMANENT),
        (413, ErrorKind.PERMANENT),
        (401, ErrorKind.PROVIDER_CONFIG),
        (403, ErrorKind.PROVIDER_CONFIG),
        (429, ErrorKind.TRANSIENT),
        (500, ErrorKind.TRANSIENT),
        (502, ErrorKind.TRANSIENT),
        (503, ErrorKind.TRANSIENT),
        (504, ErrorKind.TRANSIENT),
        (418, ErrorKind.TRANSIENT),  # a status we do not know never dead-letters
    ],
)
def test_injected_status_is_classified_by_the_table(
    sendgrid: SendGridStub, status: int, kind: ErrorKind
) -> None:
    sendgrid.configure(fail_rate=1.0, fail_status=status)

    error = send_expecting_error(provider_for(sendgrid), outgoing_email())

    assert error.kind is kind
    assert error.status_code == status
    assert error.provider == "sendgrid"
    assert error.outcome_unknown is False  # SendGrid answered: it did not take the message
    assert error.counts_against_health is (kind is not ErrorKind.PERMANENT)
    # SendGrid's errors[].message is carried into the reason.
    assert error.reason.startswith(f"HTTP {status}: ")
    assert "injected by the SendGrid stand-in" in error.reason
    assert sendgrid.messages() == []


def test_status_table_matches_the_design() -> None:
    assert {
        400: ErrorKind.PERMANENT,
        413: ErrorKind.PERMANENT,
        401: ErrorKind.PROVIDER_CONFIG,
        403: ErrorKind.PROVIDER_CONFIG,
        429: ErrorKind.TRANSIENT,
    } == SENDGRID_STATUS_KINDS


def test_throttling_carries_retry_after(sendgrid: SendGridStub) -> None:
    sendgrid.configure(fail_rate=1.0, fail_status=429, retry_after_seconds=7)

    error = send_expecting_error(provider_for(sendgrid), outgoing_email())

    assert error.kind is ErrorKind.TRANSIENT
    assert error.status_code == 429
    assert error.retry_after_seconds == 7


def test_retry_after_falls_back_to_the_rate_limit_reset_epoch() -> None:
    now = 1_800_000_000.0

    assert retry_after_from_headers({"X-RateLimit-Reset": str(int(now) + 30)}, now) == 30
    assert retry_after_from_headers({"x-ratelimit-reset": str(int(now) - 5)}, now) == 0
    assert retry_after_from_headers({"Retry-After": "12", "X-RateLimit-Reset": "0"}, now) == 12
    assert retry_after_from_headers({"Retry-After": "soon"}, now) is None
    assert retry_after_from_headers({}, now) is None


def test_payload_sendgrid_rejects_is_permanent(sendgrid: SendGridStub) -> None:
    # A real validation answer, not an injected one.
    error = send_expecting_error(
        provider_for(sendgrid), outgoing_email(to_email="two words@example.org")
    )

    assert error.kind is ErrorKind.PERMANENT
    assert error.status_code == 400
    assert "Does not contain a valid address" in error.reason


def test_wrong_key_is_provider_config_and_never_quoted(sendgrid: SendGridStub) -> None:
    wrong_key = "SG.wrong-key-that-must-not-leak"

    error = send_expecting_error(provider_for(sendgrid, api_key=wrong_key), outgoing_email())

    assert error.kind is ErrorKind.PROVIDER_CONFIG
    assert error.status_code == 401
    assert error.counts_against_health is True
    for text in (error.reason, str(error), repr(error)):
        assert wrong_key not in text
        assert API_KEY not in text


# --- no answer -----------------------------------------------------------------------------


def test_answer_slower_than_the_timeout_is_transient_with_unknown_outcome(
    sendgrid: SendGridStub,
) -> None:
    sendgrid.configure(delay_ms=2000)
    provider = provider_for(sendgrid, timeout=0.3)

    started = time.monotonic()
    error = send_expecting_error(provider, outgoing_email())
    elapsed = time.monotonic() - started

    # The client's 0.3 s timeout fired (5 times over, for a slow machine), not the 2 s delay.
    assert elapsed < 1.6
    assert error.kind is ErrorKind.TRANSIENT
    assert error.code == "TimeoutError"
    assert error.outcome_unknown is True
    assert error.status_code is None
    # And the outcome really was unknown: the stand-in goes on to accept the message.
    deadline = time.monotonic() + 5
    while not sendgrid.messages() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sendgrid.messages()) == 1


def test_closed_port_is_transient_and_known_not_sent() -> None:
    provider = SendGridProvider(API_KEY, host=f"http://127.0.0.1:{unused_port()}")

    error = send_expecting_error(provider, outgoing_email())

    assert error.kind is ErrorKind.TRANSIENT
    assert error.code == "ConnectionRefusedError"
    assert error.outcome_unknown is False
    assert error.counts_against_health is True


def test_connect_timeout_is_transient_and_known_not_sent() -> None:
    # urllib wraps what fails before the request is written (connecting included) in URLError;
    # a timeout there means SendGrid never had the request.
    error = SendGridProvider(API_KEY).classify_error(urllib.error.URLError(TimeoutError()))

    assert error.kind is ErrorKind.TRANSIENT
    assert error.outcome_unknown is False


def test_unexpected_exception_is_transient_with_unknown_outcome() -> None:
    error = SendGridProvider(API_KEY).classify_error(RuntimeError("bug"))

    assert error.kind is ErrorKind.TRANSIENT
    assert error.outcome_unknown is True
    assert error.code == "RuntimeError"


# --- construction (offline) ----------------------------------------------------------------


def test_timeout_is_set_on_the_http_client() -> None:
    provider = SendGridProvider(API_KEY, host="http://127.0.0.1:9", timeout_seconds=2.5)

    assert provider.http_client.timeout == 2.5
    # The clients python_http_client builds per path segment inherit it.
    assert provider.http_client.mail.send.timeout == 2.5
    assert provider.http_client.host == "http://127.0.0.1:9"


def test_host_trailing_slash_is_dropped() -> None:
    provider = SendGridProvider(API_KEY, host="http://127.0.0.1:9/")

    assert provider.http_client.host == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": ""}, "api_key"),
        ({"api_key": API_KEY, "timeout_seconds": 0}, "timeout_seconds"),
        ({"api_key": API_KEY, "timeout_seconds": -1}, "timeout_seconds"),
    ],
)
def test_invalid_construction_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SendGridProvider(**kwargs)


def test_sendgrid_is_registered_under_its_name() -> None:
    """The configuration's ``type: sendgrid`` is this module, and builds this provider."""
    from gomail_site.config import provider_type

    declared = provider_type("sendgrid")
    config = declared.config.model_validate({"type": "sendgrid"})
    assert [s.env for s in declared.secrets(config)] == ["SENDGRID_API_KEY"]
    built = declared.build("mail", config, {"SENDGRID_API_KEY": "SG.test"})
    assert isinstance(built, SendGridProvider) and built.name == "mail"
    assert SendGridProvider.name == "sendgrid"
