"""A local stand-in for SendGrid's v3 mail send API, with run-time fault injection.

Run it in the foreground with ``python -m devtools.sendgrid_stub [--host H] [--port P]
[--api-key KEY]``, or in-process with :func:`start_sendgrid_stub` (tests, scripts).

HTTP endpoints:

- ``POST /v3/mail/send``: SendGrid's contract. ``Authorization: Bearer <key>`` must match the
  configured key (else 401); bodies over 30 MiB get 413; the payload is validated as SendGrid
  does (else 400 naming the ``field``): the required fields; addresses, and each address once
  across a personalization's to, cc and bcc; text/plain content first; reply_to or
  reply_to_list (not both); attachments (base64 content and a filename; inline ones with a
  content_id); categories (at most 10, unique, up to 255 characters); headers and custom_args
  (one-line strings). Success: 202, empty body, ``X-Message-Id`` header,
  and the message is recorded. Errors use SendGrid's shape
  ``{"errors": [{"message": ..., "field": ..., "help": null}]}``.
- ``GET /_stub/config``, ``POST /_stub/config``: read / merge the fault configuration
  ``{"failRate": 0..1, "failStatus": 400..599, "delayMs": int, "retryAfterSeconds": int|null}``.
- ``GET /_stub/messages``: ``{"messages": [...], "attempts": n, "failures": n}``; a message is
  ``{"messageId", "receivedAt", "payload"}``, ``payload`` the accepted JSON body, whole.
- ``POST /_stub/reset``: clear messages, counters and configuration.

Fault injection is deterministic: among authenticated sends (counted as ``attempts`` since the
last reset), the n-th fails when ``floor(n * failRate) > floor((n - 1) * failRate)``, so 0.5
fails exactly every second send. Fault injection runs before payload validation, as an outage
at SendGrid would. ``delayMs`` delays every answer of ``/v3/mail/send``; a send whose client
gave up waiting is still recorded, as SendGrid would still deliver it.

The API key and message bodies are never logged. Development tool only: it must not import
Django or any product package.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import logging
import math
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.fault_config import (
    ConfigError,
    FaultConfig,
    FaultState,
    camel,
    fails,
    is_integer,
    valid_delay_ms,
    valid_fail_rate,
)
from devtools.serving import ControlledStub, run_until_signalled, serve_in_thread

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
DEFAULT_API_KEY = "SG.local-stand-in-key"
MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_RETRY_AFTER_SECONDS = 86_400
# An oversized body is read and discarded up to this size, so that clients which write the
# whole body before reading the answer (urllib, requests) see the 413 instead of a reset.
_MAX_DRAIN_BYTES = 64 * 1024 * 1024
_IDLE_CONNECTION_TIMEOUT_SECONDS = 60
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_HEADER_BREAK = re.compile(r"[\r\n]")
# SendGrid's limits on categories (its v3 Mail Send reference).
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255


def sendgrid_error(message: str, field: str | None = None) -> dict[str, Any]:
    """SendGrid's error body: ``{"errors": [{"message", "field", "help"}]}``."""
    return {"errors": [{"message": message, "field": field, "help": None}]}


