"""Failed sign-ins are limited per username and per client address, across processes.

After ``security.admin_login_attempts`` failed sign-ins for one username, or from one address,
within ``security.admin_lockout_seconds``, every sign-in for that username or from that address
is refused, the right password included, for ``admin_lockout_seconds`` from the last counted
failure. Both sign-in doors count together: the admin's login page and the UI's ``POST
/session``. A successful sign-in forgets the failures of its own username only: neither
another username's nor its address's (or a guesser with one valid account could keep resetting
the address's count).

The counts live in the shared Django cache (the database cache), so they hold across every
API process. Its ``incr()`` reads and writes without a lock; a failure is recorded instead by
``add()``-ing the first free of ``admin_login_attempts`` numbered keys, an insert that only one
of two concurrent writers can win, so concurrent failures are not lost. The slot's row is
deleted by the read just before once it has expired, so a stale row is never "added" over.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

KEY_PREFIX = "gomail:login"
TOO_MANY = "Too many failed sign-ins: retry in {seconds} seconds"


def client_address(request: HttpRequest) -> str:
    """The client's address: the peer's, or the one the trusted proxies saw.

    With ``DJANGO_TRUSTED_PROXY_HOPS`` = n (> 0), the n-th address from the right of
    X-Forwarded-For is the one the outermost proxy saw; anything to its left came from the
    client and proves nothing.
    """
    hops = getattr(settings, "GOMAIL_TRUSTED_PROXY_HOPS", 0)
    peer = request.META.get("REMOTE_ADDR", "") or "unknown"
    if hops <= 0:
        return peer
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    return forwarded[-hops] if len(forwarded) >= hops else peer


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class _Counter:
    """The failures of one subject (a username or an address), in the cache."""

    name: str  # "user:<sha256>" or "addr:<sha256>"
    attempts: int
    lockout_seconds: int

    @property
    def lock_key(self) -> str:
        return f"{KEY_PREFIX}:lock:{self.name}"

    @property
    def slot_keys(self) -> list[str]:
        return [f"{KEY_PREFIX}:fail:{self.name}:{index}" for index in range(self.attempts)]

    def locked_until(self, now: float) -> float | None:
        until = cache.get(self.lock_key)
        return until if isinstance(until, int | float) and until > now else None

    def record_failure(self, now: float) -> None:
        slots = self.slot_keys
        # Reading deletes expired slots, so the add() below inserts (one winner) rather than
        # overwriting an expired row (which several writers could do at once).
        taken = cache.get_many(slots)
        for key in slots:
            # Expires (to the second, rounded down) no later than the lock set below.
            if key not in taken and cache.add(key, now, timeout=self.lockout_seconds):
                if key != slots[-1]:
                    return
                break
        # The last slot was just taken, or none was free: locked out from now.
        until = now + self.lockout_seconds
        cache.set(self.lock_key, until, timeout=self.lockout_seconds + 1)

    def forget(self) -> None:
        cache.delete_many(self.slot_keys)

    def unlock(self) -> None:
        cache.delete_many([self.lock_key, *self.slot_keys])


def _counter(kind: str, subject: str) -> _Counter:
    security = settings.GOMAIL.security
    return _Counter(
        f"{kind}:{_digest(subject)}", security.admin_login_attempts, security.admin_lockout_seconds
    )


class LoginThrottle:
    """The failed sign-ins of one attempt's username and address."""

    def __init__(self, request: HttpRequest, username: str) -> None:
        self.user = _counter("user", username.casefold())
        self.address = _counter("addr", client_address(request))

    def retry_after(self) -> int:
        """Seconds until this username and address may try again; 0: they may now."""
        now = time.time()
        untils = [until for c in (self.user, self.address) if (until := c.locked_until(now))]
        return max(1, math.ceil(max(untils) - now)) if untils else 0

    def failed(self) -> None:
        now = time.time()
        self.user.record_failure(now)
        self.address.record_failure(now)

    def succeeded(self) -> None:
        self.user.forget()


def unlock(*, username: str | None = None, address: str | None = None) -> None:
    """Lift a lockout before its time and forget the failures, for an operator:
    ``manage.py shell -c "from gomail_site.login_throttle import unlock; unlock(username='x')"``.
    """
    if username is not None:
        _counter("user", username.casefold()).unlock()
    if address is not None:
        _counter("addr", address).unlock()


def too_many_message(seconds: int) -> str:
    return TOO_MANY.format(seconds=seconds)


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, refusing a locked-out username or address before any check of
    the password, and counting every failure (a non-staff account's right password too)."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username is None or not self.cleaned_data.get("password"):
            return super().clean()  # a missing field: nothing was tried
        throttle = LoginThrottle(self.request, username)
        wait = throttle.retry_after()
        if wait:
            self.request.gomail_login_retry_after = wait
            raise ValidationError(too_many_message(wait), code="locked_out")
        try:
            cleaned = super().clean()
        except ValidationError:
            throttle.failed()
            raise
        throttle.succeeded()
        return cleaned


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """The admin site's login view (its form: ``ThrottledAdminAuthenticationForm``, set in
    ``gomail_site.urls``), answering 429 with Retry-After while locked out."""
    response = admin.site.login(request, extra_context)
    wait = getattr(request, "gomail_login_retry_after", 0)
    if wait:
        response.status_code = 429
        response["Retry-After"] = str(wait)
    return response
