"""One small interface for every email provider, in the shape of django-anymail's backends.

``Provider.send`` owns the order of the steps (build the provider's payload, post it, parse the
answer) and the error contract; a provider module fills the four hooks. Providers are plain
Python built from plain values (no Django, no Celery), so the worker, the tests and a shell can
all construct one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import idna

from dispatch.providers.errors import ErrorKind, ProviderError
from emails.wire import Content


@dataclass(frozen=True)
class OutgoingEmail(Content):
    """One email to deliver, already validated by the API (DESIGN.md section 3).

    ``from_name``, ``to_name`` and ``subject`` are ``""`` when absent. ``body`` is plain text
    and ``html`` its HTML alternative (either may be ``""``, not both); ``to``, ``cc`` and
    ``bcc`` are the recipients (``emails.wire.Content``). A provider puts ``bcc`` in the
    envelope only, never in a header. ``headers`` are the API's allowlisted custom headers
    (no line breaks); ``tags`` and ``metadata`` go where the provider's events carry them.
    Attachments with a ``content_id`` are inline parts.
    """

    message_id: str
    from_email: str
    from_name: str
    to_email: str
    to_name: str
    subject: str
    body: str = field(repr=False)

    @property
    def needs_mime(self) -> bool:
        """True when only a raw MIME message carries it (attachments or custom headers)."""
        return bool(self.attachments or self.headers)


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider accepted the email; ``provider_message_id`` is its id for the email there."""

    provider_message_id: str


class Provider(ABC):
    """An email provider behind the common contract.

    Subclasses set ``name`` (the key used in configuration, health state and Celery queue names)
    and implement ``build_payload``, ``post``, ``parse_answer`` and ``classify_error``.
    Instances hold no per-message state, so one instance may serve concurrent ``send`` calls
    from several threads as long as the underlying client allows it (both of ours do).
    """

    name: str

    def close(self) -> None:  # noqa: B027 (a hook: most providers hold nothing)
        """Release what the provider holds (an SMTP connection per thread); a no-op here."""

    def send(self, email: OutgoingEmail) -> SendResult:
        """Deliver ``email`` through this provider.

        Returns the provider's acceptance. Raises ``ProviderError`` for every failure and
        nothing else, so a caller handles "what kind of failure" once for all providers:

        - a hook may raise ``ProviderError`` itself (e.g. an address this provider cannot
          carry is ``PERMANENT`` before anything is posted);
        - any other exception from ``post`` goes through ``classify_error``;
        - an exception nobody anticipated (a bug) is ``TRANSIENT``, never ``PERMANENT``, so a bug
          can delay a message but never dead-letter it. It is ``outcome_unknown`` from the
          moment the request may have left the process; before that it is known not sent.
        """
        try:
            payload = self.build_payload(email)
        except ProviderError:
            raise
        except Exception as exc:
            # Nothing left the process: the provider cannot have acted on it.
            raise self._unexpected(
                exc, stage="building the request", outcome_unknown=False
            ) from exc

        try:
            answer = self.post(payload)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._classified(exc) from exc

        try:
            return self.parse_answer(answer)
        except ProviderError:
            raise
        except Exception as exc:
            # The provider answered with success, so it may well deliver the email: a retry
            # could duplicate it, which the caller must count.
            raise self._unexpected(exc, stage="reading the answer", outcome_unknown=True) from exc

    @abstractmethod
    def build_payload(self, email: OutgoingEmail) -> Any:
        """Turn ``email`` into this provider's request. May raise ``ProviderError``
        (``PERMANENT`` when the provider cannot carry this email at all)."""

    @abstractmethod
    def post(self, payload: Any) -> Any:
        """Send the request built by ``build_payload``; return the provider's raw answer.
        Failures propagate as the client library raises them; ``classify_error`` maps them."""

    @abstractmethod
    def parse_answer(self, answer: Any) -> SendResult:
        """Turn a successful raw answer into a ``SendResult``."""

    @abstractmethod
    def classify_error(self, error: Exception) -> ProviderError:
        """Map an exception raised by ``post`` to a ``ProviderError`` (returned, not raised).

        Must never classify an error it does not recognise as ``PERMANENT``.
        """

    def error(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after_seconds: float | None = None,
        outcome_unknown: bool = False,
    ) -> ProviderError:
        """Build a ``ProviderError`` naming this provider (for the hooks' convenience)."""
        return ProviderError(
            kind=kind,
            provider=self.name,
            reason=reason,
            status_code=status_code,
            code=code,
            retry_after_seconds=retry_after_seconds,
            outcome_unknown=outcome_unknown,
        )

    def _classified(self, exc: Exception) -> ProviderError:
        try:
            return self.classify_error(exc)
        except Exception:
            # A bug in the classifier must not let a foreign exception escape send().
            return self._unexpected(exc, stage="sending", outcome_unknown=True)

    def _unexpected(self, exc: Exception, *, stage: str, outcome_unknown: bool) -> ProviderError:
        # Only the exception's type goes into the reason: its message might quote the email
        # (a UnicodeEncodeError does). The traceback stays reachable through __cause__.
        return self.error(
            ErrorKind.TRANSIENT,
            f"unexpected {type(exc).__name__} while {stage}",
            code=type(exc).__name__,
            outcome_unknown=outcome_unknown,
        )


