"""The moto launcher, over real HTTP on 127.0.0.1: SQS and SES work, reset works, backend calls
are serialised (no duplicate or resurrected messages under concurrency), long polls do not
block the server, and the command line exits cleanly on signals."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devtools.moto_server import MotoServer, start_moto_server
from tests.harness.processes import ProcessGroup

HTTP_TIMEOUT = 10


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    with start_moto_server() as server:
        # moto's backends are process-wide: start every test from empty.
        server.reset()
        yield server


def client(server: MotoServer, service: str, pool: int = 10) -> Any:
    config = Config(
        max_pool_connections=pool,
        connect_timeout=HTTP_TIMEOUT,
        read_timeout=30,
        retries={"max_attempts": 1},
    )
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1", config=config)


def moto_data(server: MotoServer) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=HTTP_TIMEOUT) as resp:
        return json.load(resp)


def new_queue(sqs: Any, **attributes: str) -> str:
    name = f"q-{uuid.uuid4().hex[:12]}"
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]


def queue_depth(sqs: Any, queue_url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


# --- Python API -------------------------------------------------------------------------------


def test_port_zero_picks_a_free_port_and_stop_closes_it() -> None:
    server = start_moto_server(port=0)
    try:
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT):
            pass
    finally:
        server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT).close()


def test_two_servers_get_different_ports() -> None:
    with start_moto_server() as first, start_moto_server() as second:
        assert first.port != second.port


def test_sqs_create_send_receive_delete(moto: MotoServer) -> None:
    sqs = client(moto, "sqs")
    queue_url = new_queue(sqs)
    assert queue_url.startswith(moto.url)

    sent = sqs.send_message(QueueUrl=queue_url, MessageBody="hello gomail")
    received = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"]

    assert [(m["MessageId"], m["Body"]) for m in received] == [(sent["MessageId"], "hello gomail")]
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=received[0]["ReceiptHandle"])
    assert queue_depth(sqs, queue_url) == 0


def test_ses_sent_mail_is_listed_in_moto_data(moto: MotoServer) -> None:
    ses = client(moto, "ses")
    ses.verify_email_identity(EmailAddress="sender@example.com")

    sent = ses.send_email(
        Source="sender@example.com",
        Destination={"ToAddresses": ["rcpt@example.com"]},
        Message={"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Body text"}}},
    )

    messages = moto_data(moto)["ses"]["Message"]
    assert [(m["id"], m["source"], m["subject"], m["body"]) for m in messages] == [
        (sent["MessageId"], "sender@example.com", "Hi", "Body text")
    ]


def test_reset_empties_sqs_and_ses(moto: MotoServer) -> None:
    sqs, ses = client(moto, "sqs"), client(moto, "ses")
    new_queue(sqs)
    ses.verify_email_identity(EmailAddress="sender@example.com")
    ses.send_email(
        Source="sender@example.com",
        Destination={"ToAddresses": ["rcpt@example.com"]},
        Message={"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "x"}}},
    )
    assert sqs.list_queues().get("QueueUrls")
    assert moto_data(moto)["ses"]["Message"]

    moto.reset()

    assert sqs.list_queues().get("QueueUrls", []) == []
    assert moto_data(moto)["ses"]["Message"] == []
    assert ses.list_identities()["Identities"] == []


# --- serialisation ------------------------------------------------------------------------------


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    # moto's races sit in short windows between checking and updating a message; switching
    # threads every few microseconds makes them show up in a run of seconds if unprotected.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.parametrize("round_", [1, 2])
def test_concurrent_receives_and_deletes_are_exact(moto: MotoServer, round_: int) -> None:
    """No message is handed out twice, and none comes back after its delete."""
    threads, messages = 8, 100
    sqs = client(moto, "sqs")
    queue_url = new_queue(sqs, VisibilityTimeout="600")
    for start in range(0, messages, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)]
        assert not sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")

    received: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads, timeout=30)

    def consume() -> None:
        try:
            worker = client(moto, "sqs", pool=2)
            mine = _receive_until_empty(worker, queue_url)
            with lock:
                received.extend(m["MessageId"] for m in mine)
            barrier.wait()  # every receive done before any delete: the deletes race each other
            for message in mine:
                worker.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=consume) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)

    assert not any(worker.is_alive() for worker in workers), "consumers did not finish"
    assert errors == []
    duplicates = {mid: n for mid, n in collections.Counter(received).items() if n > 1}
    assert duplicates == {}
    assert len(received) == messages
    assert queue_depth(sqs, queue_url) == 0


def _receive_until_empty(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    mine: list[dict[str, Any]] = []
    empty_answers = 0
    deadline = time.monotonic() + 60
    while empty_answers < 2 and time.monotonic() < deadline:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600, WaitTimeSeconds=0
        ).get("Messages", [])
        empty_answers = 0 if batch else empty_answers + 1
        mine.extend(batch)
    return mine


def test_long_poll_does_not_block_other_requests(moto: MotoServer) -> None:
    sqs = client(moto, "sqs")
    queue_url = new_queue(sqs)
    result: dict[str, Any] = {}

    def long_poll() -> None:
        started = time.monotonic()
        answer = client(moto, "sqs").receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)
        result["bodies"] = [m["Body"] for m in answer.get("Messages", [])]
        result["seconds"] = time.monotonic() - started

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)  # let the poll start waiting on the empty queue
    started = time.monotonic()
    sqs.send_message(QueueUrl=queue_url, MessageBody="wake up")
    send_seconds = time.monotonic() - started
    poller.join(15)

    assert not poller.is_alive()
    assert send_seconds < 2, "SendMessage waited for the long poll to finish"
    assert result["bodies"] == ["wake up"]
    assert result["seconds"] < 3, "the long poll did not return when the message arrived"


@pytest.mark.parametrize("how", ["WaitTimeSeconds", "queue default"])
def test_long_poll_on_empty_queue_still_waits(moto: MotoServer, how: str) -> None:
    sqs = client(moto, "sqs")
    if how == "WaitTimeSeconds":
        queue_url, extra = new_queue(sqs), {"WaitTimeSeconds": 1}
    else:
        queue_url, extra = new_queue(sqs, ReceiveMessageWaitTimeSeconds="1"), {}

    started = time.monotonic()
    answer = sqs.receive_message(QueueUrl=queue_url, **extra)
    elapsed = time.monotonic() - started

    assert answer.get("Messages", []) == []
    assert 0.9 <= elapsed < 5


# --- command line -------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_and_exits_zero_on_signal(tmp_path: Path, signum: int) -> None:
    with ProcessGroup("cli", os.environ, tmp_path) as group:
        moto = group.moto()
        sqs = boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="cli-check")["QueueUrl"]
        assert queue_url.startswith(moto.url)

        assert moto.exit_status_on(signum) == 0
