"""Property-based tests of the request body parser (emails/parsing.py), without HTTP.

The nesting scan must agree with the real depth of any JSON document however its strings are
written (brackets, quotes and backslashes inside them), and the parser must answer any bytes at
all with a JSON object or the API's own 400, nothing else.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.conf import settings
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from emails.errors import ApiError
from emails.parsing import (
    COULD_NOT_DECODE,
    EmailJSONParser,
    body_too_large_message,
    json_depth,
    too_deep_message,
)

pytestmark = pytest.mark.timeout(60)

PROPERTIES = hypothesis_settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Strings made to confuse a scanner: brackets, quotes, backslashes and escapes.
TRICKY_TEXT = st.lists(
    st.sampled_from(
        [*'[]{}"\\/,:', "\\u005b", "\\\\", '\\"', "\x00", "\u2028", "\ud800", "a", "é"]
    ),
    max_size=12,
).map("".join)
JSON_DOCUMENTS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(TRICKY_TEXT, children, max_size=3)
    ),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def nested(depth: int) -> Any:
    value: Any = '[{]}\\"['
    for level in range(depth):
        value = [value] if level % 2 else {"k[": value}
    return value


def encodings(value: Any) -> list[bytes]:
    """``value`` as JSON text in the ways clients write it."""
    return [
        json.dumps(value).encode(),
        json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
        json.dumps(value, indent=2, separators=(" , ", " : ")).encode(),
    ]


def parse(raw: bytes) -> Any:
    return EmailJSONParser().parse(io.BytesIO(raw))


@PROPERTIES
@given(document=JSON_DOCUMENTS | st.integers(0, 40).map(nested))
@example(document=nested(11))
@example(document={"a": '"\\'})
def test_the_scan_finds_the_real_depth_of_any_document(document):
    for raw in encodings(document):
        assert json_depth(raw) == depth_of(document), raw


@PROPERTIES
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_any_bytes_get_an_object_or_the_api_error(raw):
    try:
        data = parse(raw)
    except ApiError as error:
        assert error.status_code == 400
        limits = settings.GOMAIL.api
        assert str(error.detail) in {
            COULD_NOT_DECODE,
            too_deep_message(limits.max_json_depth),
            body_too_large_message(limits.max_body_size_bytes),
        }
    else:
        assert type(data) is dict
        assert depth_of(data) <= settings.GOMAIL.api.max_json_depth


@PROPERTIES
@given(document=JSON_DOCUMENTS | st.integers(0, 14).map(nested))
def test_a_valid_document_is_refused_exactly_when_it_is_too_deep(document):
    limit = settings.GOMAIL.api.max_json_depth
    wrapped = {"email": document}
    raw = json.dumps(wrapped).encode()
    if len(raw) > settings.GOMAIL.api.max_body_size_bytes:
        return
    if depth_of(wrapped) > limit:
        with pytest.raises(ApiError, match=too_deep_message(limit)):
            parse(raw)
    else:
        assert parse(raw) == wrapped
