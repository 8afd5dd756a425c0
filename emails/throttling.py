"""Rate limits of the API, per API key and per signed-in user (DRF throttling).

- **Who is counted**: a request made with an API key counts against that key
  (``api.rate_limit_per_key``); a request of a signed-in user without a key (the browser UI)
  counts against that user (``api.rate_limit_per_user``). A key's requests do not also count
  against its owner: the key rate is meant for machines, the user rate for people. Anonymous
  requests (only possible with ``api.require_auth`` off, on a trusted network) are not limited.
- **What is counted**: two separate budgets of the same size per caller, scope ``send``
  (``POST /email/send``, a view with ``throttle_scope = "send"``) and scope ``read`` (every
  other API request: ``GET /email/<id>``, ``GET /email/recent``, ``/providers``...). Polling a
  status therefore never uses up the right to send, nor sending the right to look.
- **Where**: DRF's request history lives in the default cache, the ``DatabaseCache`` every API
  process shares, so the limit holds across processes and hosts. DRF reads the history, then
  writes it back; two processes doing that at once could each miss the other's request, so the
  read and the write run in one transaction that excludes the other processes: on SQLite its
  ``BEGIN IMMEDIATE`` takes the write lock, on PostgreSQL a transaction-scoped advisory lock on
  the history's key does.
- **When**: the rates are read from ``settings.GOMAIL`` on every request. A refused request
  is answered ``429`` with ``Retry-After`` (``emails.errors`` shapes the body).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from emails.models import ApiKey

SEND_SCOPE = "send"
READ_SCOPE = "read"


def throttle_scope(view: Any) -> str:
    """``send`` for the views that accept emails, ``read`` for every other."""
    return SEND_SCOPE if getattr(view, "throttle_scope", None) == SEND_SCOPE else READ_SCOPE


class _ConfiguredRateThrottle(SimpleRateThrottle):
    """A DRF throttle whose rate is a key of ``api`` in the configuration, read per request."""

    rate_setting = ""
    kind = ""

    def get_rate(self) -> str:
        return getattr(settings.GOMAIL.api, self.rate_setting)

    def identity(self, request: Request) -> str | None:
        raise NotImplementedError

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        ident = self.identity(request)
        if ident is None:
            return None
        return f"throttle:{self.kind}:{throttle_scope(view)}:{ident}"

    def allow_request(self, request: Request, view: Any) -> bool:
        key = self.get_cache_key(request, view)
        if key is None:
            return True  # not ours to count: no transaction, no lock
        with transaction.atomic():
            if connection.vendor == "postgresql":
                _advisory_lock(key)
            return super().allow_request(request, view)

    def wait(self) -> float:
        """Seconds until the oldest request that still counts stops counting."""
        if len(self.history) < self.num_requests:
            return 1.0
        oldest_counting = self.history[self.num_requests - 1]
        return max(self.duration - (self.now - oldest_counting), 1.0)


class ApiKeyRateThrottle(_ConfiguredRateThrottle):
    """``api.rate_limit_per_key`` for each API key."""

    rate_setting = "rate_limit_per_key"
    kind = "key"

    def identity(self, request: Request) -> str | None:
        api_key = request.auth
        return str(api_key.pk) if isinstance(api_key, ApiKey) else None


class UserRateThrottle(_ConfiguredRateThrottle):
    """``api.rate_limit_per_user`` for each signed-in user calling without an API key."""

    rate_setting = "rate_limit_per_user"
    kind = "user"

    def identity(self, request: Request) -> str | None:
        if isinstance(request.auth, ApiKey):
            return None
        user = request.user
        if user is None or not user.is_authenticated or getattr(user, "pk", None) is None:
            return None
        return str(user.pk)


def _advisory_lock(key: str) -> None:
    # A signed 64-bit number for the key; a collision only serialises two histories more.
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [number])
