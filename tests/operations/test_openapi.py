"""The OpenAPI schema: valid, served with an offline Swagger UI, and true. Every documented
(path, method, status) is produced by a real request below, and every status those requests
get is documented, with a body that matches the documented schema (the error shape included).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec
from rest_framework.test import APIClient

from emails import idempotency
from emails.models import ApiKey, Email, IdempotencyKey
from gomail_site import aws as site_aws

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

GOOD_EMAIL = {"email": {"fromEmail": "a@example.com", "toEmail": "b@example.org", "body": "hi"}}
PASSWORD = "correct horse battery staple"


def served_schema() -> dict[str, Any]:
    response = Client().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def test_schema_passes_drf_spectacular_validation(tmp_path):
    target = tmp_path / "schema.yaml"

    # Raises (a failing test) on any warning or error, validation against the OAS 3 schema included.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    assert target.stat().st_size > 0


def test_served_schema_is_a_valid_openapi_document(db):
    schema = served_schema()

    validate_spec(schema)
    assert schema["info"]["title"] == "Gomail API"
    assert "/email/send" in schema["paths"]


def test_swagger_ui_is_served_offline(db, settings):
    # Serve the sidecar's files from the app directories, as collectstatic would.
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()

    response = client.get("/api/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    external = re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", page)
    assert external == [], external
    assert not re.search(r"cdn\.jsdelivr|unpkg\.com|cdnjs|googleapis", page)
    assets = re.findall(r"""(?:src|href)\s*=\s*["'](/[^"']+)""", page)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


# --- every documented status, from a real request -------------------------------------------


@dataclass
class Context:
    """What the requests need: a key and its emails, users, the configuration switch."""

    raw_key: str
    api_key: ApiKey
    user: Any
    gomail_config: Callable[..., None]

    def keyed(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.raw_key}")
        return client

    def signed_in(self, *, csrf: bool) -> tuple[Client, dict[str, str]]:
        """A browser session; with ``csrf``, the CSRF header to send along."""
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.user)
        return client, (self._csrf_header(client) if csrf else {})

    def anonymous_browser(self) -> tuple[Client, dict[str, str]]:
        client = Client(enforce_csrf_checks=True)
        return client, self._csrf_header(client)

    @staticmethod
    def _csrf_header(client: Client) -> dict[str, str]:
        client.get("/session")  # sets the CSRF cookie
        return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}

    def email(self, **fields: Any) -> Email:
        return Email.objects.create(
            from_email="a@example.com", to_email="b@example.org", api_key=self.api_key, **fields
        )


@dataclass(frozen=True)
class Call:
    path: str  # the schema's path template
    method: str
    status: int
    what: str
    make: Callable[[Context], Any]

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.path} {self.status} {self.what}"


def _send_raw(ctx: Context, body: bytes | str) -> Any:
    return ctx.keyed().generic("POST", "/email/send", body, content_type="application/json")


def _send_with_sqs_down(ctx: Context) -> Any:
    ctx.gomail_config(aws={"endpoint_url": "http://127.0.0.1:9", "client_timeout_seconds": 0.5})
    site_aws._queue_urls.clear()
    try:
        return ctx.keyed().post("/email/send", GOOD_EMAIL, format="json")
    finally:
        site_aws._queue_urls.clear()


def _send_while_in_progress(ctx: Context) -> Any:
    """The same Idempotency-Key as a request still being accepted (its row just written)."""
    IdempotencyKey.objects.create(
        owner=idempotency.owner_of(ctx.api_key, None),
        key="in-progress",
        fingerprint=idempotency.fingerprint(GOOD_EMAIL),
        email_id=uuid.uuid4(),
    )
    return ctx.keyed().post(SEND, GOOD_EMAIL, format="json", HTTP_IDEMPOTENCY_KEY="in-progress")


def _revoked(ctx: Context) -> APIClient:
    api_key, raw = ApiKey.create_key("revoked")
    api_key.revoked_at = api_key.created_at
    api_key.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _someone_elses_email() -> Email:
    other, _ = ApiKey.create_key("another client")
    return Email.objects.create(from_email="a@example.com", to_email="c@example.org", api_key=other)


def _session_post(ctx: Context, payload: Any, *, csrf: bool = True) -> Any:
    client, header = ctx.anonymous_browser() if csrf else (Client(enforce_csrf_checks=True), {})
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post("/session", body, content_type="application/json", **header)


def _locked_out_sign_in(ctx: Context) -> Any:
    # An address and username of its own, locked after one failure.
    ctx.gomail_config(security={"admin_login_attempts": 1})
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR="192.0.2.129")
    header = ctx._csrf_header(client)
    for _ in range(2):
        response = client.post(
            "/session",
            json.dumps({"username": "locked-out", "password": "nope"}),
            content_type="application/json",
            **header,
        )
    return response


