"""API-key authentication: ``Authorization: Bearer <key>``."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    get_authorization_header,
)
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from emails.models import ApiKey


class ApiKeyClient:
    """The caller behind an API key that has no user: authenticated, with no Django account."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    pk = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return f"API key {self.api_key.name}"


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates a Bearer API key; ``request.auth`` is then the ``ApiKey``.

    No Authorization header: not this scheme (the session may still authenticate). A Bearer
    header with an unknown or revoked key: 401, never a fall-through to anonymous.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid API key")
        try:
            raw_key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid API key") from None
        api_key = ApiKey.find_active(raw_key)
        if api_key is None:
            raise AuthenticationFailed("Invalid API key")
        api_key.touch()
        return (api_key.user or ApiKeyClient(api_key), api_key)

    def authenticate_header(self, request: Request) -> str:
        # Naming a scheme here is what makes DRF answer 401 rather than 403.
        return f'{self.keyword} realm="gomail"'


class HeaderCsrfSessionAuthentication(SessionAuthentication):
    """Django's session, with the CSRF token read from the ``X-CSRFToken`` header only.

    The API reads every body as JSON; Django's CSRF check would otherwise look for a form
    field in it (a JSON object posted with a form content type ends up as ``request.POST``)
    and fail with a 500 on a non-string value.
    """

    def enforce_csrf(self, request: Request) -> None:
        super().enforce_csrf(_WithoutFormToken(request))


class _WithoutFormToken:
    """The request as Django's CSRF check sees it: everything but a form body."""

    POST = QueryDict()

    def __init__(self, request: Request) -> None:
        self._wrapped = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)
