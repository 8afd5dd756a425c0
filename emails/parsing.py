"""Reading the request body: size, then nesting depth, then JSON, with the API's own errors.

Every check runs on the raw bytes before anything is built from them, and every one is
linear in the body's size, which ``api.max_body_size_bytes`` bounds: a body of a million keys
or one huge string costs no more than any other body of its size.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, count
from operator import sub
from typing import IO, Any

from django.conf import settings
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser

from emails.errors import ApiError

COULD_NOT_DECODE = "Could not decode JSON body"

# A JSON string: runs of plain bytes and escape pairs, to its closing quote, or to the end of
# the body when it has none (possessive and always matching, so the scan stays linear).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
# An opening bracket weighs 2 and a closing one 0: after k brackets the running sum minus k
# is the depth there.
_BRACKET_WEIGHTS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def body_too_large_message(limit: int) -> str:
    return f"Body is larger than the maximum of {limit} bytes"


def too_deep_message(limit: int) -> str:
    return f"JSON nesting is deeper than {limit} levels"


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``raw``, brackets inside
    strings excepted. Linear time; meaningful for valid JSON (and harmless for the rest).

    UTF-8 never uses the bytes of ``"``, ``\\`` or the brackets inside a multi-byte character,
    so scanning bytes is scanning characters.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(map(sub, accumulate(brackets.translate(_BRACKET_WEIGHTS)), count(1)))


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


class EmailJSONParser(BaseParser):
    """Parses any request body as a JSON object, within the API's input limits.

    Raises ``ApiError`` (400) when the body is over ``api.max_body_size_bytes`` (bytes, checked
    first), nests arrays and objects deeper than ``api.max_json_depth`` (checked on the bytes,
    before ``json.loads`` builds anything), or is not a JSON object (empty, malformed,
    non-UTF-8, or a valid JSON value of another type: every body of this API is an object).
    """

    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        limits = settings.GOMAIL.api
        raw = stream.read(limits.max_body_size_bytes + 1) if stream is not None else b""
        if len(raw) > limits.max_body_size_bytes:
            raise ApiError(body_too_large_message(limits.max_body_size_bytes))
        # Counting first is cheap: nesting deeper than the limit needs more opening brackets.
        if (
            raw.count(b"[") + raw.count(b"{") > limits.max_json_depth
            and json_depth(raw) > limits.max_json_depth
        ):
            raise ApiError(too_deep_message(limits.max_json_depth))
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ApiError(COULD_NOT_DECODE) from None
        if type(data) is not dict:
            # Not only a wrong shape: for a form content type DRF hands this value to Django's
            # CSRF check as ``request.POST``, which calls ``.get`` on it.
            raise ApiError(COULD_NOT_DECODE)
        return data


class AnyContentTypeNegotiation(DefaultContentNegotiation):
    """Treat every body as JSON, as the original did: ``curl -d`` sends a form content type."""

    def select_parser(self, request: Any, parsers: list[BaseParser]) -> BaseParser | None:
        return parsers[0] if parsers else None
