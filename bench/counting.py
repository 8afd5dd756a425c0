"""AWS calls counted by service and action where they arrive, plus every SES ``SendEmail`` moto
accepted (its time, subject and ``gomail_id`` tag): the benchmarks' SQS calls per email and
their SES ledger.

One ``AwsCallLog`` is kept by whichever server the service's AWS calls reach: the bench's moto
(``CountingMiddleware``), the constant-time SQS stand-in, or, for any other endpoint, the
``AwsFaultProxy`` in front of it. The first two serve it at ``/_bench/calls``
(``RemoteCallLog`` reads it); the proxy's is in the bench's own process.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs

import requests

from tests.system.faults import aws_service

CALLS_PATH = "/_bench/calls"
RESET_PATH = "/_bench/calls/reset"
_SQS_TARGET_PREFIX = "AmazonSQS."


def aws_action(headers: Mapping[str, str], body: bytes) -> str:
    """The API action of a request: ``X-Amz-Target`` (``AmazonSQS.SendMessage``, the JSON
    protocol botocore uses for SQS) or the query protocol's ``Action=`` (SES, older SQS)."""
    target = headers.get("X-Amz-Target") or headers.get("x-amz-target") or ""
    if target:
        return target.rpartition(".")[2]
    form = parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", ["?"])[0]


def ses_delivery(body: bytes) -> dict[str, Any]:
    """Subject and ``gomail_id`` tag of an SES ``SendEmail`` query-protocol body."""
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    tag = ""
    for key, value in form.items():
        if key.startswith("Tags.member.") and key.endswith(".Name") and value == "gomail_id":
            tag = form.get(key[: -len("Name")] + "Value", "")
    return {"subject": form.get("Message.Subject.Data", ""), "id": tag}


class CallSource(Protocol):
    def snapshot(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...


class AwsCallLog:
    """Thread-safe counts of AWS calls by (service, action), and the SES sends accepted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()
        self._ses_sends: list[dict[str, Any]] = []

    def observe(self, service: str, headers: Mapping[str, str], body: bytes, status: int) -> None:
        action = aws_action(headers, body)
        delivery = None
        if service in ("ses", "email") and action == "SendEmail" and status == 200:
            delivery = {"at": time.time(), **ses_delivery(body)}
        with self._lock:
            self._calls[(service or "unsigned", action)] += 1
            if delivery is not None:
                self._ses_sends.append(delivery)

    def snapshot(self) -> dict[str, Any]:
        """``{"calls": {service: {action: n}}, "ses_sends": [{"at", "subject", "id"}]}``."""
        with self._lock:
            calls: dict[str, dict[str, int]] = {}
            for (service, action), count in sorted(self._calls.items()):
                calls.setdefault(service, {})[action] = count
            return {"calls": calls, "ses_sends": list(self._ses_sends)}

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._ses_sends.clear()


class RemoteCallLog:
    """The ``AwsCallLog`` of a stand-in subprocess, over its ``/_bench/calls`` endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def snapshot(self) -> dict[str, Any]:
        answer = requests.get(self.url + CALLS_PATH, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def reset(self) -> None:
        requests.post(self.url + RESET_PATH, timeout=60).raise_for_status()


def serve_log(log: AwsCallLog, method: str, path: str) -> bytes | None:
    """The answer of the ``/_bench/calls`` endpoints for a request, None for any other path."""
    if method == "GET" and path == CALLS_PATH:
        return json.dumps(log.snapshot()).encode()
    if method == "POST" and path == RESET_PATH:
        log.reset()
        return b"{}"
    return None


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CountingMiddleware:
    """WSGI middleware (outside moto's serialising one: counting never waits for its lock)
    that records each request in ``log`` and answers the ``/_bench/calls`` endpoints."""

    def __init__(self, app: WSGIApp, log: AwsCallLog) -> None:
        self._app = app
        self._log = log

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        own = serve_log(self._log, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        if own is not None:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [own]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        # moto reads the body again: hand it a fresh stream of the same bytes.
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[int] = []

        def recording_start_response(line: str, *args: Any) -> Any:
            status.append(int(line.split(" ", 1)[0]))
            return start_response(line, *args)

        result = list(self._app(environ, recording_start_response))
        headers = {"X-Amz-Target": environ.get("HTTP_X_AMZ_TARGET", "")}
        service = aws_service(environ.get("HTTP_AUTHORIZATION", ""))
        self._log.observe(service, headers, body, status[0] if status else 0)
        return result


def sqs_calls(snapshot: Mapping[str, Any]) -> dict[str, int]:
    """SQS calls of a snapshot: ``SendMessage``, ``SendMessageBatch``, ``others``, ``total``
    and ``by_action`` (every action's count)."""
    calls = dict(snapshot["calls"].get("sqs", {}))
    total = sum(calls.values())
    main = {name: calls.get(name, 0) for name in ("SendMessage", "SendMessageBatch")}
    return {**main, "others": total - sum(main.values()), "total": total, "by_action": calls}
