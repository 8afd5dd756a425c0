"""Who may send from which address: the sender policy of ``POST /email/send``.

An API key or a user may send only from its *allowed senders*: the configuration's
``api.allowed_senders`` plus the entries an operator gave that key (``ApiKey.allowed_senders``)
or user (``SenderAllowance``) in the admin. An entry is either

- an address (``billing@example.com``): that address, compared case-insensitively; or
- a domain (``example.com``): any address at exactly that domain (not its subdomains).

Domains, in entries and addresses alike, are compared in their ASCII (IDNA) form, so
``bücher.example`` and ``xn--bcher-kva.example`` are the same domain.

``is_allowed_sender`` is the policy, pure; ``allowed_senders_for`` looks up the entries that
apply to a caller. Without them the API would relay mail from any address it is given.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from email_validator import EmailNotValidError, validate_email

NOT_ALLOWED = "From email is not an allowed sender"

# Entries are typed in the admin one per line; commas and spaces separate them too.
_SEPARATORS = re.compile(r"[\s,;]+")


def ascii_domain(domain: str) -> str | None:
    """``domain`` in its lower-case ASCII (IDNA) form, or None when it has none."""
    domain = domain.strip().rstrip(".")
    if not domain:
        return None
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None


def normalise_address(address: str) -> str | None:
    """``Local@Domain`` as ``local@ascii-domain``, lower case, or None when it is no address.

    The local part is compared case-insensitively (as the policy promises), in NFC.
    """
    local, at, domain = address.strip().rpartition("@")
    ascii_form = ascii_domain(domain)
    if not at or not local or ascii_form is None:
        return None
    return f"{unicodedata.normalize('NFC', local).lower()}@{ascii_form}"


def normalise_entry(entry: str) -> str | None:
    """An allowed-sender entry in the form the policy compares: an address or a domain."""
    entry = entry.strip()
    if "@" in entry:
        return normalise_address(entry)
    return ascii_domain(entry)


def is_allowed_sender(address: str, allowed: Iterable[str]) -> bool:
    """Whether ``address`` may be used as a sender under the ``allowed`` entries. Pure.

    An address entry matches that address (case-insensitively); a domain entry matches every
    address at exactly that domain. Anything unparsable matches nothing (fail closed).
    """
    sender = normalise_address(address)
    if sender is None:
        return False
    domain = sender.rpartition("@")[2]
    for entry in allowed:
        wanted = normalise_entry(entry)
        if wanted is not None and wanted in (sender, domain):
            return True
    return False


def parse_entries(text: str) -> list[str]:
    """The entries of an admin text field: one per line (commas and spaces also separate)."""
    return [entry for entry in _SEPARATORS.split(text or "") if entry]


def invalid_entries(entries: Iterable[str]) -> list[str]:
    """The entries that are neither a valid address nor a valid domain."""
    bad = []
    for entry in entries:
        # A domain is valid when an address at it is: the same rules as the API's addresses.
        probe = entry if "@" in entry else f"postmaster@{entry}"
        try:
            validate_email(probe, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError:
            bad.append(entry)
            continue
        if normalise_entry(entry) is None:
            bad.append(entry)
    return bad


def validate_entries(text: str) -> None:
    """Model-field validator: every entry is an address or a domain (a typo allows nothing,
    silently, otherwise)."""
    bad = invalid_entries(parse_entries(text))
    if bad:
        raise ValidationError(
            "Not an email address or a domain: %(entries)s",
            code="invalid_sender",
            params={"entries": ", ".join(bad)},
        )


def allowed_senders_for(api_key: Any = None, user: Any = None) -> list[str]:
    """The entries that apply to a caller: the configuration's default, plus the API key's
    and its user's (the key's owner, or the signed-in user).

    With ``api.require_auth`` off no caller is vouched for, so the default alone applies.
    """
    api = settings.GOMAIL.api
    entries = list(api.allowed_senders)
    if not api.require_auth:
        return entries
    if api_key is not None:
        entries.extend(parse_entries(api_key.allowed_senders))
    if user is not None and getattr(user, "pk", None) is not None:
        from emails.models import SenderAllowance  # emails.models imports this module

        text = (
            SenderAllowance.objects.filter(user_id=user.pk)
            .values_list("allowed_senders", flat=True)
            .first()
        )
        entries.extend(parse_entries(text or ""))
    return entries
