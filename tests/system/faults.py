"""Fault injectors of the system tests, loopback only: an AWS-aware HTTP proxy in front of moto
and a TCP proxy in front of PostgreSQL.

``AwsFaultProxy`` forwards every request to moto unless a fault is set for the request's AWS
service, which it reads from the SigV4 ``Authorization`` header's credential scope
(``Credential=<key>/<date>/<region>/<service>/aws4_request``), so SES can fail while SQS keeps
working behind the same endpoint (``aws.endpoint_url`` is one URL for both). Modes:

- ``pass``: forwarded as it is (the ``Host`` header kept: it is part of the signature).
- ``throttle``: the error AWS answers when over its rate, in the service's protocol: SES speaks
  the query protocol (HTTP 400, XML ``<Error><Code>Throttling</Code>``), SQS the JSON protocol
  (HTTP 400, ``__type`` ``...#RequestThrottled`` plus the ``x-amzn-query-error`` header); botocore
  raises a ``ClientError`` with that code.
- ``unreachable``: the connection is dropped without an answer (botocore:
  ``ConnectionClosedError``). The service is known only once the request was read, so this is a
  dropped connection rather than a refused one.
- ``delay``: forwarded after ``delay_seconds``, only the requests whose body contains one of
  ``delay_match`` (to slow down one process's calls to some queues, e.g. to catch the
  pipeline in the middle of a run without slowing its Celery broker too).
- ``lose_answer``: forwarded to moto, which acts on it, then the connection is dropped before
  the answer (botocore: ``ConnectionClosedError``): the caller cannot know it took effect.

``match`` narrows a fault to some requests: those whose ``X-Amz-Target`` header (the action,
in SQS's JSON protocol) or body contains every one of its parts, e.g. one queue's
``GetQueueAttributes``; the others pass. ``then`` changes the fault after its first hit (the
first attempt's answer lost, its retries failing).

``TcpProxy`` pipes bytes to PostgreSQL; ``cut()`` closes every connection and refuses new ones
until ``heal()``.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit

PASS = "pass"
THROTTLE = "throttle"
UNREACHABLE = "unreachable"
DELAY = "delay"
LOSE_ANSWER = "lose_answer"
MODES = (PASS, THROTTLE, UNREACHABLE, DELAY, LOSE_ANSWER)

_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request")
# Hop-by-hop headers are the proxy's own business on each side; the body is re-framed.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
}


class Fault(NamedTuple):
    """What the proxy does to one service's requests (see the module's docstring)."""

    mode: str
    match: tuple[bytes, ...] = ()
    then: str | None = None


def request_matches(match: tuple[bytes, ...], target: str, body: bytes) -> bool:
    """True when every part of ``match`` is in the request's ``X-Amz-Target`` or its body
    (always, for no parts). Pure."""
    text = target.encode() + b"\n" + body
    return all(part in text for part in match)


def aws_service(authorization: str) -> str:
    """The AWS service a SigV4-signed request is for ("ses", "sqs"); "" when unsigned."""
    match = _SCOPE.search(authorization or "")
    return match.group(1) if match else ""


def throttling_answer(service: str) -> tuple[int, dict[str, str], bytes]:
    """What AWS answers a caller over its request rate, in ``service``'s wire protocol."""
    request_id = str(uuid.uuid4())
    if service == "sqs":
        # SQS's JSON protocol (botocore >= 1.31): the code in __type, the query-compatible
        # code in x-amzn-query-error, which botocore prefers for SQS.
        body = (
            b'{"__type":"com.amazonaws.sqs#RequestThrottled",'
            b'"message":"Rate exceeded (injected by the system tests)"}'
        )
        return (
            400,
            {
                "Content-Type": "application/x-amz-json-1.0",
                "x-amzn-RequestId": request_id,
                "x-amzn-query-error": "RequestThrottled;Sender",
            },
            body,
        )
    body = (
        '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error>'
        "<Type>Sender</Type><Code>Throttling</Code>"
        "<Message>Maximum sending rate exceeded. (injected by the system tests)</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return 400, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body


class _AwsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore and kombu use it
    # The answer's headers and body leave in two writes; with Nagle's algorithm the body would
    # wait for the client's delayed ACK of the headers (about 40 ms a call on loopback).
    disable_nagle_algorithm = True
    server: _AwsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per AWS call would drown the test output

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy = self.server.proxy
        service = aws_service(self.headers.get("Authorization", ""))
        mode = proxy.fault_for(service, self.headers.get("X-Amz-Target", ""), body)
        proxy.count(service, mode)
        if mode == UNREACHABLE:
            self._hang_up()
            return
        if mode == THROTTLE:
            self._answer(*throttling_answer(service))
            return
        if mode == DELAY and any(part in body for part in proxy.delay_match):
            time.sleep(proxy.delay_seconds)
        try:
            status, headers, answer = self._forward(body)
        except (OSError, http.client.HTTPException):
            # moto gone or the upstream connection broke: the client sees a dropped connection.
            self._drop_upstream()
            self.close_connection = True
            return
        if mode == LOSE_ANSWER:
            self._hang_up()
            return
        self._answer(status, headers, answer)
        if proxy.observe is not None:
            proxy.observe(service, self.headers, body, status)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        upstream = getattr(self, "_upstream", None)
        if upstream is None:
            host, port = self.server.proxy.upstream
            upstream = self._upstream = http.client.HTTPConnection(host, port, timeout=60)
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                upstream.putheader(name, value)
        upstream.putheader("Content-Length", str(len(body)))
        upstream.endheaders(body)
        response = upstream.getresponse()
        answer = response.read()
        headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
        return response.status, headers, answer

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _drop_upstream(self) -> None:
        upstream = getattr(self, "_upstream", None)
        if upstream is not None:
            upstream.close()
            self._upstream = None

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def finish(self) -> None:
        super().finish()
        self._drop_upstream()


class _AwsServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: AwsFaultProxy


class AwsFaultProxy:
    """An HTTP proxy in front of moto (``upstream_url``) on a free loopback port, in a thread of
    this process. ``set(service, mode)`` / ``heal()`` change what it does to the next requests.
    ``observe(service, headers, body, status)``, if given, is called for every forwarded request
    once it is answered (the benchmarks count AWS calls by action with it)."""

    def __init__(
        self,
        upstream_url: str,
        name: str = "aws",
        observe: Callable[[str, Message, bytes, int], None] | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        self.name = name
        self.observe = observe
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay_seconds = 0.0
        self.delay_match: tuple[bytes, ...] = ()
        self._faults: dict[str, Fault] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server = _AwsServer(("127.0.0.1", 0), _AwsHandler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"aws-proxy-{name}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set(
        self,
        service: str,
        mode: str,
        delay_seconds: float = 0.0,
        delay_match: tuple[bytes, ...] = (b"",),
        *,
        match: tuple[bytes, ...] = (),
        then: str | None = None,
    ) -> None:
        for name in (mode, then or PASS):
            if name not in MODES:
                raise ValueError(f"unknown mode {name!r}")
        with self._lock:
            self._faults[service] = Fault(mode, match, then)
            self.delay_seconds, self.delay_match = delay_seconds, delay_match

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    def fault_for(self, service: str, target: str, body: bytes) -> str:
        """The mode for this request of ``service`` (its ``X-Amz-Target`` and body); a fault
        with a ``then`` turns into it on this, its first hit."""
        with self._lock:
            fault = self._faults.get(service)
            if fault is None or not request_matches(fault.match, target, body):
                return PASS
            if fault.then is not None:
                self._faults[service] = Fault(fault.then, fault.match)
            return fault.mode

    def count(self, service: str, mode: str) -> None:
        with self._lock:
            self._counts[(service, mode)] += 1

    def counts(self) -> Counter[tuple[str, str]]:
        """(service, mode) -> requests handled so, since the start."""
        with self._lock:
            return Counter(self._counts)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TcpProxy:
    """A byte pipe from a free loopback port to ``upstream`` (PostgreSQL), in threads of this
    process. ``cut()`` is the database going away: every open connection is closed and new ones
    are refused (accepted and closed at once) until ``heal()``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._stopped = False
        self.refused = 0
        threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True).start()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _close(sock)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        _close(self._listener)

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refuse = self._cut
            if refuse:
                self.refused += 1
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(source, target), name="tcp-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
