"""A constant-time SQS stand-in: answers every call at once, stores nothing, counts everything.

    python -m bench.sqs_constant [--host 127.0.0.1] [--port 0]

The ``ceiling`` benchmark points the API at it so the API's own cost is measured apart from
moto's. It speaks SQS's JSON protocol (botocore >= 1.31: ``POST /`` with
``X-Amz-Target: AmazonSQS.<Action>`` and an ``application/x-amz-json-1.0`` body), enough of it
for ``manage.py bootstrap`` (with and without ``--check``), the API's ``/healthz`` and
``SendMessage`` / ``SendMessageBatch``, and SES's query-protocol ``VerifyEmailIdentity`` /
``VerifyDomainIdentity`` (bootstrap verifies the sender identity), and S3's ``PUT`` of the
payloads bucket and its lifecycle rule (taken, stored nowhere). Answers carry a correct
``MD5OfMessageBody`` (botocore 1.44 does not check it; other SDKs do). Receives find nothing.
Calls are counted by action (``bench.counting``) and served at ``/_bench/calls``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.counting import AwsCallLog, aws_action, serve_log
from devtools.serving import BackgroundServer, run_until_signalled, serve_in_thread
from tests.system.faults import aws_service

ACCOUNT = "000000000000"
REGION = "us-east-1"
READY_LINE = "constant SQS stand-in listening on"
_ATTRIBUTES = {
    "ApproximateNumberOfMessages": "0",
    "ApproximateNumberOfMessagesNotVisible": "0",
    "ApproximateNumberOfMessagesDelayed": "0",
    "VisibilityTimeout": "30",
    "MaximumMessageSize": "262144",
}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _queue_name(request: dict[str, Any]) -> str:
    return request.get("QueueName") or str(request.get("QueueUrl", "")).rstrip("/").split("/")[-1]


def sqs_answer(action: str, request: dict[str, Any], base_url: str) -> dict[str, Any] | None:
    """The JSON answer to an SQS ``action``, None for one it does not speak."""
    name = _queue_name(request)
    if action in ("GetQueueUrl", "CreateQueue"):
        return {"QueueUrl": f"{base_url}/{ACCOUNT}/{name}"}
    if action == "ListQueues":
        return {"QueueUrls": []}
    if action == "GetQueueAttributes":
        return {"Attributes": {**_ATTRIBUTES, "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"}}
    if action == "SendMessage":
        return {"MessageId": str(uuid.uuid4()), "MD5OfMessageBody": _md5(request["MessageBody"])}
    if action == "SendMessageBatch":
        successful = [
            {
                "Id": e["Id"],
                "MessageId": str(uuid.uuid4()),
                "MD5OfMessageBody": _md5(e["MessageBody"]),
            }
            for e in request.get("Entries", [])
        ]
        return {"Successful": successful, "Failed": []}
    if action == "ReceiveMessage":
        return {}
    if action in ("SetQueueAttributes", "PurgeQueue", "DeleteMessage", "ChangeMessageVisibility"):
        return {}
    return None


def ses_answer(action: str) -> bytes | None:
    if action not in ("VerifyEmailIdentity", "VerifyDomainIdentity"):
        return None
    result = "<VerificationToken>bench</VerificationToken>" if "Domain" in action else ""
    return (
        f'<{action}Response xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
        f"<{action}Result>{result}</{action}Result>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore uses it
    # Headers and body leave in separate writes: with Nagle's algorithm the body would wait
    # for the client's delayed ACK of the headers (~40 ms on loopback), every call.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per call would cost more than the answer

    def do_GET(self) -> None:
        own = serve_log(self.server.log, "GET", self.path)
        self._send(200 if own is not None else 404, own or b"{}", "application/json")

    def do_PUT(self) -> None:
        # S3's bucket creation and lifecycle rule (``manage.py bootstrap``'s payloads bucket):
        # taken, stored nowhere; the ingest benchmarks send nothing large enough to need it.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.log.observe("s3", self.headers, body, 200)
        self._send(200, b"", "application/xml")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        own = serve_log(self.server.log, "POST", self.path)
        if own is not None:
            self._send(200, own, "application/json")
            return
        service = aws_service(self.headers.get("Authorization", ""))
        action = aws_action(self.headers, body)
        status, answer, content_type = self._answer(service, action, body)
        self.server.log.observe(service, self.headers, body, status)
        self._send(status, answer, content_type)

    def _answer(self, service: str, action: str, body: bytes) -> tuple[int, bytes, str]:
        if service == "sqs":
            host, port = self.server.server_address[:2]
            answer = sqs_answer(action, json.loads(body or b"{}"), f"http://{host}:{port}")
            if answer is not None:
                return 200, json.dumps(answer).encode(), "application/x-amz-json-1.0"
        else:
            xml = ses_answer(action)
            if xml is not None:
                return 200, xml, "text/xml"
        error = {"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": action}
        return 400, json.dumps(error).encode(), "application/x-amz-json-1.0"

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the API's and the load generator's connections at once
    log: AwsCallLog


def start_constant_sqs(host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """Serve in a daemon thread of this process; ``.url`` once it is bound."""
    server = _Server((host, port), _Handler)
    server.log = AwsCallLog()
    return BackgroundServer(server, serve_in_thread(server, "sqs-constant"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return run_until_signalled(
        lambda: start_constant_sqs(args.host, args.port),
        lambda server: f"{READY_LINE} {server.url}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