def _signed_in_post(ctx: Context, *, csrf: bool) -> Any:
    client, header = ctx.signed_in(csrf=csrf)
    return client.post("/email/send", GOOD_EMAIL, content_type="application/json", **header)


def _sign_out(ctx: Context, *, signed_in: bool, csrf: bool) -> Any:
    if signed_in:
        client, header = ctx.signed_in(csrf=csrf)
    else:
        client, header = ctx.anonymous_browser()
    return client.delete("/session", **header)


def _over_the_rate_limit(ctx: Context, make: Callable[[APIClient], Any]) -> Any:
    """The second request of a key allowed one a minute: a 429."""
    ctx.gomail_config(api={"rate_limit_per_key": "1/min"})
    client = ctx.keyed()
    make(client)
    return make(client)


SEND, STATUS, RECENT, LIMITS, PROVIDERS, SESSION = (
    "/email/send",
    "/email/{message_id}",
    "/email/recent",
    "/email/limits",
    "/providers",
    "/session",
)

CALLS = [
    # POST /email/send
    Call(SEND, "post", 200, "accepted", lambda c: c.keyed().post(SEND, GOOD_EMAIL, format="json")),
    Call(SEND, "post", 200, "signed in with CSRF", lambda c: _signed_in_post(c, csrf=True)),
    Call(SEND, "post", 400, "malformed JSON", lambda c: _send_raw(c, b'{"email": ')),
    Call(SEND, "post", 400, "wrong shape", lambda c: _send_raw(c, b'["email"]')),
    Call(SEND, "post", 400, "too large", lambda c: _send_raw(c, "x" * 5000)),
    Call(
        SEND,
        "post",
        400,
        "characters SQS refuses",
        lambda c: c.keyed().post(
            SEND, {"email": {**GOOD_EMAIL["email"], "body": "a\x00b"}}, format="json"
        ),
    ),
    Call(
        SEND,
        "post",
        401,
        "no credentials",
        lambda c: APIClient().post(SEND, GOOD_EMAIL, format="json"),
    ),
    Call(
        SEND,
        "post",
        401,
        "revoked key",
        lambda c: _revoked(c).post(SEND, GOOD_EMAIL, format="json"),
    ),
    Call(SEND, "post", 403, "session without CSRF", lambda c: _signed_in_post(c, csrf=False)),
    Call(SEND, "post", 409, "Idempotency-Key in progress", _send_while_in_progress),
    Call(
        SEND,
        "post",
        422,
        "invalid fields",
        lambda c: c.keyed().post(
            SEND, {"email": {"fromEmail": "not an address", "body": "x"}}, format="json"
        ),
    ),
    Call(
        SEND,
        "post",
        429,
        "over the rate limit",
        lambda c: _over_the_rate_limit(c, lambda k: k.post(SEND, GOOD_EMAIL, format="json")),
    ),
    Call(SEND, "post", 503, "SQS down", _send_with_sqs_down),
    # GET /email/{message_id}
    Call(STATUS, "get", 200, "queued", lambda c: c.keyed().get(f"/email/{c.email().id}")),
    Call(
        STATUS,
        "get",
        200,
        "sent",
        lambda c: c.keyed().get(
            f"/email/{c.email(status='sent', provider='ses', sent_at=c.api_key.created_at).id}"
        ),
    ),
    Call(STATUS, "get", 401, "no credentials", lambda c: APIClient().get(f"/email/{uuid.uuid4()}")),
    Call(STATUS, "get", 404, "unknown id", lambda c: c.keyed().get(f"/email/{uuid.uuid4()}")),
    Call(STATUS, "get", 404, "not a uuid", lambda c: c.keyed().get("/email/not-a-uuid")),
    Call(
        STATUS,
        "get",
        404,
        "another key's email",
        lambda c: c.keyed().get(f"/email/{_someone_elses_email().id}"),
    ),
    Call(
        STATUS,
        "get",
        429,
        "over the rate limit",
        lambda c: _over_the_rate_limit(c, lambda k: k.get(f"/email/{uuid.uuid4()}")),
    ),
    # GET /email/recent
    Call(RECENT, "get", 200, "list", lambda c: (c.email(), c.keyed().get(RECENT))[1]),
    Call(RECENT, "get", 200, "by status", lambda c: c.keyed().get(RECENT, {"status": "queued"})),
    Call(RECENT, "get", 400, "unknown status", lambda c: c.keyed().get(RECENT, {"status": "x"})),
    Call(RECENT, "get", 400, "bad limit", lambda c: c.keyed().get(RECENT, {"limit": "0"})),
    Call(RECENT, "get", 400, "limit not a number", lambda c: c.keyed().get(RECENT, {"limit": "a"})),
    Call(RECENT, "get", 401, "no credentials", lambda c: APIClient().get(RECENT)),
    Call(
        RECENT,
        "get",
        429,
        "over the rate limit",
        lambda c: _over_the_rate_limit(c, lambda k: k.get(RECENT)),
    ),
    # GET /email/limits
    Call(LIMITS, "get", 200, "with a key", lambda c: c.keyed().get(LIMITS)),
    Call(LIMITS, "get", 401, "no credentials", lambda c: APIClient().get(LIMITS)),
    Call(
        LIMITS,
        "get",
        429,
        "over the rate limit",
        lambda c: _over_the_rate_limit(c, lambda k: k.get(LIMITS)),
    ),
    # GET /providers
    Call(PROVIDERS, "get", 200, "with a key", lambda c: c.keyed().get(PROVIDERS)),
    Call(PROVIDERS, "get", 200, "signed in", lambda c: c.signed_in(csrf=False)[0].get(PROVIDERS)),
    Call(PROVIDERS, "get", 401, "no credentials", lambda c: APIClient().get(PROVIDERS)),
    # /session
    Call(SESSION, "get", 200, "signed in", lambda c: c.signed_in(csrf=False)[0].get(SESSION)),
    Call(SESSION, "get", 401, "anonymous", lambda c: Client().get(SESSION)),
    Call(
        SESSION,
        "post",
        200,
        "sign in",
        lambda c: _session_post(c, {"username": "reader", "password": PASSWORD}),
    ),
    Call(
        SESSION,
        "post",
        401,
        "wrong password",
        lambda c: _session_post(c, {"username": "reader", "password": "nope"}),
    ),
    Call(
        SESSION,
        "post",
        403,
        "no CSRF token",
        lambda c: _session_post(c, {"username": "reader", "password": PASSWORD}, csrf=False),
    ),
    Call(SESSION, "post", 422, "missing fields", lambda c: _session_post(c, {"username": ""})),
    Call(SESSION, "post", 400, "malformed JSON", lambda c: _session_post(c, '{"username": ')),
    Call(SESSION, "post", 429, "locked out", _locked_out_sign_in),
    Call(
        SESSION,
        "delete",
        204,
        "sign out",
        lambda c: _sign_out(c, signed_in=True, csrf=True),
    ),
    Call(SESSION, "delete", 204, "anonymous", lambda c: _sign_out(c, signed_in=False, csrf=True)),
    # GET /session/csrf
    Call("/session/csrf", "get", 200, "anyone", lambda c: Client().get("/session/csrf")),
    Call(
        SESSION,
        "delete",
        403,
        "signed in, no CSRF",
        lambda c: _sign_out(c, signed_in=True, csrf=False),
    ),
]


