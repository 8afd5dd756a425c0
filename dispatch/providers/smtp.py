"""Any SMTP relay (Postfix, an ESP's SMTP endpoint) as a Gomail provider, through ``smtplib``.

Why its own shape: unlike the HTTP providers, an SMTP provider holds connections, and an
``smtplib.SMTP`` connection is not thread-safe. The thread rule: each sending thread gets its
own connection (``threading.local``), opened on that thread's first send and reused for its
next ones; ``close()`` closes every thread's (they are also tracked in a lock-protected list).
So one ``SmtpProvider`` may serve concurrent sends from several threads, each on its own
connection, and two relays are two instances side by side (``name`` is per instance).

The message goes out with explicit ``MAIL``, ``RCPT`` and ``DATA`` steps rather than
``send_message``, so that a failure is known to have happened before or after the message's
content was complete at the relay (the stage, ``SmtpStage``): only a failure while waiting for
the final answer to ``DATA`` leaves the outcome unknown. ``classify_smtp_failure`` (pure, the
error table) maps an exception and its stage to an ``ErrorKind``.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal, NamedTuple

from pydantic import Field, model_validator

from dispatch.providers.base import (
    OutgoingEmail,
    Provider,
    ProviderType,
    Secret,
    SendResult,
)
from dispatch.providers.errors import ErrorKind, ProviderError
from dispatch.providers.mime import MimeMessage, UncarriableEmail, build_mime_message
from gomail_site.config import ProviderConfig

SECURITY_MODES = ("starttls", "tls", "none")

# Reply codes that are about our login at the relay, not about the message: 530 authentication
# required, 534 mechanism too weak, 535 credentials invalid, 538 encryption required for AUTH.
AUTH_REPLY_CODES = frozenset({530, 534, 535, 538})

_LEADING_DOT = re.compile(rb"(?m)^\.")


class SmtpStage(StrEnum):
    """Where in the SMTP exchange a failure happened; decides what is known about the message."""

    CONNECT = "connect"
    """TCP/TLS connect, greeting, EHLO, STARTTLS, AUTH: nothing of the message was sent."""
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    """The DATA command and the writing of the content, up to its final ``.``: until the
    relay has read that line it cannot accept the message (a write that raised left it
    incomplete), so a failure here is still known not sent."""
    FINAL_ANSWER = "final answer"
    """The content was sent; waiting for the relay's answer. A failure here (timeout, dropped
    connection, garbled answer) may come after the relay took the message: outcome unknown."""


class SmtpFailure(NamedTuple):
    """How a failure is classified: kind, whether the outcome is unknown, a short
    description (never a password or the body), and the SMTP reply code if there was one."""

    kind: ErrorKind
    outcome_unknown: bool
    description: str
    reply_code: int | None = None


def reply_code_kind(code: int, stage: SmtpStage) -> ErrorKind:
    """The kind of an SMTP error reply. Pure.

    Auth codes (``AUTH_REPLY_CODES``) are PROVIDER_CONFIG; 4xx TRANSIENT; 5xx PERMANENT for the
    message, except while connecting (greeting, EHLO, STARTTLS, AUTH), where a refusal is about
    our session at the relay, so PROVIDER_CONFIG. Anything else (a 2xx/3xx where an error was
    expected, smtplib's -1 for an unreadable reply) is TRANSIENT: a reply we do not understand
    never dead-letters a message.
    """
    if code in AUTH_REPLY_CODES:
        return ErrorKind.PROVIDER_CONFIG
    if 400 <= code <= 499:
        return ErrorKind.TRANSIENT
    if 500 <= code <= 599:
        return ErrorKind.PROVIDER_CONFIG if stage is SmtpStage.CONNECT else ErrorKind.PERMANENT
    return ErrorKind.TRANSIENT


def classify_smtp_failure(error: BaseException, stage: SmtpStage | None) -> SmtpFailure:
    """Classify ``error`` raised at ``stage`` of the exchange (None: the stage is not known).
    Pure; never PERMANENT for an exception that is not an SMTP error reply."""
    where = f"at {stage.value}" if stage is not None else "while sending"
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return SmtpFailure(
            ErrorKind.PROVIDER_CONFIG,
            False,
            f"login refused: {_reply_text(error.smtp_code, error.smtp_error)}",
            error.smtp_code,
        )
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()), (-1, b""))
        return _reply_failure(code, text, stage or SmtpStage.RCPT, "recipient refused")
    if isinstance(error, smtplib.SMTPResponseException):
        if stage is SmtpStage.FINAL_ANSWER and not 400 <= error.smtp_code <= 599:
            # An answer to the content that is no error reply (garbled: -1): it may have been
            # taken.
            return SmtpFailure(
                ErrorKind.TRANSIENT,
                True,
                f"unreadable final answer: {_reply_text(error.smtp_code, error.smtp_error)}",
                error.smtp_code,
            )
        return _reply_failure(error.smtp_code, error.smtp_error, stage, f"refused {where}")
    if isinstance(error, smtplib.SMTPNotSupportedError):
        # STARTTLS, AUTH or SMTPUTF8-on-MAIL not offered: the relay and our settings disagree.
        return SmtpFailure(
            ErrorKind.PROVIDER_CONFIG, False, f"relay does not support what we need {where}"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return SmtpFailure(ErrorKind.PROVIDER_CONFIG, False, f"TLS certificate not trusted {where}")
    if isinstance(error, smtplib.SMTPException) and not isinstance(
        error, smtplib.SMTPServerDisconnected
    ):
        # smtplib's own refusals without a reply (e.g. "No suitable authentication method
        # found" from login()); SMTPException is an OSError, so this comes before that branch.
        if stage is SmtpStage.CONNECT:
            return SmtpFailure(ErrorKind.PROVIDER_CONFIG, False, f"SMTP failure {where}")
        unknown = stage in (SmtpStage.DATA, SmtpStage.FINAL_ANSWER, None)
        return SmtpFailure(ErrorKind.TRANSIENT, unknown, f"SMTP failure {where}")
    if isinstance(error, smtplib.SMTPServerDisconnected | OSError):
        timed_out = isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)
        if stage is SmtpStage.FINAL_ANSWER:
            what = "no final answer in time" if timed_out else "connection lost before the answer"
            return SmtpFailure(ErrorKind.TRANSIENT, True, f"{what} (the relay may have it)")
        if stage is SmtpStage.CONNECT:
            what = "connect timeout" if timed_out else "could not connect"
            return SmtpFailure(ErrorKind.TRANSIENT, False, what)
        if stage is None:
            return SmtpFailure(ErrorKind.TRANSIENT, True, "connection failure while sending")
        what = "timeout" if timed_out else "connection lost"
        return SmtpFailure(ErrorKind.TRANSIENT, False, f"{what} at {stage.value} (not sent)")
    # A bug: never PERMANENT; unknown once the content may have gone out.
    unknown = stage in (SmtpStage.DATA, SmtpStage.FINAL_ANSWER, None)
    return SmtpFailure(ErrorKind.TRANSIENT, unknown, f"unexpected failure {where}")


def _reply_failure(code: int, text: bytes | str, stage: SmtpStage | None, what: str) -> SmtpFailure:
    kind = reply_code_kind(code, stage or SmtpStage.MAIL)
    return SmtpFailure(kind, False, f"{what}: {_reply_text(code, text)}", code)


def _reply_text(code: int, text: bytes | str) -> str:
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {decoded}".strip()


class SmtpExchangeError(Exception):
    """Raised by ``SmtpProvider.post``: ``cause`` failed at ``stage``. Internal to this module:
    ``Provider.send`` turns it into a ``ProviderError`` through ``classify_error``."""

    def __init__(self, stage: SmtpStage, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__} at {stage.value}")
        self.stage = stage
        self.cause = cause


class SmtpAnswer(NamedTuple):
    code: int
    text: str
    message_id_header: str


class _Reconnect(Exception):
    """A reused connection turned out closed before anything of this message was accepted."""


class SmtpProvider(Provider):
    """Sends through one SMTP relay; one connection per sending thread, reused.

    ``name`` is per instance (the configuration's key, e.g. ``"relay"``), so two relays run side
    by side; the class attribute is the type's default. Call ``close()`` when the sends are
    over (a worker's shutdown): it closes every thread's connection; a thread sending after
    that opens a new one.
    """

    name = "smtp"  # the type's default; each instance sets its own

    def __init__(
        self,
        name: str = "smtp",
        *,
        host: str,
        port: int = 587,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout_seconds: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        """``name``: this instance's provider name; ``host``/``port``: the relay;
        ``security``: ``"starttls"`` (required, not opportunistic), ``"tls"`` (implicit TLS,
        SMTPS) or ``"none"``; ``username``/``password``: AUTH login, empty for none;
        ``timeout_seconds``: bound of the connect and of every wait on the socket;
        ``ssl_context``: for TLS (default: the system's trust store, hostname checked);
        ``local_hostname``: the EHLO name (default: this machine's FQDN, as smtplib does).

        Raises ``ValueError`` for an empty name or host, an unknown security mode, a password
        without a username, or a timeout that is not positive.
        """
        if not name:
            raise ValueError("SMTP provider name must not be empty")
        if not host:
            raise ValueError("SMTP host must not be empty")
        if security not in SECURITY_MODES:
            raise ValueError(f"SMTP security must be one of {', '.join(SECURITY_MODES)}")
        if password and not username:
            raise ValueError("SMTP password given without a username")
        if not timeout_seconds > 0:
            raise ValueError("SMTP timeout_seconds must be positive")
        self.name = name  # per instance: two relays side by side
        self.host = host
        self.port = int(port)
        self.security = security
        self.username = username
        self._password = password  # never logged, scrubbed from reasons
        self.timeout_seconds = float(timeout_seconds)
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._local = threading.local()
        self._connections_lock = threading.Lock()
        self._connections: list[smtplib.SMTP] = []

    def __repr__(self) -> str:
        return (
            f"SmtpProvider(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"security={self.security!r})"
        )

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Nothing to do ahead of sending: each thread connects on its first send."""

    def close(self) -> None:
        """Close every thread's connection (QUIT, then the socket). Idempotent; never raises."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            _quit_quietly(connection)

    @property
    def open_connections(self) -> int:
        """How many connections this provider holds (for inspection and tests)."""
        with self._connections_lock:
            return sum(1 for c in self._connections if c.sock is not None)

    # --- the Provider hooks ---------------------------------------------------------------

    def build_payload(self, email: OutgoingEmail) -> MimeMessage:
        """The envelope (the sender; every To, Cc and Bcc address as a recipient) and the
        message of ``dispatch.providers.mime.build_mime_message``: the one MIME builder, so a
        relay's recipients see what SES's see (no Bcc header, text quoted-printable, the
        Message-ID ``<gomail-<id>@<sender domain>>``).

        A non-ASCII local part needs the relay's SMTPUTF8 (checked when sending). Raises
        ``ProviderError(PERMANENT)`` for what the message cannot carry (``UncarriableEmail``:
        an address without a valid domain, a display name with a line break, a bad header).
        """
        try:
            # What post sends: the envelope (one RCPT per recipient), the bytes (CRLF, not yet
            # dot-stuffed) and the Message-ID.
            return build_mime_message(email)
        except UncarriableEmail as exc:
            raise self.error(ErrorKind.PERMANENT, str(exc)) from exc

    def post(self, payload: MimeMessage) -> SmtpAnswer:
        """Send the message on this thread's connection (opening it if need be). A reused
        connection that the relay had closed is replaced once, transparently, when the failure
        shows before anything of this message was accepted. Raises ``SmtpExchangeError``
        (the stage and the cause) or ``ProviderError``."""
        connection, reused = self._thread_connection()
        try:
            return self._transact(connection, payload, reused=reused)
        except _Reconnect:
            self._discard(connection)
            connection, _ = self._thread_connection()
            return self._transact(connection, payload, reused=False)

    def parse_answer(self, answer: SmtpAnswer) -> SendResult:
        """The Message-ID we gave the message is the provider message id: the relay logs it
        and bounces quote it, whatever the relay's own queue id."""
        return SendResult(provider_message_id=answer.message_id_header)

    def classify_error(self, error: Exception) -> ProviderError:
        """Map ``SmtpExchangeError`` (or a bare exception, stage unknown) through
        ``classify_smtp_failure``. The reason names the relay and the stage, never the password
        or the message."""
        stage, cause = (
            (error.stage, error.cause) if isinstance(error, SmtpExchangeError) else (None, error)
        )
        failure = classify_smtp_failure(cause, stage)
        reason = f"{failure.description} ({type(cause).__name__}, {self.host}:{self.port})"
        if self._password:
            reason = reason.replace(self._password, "[redacted]")
        root = cause.__context__ if isinstance(cause, smtplib.SMTPServerDisconnected) else None
        code = type(root).__name__ if isinstance(root, OSError) else type(cause).__name__
        return self.error(
            failure.kind,
            reason,
            code=str(failure.reply_code) if failure.reply_code is not None else code,
            outcome_unknown=failure.outcome_unknown,
        )

    # --- the exchange ---------------------------------------------------------------------

    def _transact(
        self, connection: smtplib.SMTP, payload: MimeMessage, *, reused: bool
    ) -> SmtpAnswer:
        stage = SmtpStage.MAIL
        try:
            options = ["SMTPUTF8"] if payload.needs_smtputf8 else []
            if payload.needs_smtputf8:
                if not connection.has_extn("smtputf8"):
                    raise self.error(
                        ErrorKind.PERMANENT,
                        "a non-ASCII address local part needs SMTPUTF8, which the relay "
                        "does not offer",
                    )
                if connection.has_extn("8bitmime"):
                    options.append("BODY=8BITMIME")
            code, text = connection.mail(payload.sender, options)
            if code != 250:
                if reused and code == 421:  # the relay is closing this idle connection
                    raise _Reconnect
                raise smtplib.SMTPSenderRefused(code, text, payload.sender)
            stage = SmtpStage.RCPT
            # Up to 50 RCPTs: together they get RCPT_WAITS waits, not one each, so that the
            # slowest send (WAITS_PER_SEND) does not grow with the recipients.
            deadline = time.monotonic() + self.timeout_seconds * RCPT_WAITS
            for recipient in payload.recipients:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the relay took too long over the recipients")
                if connection.sock is not None:
                    connection.sock.settimeout(min(self.timeout_seconds, left))
                code, text = connection.rcpt(recipient)
                if code not in (250, 251):
                    # One refused recipient ends the transaction for all: delivering to the
                    # others only would make a retry duplicate their copies.
                    raise smtplib.SMTPRecipientsRefused({recipient: (code, text)})
            if connection.sock is not None:
                connection.sock.settimeout(self.timeout_seconds)
            stage = SmtpStage.DATA
            code, text = connection.docmd("data")
            if code != 354:
                raise smtplib.SMTPDataError(code, text)
            connection.send(_dot_stuffed(payload.content))
            stage = SmtpStage.FINAL_ANSWER
            code, text = connection.getreply()
            if not 200 <= code <= 299:
                raise smtplib.SMTPDataError(code, text)
            return SmtpAnswer(code, text.decode("utf-8", "replace"), payload.message_id_header)
        except _Reconnect:
            self._discard(connection)
            raise
        except ProviderError:  # refused before MAIL: no transaction to end
            raise
        except smtplib.SMTPServerDisconnected as exc:
            self._discard(connection)
            if reused and stage is SmtpStage.MAIL:
                raise _Reconnect from exc
            raise SmtpExchangeError(stage, exc) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            self._end_transaction(connection)
            raise SmtpExchangeError(stage, exc) from exc
        except smtplib.SMTPResponseException as exc:
            # The relay answered: the connection is still in step; end the transaction.
            if stage is SmtpStage.FINAL_ANSWER and not 400 <= exc.smtp_code <= 599:
                self._discard(connection)  # an unreadable answer: the session is out of step
            else:
                self._end_transaction(connection)
            raise SmtpExchangeError(stage, exc) from exc
        except Exception as exc:
            self._discard(connection)
            raise SmtpExchangeError(stage, exc) from exc

    def _end_transaction(self, connection: smtplib.SMTP) -> None:
        # After a refused MAIL/RCPT/DATA the relay still holds the transaction: RSET, or drop
        # the connection if even that fails. After a final answer RSET is harmless.
        try:
            code, _ = connection.rset()
        except (smtplib.SMTPException, OSError):
            code = -1
        if code != 250:
            self._discard(connection)

    def _thread_connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's open connection and whether it was reused; opens one if need be."""
        connection: smtplib.SMTP | None = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None:
            return connection, True
        connection = self._connect()
        self._local.connection = connection
        with self._connections_lock:
            self._connections = [c for c in self._connections if c.sock is not None]
            self._connections.append(connection)
        return connection, False

    def _connect(self) -> smtplib.SMTP:
        """A connected, greeted (EHLO), secured and logged-in connection, or
        ``SmtpExchangeError(CONNECT, ...)``."""
        context = self._ssl_context or ssl.create_default_context()
        connection: smtplib.SMTP | None = None
        try:
            # The host goes to the constructor, which connects: smtplib checks the TLS
            # certificate against the host given there (connect() alone would not record it).
            if self.security == "tls":
                connection = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self._local_hostname,
                    timeout=self.timeout_seconds,
                    context=context,
                )
            else:
                connection = smtplib.SMTP(
                    self.host,
                    self.port,
                    local_hostname=self._local_hostname,
                    timeout=self.timeout_seconds,
                )
            connection.ehlo()
            if self.security == "starttls":
                # Required, not opportunistic: starttls() raises if the relay does not offer it.
                connection.starttls(context=context)
                connection.ehlo()
            if self.username:
                connection.login(self.username, self._password)
        except Exception as exc:
            if connection is not None:
                connection.close()
            raise SmtpExchangeError(SmtpStage.CONNECT, exc) from exc
        return connection

    def _discard(self, connection: smtplib.SMTP) -> None:
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._connections_lock:
            self._connections = [c for c in self._connections if c is not connection]


def _dot_stuffed(content: bytes) -> bytes:
    """``content`` as DATA carries it: leading dots doubled, CRLF-terminated, then ``.``."""
    stuffed = _LEADING_DOT.sub(b"..", content)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _quit_quietly(connection: smtplib.SMTP) -> None:
    try:
        if connection.sock is not None:
            connection.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        connection.close()


class SmtpConfig(ProviderConfig):
    """``providers.<name>`` of ``type: smtp``: any relay (Postfix, an ESP's SMTP endpoint)."""

    type: Literal["smtp"] = "smtp"
    # The local default is the stand-in (devtools/smtp_stub.py), plain SMTP on loopback.
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(2525, ge=1, le=65_535)
    # "starttls" (required, not opportunistic), "tls" (implicit TLS) or "none" (loopback only).
    security: Literal["starttls", "tls", "none"] = "none"
    # The environment variables holding AUTH's username and password; unset: no AUTH.
    username_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    password_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    # Bounds the connect and every wait on the socket (a send waits WAITS_PER_SEND times at
    # most: 54 s with the default, which the visibility timeouts must hold).
    timeout_seconds: float = Field(3.0, gt=0, le=120)

    @model_validator(mode="after")
    def _login_is_whole(self) -> SmtpConfig:
        if self.password_env and not self.username_env:
            raise ValueError("password_env needs a username_env (AUTH takes both)")
        return self


# The waits one send may make at the most, each up to timeout_seconds: a MAIL refused on a
# reused connection, connecting again (the greeting, EHLO, STARTTLS, EHLO again, AUTH with
# its mechanisms tried in turn), the envelope (MAIL, then every RCPT within RCPT_WAITS), DATA,
# the content and the final answer.
RCPT_WAITS = 2
WAITS_PER_SEND = 19


def _production_problems(name: str, config: SmtpConfig) -> list[str]:
    loopback = config.host in ("127.0.0.1", "::1", "localhost")
    if config.security == "none" and not loopback:
        return [f"providers.{name}.security is none: mail to {config.host} would go in the clear"]
    return []


def _secrets(config: SmtpConfig) -> tuple[Secret, ...]:
    return tuple(Secret(env) for env in (config.username_env, config.password_env) if env)


def _build(name: str, config: SmtpConfig, environ: Mapping[str, str]) -> SmtpProvider:
    return SmtpProvider(
        name,
        host=config.host,
        port=config.port,
        security=config.security,
        username=environ.get(config.username_env, "") if config.username_env else "",
        password=environ.get(config.password_env, "") if config.password_env else "",
        timeout_seconds=config.timeout_seconds,
    )


PROVIDER = ProviderType(
    config=SmtpConfig,
    build=_build,
    slowest_call_seconds=lambda config, gomail: config.timeout_seconds * WAITS_PER_SEND,
    secrets=_secrets,
    production_problems=_production_problems,
)
