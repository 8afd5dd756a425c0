"""SendGrid (v3 ``POST /v3/mail/send``) as a Gomail provider, through the official ``sendgrid``
library. The host is configurable so the same code talks to SendGrid or to a local stand-in.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from pydantic import Field, HttpUrl
from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    Bcc,
    Category,
    Cc,
    ContentId,
    CustomArg,
    Disposition,
    Email,
    FileContent,
    FileName,
    FileType,
    From,
    Header,
    HtmlContent,
    Mail,
    Personalization,
    PlainTextContent,
    ReplyTo,
    Subject,
    To,
)

from dispatch.providers.base import (
    OutgoingEmail,
    Provider,
    ProviderType,
    Secret,
    SendResult,
    secret_value,
    with_ascii_domain,
)
from dispatch.providers.errors import MAX_REASON_LENGTH, ErrorKind, ProviderError
from emails.wire import Attachment as WireAttachment
from gomail_site.config import ProviderConfig

# HTTP statuses of an error answer and whose fault they are. Any other status (5xx included) is
# TRANSIENT: an answer we do not know must never dead-letter a message.
SENDGRID_STATUS_KINDS: dict[int, ErrorKind] = {
    400: ErrorKind.PERMANENT,  # the payload (an address, the content) is invalid
    413: ErrorKind.PERMANENT,  # the message is too large
    401: ErrorKind.PROVIDER_CONFIG,  # API key missing or wrong
    403: ErrorKind.PROVIDER_CONFIG,  # key lacks mail.send, or the sender is not verified
    429: ErrorKind.TRANSIENT,  # rate limited; retry_after_seconds says for how long
}

# SendGrid rejects an empty or missing subject (400 "The subject is required"), while SES and
# the API accept one. A single space is the smallest subject SendGrid takes and mail clients show
# it as blank, so the recipient sees what the sender wrote (nothing) rather than text we invented
# ("(no subject)"); and the email is not failed over for a difference between providers.
EMPTY_SUBJECT_STAND_IN = " "

# Custom args ride along with SendGrid's event webhook, tying each event to our email record.
MESSAGE_ID_ARG = "gomail_id"


class SendGridProvider(Provider):
    """Sends through SendGrid's v3 Mail Send API.

    Every request carries a timeout (see ``__init__``). Thread-safe for concurrent sends: each
    call builds its own urllib request and opener; the only shared state, the client's default
    headers, is set once here.
    """

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        timeout_seconds: float = 10.0,
        name: str = "sendgrid",
    ) -> None:
        """``api_key``: a SendGrid API key with ``mail.send``; ``host``: the API's base URL;
        ``timeout_seconds``: the limit for connecting and for each wait on the socket.

        Raises ``ValueError`` for an empty key or a timeout that is not positive.
        """
        if not api_key:
            # SendGridAPIClient would silently fall back to $SENDGRID_API_KEY.
            raise ValueError("SendGrid api_key must not be empty")
        if not timeout_seconds > 0:
            # python_http_client passes `timeout or self.timeout` to urllib: 0 would mean None,
            # i.e. wait forever.
            raise ValueError("SendGrid timeout_seconds must be positive")
        self.name = name
        self.host = host.rstrip("/")  # python_http_client appends "/v3/...": avoid "//v3"
        self.timeout_seconds = float(timeout_seconds)
        self._api_key = api_key  # kept only to scrub it from reasons, never logged
        self._api = SendGridAPIClient(api_key=api_key, host=self.host)
        # Why this way: SendGridAPIClient has no timeout parameter and its send() passes none,
        # so by default urllib waits forever (python_http_client Client.timeout is None). The
        # Client's `timeout` attribute is what `_make_request` falls back to
        # (`timeout or self.timeout`) and `_build_client` copies it into every child client that
        # `client.mail.send` builds, so setting it here bounds every request made through this
        # client; post() also passes it explicitly, so the bound does not depend on that copying.
        self._api.client.timeout = self.timeout_seconds

    @property
    def http_client(self) -> Any:
        """The underlying ``python_http_client.Client`` (exposed for inspection and tests)."""
        return self._api.client

    def build_payload(self, email: OutgoingEmail) -> dict[str, Any]:
        """The JSON body of ``/v3/mail/send``.

        One personalization with every To, Cc and Bcc recipient, so that all of them get the
        same message (an address SendGrid would see twice, case-insensitively, is kept at its
        first place only: SendGrid refuses a personalization that repeats one). The content
        ``text/plain`` then ``text/html`` (those given); the subject
        (``EMPTY_SUBJECT_STAND_IN`` when empty); ``reply_to`` (one address) or
        ``reply_to_list`` (several); the custom ``headers``; ``categories`` = the tags;
        ``custom_args`` = the metadata and ``gomail_id`` (which wins over a metadata key of that
        name); ``attachments`` (base64, ``inline`` with their ``content_id`` when they have one).

        IDN domains are sent in punycode (the same mailbox, in the form every API accepts).
        Raises ``ProviderError(PERMANENT)`` when an address has no valid domain.
        """
        mail = Mail(
            from_email=self._address(From(), email.from_email, email.from_name, role="sender"),
            subject=Subject(email.subject or EMPTY_SUBJECT_STAND_IN),
            # An email without HTML keeps its text part even when empty, as it always had.
            plain_text_content=PlainTextContent(email.body)
            if email.body or not email.html
            else None,
            html_content=HtmlContent(email.html) if email.html else None,
        )
        mail.add_personalization(self._personalization(email))
        reply_to = [self._address(ReplyTo(), a, "", role="reply-to") for a in email.reply_to]
        if len(reply_to) == 1:
            mail.reply_to = reply_to[0]
        elif reply_to:
            mail.reply_to_list = reply_to
        for name, value in email.headers.items():
            mail.add_header(Header(name, value))
        for key, value in email.metadata.items():
            if key != MESSAGE_ID_ARG:
                mail.add_custom_arg(CustomArg(key, value))
        mail.add_custom_arg(CustomArg(MESSAGE_ID_ARG, email.message_id))
        payload = mail.get()
        # Set in the payload, not through Mail: its add_category and add_attachment insert at
        # the front, which would reverse the caller's order.
        if email.tags:
            payload["categories"] = [Category(tag).get() for tag in email.tags]
        if email.attachments:
            payload["attachments"] = [_attachment(a).get() for a in email.attachments]
        return payload

    def _personalization(self, email: OutgoingEmail) -> Personalization:
        personalization = Personalization()
        seen: set[str] = set()
        for mailboxes, kind, add in (
            (email.to, To, personalization.add_to),
            (email.cc, Cc, personalization.add_cc),
            (email.bcc, Bcc, personalization.add_bcc),
        ):
            for mailbox in mailboxes:
                address = self._address(kind(), mailbox.email, mailbox.name, role="recipient")
                if address.email.lower() not in seen:
                    seen.add(address.email.lower())
                    add(address)
        return personalization

    def post(self, payload: dict[str, Any]) -> Any:
        """POST the payload; a non-2xx answer raises python_http_client's ``HTTPError``."""
        return self._api.client.mail.send.post(request_body=payload, timeout=self.timeout_seconds)

    def parse_answer(self, answer: Any) -> SendResult:
        """The ``X-Message-Id`` header is the provider message id.

        A 2xx without it is still a success (``""``): SendGrid accepted the email, and failing
        here would retry it and deliver it twice.
        """
        return SendResult(provider_message_id=_header(answer.headers, "X-Message-Id") or "")

    def classify_error(self, error: Exception) -> ProviderError:
        """Map an error answer through ``SENDGRID_STATUS_KINDS``; map network failures by
        whether the request can have reached SendGrid (see the branches)."""
        if isinstance(error, http_errors.HTTPError):
            return self._classify_answer(error.status_code, error.body, error.headers)
        if isinstance(error, urllib.error.HTTPError):
            # python_http_client converts these; kept in case a status escapes unconverted.
            return self._classify_answer(error.code, None, error.headers)
        if isinstance(error, urllib.error.URLError):
            # urllib wraps only what fails while connecting or writing the request (OSError in
            # HTTPConnection.request), before SendGrid could read a complete request: not sent.
            # This includes a connect timeout and connection refused.
            cause = error.reason
            cause_name = type(cause).__name__ if isinstance(cause, BaseException) else "URLError"
            what = "connect timeout" if isinstance(cause, TimeoutError) else "could not connect"
            return self.error(
                ErrorKind.TRANSIENT,
                f"{what} ({cause_name})",
                code=cause_name,
                outcome_unknown=False,
            )
        if isinstance(error, TimeoutError):
            # Raised unwrapped while waiting for or reading the answer (HTTPConnection.getresponse,
            # Response.read): the request was sent and SendGrid may have accepted it.
            return self.error(
                ErrorKind.TRANSIENT,
                f"no answer within {self.timeout_seconds:g}s",
                code="TimeoutError",
                outcome_unknown=True,
            )
        if isinstance(error, http.client.HTTPException | OSError):
            # The connection broke after the request was written (RemoteDisconnected,
            # IncompleteRead, reset): the outcome is unknown.
            return self.error(
                ErrorKind.TRANSIENT,
                f"connection lost before the answer ({type(error).__name__})",
                code=type(error).__name__,
                outcome_unknown=True,
            )
        return self.error(
            ErrorKind.TRANSIENT,
            f"unexpected {type(error).__name__} while sending",
            code=type(error).__name__,
            outcome_unknown=True,
        )

    def _classify_answer(self, status_code: int, body: Any, headers: Any) -> ProviderError:
        # SendGrid answered with an error: it did not accept the message.
        kind = SENDGRID_STATUS_KINDS.get(status_code, ErrorKind.TRANSIENT)
        messages = _error_messages(body)
        reason = f"HTTP {status_code}: {messages}" if messages else f"HTTP {status_code}"
        retry_after = retry_after_from_headers(headers, time.time()) if status_code == 429 else None
        return self.error(
            kind,
            reason.replace(self._api_key, "[redacted]"),
            status_code=status_code,
            retry_after_seconds=retry_after,
        )

    def _address(self, address: Email, email: str, name: str, *, role: str) -> Email:
        # Filled through the setters: the constructor would re-parse a nameless address as
        # "Name <addr>" text.
        try:
            address.email = with_ascii_domain(email)
        except ValueError as exc:
            raise self.error(ErrorKind.PERMANENT, f"{role} address: {exc}") from exc
        if name:
            address.name = name
        return address


