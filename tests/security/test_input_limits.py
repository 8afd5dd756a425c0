"""The API's input limits, each at its edge: body size, JSON nesting depth, field lengths, and
bodies that are large in other ways (many keys, one huge string) but within the size limit.

Every refusal is a 4xx in the one error shape, never a 500, and nothing refused is queued.
Recipient lists do not exist yet (one ``toEmail``), so there is no recipient count to limit.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from dispatch.queues import QueueSetup
from emails import claim_check
from emails.parsing import json_depth
from emails.wire import decode
from gomail_site.aws import aws_client
from tests.clients import VALID_EMAIL

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


def post(client: APIClient, body: bytes | str, content_type: str = "application/json") -> Any:
    return client.generic("POST", "/email/send", body, content_type=content_type)


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def queued(setup: QueueSetup) -> list[dict[str, Any]]:
    sqs = aws_client("sqs")
    bodies = []
    for url in setup.incoming_urls.values():
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            bodies.extend(json.loads(message["Body"]) for message in messages)
    return bodies


def assert_refused(response: Any, status: int, errors: dict[str, str]) -> None:
    assert response.status_code == status, response.content[:300]
    assert response.json() == {"errors": errors}


def padded(size: int, **fields: str) -> bytes:
    """A valid request of exactly ``size`` bytes: its body is padded with a 3-byte character
    and ASCII, so the size is counted in bytes, not characters."""
    email = {**VALID_EMAIL, **fields, "body": ""}
    room = size - len(encode({"email": email}))
    assert room >= 0
    email["body"] = "\u20ac" * (room // 3) + "x" * (room % 3)
    raw = encode({"email": email})
    assert len(raw) == size
    return raw


# --- body size ----------------------------------------------------------------------------------


def test_a_body_of_exactly_the_size_limit_is_accepted(client_with_key, aws):
    raw = padded(settings.GOMAIL.api.max_body_size_bytes)

    response = post(client_with_key, raw)

    assert response.status_code == 200, response.content
    [message] = queued(aws)
    # Far over what SQS takes: it travels as a claim check, its body in S3.
    summary = decode(json.dumps(message), "unused")
    assert summary.payload is not None and summary.body == ""
    assert claim_check.fetch(summary).body == json.loads(raw)["email"]["body"]


def test_a_body_one_byte_over_the_limit_is_a_400(client_with_key, aws):
    limit = settings.GOMAIL.api.max_body_size_bytes

    response = post(client_with_key, padded(limit + 1))

    assert_refused(response, 400, {"base": f"Body is larger than the maximum of {limit} bytes"})
    assert queued(aws) == []


def test_the_size_limit_comes_before_any_parsing(client_with_key, aws):
    limit = settings.GOMAIL.api.max_body_size_bytes
    # Over the limit and also malformed, too deep, not UTF-8: the size is what is reported.
    for raw in [b"{" * (limit + 1), b"\xff" * (limit + 1), b'{"email": ' + b"x" * limit]:
        response = post(client_with_key, raw)

        assert_refused(response, 400, {"base": f"Body is larger than the maximum of {limit} bytes"})


def test_the_size_limit_follows_the_configuration(client_with_key, aws, gomail_config):
    gomail_config(api={"max_body_size_bytes": 600})

    assert post(client_with_key, padded(600)).status_code == 200
    assert_refused(
        post(client_with_key, padded(601)),
        400,
        {"base": "Body is larger than the maximum of 600 bytes"},
    )


# --- JSON nesting depth ---------------------------------------------------------------------------


def nested_extra(levels: int) -> Any:
    """A value nesting ``levels`` arrays and objects, alternately."""
    value: Any = 1
    for level in range(levels):
        value = [value] if level % 2 else {"x": value}
    return value


def with_depth(depth: int) -> bytes:
    """A valid request whose deepest nesting is ``depth``: the outer object and ``email`` are
    two levels, an unknown field of the email holds the rest."""
    raw = encode({"email": {**VALID_EMAIL, "extra": nested_extra(depth - 2)}})
    assert json_depth(raw) == depth
    return raw


def test_nesting_at_the_depth_limit_is_accepted(client_with_key, aws):
    limit = settings.GOMAIL.api.max_json_depth

    response = post(client_with_key, with_depth(limit))

    assert response.status_code == 200, response.content


def test_nesting_one_level_deeper_is_a_400(client_with_key, aws):
    limit = settings.GOMAIL.api.max_json_depth

    response = post(client_with_key, with_depth(limit + 1))

    assert_refused(response, 400, {"base": f"JSON nesting is deeper than {limit} levels"})
    assert queued(aws) == []


@pytest.mark.parametrize(
    "text",
    [
        "[" * 50,
        "{" * 50 + "}" * 10,
        '\\"' + "[" * 50,  # an escaped quote does not end the string
        "\\\\" + "[[{{" * 20,  # an escaped backslash does not escape the quote after it
        "]" * 50 + "[" * 50,
    ],
)
def test_brackets_inside_strings_do_not_count(client_with_key, aws, text):
    limit = settings.GOMAIL.api.max_json_depth
    # The depth just at the limit, and a string full of brackets in several fields.
    email = {**VALID_EMAIL, "body": text, "subject": text, "extra": nested_extra(limit - 2)}
    raw = encode({"email": email, text: [text]})
    assert json_depth(raw) == limit

    response = post(client_with_key, raw)

    assert response.status_code == 200, response.content
    [message] = queued(aws)
    assert message["email"]["body"] == text


def test_brackets_after_a_string_ending_in_a_backslash_do_count(client_with_key, aws):
    limit = settings.GOMAIL.api.max_json_depth
    # "\\" is a whole string (an escaped backslash): the brackets after it are structure.
    raw = b'{"email": {"body": "\\\\", "x": ' + b"[" * limit + b"]" * limit + b"}}"
    assert json.loads(raw)  # valid JSON

    response = post(client_with_key, raw)

    assert_refused(response, 400, {"base": f"JSON nesting is deeper than {limit} levels"})


def test_the_depth_limit_follows_the_configuration(client_with_key, aws, gomail_config):
    gomail_config(api={"max_json_depth": 3})

    assert post(client_with_key, with_depth(3)).status_code == 200
    assert_refused(
        post(client_with_key, with_depth(4)),
        400,
        {"base": "JSON nesting is deeper than 3 levels"},
    )


def test_deep_nesting_is_refused_whatever_the_content_type(client_with_key, aws):
    limit = settings.GOMAIL.api.max_json_depth
    raw = b"[" * (limit + 1) + b"]" * (limit + 1)

    for content_type in ["application/json", "text/plain", "application/x-www-form-urlencoded"]:
        response = post(client_with_key, raw, content_type)

        assert_refused(response, 400, {"base": f"JSON nesting is deeper than {limit} levels"})


def test_a_deep_but_malformed_body_is_refused_for_its_depth(client_with_key, aws):
    # The scan runs before the JSON is parsed (nothing is built from a too deep body).
    limit = settings.GOMAIL.api.max_json_depth

    response = post(client_with_key, b"[" * (limit + 1))

    assert_refused(response, 400, {"base": f"JSON nesting is deeper than {limit} levels"})


# --- field lengths -------------------------------------------------------------------------------

LONG_ADDRESS = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".org"  # 254


@pytest.mark.parametrize(
    ("field", "limit", "message"),
    [
        ("fromName", 256, "From name must be at most 256 characters"),
        ("toName", 256, "To name must be at most 256 characters"),
        ("subject", 998, "Subject must be at most 998 characters"),
    ],
)
def test_text_fields_at_their_limit_and_one_over(client_with_key, aws, field, limit, message):
    # Multi-byte characters: the limits count characters, the body size counts bytes.
    at_limit = "\u00e9" * limit
    accepted = post(client_with_key, encode({"email": {**VALID_EMAIL, field: at_limit}}))

    refused = post(client_with_key, encode({"email": {**VALID_EMAIL, field: at_limit + "x"}}))

    assert accepted.status_code == 200, accepted.content
    assert_refused(refused, 422, {field: message})
    [message_queued] = queued(aws)
    assert message_queued["email"][field] == at_limit


def test_an_address_of_254_characters_is_accepted_and_255_is_not(client_with_key, aws):
    # email-validator's limit (RFC 5321's path limit) is stricter than the field's own 320.
    assert len(LONG_ADDRESS) == 254
    accepted = post(client_with_key, encode({"email": {**VALID_EMAIL, "toEmail": LONG_ADDRESS}}))

    refused = post(
        client_with_key, encode({"email": {**VALID_EMAIL, "toEmail": "a" + LONG_ADDRESS}})
    )

    assert accepted.status_code == 200, accepted.content
    assert_refused(refused, 422, {"toEmail": "To email is not a valid email"})


@pytest.mark.parametrize("length", [320, 321, 2_000])
@pytest.mark.parametrize("field", ["fromEmail", "toEmail"])
def test_addresses_at_and_over_320_characters_are_a_422(client_with_key, aws, field, length):
    address = "a" * (length - len("@example.com")) + "@example.com"

    response = post(client_with_key, encode({"email": {**VALID_EMAIL, field: address}}))

    assert response.status_code == 422
    assert list(response.json()["errors"]) == [field]


def test_the_body_is_bounded_by_the_body_size_alone(client_with_key, aws):
    limit = settings.GOMAIL.api.max_body_size_bytes
    raw = padded(limit)
    body = json.loads(raw)["email"]["body"]

    response = post(client_with_key, raw)

    assert response.status_code == 200
    assert len(body.encode()) > limit - 200


# --- large in other ways, within the size limit ---------------------------------------------------


def test_many_unknown_keys_are_ignored(client_with_key, aws, gomail_config):
    gomail_config(api={"max_body_size_bytes": 250_000})
    extra = {f"k{number}": number for number in range(7_000)}
    raw = encode({"email": {**VALID_EMAIL, **extra}, **extra})
    assert 200_000 < len(raw) < 250_000

    started = time.monotonic()
    response = post(client_with_key, raw)
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < 2, elapsed
    [message] = queued(aws)
    assert message["email"] == VALID_EMAIL


def test_many_unknown_keys_within_the_originals_limit(client_with_key, aws, gomail_config):
    limit = 131_072  # the original's max_body_size_bytes
    gomail_config(api={"max_body_size_bytes": limit})
    extra: dict[str, int] = {}
    size = len(encode({"email": VALID_EMAIL}))
    while size < limit - 20:
        key = f"k{len(extra)}"
        extra[key] = 0
        size += len(key) + 7  # , "kN": 0
    raw = encode({"email": {**VALID_EMAIL, **extra}})
    assert limit - 40 < len(raw) <= limit
    response = post(client_with_key, raw)

    assert response.status_code == 200
    assert queued(aws)[0]["email"] == VALID_EMAIL


def test_one_huge_string_in_an_unknown_key_costs_nothing_special(
    client_with_key, aws, gomail_config
):
    gomail_config(api={"max_body_size_bytes": 200_000})
    raw = encode({"email": {**VALID_EMAIL, "junk": '[{"\\' * 25_000}})
    assert 150_000 < len(raw) < 200_000

    started = time.monotonic()
    response = post(client_with_key, raw)
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < 2, elapsed


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 250_000,
        b"[]" * 125_000,
        b'"\\' * 125_000,  # an unterminated string of escapes: once quadratic to scan
        b'"' * 250_000,
        b'"\\"[[[",' * 30_000,
        b"\\" * 250_000,
    ],
    ids=["open", "flat", "unterminated-escapes", "quotes", "strings", "backslashes"],
)
def test_the_depth_scan_is_linear_on_adversarial_bodies(raw):
    # The largest body the configuration allows is under 256 KiB.
    started = time.monotonic()
    json_depth(raw)

    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": {"body": ' + b"1" * 5_000 + b"}}",  # more digits than Python converts
        b'{"email": {"body": 1e999999}}',
        b'{"email": {"body": -0.0e-99999}}',
        b'{"email": {"body": "\\ud800\\udc00\\ud800"}}',
        b'{"email": {"body": "\\u0000"}}',
        b'{"email": {"body": "x", "body": 5}}',
        b'\xef\xbb\xbf{"email": {}}',
    ],
    ids=["big-integer", "huge-exponent", "tiny-exponent", "surrogates", "nul", "dup-key", "bom"],
)
def test_odd_json_is_a_4xx_in_the_error_shape(client_with_key, aws, gomail_config, raw):
    gomail_config(api={"max_body_size_bytes": 200_000})

    response = post(client_with_key, raw)

    assert 400 <= response.status_code < 500, response.content
    body = response.json()
    assert set(body) == {"errors"} and body["errors"]
    assert queued(aws) == []
