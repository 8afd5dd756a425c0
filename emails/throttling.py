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
- **Where**: DRF's request history lives in the database every API process shares
  (``RateHistory``, one row per caller and scope), so the limit holds across processes and
  hosts. DRF reads the history, then writes it back; two processes doing that at once could
  each miss the other's request, so the read and the write run in one short transaction that
  locks the row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` takes
  its write lock): two statements, where the database cache took five (its ``set`` counts the
  whole cache table each time), and only one caller's requests wait for each other.
- **When**: the rates are read from ``settings.GOMAIL`` on every request. A refused request
  is answered ``429`` with ``Retry-After`` (``emails.errors`` shapes the body).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from emails.models import ApiKey, RateHistory

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

    cache = None  # DRF's default cache is not used: see _HistoryRows

    def __init__(self) -> None:
        super().__init__()
        self.cache = _HistoryRows()

    def allow_request(self, request: Request, view: Any) -> bool:
        key = self.get_cache_key(request, view)
        if key is None:
            return True  # not ours to count: no transaction, no lock
        with transaction.atomic():
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


class _HistoryRows:
    """The two cache calls DRF's throttle makes, on ``RateHistory`` rows, inside its
    transaction: ``get`` locks the caller's row, ``set`` writes it back (or creates it)."""

    def get(self, key: str, default: Any = None) -> Any:
        locked = RateHistory.objects.select_for_update().filter(key=key).values_list("history")
        found = locked.first()
        if found is None:
            # A caller's first request: make the row (another process may make it at the same
            # moment), then lock it like any other, so that no two first requests both pass.
            RateHistory.objects.bulk_create([RateHistory(key=key)], ignore_conflicts=True)
            found = locked.first()
        return found[0] if found and found[0] else default

    def set(self, key: str, history: list[float], timeout: float | None = None) -> None:
        RateHistory.objects.filter(key=key).update(history=history)
