"""What the OpenAPI schema (drf-spectacular) says about authentication and errors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "emails.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `manage.py create_api_key` or the admin.",
        }


ERRORS = inline_serializer(
    name="Errors",
    fields={
        "errors": serializers.DictField(
            child=serializers.CharField(),
            help_text='"base" for errors of the whole request, else one message per field '
            "(camelCase names).",
        )
    },
)


def error(description: str, body: dict[str, str]) -> OpenApiResponse:
    return OpenApiResponse(
        ERRORS,
        description=description,
        examples=[OpenApiExample("error", value={"errors": body})],
    )


UNAUTHENTICATED = error(
    "No credentials, or an unknown or revoked API key.", {"base": "Authentication required"}
)
FORBIDDEN = error(
    "A signed-in browser session without its CSRF token.",
    {"base": "CSRF Failed: CSRF token missing."},
)
NOT_FOUND = error("No such email for this caller.", {"base": "Not found"})


class HeaderCsrfSessionScheme(SessionScheme):
    """The session cookie, as drf-spectacular documents Django's session authentication."""

    target_class = "emails.authentication.HeaderCsrfSessionAuthentication"