def _attachment(attachment: WireAttachment) -> Attachment:
    """SendGrid's attachment: base64 content, inline with its content id when it has one."""
    return Attachment(
        FileContent(base64.b64encode(attachment.content).decode("ascii")),
        FileName(attachment.filename),
        FileType(attachment.content_type),
        Disposition("inline" if attachment.content_id else "attachment"),
        ContentId(attachment.content_id) if attachment.content_id else None,
    )


def _header(headers: Any, name: str) -> str | None:
    """A header from urllib's ``HTTPMessage`` (case-insensitive) or a plain dict."""
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


def _error_messages(body: Any) -> str:
    """SendGrid's ``errors[].message`` joined, cut to the reason's length; ``""`` if none."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        return ""
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if not isinstance(errors, list):
        return ""
    texts = [
        str(item["message"]) for item in errors if isinstance(item, dict) and item.get("message")
    ]
    return "; ".join(texts)[:MAX_REASON_LENGTH]


def retry_after_from_headers(headers: Any, now: float) -> float | None:
    """How long a 429 asks us to wait, in seconds (never negative), or None if it does not say.

    ``Retry-After`` (seconds or an HTTP date) comes first because a delay is immune to clock
    skew; otherwise SendGrid's ``X-RateLimit-Reset``, the epoch second the limit resets.
    """
    retry_after = _header(headers, "Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = _header(headers, "X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


# What the local SendGrid stand-in accepts (devtools/sendgrid_stub.py); never a real key.
DEVELOPMENT_API_KEY = "SG.local-stand-in-key"


class SendGridConfig(ProviderConfig):
    """``providers.<name>`` of ``type: sendgrid``."""

    type: Literal["sendgrid"] = "sendgrid"
    host: HttpUrl = HttpUrl("http://127.0.0.1:5001")
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    # The environment variable holding this instance's API key.
    api_key_env: str = Field("SENDGRID_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")


def _api_key(config: SendGridConfig) -> Secret:
    return Secret(config.api_key_env, DEVELOPMENT_API_KEY)


def _build(name: str, config: SendGridConfig, environ: Mapping[str, str]) -> SendGridProvider:
    return SendGridProvider(
        api_key=secret_value(_api_key(config), environ),
        host=str(config.host).rstrip("/"),
        timeout_seconds=config.timeout_seconds,
        name=name,
    )


PROVIDER = ProviderType(
    config=SendGridConfig,
    build=_build,
    slowest_call_seconds=lambda config, gomail: config.timeout_seconds,
    secrets=lambda config: (_api_key(config),),
)
