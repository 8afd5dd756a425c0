"""The sign-in lockout: django-axes, configured for Gomail (the ``AXES_*`` settings).

After ``security.admin_login_attempts`` failed sign-ins for one username, or from one client
address, every sign-in for that username or from that address is refused, the right password
included, until ``security.admin_lockout_seconds`` have passed. Both sign-in doors count
together, the admin's login page and the UI's ``POST /session``, because both go through
``django.contrib.auth.authenticate()``:

- ``axes.backends.AxesStandaloneBackend``, the first authentication backend, refuses a
  locked-out username or address before any password is checked;
- every failure (Django's ``user_login_failed`` signal) is recorded by ``LockoutHandler`` in
  the database (``axes.models.AccessAttempt``: one row per username, address and User-Agent,
  with its failure count and the time of its latest failure), so the counts hold across every
  API process; a row counts while its latest failure is less than ``admin_lockout_seconds``
  old. A refused sign-in is not recorded: it neither counts nor prolongs the lockout;
- ``axes.middleware.AxesMiddleware`` answers a locked-out sign-in, and the failure that
  reaches the limit, with ``lockout_response``: 429 with ``Retry-After``.

A successful sign-in forgets the failures of its own username only. Axes'
``AXES_RESET_ON_SUCCESS`` would also forget the failures from its address, so a guesser with one
valid account could sign in with it between guesses and never reach the address's limit.

Operators see the attempts in the admin (*Axes > Access attempts*) and lift a lockout with
``manage.py axes_reset_username NAME``, ``axes_reset_ip ADDRESS`` or ``axes_reset``.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from emails.errors import error_body

TOO_MANY = "Too many failed sign-ins: retry in {seconds} seconds"
ADMIN_LOCKED_OUT_TEMPLATE = "gomail/admin_locked_out.html"


def client_address(request: HttpRequest) -> str | None:
    """The client's address (``AXES_CLIENT_IP_CALLABLE``): the peer's, or the one the trusted
    proxies saw.

    With ``DJANGO_TRUSTED_PROXY_HOPS`` = n (> 0), the n-th address from the right of
    X-Forwarded-For is the one the outermost proxy saw; anything to its left came from the
    client and proves nothing. None when that is not an IP address (a proxy's ``unknown``, a
    Unix socket's empty peer): all such clients then count as one address, and the column
    (``inet`` on PostgreSQL) only ever gets a valid address.
    """
    hops = getattr(settings, "GOMAIL_TRUSTED_PROXY_HOPS", 0)
    address = request.META.get("REMOTE_ADDR", "")
    if hops > 0:
        header = request.META.get("HTTP_X_FORWARDED_FOR", "")
        forwarded = [part.strip() for part in header.split(",") if part.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        # Without an IPv6 zone (fe80::1%eth0): the same client on whichever interface.
        parsed = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return None
    # One spelling per address, so that "::ffff:192.0.2.1" and "192.0.2.1" count together.
    mapped = parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else None
    return str(mapped or parsed)


def failure_limit(request: HttpRequest | None, credentials: dict[str, Any] | None = None) -> int:
    """``AXES_FAILURE_LIMIT``: ``security.admin_login_attempts``, read per request (tests and
    the configuration's reloads change it)."""
    return settings.GOMAIL.security.admin_login_attempts


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_TIME``: ``security.admin_lockout_seconds``, read per request."""
    return timedelta(seconds=settings.GOMAIL.security.admin_lockout_seconds)


def too_many_message(seconds: int) -> str:
    return TOO_MANY.format(seconds=seconds)


class LockoutHandler(AxesDatabaseHandler):
    """Axes' database handler (``AXES_HANDLER``), forgetting on a successful sign-in the
    failures of its username only (see the module's docstring)."""

    def user_logged_in(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        username = user.get_username()
        if username:  # an empty filter would forget every failure of everyone
            AccessAttempt.objects.filter(username=username).delete()


def retry_after(request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
    """Seconds until this request's username and address may sign in again; 0: they may now.

    Each of them is locked while its rows of the last ``admin_lockout_seconds`` add up to the
    limit; the oldest rows drop out first, so the lockout ends when the row that completes the
    limit, counting from the newest, becomes too old.
    """
    AxesProxyHandler.update_request(request)  # axes' attributes: its address, its time
    limit = failure_limit(request, credentials)
    window = cool_off(request)
    untils = []
    for attempts in LockoutHandler().get_user_attempts(request, credentials):
        counted = 0
        for attempt_time, failures in attempts.order_by("-attempt_time").values_list(
            "attempt_time", "failures_since_start"
        ):
            counted += failures
            if counted >= limit:
                untils.append(attempt_time + window)
                break
    if not untils:
        return 0
    # From now, rounded up, so that a client that waits this long is let in. (Not from the
    # request's axes_attempt_time: the row of this very failure is stamped a little later.)
    left = (max(untils) - timezone.now()).total_seconds()
    return max(1, math.ceil(left))


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: 429 with ``Retry-After``, in each door's own form.

    The admin gets its login page with the message above the form; everything else (the UI's
    ``POST /session``) the API's error shape ``{"errors": {"base": ...}}``.
    """
    # At least a second: the row may just have been reset by an operator or by a success.
    wait = max(1, retry_after(request, credentials))
    message = too_many_message(wait)
    if LockoutHandler().is_admin_request(request):
        context = {
            **admin.site.each_context(request),
            "title": _("Log in"),
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username() if hasattr(request, "user") else "",
            # An empty form: nothing is checked again, the message is the only error.
            "form": AdminAuthenticationForm(request),
            REDIRECT_FIELD_NAME: request.POST.get(REDIRECT_FIELD_NAME) or reverse("admin:index"),
            "lockout_message": message,
        }
        response = render(request, ADMIN_LOCKED_OUT_TEMPLATE, context, status=429)
    else:
        response = JsonResponse(error_body({"base": message}), status=429)
    response["Retry-After"] = str(wait)
    return response
