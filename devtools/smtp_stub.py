"""A local stand-in for an SMTP relay (Postfix, an ESP's SMTP endpoint), on aiosmtpd, with
run-time fault injection and the received messages readable over HTTP.

Why: the SMTP provider must be tested against a real SMTP server (envelope, headers, AUTH,
STARTTLS, reply codes, a dropped connection), and ``make run`` needs a third local provider; a
relay's faults cannot be provoked on demand, this one's can.

Run it in the foreground with ``python -m devtools.smtp_stub [--host H] [--port P]
[--http-port P] [--auth USER:PASS] [--starttls | --tls]`` (``--port 0`` / ``--http-port 0`` pick
free ports; the URLs are printed), or in-process with :func:`start_smtp_stub` (tests, scripts).

SMTP: every message of up to ``MAX_MESSAGE_BYTES`` (32 MiB, announced as ``SIZE``) is accepted
(``250 2.0.0 Ok: queued as <id>``) and recorded, unless a fault is configured. ``--auth`` offers
AUTH PLAIN and LOGIN with that one login and answers ``530`` to a ``MAIL`` that did not
authenticate, ``535`` to wrong credentials. ``--starttls`` offers STARTTLS with a self-signed
certificate generated at start (``SmtpStub.certificate_pem`` / ``client_ssl_context()`` trust
it); with it, AUTH needs TLS first (``538``), as on a real relay. ``--tls`` serves implicit TLS
(SMTPS) with that certificate instead.

HTTP endpoints (the SendGrid stand-in's ``/_stub/`` shape):

- ``GET /_stub/config``, ``POST /_stub/config``: read / merge the fault configuration
  ``{"failRate": 0..1, "failCode": 400..599, "failStage": "rcpt"|"data", "delayMs": int,
  "dropConnection": bool}``.
- ``GET /_stub/messages``: ``{"messages": [...], "attempts": n, "failures": n, "connections": n}``;
  a message is ``{"queueId", "receivedAt", "mailFrom", "rcptTos", "login", "data", "headers",
  "text"}`` (``rcptTos`` the envelope's recipients, Bcc ones included, in ``RCPT`` order;
  ``data`` the raw message, every byte of it, decoded as UTF-8; ``headers`` name to decoded
  value; ``text`` the decoded text/plain body or null).
- ``POST /_stub/reset``: clear messages, counters and configuration.
- ``POST /_stub/heal``: clear the fault configuration only (messages and counters stay).
- ``POST /_stub/disconnect``: close every open client connection, as a relay's idle timeout
  does; answers ``{"closed": n}``.

Faults: among the transactions reaching ``failStage`` (counted as ``attempts`` since the last
reset), the n-th fails with ``failCode`` by the SendGrid stand-in's deterministic rule
(:func:`devtools.sendgrid_stub.fails`: 0.5 fails exactly every second one). At ``"rcpt"`` the
``RCPT`` is refused; at ``"data"`` the final answer to ``DATA`` is. ``delayMs`` delays the final
answer to ``DATA``; ``dropConnection`` closes the connection after ``DATA`` without answering.
In both cases the message is recorded first: the relay has it, only the answer is slow or lost,
which is what makes the sender's outcome unknown.

Threads: the SMTP server runs an asyncio loop in one daemon thread, the HTTP control server in
another; the recorded state is behind one lock. Passwords and message bodies are never logged.
Development tool only: it must not import Django or any product package.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email
import email.policy
import hmac
import ipaddress
import json
import logging
import secrets
import ssl
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

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
from devtools.serving import ControlledStub, run_until_signalled, serve_in_thread, stop_serving

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2525
DEFAULT_HTTP_PORT = 5002
SERVER_HOSTNAME = "smtp-stub.gomail.local"  # fixed: socket.getfqdn() can wait on DNS
FAIL_STAGES = ("rcpt", "data")
_START_TIMEOUT_SECONDS = 10.0
_IDLE_CONNECTION_TIMEOUT_SECONDS = 300
# The largest message DATA takes (aiosmtpd answers 552 beyond it): SES's 10 MB and the API's
# 10 MiB of attachments in base64 fit, as on a relay configured for attachments.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
_HTTP_TIMEOUT_SECONDS = 60


# --- fault configuration and recorded state -------------------------------------------------


@dataclass(frozen=True)
class StubConfig(FaultConfig):
    """The fault configuration; JSON keys are camelCase (``failRate``, ...)."""

    fail_rate: float = 0.0
    fail_code: int = 451
    fail_stage: str = "data"
    delay_ms: int = 0
    drop_connection: bool = False


def _valid_fail_code(key: str, value: object) -> int:
    if is_integer(value) and 400 <= value <= 599:
        return value
    raise ConfigError(key, f"{key} must be an integer SMTP error reply code from 400 to 599.")


def _valid_fail_stage(key: str, value: object) -> str:
    if value in FAIL_STAGES:
        return str(value)
    raise ConfigError(key, f"{key} must be one of {list(FAIL_STAGES)}.")


def _valid_flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(key, f"{key} must be true or false.")


StubConfig.VALIDATORS = {
    "failRate": valid_fail_rate,
    "failCode": _valid_fail_code,
    "failStage": _valid_fail_stage,
    "delayMs": valid_delay_ms,
    "dropConnection": _valid_flag,
}


def parse_message(raw: bytes) -> tuple[dict[str, str], str | None]:
    """The decoded headers (name to value; a repeated header keeps its last value) and the
    decoded text/plain body (None if there is none) of a raw RFC 5322 message. Pure."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {name: str(value) for name, value in message.items()}
    text = None
    body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    if body is not None:
        try:
            text = body.get_content()
        except (LookupError, ValueError):  # an unknown charset or a broken encoding
            text = None
    return headers, text