@pytest.fixture
def ctx(aws, gomail_config, api_key) -> Context:
    user = get_user_model().objects.create_user(username="reader", password=PASSWORD)
    record, raw = api_key
    return Context(raw_key=raw, api_key=record, user=user, gomail_config=gomail_config)


def _resolve(node: Any, schema: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` replaced by what it points at (the schema has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = schema
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target, schema)
        return {key: _resolve(value, schema) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, schema) for item in node]
    return node


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock():
        return served_schema()


def documented(schema: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {
        (path, method, int(status))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }


def test_every_documented_status_has_a_real_request(schema):
    declared = {(call.path, call.method, call.status) for call in CALLS}

    assert documented(schema) - declared == set(), "documented but never produced"


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.id)
def test_request_gets_a_documented_answer(schema, ctx: Context, call: Call):
    response = call.make(ctx)

    assert response.status_code == call.status, response.content[:300]
    operation = schema["paths"].get(call.path, {}).get(call.method)
    assert operation is not None, f"{call.method.upper()} {call.path} is not documented"
    documented_response = operation["responses"].get(str(response.status_code))
    assert documented_response is not None, (
        f"{call.method.upper()} {call.path} answered {response.status_code}, which is not "
        f"documented (documented: {sorted(operation['responses'])})"
    )
    content = documented_response.get("content")
    if not content:
        assert response.content == b""
        return
    assert response["Content-Type"].split(";")[0] in content
    body = json.loads(response.content)
    body_schema = _resolve(content["application/json"]["schema"], schema)
    OAS30ReadValidator(body_schema, format_checker=oas30_format_checker).validate(body)
    if response.status_code >= 400:
        # The API's one error shape: {"errors": {"base" or a field: "sentence"}}.
        assert set(body) == {"errors"}
        assert body["errors"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in body["errors"].items())
