"""The SendGrid stand-in, over real HTTP on 127.0.0.1, driven by the real ``sendgrid`` library
and by ``requests``: the v3 mail send contract, deterministic fault injection, the control
endpoints, and the command line."""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sendgrid
from python_http_client.exceptions import (
    HTTPError,
    InternalServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid.helpers.mail import Mail

from devtools.sendgrid_stub import MAX_BODY_BYTES, SendGridStub, start_sendgrid_stub
from tests.harness.processes import ProcessGroup

API_KEY = "SG.test-key-for-the-stand-in"
TIMEOUT = 10


@pytest.fixture
def stub() -> Iterator[SendGridStub]:
    with start_sendgrid_stub(api_key=API_KEY) as server:
        yield server


def mail(subject: str = "Hello", marker: str = "body") -> Mail:
    return Mail(
        from_email="sender@example.com",
        to_emails="rcpt@example.com",
        subject=subject,
        plain_text_content=f"plain {marker}",
        html_content=f"<p>html {marker}</p>",
    )


def payload() -> dict[str, Any]:
    return copy.deepcopy(mail().get())


def sg_client(stub: SendGridStub, api_key: str = API_KEY) -> sendgrid.SendGridAPIClient:
    return sendgrid.SendGridAPIClient(api_key=api_key, host=stub.url)


def post_send(
    stub: SendGridStub, body: Any = None, key: str = API_KEY, timeout: float = TIMEOUT
) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    data = (
        body if isinstance(body, str | bytes) else json.dumps(payload() if body is None else body)
    )
    return requests.post(f"{stub.url}/v3/mail/send", data=data, headers=headers, timeout=timeout)


def post_config(stub: SendGridStub, body: Any) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(f"{stub.url}/_stub/config", data=data, timeout=TIMEOUT)


def get_json(stub: SendGridStub, path: str) -> Any:
    response = requests.get(f"{stub.url}{path}", timeout=TIMEOUT)
    assert response.status_code == 200
    return response.json()


def assert_sendgrid_error(body: Any, field: str | None) -> None:
    """SendGrid's error shape, naming ``field``."""
    assert isinstance(body, dict) and list(body) == ["errors"]
    [error] = body["errors"]
    assert set(error) == {"message", "field", "help"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["field"] == field
    assert error["help"] is None


# --- the mail send contract --------------------------------------------------------------------


def test_sendgrid_library_send_is_accepted_and_recorded(stub: SendGridStub) -> None:
    message = mail(marker="unique-7")
    before = datetime.now(UTC)

    response = sg_client(stub).send(message)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert message_id
    [recorded] = stub.messages()
    assert recorded["messageId"] == message_id
    assert recorded["payload"] == message.get()
    received_at = datetime.fromisoformat(recorded["receivedAt"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= received_at <= datetime.now(UTC)
    assert get_json(stub, "/_stub/messages") == {
        "messages": [recorded],
        "attempts": 1,
        "failures": 0,
    }


def test_a_burst_of_concurrent_connections_is_served_without_resets(stub: SendGridStub) -> None:
    # As many connections at once as a provider worker opens (concurrency x send_concurrency),
    # each new: more than a listen backlog of 5 would hold while the server accepts.
    clients = 64
    barrier = threading.Barrier(clients)

    def send_one(index: int) -> int:
        barrier.wait(timeout=30)
        answer = requests.post(
            f"{stub.url}/v3/mail/send",
            json=payload(),
            headers={"Authorization": f"Bearer {API_KEY}", "Connection": "close"},
            timeout=TIMEOUT,
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = list(pool.map(send_one, range(clients)))

    assert statuses == [202] * clients
    assert len(stub.messages()) == clients


def test_message_ids_are_unique(stub: SendGridStub) -> None:
    client = sg_client(stub)
    ids = [client.send(mail(subject=f"s{i}")).headers["X-Message-Id"] for i in range(5)]

    assert len(set(ids)) == 5
    assert [m["messageId"] for m in stub.messages()] == ids
    assert [m["payload"]["subject"] for m in stub.messages()] == [f"s{i}" for i in range(5)]


def test_subject_per_personalization_is_enough(stub: SendGridStub) -> None:
    body = payload()
    subject = body.pop("subject")
    body["personalizations"][0]["subject"] = subject

    assert post_send(stub, body).status_code == 202


def test_wrong_key_with_sendgrid_library_is_401(stub: SendGridStub) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        sg_client(stub, api_key="SG.wrong").send(mail())

    assert raised.value.status_code == 401
    assert_sendgrid_error(json.loads(raised.value.body), None)
    assert stub.messages() == []


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer SG.wrong", f"Basic {API_KEY}", f"Bearer {API_KEY}x", API_KEY],
)
def test_bad_authorization_is_401(stub: SendGridStub, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = requests.post(
        f"{stub.url}/v3/mail/send", json=payload(), headers=headers, timeout=TIMEOUT
    )

    assert response.status_code == 401
    assert_sendgrid_error(response.json(), None)
    assert stub.snapshot()["messages"] == []


def test_connection_stays_usable_after_an_error(stub: SendGridStub) -> None:
    with requests.Session() as session:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        url = f"{stub.url}/v3/mail/send"
        assert session.post(url, json=payload(), timeout=TIMEOUT).status_code == 401
        assert session.post(url, json={}, headers=headers, timeout=TIMEOUT).status_code == 400
        assert (
            session.post(url, json=payload(), headers=headers, timeout=TIMEOUT).status_code == 202
        )
    assert len(stub.messages()) == 1


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(key)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return change


MALFORMED = [
    ("no personalizations", _without("personalizations"), "personalizations"),
    ("empty personalizations", _set("personalizations", []), "personalizations"),
    ("personalizations not a list", _set("personalizations", {}), "personalizations"),
    ("personalization not an object", _set("personalizations.0", "x"), "personalizations.0"),
    ("no to", _set("personalizations.0", {}), "personalizations.0.to"),
    ("empty to", _set("personalizations.0.to", []), "personalizations.0.to"),
    ("to without email", _set("personalizations.0.to.0", {}), "personalizations.0.to.0.email"),
    ("bad to email", _set("personalizations.0.to.0.email", "x"), "personalizations.0.to.0.email"),
    (
        "bad cc email",
        _set("personalizations.0.cc", [{"email": "no"}]),
        "personalizations.0.cc.0.email",
    ),
    ("no from", _without("from"), "from.email"),
    ("from without email", _set("from", {"name": "x"}), "from.email"),
    ("no subject", _without("subject"), "subject"),
    ("empty subject", _set("subject", ""), "subject"),
    ("no content", _without("content"), "content"),
    ("empty content", _set("content", []), "content"),
    ("content without type", _set("content.0", {"value": "x"}), "content.0.type"),
    ("content without value", _set("content.1", {"type": "text/html"}), "content.1.value"),
    (
        "html before plain",
        _set(
            "content", [{"type": "text/html", "value": "h"}, {"type": "text/plain", "value": "p"}]
        ),
        "content.0.type",
    ),
    (
        "an address twice across to and bcc",
        _set("personalizations.0.bcc", [{"email": "RCPT@example.com"}]),
        "personalizations.0.bcc",
    ),
    (
        "bad bcc email",
        _set("personalizations.0.bcc", [{"email": "no"}]),
        "personalizations.0.bcc.0.email",
    ),
    ("attachments not a list", _set("attachments", {}), "attachments"),
    (
        "attachment without content",
        _set("attachments", [{"filename": "a.txt"}]),
        "attachments.0.content",
    ),
    (
        "attachment content not base64",
        _set("attachments", [{"content": "not base64!", "filename": "a.txt"}]),
        "attachments.0.content",
    ),
    (
        "attachment without filename",
        _set("attachments", [{"content": "aGk="}]),
        "attachments.0.filename",
    ),
    (
        "inline attachment without content_id",
        _set("attachments", [{"content": "aGk=", "filename": "a.png", "disposition": "inline"}]),
        "attachments.0.content_id",
    ),
    (
        "unknown disposition",
        _set("attachments", [{"content": "aGk=", "filename": "a", "disposition": "x"}]),
        "attachments.0.disposition",
    ),
    ("eleven categories", _set("categories", [f"c{n}" for n in range(11)]), "categories"),
    ("a category twice", _set("categories", ["a", "a"]), "categories"),
    ("an empty category", _set("categories", [""]), "categories.0"),
    ("category too long", _set("categories", ["x" * 256]), "categories.0"),
    (
        "reply_to and reply_to_list",
        lambda body: body.update(
            reply_to={"email": "a@example.com"}, reply_to_list=[{"email": "b@example.com"}]
        ),
        "reply_to",
    ),
    ("bad reply_to", _set("reply_to", {"email": "no"}), "reply_to.email"),
    ("empty reply_to_list", _set("reply_to_list", []), "reply_to_list"),
    ("bad reply_to_list", _set("reply_to_list", [{"email": "no"}]), "reply_to_list.0.email"),
    ("custom arg not a string", _set("custom_args", {"n": 1}), "custom_args.n"),
    ("header with a line break", _set("headers", {"X-A": "a\r\nBcc: x"}), "headers.X-A"),
]


def test_a_full_payload_is_accepted_and_recorded_whole(stub: SendGridStub) -> None:
    body = payload() | {
        "reply_to_list": [{"email": "a@example.com"}, {"email": "b@example.com", "name": "B"}],
        "attachments": [
            {"content": "aGk=", "filename": "a.txt", "type": "text/plain"},
            {"content": "iVBO", "filename": "a.png", "disposition": "inline", "content_id": "a"},
        ],
        "categories": ["news", "weekly"],
        "headers": {"List-Unsubscribe": "<mailto:u@example.com>"},
        "custom_args": {"gomail_id": "x", "campaign": "7"},
    }
    body["personalizations"][0] |= {
        "cc": [{"email": "cc@example.com"}],
        "bcc": [{"email": "bcc@example.com"}],
    }

    response = post_send(stub, body)

    assert response.status_code == 202, response.text
    [message] = stub.messages()
    assert message["payload"] == body


@pytest.mark.parametrize(
    ("change", "field"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_payload_is_400_naming_the_field(
    stub: SendGridStub, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    body = payload()
    change(body)

    response = post_send(stub, body)

    assert response.status_code == 400
    assert_sendgrid_error(response.json(), field)
    assert stub.messages() == []


@pytest.mark.parametrize("body", ["{not json", "[]", '"a string"', b"\xff\xfe"])
def test_body_not_a_json_object_is_400(stub: SendGridStub, body: str | bytes) -> None:
    response = post_send(stub, body)

    assert response.status_code == 400
    assert_sendgrid_error(response.json(), None)


def test_malformed_payload_with_sendgrid_library_raises_400(stub: SendGridStub) -> None:
    with pytest.raises(HTTPError) as raised:
        sg_client(stub).client.mail.send.post(request_body={"from": {"email": "a@example.com"}})

    assert raised.value.status_code == 400
    assert_sendgrid_error(json.loads(raised.value.body), "personalizations")


def test_body_over_30_mb_is_413(stub: SendGridStub) -> None:
    response = post_send(stub, b"x" * (MAX_BODY_BYTES + 1), timeout=60)

    assert response.status_code == 413
    assert_sendgrid_error(response.json(), None)
    assert stub.messages() == []


def test_body_of_exactly_30_mb_is_accepted(stub: SendGridStub) -> None:
    encoded = json.dumps(payload()).encode()
    padded = encoded + b" " * (MAX_BODY_BYTES - len(encoded))  # JSON allows trailing spaces

    response = post_send(stub, padded, timeout=60)

    assert response.status_code == 202
    assert len(stub.messages()) == 1


# --- fault injection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"), [(500, InternalServerError), (503, ServiceUnavailableError)]
)
def test_fail_rate_one_makes_the_sendgrid_library_raise(
    stub: SendGridStub, status: int, error: type[HTTPError]
) -> None:
    assert post_config(stub, {"failRate": 1.0, "failStatus": status}).status_code == 200

    for _ in range(3):
        with pytest.raises(error) as raised:
            sg_client(stub).send(mail())
        assert raised.value.status_code == status
        assert_sendgrid_error(json.loads(raised.value.body), None)

    assert get_json(stub, "/_stub/messages") == {"messages": [], "attempts": 3, "failures": 3}


def send_statuses(stub: SendGridStub, count: int) -> list[int]:
    return [post_send(stub).status_code for _ in range(count)]


def test_fail_rate_half_fails_exactly_every_second_send(stub: SendGridStub) -> None:
    post_config(stub, {"failRate": 0.5, "failStatus": 500}).raise_for_status()

    assert send_statuses(stub, 10) == [202, 500] * 5
    snapshot = get_json(stub, "/_stub/messages")
    assert (len(snapshot["messages"]), snapshot["attempts"], snapshot["failures"]) == (5, 10, 5)


def test_fail_rate_is_deterministic_for_other_rates(stub: SendGridStub) -> None:
    stub.configure(fail_rate=0.3, fail_status=502)

    statuses = send_statuses(stub, 10)

    # floor(0.3 n) steps up at n = 4 (1.2), 7 (2.1) and 10 (3.0).
    assert [n for n, status in enumerate(statuses, 1) if status == 502] == [4, 7, 10]
    assert set(statuses) == {202, 502}


def test_fail_rate_zero_never_fails(stub: SendGridStub) -> None:
    stub.configure(fail_rate=1.0)
    stub.configure(fail_rate=0)

    assert send_statuses(stub, 5) == [202] * 5


@pytest.mark.parametrize(("retry_after", "expected"), [(None, 1), (7, 7)])
def test_429_carries_rate_limit_headers(
    stub: SendGridStub, retry_after: int | None, expected: int
) -> None:
    post_config(
        stub, {"failRate": 1, "failStatus": 429, "retryAfterSeconds": retry_after}
    ).raise_for_status()

    before = time.time()
    response = post_send(stub)
    after = time.time()

    assert response.status_code == 429
    assert_sendgrid_error(response.json(), None)
    assert response.headers["Retry-After"] == str(expected)
    reset = int(response.headers["X-RateLimit-Reset"])
    assert before + expected <= reset <= after + expected + 1


def test_429_with_sendgrid_library(stub: SendGridStub) -> None:
    stub.configure(fail_rate=1, fail_status=429, retry_after_seconds=3)

    with pytest.raises(TooManyRequestsError) as raised:
        sg_client(stub).send(mail())

    assert raised.value.headers["Retry-After"] == "3"
    assert "X-RateLimit-Reset" in raised.value.headers


def test_delay_makes_a_client_time_out_but_the_send_is_still_recorded(stub: SendGridStub) -> None:
    post_config(stub, {"delayMs": 2000}).raise_for_status()

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        post_send(stub, timeout=0.3)
    # The client's 0.3 s timeout (5 times over, for a slow machine), not the 2 s delay.
    assert time.monotonic() - started < 1.6

    deadline = time.monotonic() + 10
    while not stub.messages() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(stub.messages()) == 1


def test_delay_postpones_the_answer(stub: SendGridStub) -> None:
    stub.configure(delay_ms=400)

    started = time.monotonic()
    assert post_send(stub).status_code == 202
    assert 0.4 <= time.monotonic() - started < 5


# --- control endpoints -------------------------------------------------------------------------


def test_get_config_returns_defaults_then_merged_updates(stub: SendGridStub) -> None:
    defaults = {"failRate": 0.0, "failStatus": 500, "delayMs": 0, "retryAfterSeconds": None}
    assert get_json(stub, "/_stub/config") == defaults

    first = post_config(stub, {"failRate": 0.25})
    second = post_config(stub, {"delayMs": 5, "failStatus": 503})

    assert first.json() == {**defaults, "failRate": 0.25}
    expected = {**defaults, "failRate": 0.25, "delayMs": 5, "failStatus": 503}
    assert second.json() == expected
    assert get_json(stub, "/_stub/config") == expected
    assert stub.config() == expected


INVALID_CONFIG = [
    ({"failRate": 1.5}, "failRate"),
    ({"failRate": -0.1}, "failRate"),
    ({"failRate": "0.5"}, "failRate"),
    ({"failRate": True}, "failRate"),
    ({"failRate": None}, "failRate"),
    ({"failStatus": 200}, "failStatus"),
    ({"failStatus": 600}, "failStatus"),
    ({"failStatus": 500.0}, "failStatus"),
    ({"delayMs": -1}, "delayMs"),
    ({"delayMs": 1.5}, "delayMs"),
    ({"delayMs": 10**9}, "delayMs"),
    ({"retryAfterSeconds": -1}, "retryAfterSeconds"),
    ({"retryAfterSeconds": "1"}, "retryAfterSeconds"),
    ({"fail_rate": 0.5}, "fail_rate"),
    # Atomic: the valid key is not applied either.
    ({"failRate": 0.5, "failStatus": 200}, "failStatus"),
    ("[]", None),
    ("{oops", None),
]


@pytest.mark.parametrize(("body", "field"), INVALID_CONFIG)
def test_invalid_config_is_400_and_changes_nothing(
    stub: SendGridStub, body: Any, field: str | None
) -> None:
    before = get_json(stub, "/_stub/config")

    response = post_config(stub, body)

    assert response.status_code == 400
    assert_sendgrid_error(response.json(), field)
    assert get_json(stub, "/_stub/config") == before


def test_python_configure_validates_too(stub: SendGridStub) -> None:
    with pytest.raises(ValueError, match="failRate"):
        stub.configure(fail_rate=2)
    with pytest.raises(ValueError, match="bogus"):
        stub.configure(bogus=1)
    assert stub.config()["failRate"] == 0.0


@pytest.mark.parametrize("how", ["http", "python"])
def test_reset_clears_messages_counters_and_config(stub: SendGridStub, how: str) -> None:
    stub.configure(fail_rate=0.5, delay_ms=1)
    assert send_statuses(stub, 2) == [202, 500]

    if how == "http":
        response = requests.post(f"{stub.url}/_stub/reset", timeout=TIMEOUT)
        assert response.status_code == 200
    else:
        stub.reset()

    assert get_json(stub, "/_stub/messages") == {"messages": [], "attempts": 0, "failures": 0}
    assert get_json(stub, "/_stub/config")["failRate"] == 0.0
    assert get_json(stub, "/_stub/config")["delayMs"] == 0
    # The failure sequence restarts too: the first send after a reset succeeds.
    assert send_statuses(stub, 1) == [202]


def test_unknown_path_is_404(stub: SendGridStub) -> None:
    assert requests.get(f"{stub.url}/v3/nope", timeout=TIMEOUT).status_code == 404
    assert requests.post(f"{stub.url}/v3/nope", json={}, timeout=TIMEOUT).status_code == 404


def test_concurrent_sends_are_all_counted(stub: SendGridStub) -> None:
    stub.configure(fail_rate=0.5)
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        for _ in range(10):
            status = post_send(stub).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(statuses) == [202] * 40 + [500] * 40
    snapshot = stub.snapshot()
    assert (len(snapshot["messages"]), snapshot["attempts"], snapshot["failures"]) == (40, 80, 40)
    assert len({m["messageId"] for m in snapshot["messages"]}) == 40


# --- command line -------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_with_env_key_logs_no_secrets_and_exits_zero(
    tmp_path: Path, signum: int
) -> None:
    env_key = "SG.key-from-the-environment"
    env = {**os.environ, "SENDGRID_API_KEY": env_key}
    with ProcessGroup("cli", env, tmp_path) as group:
        stand_in = group.sendgrid(None)
        url = stand_in.url
        secret_body = "secret-body-marker-42"
        body = mail(marker=secret_body).get()
        headers = {"Authorization": f"Bearer {env_key}"}

        response = requests.post(f"{url}/v3/mail/send", json=body, headers=headers, timeout=TIMEOUT)
        wrong = requests.post(f"{url}/v3/mail/send", json=body, timeout=TIMEOUT)

        assert (response.status_code, wrong.status_code) == (202, 401)
        assert stand_in.exit_status_on(signum) == 0
        output = stand_in.log_text()  # stdout and stderr
    assert "/v3/mail/send" in output  # requests are logged ...
    assert env_key not in output  # ... but never the key
    assert secret_body not in output  # ... nor the message