class StubState(FaultState):
    """Configuration, recorded messages and counters, behind one lock."""

    def __init__(self) -> None:
        super().__init__(StubConfig())
        self._messages: list[dict[str, Any]] = []
        self._attempts = 0
        self._failures = 0
        self._connections = 0

    def heal(self) -> StubConfig:
        with self._lock:
            self._config = StubConfig()
            return self._config

    def count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def next_attempt(self, stage: str) -> tuple[StubConfig, bool]:
        """At ``stage``, count one attempt if it is the fault stage; return the config it runs
        under and whether it must fail."""
        with self._lock:
            config = self._config
            if stage != config.fail_stage:
                return config, False
            self._attempts += 1
            failing = fails(self._attempts, config.fail_rate)
            if failing:
                self._failures += 1
            return config, failing

    def record(self, envelope: Envelope, login: str | None) -> str:
        """Record an accepted message; return its new queue id."""
        queue_id = secrets.token_hex(6).upper()
        raw = envelope.original_content or b""
        headers, text = parse_message(raw)
        message = {
            "queueId": queue_id,
            "receivedAt": dt.datetime.now(dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "mailFrom": envelope.mail_from,
            "rcptTos": list(envelope.rcpt_tos),
            "login": login,
            "data": raw.decode("utf-8", errors="replace"),
            "headers": headers,
            "text": text,
        }
        with self._lock:
            self._messages.append(message)
        return queue_id

    def snapshot(self) -> dict[str, Any]:
        """``{"messages", "attempts", "failures", "connections"}``; the caller may not mutate
        it."""
        with self._lock:
            return {
                "messages": list(self._messages),
                "attempts": self._attempts,
                "failures": self._failures,
                "connections": self._connections,
            }

    def reset(self) -> None:
        with self._lock:
            self._config = StubConfig()
            self._messages = []
            self._attempts = 0
            self._failures = 0
            self._connections = 0


# --- SMTP ------------------------------------------------------------------------------------


def injected_reply(code: int) -> str:
    """The reply line of an injected failure, with an RFC 3463 enhanced status code."""
    detail = "5.7.8" if code == 535 else f"{code // 100}.0.0"
    return f"{code} {detail} Injected failure (SMTP stand-in)"


class _RelayHandler:
    """aiosmtpd hooks: the login check, the fault stages and the recording."""

    def __init__(self, state: StubState, credentials: tuple[str, str] | None) -> None:
        self.state = state
        self.credentials = credentials

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self.credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username, password = self.credentials
        # Constant-time comparisons: a development tool, but no reason to teach a timing leak.
        ok = hmac.compare_digest(auth_data.login, username.encode()) & hmac.compare_digest(
            auth_data.password, password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        config, failing = self.state.next_attempt("rcpt")
        if failing:
            return injected_reply(config.fail_code)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        config, failing = self.state.next_attempt("data")
        if failing:
            return injected_reply(config.fail_code)
        credentials = session.auth_data
        login = (
            credentials.login.decode("utf-8", "replace")
            if isinstance(credentials, LoginPassword)
            else None
        )
        queue_id = self.state.record(envelope, login)
        logger.info(
            "accepted %s from %s for %d recipient(s)",
            queue_id,
            session.peer,
            len(envelope.rcpt_tos),
        )
        if config.drop_connection:
            assert server.transport is not None
            server.transport.close()
            # connection_lost cancels this coroutine (aiosmtpd's handler task): no answer goes out.
            await asyncio.sleep(_IDLE_CONNECTION_TIMEOUT_SECONDS)
        if config.delay_ms:
            await asyncio.sleep(config.delay_ms / 1000)
        return f"250 2.0.0 Ok: queued as {queue_id}"


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP session, counting connections and remembering the open ones."""

    def __init__(self, listener: _SmtpListener, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS upgrade of a counted connection
            self._listener.state.count_connection()
            self._listener.open_sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._listener.open_sessions.discard(self)
        super().connection_lost(error)


def _generate_certificate(directory: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate for localhost / 127.0.0.1 (a CA itself, so a client context
    can trust it directly): (cert path, key path, cert PEM)."""
    # Imported here: only --starttls / --tls need it (cryptography comes with moto[server]).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gomail SMTP stand-in")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert_pem.decode("ascii")


class _SmtpListener:
    """aiosmtpd's protocol on an asyncio loop of its own, in a daemon thread.

    Not aiosmtpd's ``Controller``: it cannot start on port 0 (its readiness check connects to
    the configured port) and that check's connection would be counted as a client's.
    """

    def __init__(
        self,
        host: str,
        port: int,
        state: StubState,
        handler: _RelayHandler,
        starttls_context: ssl.SSLContext | None,
        implicit_tls_context: ssl.SSLContext | None,
    ) -> None:
        self.state = state
        self.open_sessions: set[_CountingSMTP] = set()
        self._handler = handler
        self._starttls_context = starttls_context
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._failure: BaseException | None = None
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(host, port, implicit_tls_context, ready),
            name=f"smtp-stub:{port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_SECONDS):
            raise TimeoutError("the SMTP stand-in did not start listening")
        if self._failure is not None:
            raise self._failure
        assert self._server is not None
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    def _session(self) -> _CountingSMTP:
        return _CountingSMTP(
            self,
            handler=self._handler,
            loop=self._loop,
            hostname=SERVER_HOSTNAME,
            ident="Gomail SMTP stand-in",
            enable_SMTPUTF8=True,
            tls_context=self._starttls_context,
            # AUTH over plain text only when no TLS is offered at all (local runs); the handler
            # itself requires a login before MAIL when credentials are configured.
            auth_require_tls=self._starttls_context is not None,
            authenticator=self._handler.authenticate,
            timeout=_IDLE_CONNECTION_TIMEOUT_SECONDS,
            data_size_limit=MAX_MESSAGE_BYTES,
        )

    def _run(
        self, host: str, port: int, tls: ssl.SSLContext | None, ready: threading.Event
    ) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                self._loop.create_server(self._session, host=host, port=port, ssl=tls)
            )
        except BaseException as exc:  # e.g. the address is in use: re-raised by __init__
            self._failure = exc
            ready.set()
            self._loop.close()
            return
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._shut_down())
        self._loop.close()

    async def _shut_down(self) -> None:
        assert self._server is not None
        self._server.close()
        # abort, not close: a TLS session's graceful close waits for a peer that may never
        # answer, and this loop is about to end.
        self._close_sessions(abort=True)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        # Transports close their sockets in callbacks of the next loop iterations.
        for _ in range(3):
            await asyncio.sleep(0)

    def _close_sessions(self, abort: bool = False) -> int:
        sessions = [s for s in self.open_sessions if s.transport is not None]
        for session in sessions:
            transport = session.transport
            assert isinstance(transport, asyncio.WriteTransport)
            if abort:
                transport.abort()
            else:
                transport.close()
        return len(sessions)

    def disconnect_all(self) -> int:
        """Close every open client connection (from any thread); return how many."""
        if not self._thread.is_alive():
            return 0
        future = asyncio.run_coroutine_threadsafe(self._close_sessions_soon(), self._loop)
        return future.result(_START_TIMEOUT_SECONDS)

    async def _close_sessions_soon(self) -> int:
        return self._close_sessions()

    def stop(self) -> None:
        """Stop serving and close every connection. Idempotent."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_START_TIMEOUT_SECONDS)


# --- HTTP control ------------------------------------------------------------------------------


def control_error(message: str, field: str | None = None) -> dict[str, Any]:
    """The control API's error body, the SendGrid stand-in's shape."""
    return {"errors": [{"message": message, "field": field, "help": None}]}


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: StubState) -> None:
        super().__init__(address, _ControlHandler)
        self.state = state
        self.disconnect_all: Callable[[], int] = lambda: 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _HTTP_TIMEOUT_SECONDS
    server: _ControlServer

    def do_GET(self) -> None:
        if self.path == "/_stub/config":
            self._send_json(200, self.server.state.config().to_json())
        elif self.path == "/_stub/messages":
            self._send_json(200, self.server.state.snapshot())
        else:
            self._send_json(404, control_error(f"No route for GET {self.path}."), close=True)

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        if self.path == "/_stub/config":
            self._post_config(body)
        elif self.path == "/_stub/reset":
            self.server.state.reset()
            self._send_json(200, {"reset": True})
        elif self.path == "/_stub/heal":
            self._send_json(200, self.server.state.heal().to_json())
        elif self.path == "/_stub/disconnect":
            self._send_json(200, {"closed": self.server.disconnect_all()})
        else:
            self._send_json(404, control_error(f"No route for POST {self.path}."), close=True)

    def _post_config(self, body: bytes) -> None:
        try:
            updates = json.loads(body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send_json(400, control_error("The config body is not valid JSON."))
            return
        if not isinstance(updates, dict):
            self._send_json(400, control_error("The config body must be a JSON object."))
            return
        try:
            config = self.server.state.configure(updates)
        except ConfigError as exc:
            self._send_json(400, control_error(exc.message, exc.field))
            return
        self._send_json(200, config.to_json())

    def _read_body(self) -> bytes | None:
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
            if not 0 <= length <= 1024 * 1024:
                raise ValueError(raw_length)
        except ValueError:
            self._send_json(400, control_error("Invalid Content-Length."), close=True)
            return None
        return self.rfile.read(length)

    def _send_json(self, status: int, document: object, close: bool = False) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


# --- Python API ------------------------------------------------------------------------------


class SmtpStub(ControlledStub):
    """A running SMTP stand-in: the SMTP listener (``smtp_host``, ``smtp_port``) and its HTTP
    control server (``url``, from ``BackgroundServer``). Use :func:`start_smtp_stub`."""

    # configure(): fail_rate, fail_code, fail_stage, delay_ms, drop_connection.
    _KWARGS = {f.name: camel(f.name) for f in fields(StubConfig)}
    _config_error = ConfigError

    def __init__(
        self,
        control: _ControlServer,
        control_thread: threading.Thread,
        listener: _SmtpListener,
        *,
        credentials: tuple[str, str] | None,
        tls_mode: str,
        certificate_pem: str | None,
    ) -> None:
        super().__init__(control, control_thread)
        self._listener = listener
        self.smtp_host: str = listener.host
        self.smtp_port: int = listener.port
        self.username: str | None = credentials[0] if credentials else None
        self.password: str | None = credentials[1] if credentials else None
        self.tls_mode = tls_mode  # "none", "starttls" or "tls"
        self.certificate_pem = certificate_pem

    @property
    def smtp_url(self) -> str:
        scheme = "smtps" if self.tls_mode == "tls" else "smtp"
        return f"{scheme}://{self.smtp_host}:{self.smtp_port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this stand-in's self-signed certificate (and nothing
        else). Raises ``RuntimeError`` when it serves no TLS."""
        if self.certificate_pem is None:
            raise RuntimeError("this SMTP stand-in was started without TLS")
        return ssl.create_default_context(cadata=self.certificate_pem)

    def connections(self) -> int:
        """How many SMTP connections clients opened since the last reset."""
        return self._server.state.snapshot()["connections"]

    def heal(self) -> None:
        """Clear the fault config only, as ``POST /_stub/heal`` does."""
        self._server.state.heal()

    def disconnect_all(self) -> int:
        """Close every open client connection, as ``POST /_stub/disconnect`` does."""
        return self._listener.disconnect_all()

    def stop(self) -> None:
        """Stop both servers and close every connection. Idempotent."""
        self._listener.stop()
        stop_serving(self._server, self._thread)

    def __repr__(self) -> str:
        return f"SmtpStub(smtp_url={self.smtp_url!r}, url={self.url!r})"


