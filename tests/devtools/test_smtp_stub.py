"""The SMTP stand-in, over real SMTP and HTTP on 127.0.0.1, driven by real ``smtplib`` clients
and ``requests``: recording, AUTH, STARTTLS and implicit TLS, the fault controls of its HTTP
API, and the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.smtp_stub import SmtpStub, parse_credentials, parse_message, start_smtp_stub

TIMEOUT = 10
USER, PASSWORD = "relay-user", "relay-secret-pw"
RAW = (
    "From: Sender <sender@example.com>\r\n"
    "To: reader@example.org\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hällo ✓\r\n"
).encode()

# aiosmtpd's own AUTH code sets the attribute it deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")


@pytest.fixture
def stub() -> Iterator[SmtpStub]:
    with start_smtp_stub() as server:
        yield server


@pytest.fixture
def auth_stub() -> Iterator[SmtpStub]:
    with start_smtp_stub(credentials=(USER, PASSWORD)) as server:
        yield server


def client(stub: SmtpStub, timeout: float = TIMEOUT) -> smtplib.SMTP:
    return smtplib.SMTP(stub.smtp_host, stub.smtp_port, timeout=timeout)


def send(stub: SmtpStub, **kwargs: Any) -> dict[str, Any]:
    with client(stub, **kwargs) as smtp:
        return smtp.sendmail("sender@example.com", ["reader@example.org"], RAW)


def final_answer(smtp: smtplib.SMTP) -> tuple[int, bytes]:
    """MAIL, RCPT, then DATA's final answer, without raising on an error reply."""
    smtp.ehlo_or_helo_if_needed()
    assert smtp.mail("sender@example.com")[0] == 250
    assert smtp.rcpt("reader@example.org")[0] == 250
    return smtp.data(RAW)


def post(stub: SmtpStub, path: str, body: Any = None) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body or {})
    return requests.post(f"{stub.url}{path}", data=data, timeout=TIMEOUT)


def get_json(stub: SmtpStub, path: str) -> Any:
    response = requests.get(f"{stub.url}{path}", timeout=TIMEOUT)
    assert response.status_code == 200
    return response.json()


# --- recording ---------------------------------------------------------------------------------


def test_a_message_is_accepted_with_a_queue_id_and_recorded(stub: SmtpStub) -> None:
    with client(stub) as smtp:
        code, answer = final_answer(smtp)

    assert code == 250
    queue_id = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-F]+)", answer)
    assert queue_id
    snapshot = get_json(stub, "/_stub/messages")
    [message] = snapshot["messages"]
    assert message["queueId"] == queue_id.group(1).decode()
    assert message["mailFrom"] == "sender@example.com"
    assert message["rcptTos"] == ["reader@example.org"]
    assert message["login"] is None
    assert message["data"] == RAW.decode()
    assert message["headers"]["Subject"] == "Grüße"  # decoded
    assert message["headers"]["From"] == "Sender <sender@example.com>"
    assert message["text"] == "Hällo ✓\r\n"
    assert message["receivedAt"].endswith("Z")
    assert (snapshot["attempts"], snapshot["failures"], snapshot["connections"]) == (1, 0, 1)


def test_connections_are_counted_not_messages(stub: SmtpStub) -> None:
    with client(stub) as smtp:
        final_answer(smtp)
        final_answer(smtp)
    send(stub)

    assert stub.connections() == 2
    assert len(stub.messages()) == 3


def test_parse_message_decodes_headers_and_the_text_body() -> None:
    headers, text = parse_message(RAW)

    assert headers["Subject"] == "Grüße"
    assert text == "Hällo ✓\r\n"
    assert parse_message(b"Subject: x\r\nContent-Type: image/png\r\n\r\nxx")[1] is None


# --- AUTH and TLS --------------------------------------------------------------------------------


def test_auth_with_the_configured_login_is_accepted_and_recorded(auth_stub: SmtpStub) -> None:
    for mechanism in ("PLAIN", "LOGIN"):
        with client(auth_stub) as smtp:
            smtp.ehlo()
            smtp.user, smtp.password = USER, PASSWORD
            smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
            assert final_answer(smtp)[0] == 250

    assert [m["login"] for m in auth_stub.messages()] == [USER, USER]


def test_a_wrong_password_is_535(auth_stub: SmtpStub) -> None:
    with client(auth_stub) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as raised:
        smtp.login(USER, "wrong")

    assert raised.value.smtp_code == 535