def with_ascii_domain(address: str) -> str:
    """Return ``address`` with its domain in IDNA ASCII form (``bücher.example`` becomes
    ``xn--bcher-kva.example``); an ASCII domain is returned unchanged.

    Providers' APIs want ASCII domains, and the punycode form names the very same mailbox.
    The local part is left alone: whether it may be non-ASCII is each provider's decision.
    Raises ``ValueError`` when there is no ``@`` or the domain is not a valid IDNA name.
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("not an email address (local@domain)")
    if domain.isascii():
        # Running idna on ASCII would reject names real mail systems accept (e.g. underscores).
        return address
    try:
        # UTS 46 mapping first (case folding, full-width dots), as browsers and email-validator do.
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"domain is not a valid internationalised domain name ({exc})") from exc
    return f"{local}@{ascii_domain}"


@dataclass(frozen=True)
class Secret:
    """An environment variable a provider instance reads its credential from.

    ``development_default``: what a local run uses when the variable is unset (a stand-in's
    key, never a real one); production refuses to start on it, or without the variable.
    """

    env: str
    development_default: str = ""


@dataclass(frozen=True)
class ProviderType:
    """What a provider module declares, once, for ``gomail_site.config`` and the workers:
    everything outside the module reaches a provider through this (django-anymail's shape:
    one module per ESP, named by the configuration).

    - ``config``: its pydantic model (a ``gomail_site.config.ProviderConfig`` with a ``type``
      literal), validated with the rest of the configuration;
    - ``secrets(config)``: the environment variables it needs (checked in production);
    - ``build(name, config, environ)``: the ``Provider`` of instance ``name``;
    - ``slowest_call_seconds(config, gomail)``: the longest one ``send`` may take (its
      timeouts, its client's retries), which the visibility timeouts must outlast;
    - ``bootstrap(config)``: optional set-up for ``manage.py bootstrap`` (e.g. moto's SES
      identities);
    - ``production_problems(name, config)``: what production mode refuses besides a missing
      secret (SMTP in the clear to another host).

    A provider that holds connections (SMTP) opens them lazily and releases them in
    ``Provider.close``; ``Provider.send`` may be called from several threads at once.
    """

    config: type
    build: Callable[[str, Any, Mapping[str, str]], Provider]
    slowest_call_seconds: Callable[[Any, Any], float]
    secrets: Callable[[Any], tuple[Secret, ...]] = lambda config: ()
    bootstrap: Callable[[Any], None] | None = None
    production_problems: Callable[[str, Any], list[str]] = lambda name, config: []


def secret_value(secret: Secret, environ: Mapping[str, str]) -> str:
    """The value of ``secret`` in ``environ``, or its development default."""
    return environ.get(secret.env) or secret.development_default