def parse_credentials(text: str) -> tuple[str, str]:
    """``"user:pass"`` as ``(user, pass)`` (the password may hold colons). Raises ValueError."""
    username, colon, password = text.partition(":")
    if not colon or not username or not password:
        raise ValueError("credentials must be USER:PASS, both non-empty")
    return username, password


def start_smtp_stub(
    host: str = DEFAULT_HOST,
    port: int = 0,
    http_port: int = 0,
    *,
    credentials: tuple[str, str] | None = None,
    tls_mode: str = "none",
) -> SmtpStub:
    """Start the stand-in (SMTP and HTTP control, each in a daemon thread); both accept
    connections when this returns.

    ``port=0`` / ``http_port=0`` pick free ports (see ``.smtp_port`` / ``.port``).
    ``credentials``: ``(username, password)`` to require AUTH; ``tls_mode``: ``"none"``,
    ``"starttls"`` (offered, with a generated self-signed certificate) or ``"tls"`` (implicit).
    Raises ``OSError`` when an address cannot be bound, ``ValueError`` for a bad ``tls_mode``.
    """
    if tls_mode not in ("none", "starttls", "tls"):
        raise ValueError("tls_mode must be 'none', 'starttls' or 'tls'")
    state = StubState()
    certificate_pem = None
    server_context = None
    if tls_mode != "none":
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="gomail-smtp-stub-") as directory:
            cert_path, key_path, certificate_pem = _generate_certificate(Path(directory))
            server_context.load_cert_chain(cert_path, key_path)
    handler = _RelayHandler(state, credentials)
    listener = _SmtpListener(
        host,
        port,
        state,
        handler,
        starttls_context=server_context if tls_mode == "starttls" else None,
        implicit_tls_context=server_context if tls_mode == "tls" else None,
    )
    try:
        control = _ControlServer((host, http_port), state)
    except BaseException:
        listener.stop()
        raise
    control.disconnect_all = listener.disconnect_all
    thread = serve_in_thread(control, f"smtp-stub-http:{control.server_address[1]}")
    return SmtpStub(
        control,
        thread,
        listener,
        credentials=credentials,
        tls_mode=tls_mode,
        certificate_pem=certificate_pem,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until SIGINT/SIGTERM, then return 0."""
    parser = argparse.ArgumentParser(description="Local SMTP relay stand-in.")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="SMTP port (default %(default)s)"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=DEFAULT_HTTP_PORT,
        help="HTTP control port (default %(default)s)",
    )
    parser.add_argument(
        "--auth", default=None, metavar="USER:PASS", help="require AUTH with this login"
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--starttls", action="store_true", help="offer STARTTLS (self-signed)")
    tls.add_argument("--tls", action="store_true", help="implicit TLS (self-signed)")
    args = parser.parse_args(argv)
    try:
        credentials = parse_credentials(args.auth) if args.auth else None
    except ValueError as exc:
        parser.error(f"--auth: {exc}")
    tls_mode = "starttls" if args.starttls else "tls" if args.tls else "none"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # aiosmtpd's own AUTH code sets the Session attribute it deprecates, once per login.
    warnings.filterwarnings("ignore", "Session.login_data is deprecated", DeprecationWarning)
    # aiosmtpd logs every command at INFO: too chatty for a terminal next to five processes.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    return run_until_signalled(
        lambda: start_smtp_stub(
            args.host, args.port, args.http_port, credentials=credentials, tls_mode=tls_mode
        ),
        lambda stub: f"SMTP stand-in listening on {stub.smtp_url} (control API on {stub.url})",
    )


if __name__ == "__main__":
    raise SystemExit(main())
