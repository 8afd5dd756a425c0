"""Reading the request body: size first, then JSON, with the API's own error messages."""

from __future__ import annotations

import json
from typing import IO, Any

from django.conf import settings
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser

from emails.errors import ApiError

COULD_NOT_DECODE = "Could not decode JSON body"


def body_too_large_message(limit: int) -> str:
    return f"Body is larger than the maximum of {limit} bytes"


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


class EmailJSONParser(BaseParser):
    """Parses any request body as JSON, bounded by ``api.max_body_size_bytes``.

    Raises ``ApiError`` (400) when the body is over the limit (checked on bytes, before any
    parsing) or is not JSON, including empty and too deeply nested bodies.
    """

    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        limit = settings.GOMAIL.api.max_body_size_bytes
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ApiError(body_too_large_message(limit))
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ApiError(COULD_NOT_DECODE) from None


class AnyContentTypeNegotiation(DefaultContentNegotiation):
    """Treat every body as JSON, as the original did: ``curl -d`` sends a form content type."""

    def select_parser(self, request: Any, parsers: list[BaseParser]) -> BaseParser | None:
        return parsers[0] if parsers else None
