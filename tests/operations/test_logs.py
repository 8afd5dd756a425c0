"""Structured logs: with ``logging.format: json`` every line is a JSON object, the lines about
an email carry its ``message_id``, and neither API keys nor email bodies are ever logged."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from dispatch.providers.ses import SesProvider
from dispatch.sending import send_batch
from emails.models import Email
from gomail_site.aws import aws_client
from gomail_site.config import LoggingConfig
from gomail_site.logs import logging_config
from tests.dispatch.realparts import put, receive_exactly, wire_email

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

BODY = "zebra-quartz-7f3a91 the body nobody may log"
REJECTED_BODY = "walrus-umber-22c8e0 nor this one"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above, through the formatter ``logging.format: json``
    configures (the one ``settings.LOGGING`` builds), one line per record."""
    formatter_config = dict(
        logging_config(LoggingConfig(format="json"))["formatters"]["structured"]
    )
    formatter = formatter_config.pop("()")(**formatter_config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text, "nothing was logged"
    parsed = []
    for line in text.splitlines():
        record = json.loads(line)  # every line is one JSON object
        assert {"event", "level", "timestamp", "logger"} <= set(record), record
        parsed.append(record)
    return parsed


# transaction=True: send_batch delivers in threads, each with its own database connection.
@pytest.mark.django_db(transaction=True)
def test_full_send_logs_json_with_message_id_and_no_secrets(aws, json_log, api_key):
    _, raw_key = api_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    response = client.post(
        "/email/send",
        {
            "email": {
                "fromEmail": "sender@example.com",
                "toEmail": "reader@example.org",
                "subject": "Logged subject",
                "body": BODY,
            }
        },
        format="json",
    )
    assert response.status_code == 200
    message_id = response.json()["messageId"]
    queue = Email.objects.get(id=message_id).queue
    # A second email SES rejects (unverified sender): dead-lettered, with its reason logged.
    rejected = wire_email(from_email="x@unverified.invalid", body=REJECTED_BODY)
    put(rejected.encode(), queue)

    outcome = send_batch(
        "ses",
        uuid.uuid4().hex,
        receive_exactly(2, queue),
        providers={"ses": SesProvider(aws_client("ses", attempts=1))},
    )
    assert (outcome.sent, outcome.permanent) == (1, 1)

    records = lines(json_log)
    text = json_log.getvalue()
    about_it = [r for r in records if r.get("message_id") == message_id]
    assert about_it, "no line carries the accepted email's message_id"
    assert any("accepted" in r["event"] for r in about_it)
    assert all(r["level"] in {"debug", "info", "warning", "error", "critical"} for r in records)
    assert any(r["event"].startswith("batch ") for r in records)
    assert any(rejected.id in r["event"] and "dead-lettered" in r["event"] for r in records)
    # Nothing secret: neither the key (nor its secret part), nor a body.
    assert raw_key not in text
    assert raw_key.split("_", 2)[2] not in text
    assert BODY not in text
    assert "zebra-quartz" not in text
    assert "walrus-umber" not in text


def test_rejected_and_unauthenticated_requests_log_no_key(db, json_log):
    wrong_key = "gm_0123456789ab_" + "S" * 43
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {wrong_key}")

    response = client.post("/email/send", {"email": {"body": BODY}}, format="json")

    assert response.status_code == 401
    text = json_log.getvalue()
    assert wrong_key not in text
    assert "S" * 43 not in text
    assert BODY not in text


def test_a_process_configured_for_json_writes_json_lines():
    """The configuration switch itself: a process started with ``logging.format: json``
    (here from the environment) writes one JSON object per line, with the bound message id."""
    script = (
        "import django, logging\n"
        "django.setup()\n"
        "from gomail_site.logs import bound_message\n"
        "with bound_message('abc-123'):\n"
        "    logging.getLogger('gomail.check').warning('hello %s', 'world')\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "GOMAIL_LOGGING__FORMAT": "json",
    }

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(settings.BASE_DIR),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    [line] = [line for line in done.stderr.splitlines() if "hello" in line]
    record = json.loads(line)
    assert record["event"] == "hello world"
    assert record["message_id"] == "abc-123"
    assert record["level"] == "warning"
    assert record["logger"] == "gomail.check"


# transaction=True: send_batch delivers in threads, each with its own database connection.
@pytest.mark.django_db(transaction=True)
def test_worker_lines_about_an_email_carry_its_message_id(aws, json_log):
    sent = wire_email()
    rejected = wire_email(from_email="x@unverified.invalid")
    put(sent.encode())
    put(rejected.encode())

    send_batch(
        "ses",
        uuid.uuid4().hex,
        receive_exactly(2),
        providers={"ses": SesProvider(aws_client("ses", attempts=1))},
    )

    records = lines(json_log)
    assert any(r.get("message_id") == sent.id for r in records)
    dead_lettered = [r for r in records if "dead-lettered" in r["event"]]
    assert dead_lettered
    assert all(r.get("message_id") == rejected.id for r in dead_lettered)