def test_mail_without_auth_is_530(auth_stub: SmtpStub) -> None:
    with client(auth_stub) as smtp:
        smtp.ehlo()
        code, _ = smtp.mail("sender@example.com")

    assert code == 530
    assert auth_stub.messages() == []


def test_starttls_with_the_generated_certificate_then_auth() -> None:
    with start_smtp_stub(credentials=(USER, PASSWORD), tls_mode="starttls") as stub:
        with client(stub) as smtp:
            smtp.ehlo()
            # No AUTH before TLS, as on a real relay.
            assert not smtp.has_extn("auth")
            smtp.starttls(context=stub.client_ssl_context())
            smtp.login(USER, PASSWORD)
            assert final_answer(smtp)[0] == 250
        assert stub.connections() == 1  # the TLS upgrade is the same connection
        assert len(stub.messages()) == 1


def test_implicit_tls() -> None:
    with start_smtp_stub(tls_mode="tls") as stub:
        assert stub.smtp_url.startswith("smtps://")
        with smtplib.SMTP_SSL(
            stub.smtp_host, stub.smtp_port, timeout=TIMEOUT, context=stub.client_ssl_context()
        ) as smtp:
            assert final_answer(smtp)[0] == 250


def test_client_context_needs_tls(stub: SmtpStub) -> None:
    with pytest.raises(RuntimeError):
        stub.client_ssl_context()


# --- fault controls over HTTP ----------------------------------------------------------------


def test_fail_rate_half_at_data_fails_every_second_message(stub: SmtpStub) -> None:
    assert post(stub, "/_stub/config", {"failRate": 0.5, "failCode": 451}).status_code == 200

    with client(stub) as smtp:
        codes = [final_answer(smtp)[0] for _ in range(4)]
        smtp.rset()

    assert codes == [250, 451, 250, 451]
    snapshot = get_json(stub, "/_stub/messages")
    assert (len(snapshot["messages"]), snapshot["attempts"], snapshot["failures"]) == (2, 4, 2)


def test_fail_stage_rcpt_refuses_the_recipient(stub: SmtpStub) -> None:
    post(stub, "/_stub/config", {"failRate": 1, "failCode": 550, "failStage": "rcpt"})

    with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        send(stub)

    assert raised.value.recipients["reader@example.org"][0] == 550
    assert stub.messages() == []


def test_injected_535_at_data(stub: SmtpStub) -> None:
    stub.configure(fail_rate=1, fail_code=535)

    with client(stub) as smtp:
        code, answer = final_answer(smtp)

    assert (code, answer) == (535, b"5.7.8 Injected failure (SMTP stand-in)")


def test_delay_postpones_the_final_answer_and_a_client_timeout_still_leaves_it_recorded(
    stub: SmtpStub,
) -> None:
    post(stub, "/_stub/config", {"delayMs": 2000}).raise_for_status()

    started = time.monotonic()
    with client(stub, timeout=0.3) as smtp, pytest.raises(smtplib.SMTPServerDisconnected):
        final_answer(smtp)
    assert time.monotonic() - started < 1.6  # the client's timeout, not the delay

    assert len(stub.messages()) == 1  # recorded before the delay


def test_delay_ms_delays(stub: SmtpStub) -> None:
    stub.configure(delay_ms=400)

    started = time.monotonic()
    send(stub)
    assert 0.4 <= time.monotonic() - started < 5


def test_drop_connection_closes_after_data_without_an_answer(stub: SmtpStub) -> None:
    post(stub, "/_stub/config", {"dropConnection": True}).raise_for_status()

    with client(stub) as smtp, pytest.raises(smtplib.SMTPServerDisconnected):
        final_answer(smtp)

    assert len(stub.messages()) == 1  # the relay had it; only the answer was lost


def test_disconnect_closes_open_connections(stub: SmtpStub) -> None:
    with client(stub) as smtp:
        smtp.ehlo()
        assert post(stub, "/_stub/disconnect").json() == {"closed": 1}
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()


