"""Schemathesis against the served OpenAPI schema, through the real WSGI application.

Every documented operation gets a bounded, derandomized run of generated requests, valid
(positive) and invalid (negative) against the schema, each sent with one of the ways a client
authenticates: an API key, a signed-in session with its CSRF token, or nothing. The checks:
never a server error, every answer matches the schema documented for its status, and every
error is the API's one shape. The requests go through ``gomail_site.wsgi.application`` (so the
middleware, CSRF included, runs as in production) to the moto server of the suite.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from gomail_site.wsgi import application

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

# Every operation of the schema; test_every_operation_is_fuzzed keeps this list complete.
OPERATIONS = [
    ("POST", "/email/send"),
    ("GET", "/email/{message_id}"),
    ("GET", "/email/recent"),
    ("GET", "/email/limits"),
    ("GET", "/providers"),
    ("GET", "/session"),
    ("POST", "/session"),
    ("DELETE", "/session"),
    ("GET", "/session/csrf"),
]
EXAMPLES_PER_OPERATION = 60
CREDENTIALS = st.sampled_from(["key", "session", "none"])


@pytest.fixture
def served_schema(aws) -> dict[str, Any]:
    response = Client().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.fixture
def api_schema(served_schema: dict[str, Any]) -> Any:
    schema = schemathesis.openapi.from_dict(served_schema)
    schema.app = application  # as from_wsgi does: calls go to the WSGI app in this process
    return schema


def csrf_header_name() -> str:
    # settings.CSRF_HEADER_NAME is a WSGI name: HTTP_X_CSRFTOKEN is the header X-CSRFToken.
    return settings.CSRF_HEADER_NAME.removeprefix("HTTP_").replace("_", "-")


def signed_in_cookies() -> dict[str, str]:
    """The cookies of a freshly signed-in browser session (signing out ends one)."""
    user, _ = get_user_model().objects.get_or_create(username="schemathesis")
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def credentials(kind: str, raw_key: str) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and cookies for ``kind``. Every request carries a valid CSRF pair: a session's
    writes need it, and without a session it changes nothing."""
    token = _get_new_csrf_string()
    headers = {csrf_header_name(): token}
    cookies = {settings.CSRF_COOKIE_NAME: token}
    if kind == "key":
        headers["Authorization"] = f"Bearer {raw_key}"
    elif kind == "session":
        cookies.update(signed_in_cookies())
    return headers, cookies


def assert_error_shape(response: Any) -> None:
    body = response.json()
    assert type(body) is dict and set(body) == {"errors"}, body
    assert type(body["errors"]) is dict and body["errors"], body
    assert all(type(k) is str and type(v) is str and v for k, v in body["errors"].items()), body


def strategy_for(operation: Any) -> Any:
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query or operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


def test_every_operation_is_fuzzed(served_schema):
    documented = {
        (method.upper(), path)
        for path, operations in served_schema["paths"].items()
        for method in operations
    }

    assert documented == set(OPERATIONS)


# transaction=True: the real WSGI handler's close_old_connections() would end a test's atomic.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[" ".join(o) for o in OPERATIONS])
def test_generated_requests_get_documented_answers(
    api_schema, api_key, generous_limits, method, path
):
    operation = api_schema[path][method]
    _, raw_key = api_key

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy_for(operation), kind=CREDENTIALS)
    def run(case: Any, kind: str) -> None:
        headers, cookies = credentials(kind, raw_key)
        response = case.call_and_validate(
            headers=headers,
            cookies=cookies,
            checks=[not_a_server_error, response_schema_conformance],
        )
        if response.status_code >= 400:
            assert_error_shape(response)

    run()
