"""Amazon SES (classic v1 API, ``SendEmail`` and ``SendRawEmail``) as a Gomail provider.

An email SES's structured ``SendEmail`` can say (recipients, text and HTML, reply-to, tags) goes
that way; one with attachments or custom headers (``OutgoingEmail.needs_mime``) goes as the
MIME message of ``dispatch.providers.mime`` through ``SendRawEmail``, which has no fields for
them. The boto3 client is built elsewhere (from configuration) and handed in, so the same code
talks to real SES or to a local moto server; only the client's endpoint differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import formataddr
from typing import Any, Literal, NamedTuple

from botocore import exceptions as boto_errors
from pydantic import Field

from dispatch.providers.base import (
    OutgoingEmail,
    Provider,
    ProviderType,
    SendResult,
    with_ascii_domain,
)
from dispatch.providers.errors import ErrorKind, ProviderError
from dispatch.providers.mime import UncarriableEmail, build_mime_message
from gomail_site.config import ProviderConfig

# SES error codes (``ClientError.response["Error"]["Code"]``) and whose fault they are.
# A code missing here is TRANSIENT whatever its status: an error we have not met must never
# dead-letter a message; at worst it delays it and marks SES unhealthy.
SES_ERROR_KINDS: dict[str, ErrorKind] = {
    # The message's fault: SES will never send this one.
    "MessageRejected": ErrorKind.PERMANENT,
    "InvalidParameterValue": ErrorKind.PERMANENT,
    # SES's fault or its rate limits: try again later.
    "Throttling": ErrorKind.TRANSIENT,
    "ThrottlingException": ErrorKind.TRANSIENT,
    "ServiceUnavailable": ErrorKind.TRANSIENT,
    "InternalFailure": ErrorKind.TRANSIENT,
    # Our account or configuration: every message would fail the same way.
    "AccountSendingPausedException": ErrorKind.PROVIDER_CONFIG,
    "MailFromDomainNotVerifiedException": ErrorKind.PROVIDER_CONFIG,
    "ConfigurationSetDoesNotExist": ErrorKind.PROVIDER_CONFIG,
    "AccessDenied": ErrorKind.PROVIDER_CONFIG,
    "InvalidClientTokenId": ErrorKind.PROVIDER_CONFIG,
    "SignatureDoesNotMatch": ErrorKind.PROVIDER_CONFIG,
    "UnrecognizedClientException": ErrorKind.PROVIDER_CONFIG,
}


class BotocoreErrorRule(NamedTuple):
    """How a botocore exception raised before any SES answer is classified."""

    exception: type[Exception]
    kind: ErrorKind
    outcome_unknown: bool
    description: str


# Failures of the exchange itself, most specific class first (the first isinstance match wins).
# The reason is this fixed description plus the endpoint, never str(exc): botocore's messages can
# quote request parameters (ParamValidationError quotes the body).
#
# "Not sent" is claimed only for the classes botocore raises before a byte of the request was
# written (botocore/httpsession.py, urllib3 2.x): EndpointConnectionError wraps urllib3's
# NewConnectionError or a DNS failure, ConnectTimeoutError a timeout of the TCP connect; both
# come from opening the connection. Every other failure of the exchange may come after SES had
# the request, so its outcome is unknown (a retry may deliver a second copy, which is counted).
BOTOCORE_ERROR_RULES: tuple[BotocoreErrorRule, ...] = (
    # The request was sent and no answer came in time: SES may have accepted it.
    BotocoreErrorRule(
        boto_errors.ReadTimeoutError, ErrorKind.TRANSIENT, True, "no answer before the read timeout"
    ),
    # Raised when the connection drops after the request was written (urllib3 ProtocolError,
    # e.g. RemoteDisconnected while waiting for the answer), so SES may have acted on it.
    BotocoreErrorRule(
        boto_errors.ConnectionClosedError,
        ErrorKind.TRANSIENT,
        True,
        "connection closed before an answer",
    ),
    # Could not open a connection (refused, DNS, connect timeout): not sent.
    BotocoreErrorRule(
        boto_errors.EndpointConnectionError, ErrorKind.TRANSIENT, False, "could not connect"
    ),
    BotocoreErrorRule(
        boto_errors.ConnectTimeoutError, ErrorKind.TRANSIENT, False, "connect timeout"
    ),
    # A ConnectionError by its class, but urllib3 raises SSLError for a TLS failure at any
    # point: the handshake, or reading the answer to a request SES already has.
    BotocoreErrorRule(boto_errors.SSLError, ErrorKind.TRANSIENT, True, "TLS failure"),
    # Also raised after the request was written: http.client closes the connection when the
    # proxy hangs up while the answer is awaited, and urllib3 then takes the closed connection
    # for one that never reached the proxy.
    BotocoreErrorRule(boto_errors.ProxyConnectionError, ErrorKind.TRANSIENT, True, "proxy failure"),
    # Any other (future) member of the family: not known to be raised before the request.
    BotocoreErrorRule(boto_errors.ConnectionError, ErrorKind.TRANSIENT, True, "connection failure"),
    # Credentials are signed in before sending, so nothing left the process.
    BotocoreErrorRule(
        boto_errors.NoCredentialsError, ErrorKind.PROVIDER_CONFIG, False, "no AWS credentials"
    ),
    BotocoreErrorRule(
        boto_errors.PartialCredentialsError,
        ErrorKind.PROVIDER_CONFIG,
        False,
        "incomplete AWS credentials",
    ),
    BotocoreErrorRule(
        boto_errors.CredentialRetrievalError,
        ErrorKind.PROVIDER_CONFIG,
        False,
        "could not retrieve AWS credentials",
    ),
    BotocoreErrorRule(
        boto_errors.NoRegionError, ErrorKind.PROVIDER_CONFIG, False, "no AWS region configured"
    ),
    # botocore refused our request locally: a bug in build_payload, so not the message's fault
    # and never a reason to dead-letter it.
    BotocoreErrorRule(
        boto_errors.ParamValidationError,
        ErrorKind.TRANSIENT,
        False,
        "request failed local parameter validation",
    ),
    # Anything else the HTTP layer or botocore raises: assume the request may have gone out.
    BotocoreErrorRule(
        boto_errors.HTTPClientError, ErrorKind.TRANSIENT, True, "HTTP client failure"
    ),
    BotocoreErrorRule(boto_errors.BotoCoreError, ErrorKind.TRANSIENT, True, "botocore failure"),
)


def botocore_error_rule(error: Exception) -> BotocoreErrorRule | None:
    """The first rule of ``BOTOCORE_ERROR_RULES`` that ``error`` is an instance of; None for an
    exception botocore did not raise. Pure."""
    return next((rule for rule in BOTOCORE_ERROR_RULES if isinstance(error, rule.exception)), None)


# SES message tags (names and values) allow only these characters; a name or value outside
# them is simply not tagged, because a tag SES refuses would reject the whole message
# (InvalidParameterValue).
_TAG_VALUE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LINE_BREAK = re.compile(r"[\r\n]")
MESSAGE_ID_TAG = "gomail_id"
# What a tag of ours (a name without a value) carries as the SES tag's value.
TAG_PRESENT_VALUE = "true"


def ses_message_tags(email: OutgoingEmail) -> list[dict[str, str]]:
    """The SES message tags of ``email`` (``Tags`` of either call). Pure.

    In order, each name once (the first wins): ``gomail_id`` = the email's id (it ties SES's
    event notifications to our record, as SendGrid's custom_args do); each metadata entry as
    name = value; each tag as name = ``"true"``. Whatever SES's tag characters cannot carry
    (a name or value outside ``[A-Za-z0-9_-]``, over 256 characters) is skipped, as is a name
    already taken (a tag equal to a metadata key); ``gomail_id`` is never another value.
    """
    tags: dict[str, str] = {}
    if _TAG_VALUE.fullmatch(email.message_id):
        tags[MESSAGE_ID_TAG] = email.message_id
    ours = [*email.metadata.items(), *((tag, TAG_PRESENT_VALUE) for tag in email.tags)]
    for name, value in ours:
        # gomail_id is reserved even when the id itself could not be tagged: another value
        # under that name would tie SES's events to the wrong record.
        if name in tags or name == MESSAGE_ID_TAG:
            continue
        if _TAG_VALUE.fullmatch(name) and _TAG_VALUE.fullmatch(value):
            tags[name] = value
    return [{"Name": name, "Value": value} for name, value in tags.items()]


class SesProvider(Provider):
    """Sends through SES ``SendEmail`` (or ``SendRawEmail``) with a boto3 ``ses`` client.

    Build the client with botocore retries off (``Config(retries={"total_max_attempts": 1})``)
    and explicit connect/read timeouts: botocore retries read timeouts on its own, which would
    resend an email whose first attempt may have been delivered and hide the possible duplicate.
    Gomail retries through its queue instead. boto3 clients are thread-safe, so one provider may
    serve concurrent sends.
    """

    name = "ses"

    def __init__(self, client: Any, name: str = "ses") -> None:
        """``client``: ``boto3.client("ses", ...)`` (region, endpoint and credentials set);
        ``name``: the instance's name in the configuration (two regions side by side)."""
        self._client = client
        self.name = name

    def build_payload(self, email: OutgoingEmail) -> dict[str, Any]:
        """The keyword arguments of ``SendEmail``, or of ``SendRawEmail`` (``RawMessage`` in
        them) when ``email.needs_mime``.

        ``SendEmail``: Destination To/Cc/Bcc, Body Text and/or Html (only the parts given),
        ReplyToAddresses, Tags (``ses_message_tags``). ``SendRawEmail``: Source, Destinations
        (every To, Cc and Bcc address: Bcc is in no header of the message), the MIME bytes of
        ``build_mime_message`` and the same Tags.

        Mailboxes are ``formataddr``'s: a non-ASCII display name becomes an RFC 2047 encoded
        word (SES requires that) and an IDN domain becomes punycode (SES requires ASCII
        addresses). Raises ``ProviderError(PERMANENT)`` for an address SES cannot carry
        (non-ASCII local part, invalid domain), a display name containing a line break, or a
        custom header the MIME message cannot carry.
        """
        source = self._mailbox(email.from_email, email.from_name, role="sender")
        to = [self._mailbox(m.email, m.name, role="recipient") for m in email.to]
        cc = [self._mailbox(m.email, m.name, role="recipient") for m in email.cc]
        bcc = [self._mailbox(m.email, m.name, role="recipient") for m in email.bcc]
        reply_to = [self._mailbox(address, "", role="reply-to") for address in email.reply_to]
        payload: dict[str, Any]
        if email.needs_mime:
            try:
                message = build_mime_message(email)
            except UncarriableEmail as exc:
                raise self.error(ErrorKind.PERMANENT, str(exc)) from exc
            payload = {
                "Source": source,
                "Destinations": list(message.recipients),
                "RawMessage": {"Data": message.content},
            }
        else:
            destination = {"ToAddresses": to}
            if cc:
                destination["CcAddresses"] = cc
            if bcc:
                destination["BccAddresses"] = bcc
            body: dict[str, Any] = {}
            if email.body or not email.html:
                body["Text"] = {"Data": email.body, "Charset": "UTF-8"}
            if email.html:
                body["Html"] = {"Data": email.html, "Charset": "UTF-8"}
            payload = {
                "Source": source,
                "Destination": destination,
                "Message": {
                    # SES accepts an empty subject; the mail simply has none.
                    "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                    "Body": body,
                },
            }
            if reply_to:
                payload["ReplyToAddresses"] = reply_to
        tags = ses_message_tags(email)
        if tags:
            payload["Tags"] = tags
        return payload

    def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Call ``SendRawEmail`` for a raw message, else ``SendEmail``; botocore exceptions
        propagate to ``classify_error``."""
        if "RawMessage" in payload:
            return self._client.send_raw_email(**payload)
        return self._client.send_email(**payload)

    def parse_answer(self, answer: dict[str, Any]) -> SendResult:
        """The SES ``MessageId`` is the provider message id."""
        return SendResult(provider_message_id=answer["MessageId"])

    def classify_error(self, error: Exception) -> ProviderError:
        """Map a ``ClientError`` through ``SES_ERROR_KINDS`` and other botocore exceptions
        through ``BOTOCORE_ERROR_RULES``; anything else is TRANSIENT with an unknown outcome."""
        if isinstance(error, boto_errors.ClientError):
            return self._classify_client_error(error)
        rule = botocore_error_rule(error)
        if rule is not None:
            endpoint = getattr(error, "kwargs", {}).get("endpoint_url")
            reason = f"{rule.description} ({endpoint})" if endpoint else rule.description
            return self.error(
                rule.kind,
                reason,
                code=type(error).__name__,
                outcome_unknown=rule.outcome_unknown,
            )
        return self.error(
            ErrorKind.TRANSIENT,
            f"unexpected {type(error).__name__} while sending",
            code=type(error).__name__,
            outcome_unknown=True,
        )

    def _classify_client_error(self, error: boto_errors.ClientError) -> ProviderError:
        # SES answered, so it did not accept the message: the outcome is known.
        details = error.response.get("Error", {})
        code = details.get("Code") or "Unknown"
        status_code = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        kind = SES_ERROR_KINDS.get(code, ErrorKind.TRANSIENT)
        message = details.get("Message") or ""
        return self.error(
            kind,
            f"{code}: {message}" if message else code,
            status_code=status_code,
            code=code,
        )

    def _mailbox(self, address: str, display_name: str, *, role: str) -> str:
        try:
            ascii_address = with_ascii_domain(address)
        except ValueError as exc:
            raise self.error(ErrorKind.PERMANENT, f"{role} address: {exc}") from exc
        if not ascii_address.isascii():
            # SES v1 has no SMTPUTF8: a non-ASCII local part has no ASCII form it would accept.
            raise self.error(
                ErrorKind.PERMANENT, f"SES cannot send with a non-ASCII {role} local part"
            )
        if _LINE_BREAK.search(display_name):
            # formataddr leaves an ASCII name as it is, so a line break would inject a header.
            raise self.error(ErrorKind.PERMANENT, f"{role} name contains a line break")
        return formataddr((display_name, ascii_address), charset="utf-8")


class SesConfig(ProviderConfig):
    """``providers.<name>`` of ``type: ses``."""

    type: Literal["ses"] = "ses"
    # None: aws.region. Another one runs an instance per region side by side.
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    # Identities the local bootstrap verifies in moto's SES; empty against the real SES.
    verify_identities: list[str] = Field(default_factory=lambda: ["example.com"])


def _build(name: str, config: SesConfig, environ: Mapping[str, str]) -> SesProvider:
    from gomail_site.aws import aws_client  # the configured client; Django is set up by then

    # One attempt: botocore retrying a send after a read timeout could deliver it twice.
    return SesProvider(aws_client("ses", attempts=1, region=config.region), name=name)


def verify_ses_identities(identities: list[str], region: str | None = None) -> None:
    """Verify sender identities (domains or addresses) in SES; for the local moto SES."""
    from gomail_site.aws import aws_client

    ses = aws_client("ses", region=region)
    for identity in identities:
        if "@" in identity:
            ses.verify_email_identity(EmailAddress=identity)
        else:
            ses.verify_domain_identity(Domain=identity)


def _bootstrap(config: SesConfig) -> None:
    verify_ses_identities(config.verify_identities, region=config.region)


PROVIDER = ProviderType(
    config=SesConfig,
    build=_build,
    # A call of aws.client_timeout_seconds to connect and as much for each read, at most 3
    # (the standard retry mode's attempts of the calls around it count too).
    slowest_call_seconds=lambda config, gomail: gomail.aws.client_timeout_seconds * 3,
    bootstrap=_bootstrap,
)
