"""Property-based fuzzing of ``POST /email/send`` through Django's test client and a real moto.

Whatever the payload, content type or credentials: never a 5xx; every refusal is exactly the
documented error shape; every 200 names a message that really is in SQS, holding exactly the
fields that were sent. Runs are bounded and derandomized (the same examples every run).
"""

from __future__ import annotations

import json
import string
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from dispatch.queues import QueueSetup
from emails.serializers import SendEmailSerializer
from emails.wire import WIRE_FIELDS
from tests.security.fuzzing import FUZZ, assert_error_shape, post, queued_message

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

# --- payloads ---------------------------------------------------------------------------------

# Every character, lone surrogates and other non-characters included.
ANY_CHARACTER = st.characters(codec=None, exclude_categories=())
NASTY_CHARACTERS = st.sampled_from(
    [
        *'\x00\x01\x08\x0b\x0c\x1b\x7f\x85\r\n\t"\\[]{}',
        *"\u2028\u2029\ufeff\ufffe\uffff\ud800\udfff\U0001f600\u202e\u0301",
    ]
)
NASTY_TEXT = st.text(NASTY_CHARACTERS | ANY_CHARACTER, max_size=40)
# Long strings are cheap to make by repetition; the body limit of the tests is 4 KiB.
HUGE_TEXT = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(["x", "€", "\U0001f600", "\r\n", "[", '"', "\\", "\x00", "a@b.c "]),
    st.integers(0, 6_000),
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

SENDERS = st.sampled_from(
    ["sender@example.com", "a.b+tag@example.com", "x@example.com", "Sender@example.com"]
)
RECIPIENTS = st.sampled_from(
    [
        "recipient@example.org",
        "b@example.org",
        "user+tag@sub.example.co.uk",
        "x@b\u00fccher.de",
        "\u00e9l\u00e8ve@\u00e9cole.fr",
        "a@example.museum",
        "UPPER@EXAMPLE.ORG",
    ]
)
# Header fields: no line breaks, nothing SQS refuses.
HEADER_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=60
)
BODY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
VALID_FIELDS = {
    "fromEmail": SENDERS,
    "fromName": HEADER_TEXT,
    "toEmail": RECIPIENTS,
    "toName": HEADER_TEXT,
    "subject": HEADER_TEXT,
    "body": BODY_TEXT.filter(lambda text: text.strip()),
}
NOISE = (
    NASTY_TEXT
    | HUGE_TEXT
    | JSON_VALUES
    | st.sampled_from(["", " ", "not an address", "a@", "@b.org", "a@b", "a" * 65 + "@b.org"])
)
# Names chosen to look like something; "csrfmiddlewaretoken" is left out on purpose (see
# test_a_csrf_token_field_that_is_not_a_string_is_not_a_500), and so are the real emails'
# fields, which test_fuzz_real_emails.py fuzzes.
KNOWN_KEYS = frozenset(SendEmailSerializer().fields) | {"email"}
UNKNOWN_KEYS = st.text(string.ascii_letters, min_size=1, max_size=10).filter(
    lambda key: key not in KNOWN_KEYS
) | st.sampled_from(["__proto__", "constructor", "id", "acceptedAt", "", "\u0000", "\ud800"])


@st.composite
def email_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid email, then up to two of its fields removed or replaced by noise, plus extras."""
    email = {key: draw(strategy) for key, strategy in VALID_FIELDS.items()}
    for key in draw(st.sets(st.sampled_from(list(WIRE_FIELDS)), max_size=2)):
        if draw(st.booleans()):
            del email[key]
        else:
            email[key] = draw(NOISE)
    email.update(draw(st.dictionaries(UNKNOWN_KEYS, JSON_VALUES, max_size=3)))
    return email


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A request body: mostly ``{"email": {...}}``, encoded every way a client might."""
    document: Any = draw(
        st.one_of(
            email_objects().map(lambda email: {"email": email}),
            st.builds(
                lambda email, extra: {**extra, "email": email},
                email_objects(),
                st.dictionaries(UNKNOWN_KEYS, JSON_VALUES, max_size=3),
            ),
            JSON_VALUES,
            st.fixed_dictionaries({"email": JSON_VALUES}),
        )
    )
    text = json.dumps(
        document, ensure_ascii=draw(st.booleans()), indent=draw(st.none() | st.just(1))
    )
    # Lone surrogates cannot be UTF-8: such a body is not UTF-8 (or is escaped, when ASCII).
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mangled_bodies(draw: st.DrawFn) -> bytes:
    """A well-formed body cut, spliced or with bytes changed: mostly malformed JSON."""
    raw = bytearray(draw(json_bodies()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["cut", "insert", "replace"]))
        if action == "cut":
            del raw[at:]
        else:
            junk = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b'"', b"\\", b"["]))
            raw[at : at + (len(junk) if action == "replace" else 0)] = junk
    return bytes(raw)


BODIES = st.one_of(json_bodies(), json_bodies(), mangled_bodies(), st.binary(max_size=64))
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/xml",
        "application/octet-stream",
        "",
        "*/*",
        "application/json; boundary",
        "\u00e9/\u00e9",
    ]
)

# --- checking one answer ----------------------------------------------------------------------