def test_config_defaults_and_merged_updates(stub: SmtpStub) -> None:
    defaults = {
        "failRate": 0.0,
        "failCode": 451,
        "failStage": "data",
        "delayMs": 0,
        "dropConnection": False,
    }
    assert get_json(stub, "/_stub/config") == defaults

    post(stub, "/_stub/config", {"failRate": 0.25})
    answer = post(stub, "/_stub/config", {"failCode": 554, "failStage": "rcpt"})

    expected = {**defaults, "failRate": 0.25, "failCode": 554, "failStage": "rcpt"}
    assert answer.json() == expected
    assert get_json(stub, "/_stub/config") == expected == stub.config()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"failRate": 1.5}, "failRate"),
        ({"failRate": True}, "failRate"),
        ({"failCode": 250}, "failCode"),
        ({"failCode": 600}, "failCode"),
        ({"failStage": "mail"}, "failStage"),
        ({"delayMs": -1}, "delayMs"),
        ({"dropConnection": 1}, "dropConnection"),
        ({"bogus": 1}, "bogus"),
        ({"failRate": 0.5, "failCode": 200}, "failCode"),  # all or nothing
    ],
)
def test_invalid_config_is_400_naming_the_field_and_changes_nothing(
    stub: SmtpStub, body: dict[str, Any], field: str
) -> None:
    response = post(stub, "/_stub/config", body)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert stub.config()["failRate"] == 0.0


@pytest.mark.parametrize("body", ["{not json", "[]"])
def test_config_body_not_a_json_object_is_400(stub: SmtpStub, body: str) -> None:
    assert post(stub, "/_stub/config", body).status_code == 400


def test_reset_clears_everything_heal_only_the_faults(stub: SmtpStub) -> None:
    stub.configure(fail_rate=0.5)
    send(stub)

    healed = post(stub, "/_stub/heal")
    assert healed.status_code == 200
    assert healed.json()["failRate"] == 0.0
    snapshot = get_json(stub, "/_stub/messages")
    assert (len(snapshot["messages"]), snapshot["attempts"], snapshot["connections"]) == (1, 1, 1)

    stub.configure(delay_ms=5)
    assert post(stub, "/_stub/reset").json() == {"reset": True}
    assert get_json(stub, "/_stub/messages") == {
        "messages": [],
        "attempts": 0,
        "failures": 0,
        "connections": 0,
    }
    assert get_json(stub, "/_stub/config")["delayMs"] == 0


def test_unknown_path_is_404(stub: SmtpStub) -> None:
    assert requests.get(f"{stub.url}/_stub/nope", timeout=TIMEOUT).status_code == 404
    assert post(stub, "/v3/mail/send").status_code == 404


def test_python_configure_validates(stub: SmtpStub) -> None:
    with pytest.raises(ValueError, match="failCode"):
        stub.configure(fail_code=200)
    with pytest.raises(ValueError, match="bogus"):
        stub.configure(bogus=1)


@pytest.mark.parametrize("text", ["user", ":pw", "user:", ""])
def test_bad_credentials_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_credentials(text)
    assert parse_credentials("u:p:q") == ("u", "p:q")


# --- command line -------------------------------------------------------------------------------


def test_cli_free_ports_auth_logs_no_secrets_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "stub.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "devtools.smtp_stub"),
                *("--port", "0", "--http-port", "0", "--auth", f"{USER}:{PASSWORD}"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 20
        urls = None
        while urls is None and time.monotonic() < deadline:
            urls = re.search(
                r"listening on smtp://([\d.]+):(\d+) \(control API on (http://\S+)\)",
                log_path.read_text(),
            )
            time.sleep(0.05)
        assert urls, log_path.read_text()
        host, port, control = urls.group(1), int(urls.group(2)), urls.group(3)

        with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
            smtp.login(USER, PASSWORD)
            smtp.sendmail("sender@example.com", ["reader@example.org"], RAW)
        messages = requests.get(f"{control}/_stub/messages", timeout=TIMEOUT).json()

        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    assert messages["messages"][0]["login"] == USER
    output = log_path.read_text()
    assert "accepted" in output and "/_stub/messages" in output
    assert PASSWORD not in output
    assert "Hällo" not in output


def test_a_5_mib_message_is_accepted_whole(stub: SmtpStub) -> None:
    # A real email's attachments: the stand-in must take what SES and the API allow.
    payload = os.urandom(5 * 1024 * 1024).hex().encode()[: 5 * 1024 * 1024]
    lines = b"\r\n".join(payload[i : i + 76] for i in range(0, len(payload), 76))
    raw = RAW.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + lines + b"\r\n"

    with client(stub) as smtp:
        assert smtp.sendmail("sender@example.com", ["a@example.org", "b@example.org"], raw) == {}

    [message] = stub.messages()
    assert message["rcptTos"] == ["a@example.org", "b@example.org"]
    assert message["data"].encode() == raw