class PayloadError(ValueError):
    """A mail send payload SendGrid would refuse; ``field`` names the offending field."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- payload validation -------------------------------------------------------------------


def validate_mail(payload: object) -> None:
    """Raise :class:`PayloadError` unless ``payload`` has the minimal shape SendGrid requires."""
    if not isinstance(payload, dict):
        raise PayloadError(None, "The request body must be a JSON object.")
    _check_personalizations(payload.get("personalizations"))
    _check_from(payload.get("from"))
    _check_subject(payload)
    _check_content(payload.get("content"))
    _check_reply_to(payload)
    _check_attachments(payload.get("attachments", []))
    _check_categories(payload.get("categories", []))
    _check_string_map(payload.get("headers", {}), "headers")
    _check_string_map(payload.get("custom_args", {}), "custom_args")


def _check_personalizations(personalizations: object) -> None:
    if not isinstance(personalizations, list) or not personalizations:
        raise PayloadError(
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
        )
    for index, personalization in enumerate(personalizations):
        field = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            raise PayloadError(field, "Each personalization must be a JSON object.")
        to = personalization.get("to")
        if not isinstance(to, list) or not to:
            raise PayloadError(
                f"{field}.to",
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
            )
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            addresses = personalization.get(kind, [])
            _check_address_list(addresses, f"{field}.{kind}")
            for address in addresses:
                email = address["email"].lower()
                if email in seen:
                    raise PayloadError(
                        f"{field}.{kind}",
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc.",
                    )
                seen.add(email)


def _check_address_list(addresses: object, field: str) -> None:
    if not isinstance(addresses, list):
        raise PayloadError(field, "Must be an array of email objects.")
    for index, address in enumerate(addresses):
        _check_address(address, f"{field}.{index}")


def _check_address(address: object, field: str) -> None:
    email = address.get("email") if isinstance(address, dict) else None
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise PayloadError(f"{field}.email", "Does not contain a valid address.")


def _check_from(sender: object) -> None:
    email = sender.get("email") if isinstance(sender, dict) else None
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise PayloadError(
            "from.email",
            "The from object must be provided for every email send. It is an object that "
            "requires an email parameter, but may also contain a name parameter.",
        )


def _check_subject(payload: dict[str, Any]) -> None:
    if _is_text(payload.get("subject")):
        return
    if all(_is_text(p.get("subject")) for p in payload["personalizations"]):
        return
    raise PayloadError(
        "subject",
        "The subject is required. You can get around this requirement if every "
        "personalization has a subject defined.",
    )


def _check_content(content: object) -> None:
    if not isinstance(content, list) or not content:
        raise PayloadError(
            "content",
            "The content parameter is required. There must be at least one defined content block.",
        )
    for index, item in enumerate(content):
        block = item if isinstance(item, dict) else {}
        if not _is_text(block.get("type")):
            raise PayloadError(f"content.{index}.type", "The content type is required.")
        if not _is_text(block.get("value")):
            raise PayloadError(
                f"content.{index}.value",
                "The content value must be a string at least one character in length.",
            )
    types = [block["type"] for block in content]
    if "text/plain" in types and types[0] != "text/plain":
        raise PayloadError(
            "content.0.type",
            "The text/plain content type must be first, followed by text/html, then any other "
            "content.",
        )


def _check_reply_to(payload: dict[str, Any]) -> None:
    if "reply_to" in payload and "reply_to_list" in payload:
        raise PayloadError(
            "reply_to", "You may not use both reply_to and reply_to_list in the same request."
        )
    if "reply_to" in payload:
        _check_address(payload["reply_to"], "reply_to")
    if "reply_to_list" in payload:
        reply_to_list = payload["reply_to_list"]
        if not isinstance(reply_to_list, list) or not reply_to_list:
            raise PayloadError("reply_to_list", "The reply_to_list must be a non-empty array.")
        _check_address_list(reply_to_list, "reply_to_list")


def _check_attachments(attachments: object) -> None:
    if not isinstance(attachments, list):
        raise PayloadError("attachments", "The attachments must be an array.")
    for index, item in enumerate(attachments):
        field = f"attachments.{index}"
        attachment = item if isinstance(item, dict) else {}
        content = attachment.get("content")
        if not _is_text(content):
            raise PayloadError(f"{field}.content", "The attachment content is required.")
        try:
            base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise PayloadError(
                f"{field}.content", "The attachment content must be base64 encoded."
            ) from None
        if not _is_text(attachment.get("filename")):
            raise PayloadError(f"{field}.filename", "The attachment filename is required.")
        if "type" in attachment and not (
            _is_text(attachment["type"]) and not _HEADER_BREAK.search(attachment["type"])
        ):
            raise PayloadError(f"{field}.type", "The attachment type must be a MIME type.")
        disposition = attachment.get("disposition", "attachment")
        if disposition not in ("inline", "attachment"):
            raise PayloadError(
                f"{field}.disposition", "The disposition must be inline or attachment."
            )
        if disposition == "inline" and not _is_text(attachment.get("content_id")):
            raise PayloadError(
                f"{field}.content_id", "The content_id is required for an inline attachment."
            )


def _check_categories(categories: object) -> None:
    if not isinstance(categories, list) or len(categories) > MAX_CATEGORIES:
        raise PayloadError(
            "categories", f"The categories must be an array of at most {MAX_CATEGORIES}."
        )
    for index, category in enumerate(categories):
        if not _is_text(category) or len(category) > MAX_CATEGORY_LENGTH:
            raise PayloadError(
                f"categories.{index}",
                f"A category must be a string of 1 to {MAX_CATEGORY_LENGTH} characters.",
            )
    if len(set(categories)) != len(categories):
        raise PayloadError("categories", "The categories must be unique.")


def _check_string_map(mapping: object, field: str) -> None:
    if not isinstance(mapping, dict):
        raise PayloadError(field, f"The {field} must be an object.")
    for key, value in mapping.items():
        if not isinstance(value, str) or _HEADER_BREAK.search(key) or _HEADER_BREAK.search(value):
            raise PayloadError(f"{field}.{key}", f"Each of {field} must be a one-line string.")


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


# --- fault configuration and recorded state -------------------------------------------------


@dataclass(frozen=True)
class StubConfig(FaultConfig):
    """The fault configuration; JSON keys are camelCase (``failRate``, ...)."""

    fail_rate: float = 0.0
    fail_status: int = 500
    delay_ms: int = 0
    retry_after_seconds: int | None = None


def _valid_fail_status(key: str, value: object) -> int:
    if is_integer(value) and 400 <= value <= 599:
        return value
    raise ConfigError(key, f"{key} must be an integer HTTP error status from 400 to 599.")


def _valid_retry_after(key: str, value: object) -> int | None:
    if value is None or (is_integer(value) and 0 <= value <= MAX_RETRY_AFTER_SECONDS):
        return value
    raise ConfigError(key, f"{key} must be null or an integer from 0 to {MAX_RETRY_AFTER_SECONDS}.")


StubConfig.VALIDATORS = {
    "failRate": valid_fail_rate,
    "failStatus": _valid_fail_status,
    "delayMs": valid_delay_ms,
    "retryAfterSeconds": _valid_retry_after,
}


class StubState(FaultState):
    """Configuration, recorded messages and counters, behind one lock."""

    def __init__(self) -> None:
        super().__init__(StubConfig())
        self._messages: list[dict[str, Any]] = []
        self._attempts = 0
        self._failures = 0

    def next_send(self) -> tuple[StubConfig, bool]:
        """Count one send; return the config it runs under and whether it must fail."""
        with self._lock:
            self._attempts += 1
            failing = fails(self._attempts, self._config.fail_rate)
            if failing:
                self._failures += 1
            return self._config, failing

    def record(self, payload: Any) -> str:
        """Record an accepted message; return its new unique message id."""
        message_id = secrets.token_urlsafe(16)
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            self._messages.append(
                {"messageId": message_id, "receivedAt": received_at, "payload": payload}
            )
        return message_id

    def snapshot(self) -> dict[str, Any]:
        """``{"messages": [...], "attempts": n, "failures": n}``; the caller may not mutate it."""
        with self._lock:
            return {
                "messages": list(self._messages),
                "attempts": self._attempts,
                "failures": self._failures,
            }

    def reset(self) -> None:
        with self._lock:
            self._config = StubConfig()
            self._messages = []
            self._attempts = 0
            self._failures = 0


# --- HTTP ------------------------------------------------------------------------------------


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a provider worker's concurrent sends (concurrency x
    # send_concurrency connections at once) overflowed it and saw resets SendGrid never gives.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api_key: str) -> None:
        super().__init__(address, _StubHandler)
        self.api_key = api_key
        self.state = StubState()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is an expected event here (delayMs), not a bug.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_CONNECTION_TIMEOUT_SECONDS
    server: _StubServer

    def do_GET(self) -> None:
        if self.path == "/_stub/config":
            self._send_json(200, self.server.state.config().to_json())
        elif self.path == "/_stub/messages":
            self._send_json(200, self.server.state.snapshot())
        else:
            self._not_found()

    def do_POST(self) -> None:
        routes = {
            "/v3/mail/send": self._mail_send,
            "/_stub/config": self._post_config,
            "/_stub/reset": self._post_reset,
        }
        handler = routes.get(self.path)
        if handler is None:
            self._not_found()
        else:
            handler()

    # -- /v3/mail/send

    def _mail_send(self) -> None:
        delay_ms = self.server.state.config().delay_ms
        if delay_ms:
            time.sleep(delay_ms / 1000)
        body = self._read_body()
        if body is None:
            return
        if not self._authorized():
            self._send_json(
                401,
                sendgrid_error("The provided authorization grant is invalid, expired, or revoked"),
            )
            return
        config, failing = self.server.state.next_send()
        if failing:
            self._send_injected_failure(config)
            return
        self._accept(body)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        expected = self.server.api_key.encode()
        return scheme == "Bearer" and hmac.compare_digest(key.strip().encode(), expected)

    def _accept(self, body: bytes) -> None:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send_json(400, sendgrid_error("The request body is not valid JSON."))
            return
        try:
            validate_mail(payload)
        except PayloadError as exc:
            self._send_json(400, sendgrid_error(exc.message, exc.field))
            return
        message_id = self.server.state.record(payload)
        self._send(202, b"", {"X-Message-Id": message_id})

    def _send_injected_failure(self, config: StubConfig) -> None:
        status = config.fail_status
        headers = {}
        if status == 429:
            retry_after = 1 if config.retry_after_seconds is None else config.retry_after_seconds
            # Rounded up: a client sleeping until the reset must not come back early.
            headers["X-RateLimit-Reset"] = str(math.ceil(time.time()) + retry_after)
            headers["Retry-After"] = str(retry_after)
        message = f"{_reason(status)} (injected by the SendGrid stand-in)"
        self._send_json(status, sendgrid_error(message), headers)

    # -- /_stub/...

    def _post_config(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            updates = json.loads(body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send_json(400, sendgrid_error("The config body is not valid JSON."))
            return
        if not isinstance(updates, dict):
            self._send_json(400, sendgrid_error("The config body must be a JSON object."))
            return
        try:
            config = self.server.state.configure(updates)
        except ConfigError as exc:
            self._send_json(400, sendgrid_error(exc.message, exc.field))
            return
        self._send_json(200, config.to_json())

    def _post_reset(self) -> None:
        if self._read_body() is None:
            return
        self.server.state.reset()
        self._send_json(200, {"reset": True})

    # -- plumbing

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413/400 for an unreadable one."""
        if "Transfer-Encoding" in self.headers:
            # Chunked bodies are not supported; every SendGrid client sends a Content-Length.
            self._send_json(411, sendgrid_error("Content-Length is required."), close=True)
            return None
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError(raw_length)
        except ValueError:
            self._send_json(400, sendgrid_error("Invalid Content-Length."), close=True)
            return None
        if length > MAX_BODY_BYTES:
            self._drain(length)
            self._send_json(
                413, sendgrid_error("The request body exceeds the 30 MB limit."), close=True
            )
            return None
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        remaining = min(length, _MAX_DRAIN_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                return
            remaining -= len(chunk)

    def _not_found(self) -> None:
        # The body is left unread, so the connection cannot be reused.
        message = f"No route for {self.command} {self.path}."
        self._send_json(404, sendgrid_error(message), close=True)

    def _send_json(
        self,
        status: int,
        document: object,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        extra = {"Content-Type": "application/json", **(headers or {})}
        if close:
            extra["Connection"] = "close"
            self.close_connection = True
        self._send(status, json.dumps(document).encode(), extra)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Only the request line and status reach the log: never headers (the API key) or bodies.
        logger.info("%s %s", self.address_string(), format % args)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --- Python API ------------------------------------------------------------------------------


def default_api_key() -> str:
    """``$SENDGRID_API_KEY`` if set and non-empty, else :data:`DEFAULT_API_KEY`."""
    return os.environ.get("SENDGRID_API_KEY") or DEFAULT_API_KEY


class SendGridStub(ControlledStub):
    """A running SendGrid stand-in in a daemon thread. Use :func:`start_sendgrid_stub`.

    ``configure`` takes ``fail_rate``, ``fail_status``, ``delay_ms`` and
    ``retry_after_seconds``; ``messages()`` are ``{"messageId", "receivedAt", "payload"}``."""

    _KWARGS = {f.name: camel(f.name) for f in fields(StubConfig)}
    _config_error = ConfigError

    def __init__(self, server: _StubServer, thread: threading.Thread) -> None:
        super().__init__(server, thread)
        self.api_key: str = server.api_key


def start_sendgrid_stub(
    host: str = DEFAULT_HOST, port: int = 0, api_key: str | None = None
) -> SendGridStub:
    """Start the stand-in in a daemon thread; it accepts connections when this returns.

    ``port=0`` picks a free port (see ``.port`` / ``.url``). ``api_key=None`` means
    :func:`default_api_key`. Raises ``OSError`` when the address cannot be bound.
    """
    # The socket is bound and listening once the constructor returns: no readiness poll needed.
    server = _StubServer((host, port), api_key or default_api_key())
    return SendGridStub(
        server, serve_in_thread(server, f"sendgrid-stub:{server.server_address[1]}")
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until SIGINT/SIGTERM, then return 0."""
    parser = argparse.ArgumentParser(description="Local SendGrid stand-in.")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="accepted API key (default: $SENDGRID_API_KEY, else the built-in local key)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    return run_until_signalled(
        lambda: start_sendgrid_stub(args.host, args.port, args.api_key),
        lambda stub: f"SendGrid stand-in listening on {stub.url}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