def check_answer(response: Any, setup: QueueSetup, sent: bytes) -> int:
    """Check one answer against the contract; returns its status."""
    assert response.status_code < 500, (response.status_code, response.content[:300], sent[:300])
    if response.status_code != 200:
        assert response.status_code in {400, 401, 403, 422, 429}, response.status_code
        assert_error_shape(response)
        return response.status_code
    answer = json.loads(response.content)
    assert set(answer) == {"messageId"}
    queued = queued_message(setup, answer["messageId"])
    assert queued is not None, f"200 for {answer['messageId']}, which is not in SQS"
    # What is queued is exactly the wire fields that were sent (absent ones empty).
    email = json.loads(sent)["email"]
    assert queued["email"] == {key: email.get(key, "") for key in WIRE_FIELDS}
    return 200


# --- the tests ----------------------------------------------------------------------------------


def test_any_json_payload_with_an_api_key(client_with_key: APIClient, aws, generous_limits):
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(body=json_bodies())
    def run(body: bytes) -> None:
        statuses[check_answer(post(client_with_key, body, "application/json"), aws, body)] += 1

    run()
    # Not vacuous: the run reached both the queue and the refusals.
    assert statuses[200] >= 10 and statuses[400] >= 5 and statuses[422] >= 10, statuses


def test_any_body_and_content_type_with_an_api_key(
    client_with_key: APIClient, aws, generous_limits
):
    @FUZZ
    @given(body=BODIES, content_type=CONTENT_TYPES)
    def run(body: bytes, content_type: str) -> None:
        check_answer(post(client_with_key, body, content_type), aws, body)

    run()


def signed_in_browser(*, csrf: bool) -> tuple[Client, dict[str, str]]:
    user, _ = get_user_model().objects.get_or_create(username="fuzzer")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/session")
    header = {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value} if csrf else {}
    return client, header


CREDENTIALS = st.sampled_from(["session", "session without CSRF", "none", "wrong key", "key"])


def test_any_body_content_type_and_credentials(client_with_key: APIClient, aws, generous_limits):
    with_csrf, header = signed_in_browser(csrf=True)
    without_csrf, _ = signed_in_browser(csrf=False)
    wrong_key = APIClient()
    wrong_key.credentials(HTTP_AUTHORIZATION="Bearer gm_nope_nope")
    clients = {
        "session": (with_csrf, header),
        "session without CSRF": (without_csrf, {}),
        "none": (APIClient(), {}),
        "wrong key": (wrong_key, {}),
        "key": (client_with_key, {}),
    }

    @FUZZ
    @given(body=BODIES, content_type=CONTENT_TYPES, credentials=CREDENTIALS)
    def run(body: bytes, content_type: str, credentials: str) -> None:
        client, extra = clients[credentials]
        response = post(client, body, content_type, **extra)
        check_answer(response, aws, body)
        if credentials in {"none", "wrong key"}:
            assert response.status_code == 401
        if credentials == "session without CSRF":
            # The token is read from the header only: refused before the body is even read.
            assert response.status_code == 403

    run()


# Found by the fuzzing: Django's CSRF check read csrfmiddlewaretoken from the parsed JSON body.
@pytest.mark.parametrize("token", [5, None, True, 1.5])
def test_a_csrf_token_field_that_is_not_a_string_is_not_a_500(aws, token):
    client, _ = signed_in_browser(csrf=False)
    body = json.dumps({"csrfmiddlewaretoken": token}).encode()

    response = post(client, body, "application/x-www-form-urlencoded")

    assert response.status_code == 403
    assert_error_shape(response)


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"null", b"5", b"[]"])
def test_a_form_body_that_is_json_but_not_an_object_is_refused_not_a_500(aws, body):
    # Found by the fuzzing: DRF handed the parsed body to the CSRF check as request.POST. The
    # token is now read from the header only, so the check refuses before the body is read.
    client, _ = signed_in_browser(csrf=False)

    response = post(client, body, "application/x-www-form-urlencoded")

    assert response.status_code == 403
    assert "CSRF" in response.json()["errors"]["base"]


# WSGI hands header values over as latin-1 text. NUL is left out of the fuzzing: see
# test_an_api_key_with_a_nul_character_is_a_401.
HEADER_VALUES = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=80)


def test_any_authorization_header_is_a_401_in_the_error_shape(aws, api_key, generous_limits):
    _, raw_key = api_key
    body = json.dumps({"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org"}})

    @FUZZ
    @given(
        value=st.one_of(
            HEADER_VALUES,
            HEADER_VALUES.map("Bearer ".__add__),
            HEADER_VALUES.map(f"Bearer {raw_key}".__add__),
            HEADER_VALUES.map(lambda tail: f"Bearer gm_{tail}"),
            st.integers(0, len(raw_key) - 1).map(lambda cut: f"Bearer {raw_key[:cut]}"),
        )
    )
    def run(value: str) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=value)
        response = post(client, body.encode(), "application/json")

        assert response.status_code in {401, 422}, (value, response.content)
        assert_error_shape(response)
        if response.status_code == 422:
            # Only the real key gets past authentication (to the missing body).
            assert value.split() == ["Bearer", raw_key]

    run()


# Found by the fuzzing: PostgreSQL refuses NUL in text, so a malformed prefix never reaches it.
@pytest.mark.parametrize("key", ["gm_\x00_secret", "gm_a\x00b_secret"])
def test_an_api_key_with_a_nul_character_is_a_401(aws, key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    response = client.get("/email/recent")

    assert response.status_code == 401
    assert_error_shape(response)
