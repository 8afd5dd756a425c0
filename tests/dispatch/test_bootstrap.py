"""``manage.py bootstrap`` creates the queues and SES identities, idempotently."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from gomail_site.aws import aws_client

pytestmark = pytest.mark.django_db


def queue_state() -> dict[str, dict[str, str]]:
    sqs = aws_client("sqs")
    urls = sqs.list_queues().get("QueueUrls", [])
    return {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for url in urls
    }


def test_bootstrap_twice_gives_the_same_queues_with_redrive(moto_server):
    moto_server.reset()
    sqs_config = settings.GOMAIL.sqs

    call_command("bootstrap")
    first = queue_state()
    call_command("bootstrap")
    second = queue_state()

    assert first.keys() == second.keys()
    names = {url.rsplit("/", 1)[1] for url in second}
    celery = settings.GOMAIL.celery
    assert names == {
        *sqs_config.incoming_queues,
        sqs_config.dead_letter_queue,
        # The pipeline's, then every configured provider's (the tests' disabled SMTP relay's
        # too: what was dispatched to a provider before it was disabled is still consumed).
        *(f"{celery.queue_name_prefix}{name}" for name in ("pipeline", "ses", "sendgrid", "smtp")),
    }
    dead_letter = next(url for url in first if url.endswith(sqs_config.dead_letter_queue))
    dead_letter_arn = first[dead_letter]["QueueArn"]
    for url, attributes in second.items():
        if url == dead_letter:
            assert "RedrivePolicy" not in attributes
            continue
        if url.rsplit("/", 1)[1].startswith(celery.queue_name_prefix):
            assert attributes["VisibilityTimeout"] == str(celery.visibility_timeout_seconds)
            assert "RedrivePolicy" not in attributes
            continue
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dead_letter_arn
        assert int(redrive["maxReceiveCount"]) == sqs_config.max_receive_count
        assert attributes["VisibilityTimeout"] == str(sqs_config.visibility_timeout_seconds)


def test_bootstrap_brings_an_existing_queue_in_line_with_the_config(moto_server, gomail_config):
    moto_server.reset()
    call_command("bootstrap")
    gomail_config(sqs={"visibility_timeout_seconds": 600})

    call_command("bootstrap")

    for attributes in queue_state().values():
        if "RedrivePolicy" in attributes:
            assert attributes["VisibilityTimeout"] == "600"


def test_bootstrap_verifies_the_local_sender_identities(moto_server):
    moto_server.reset()

    call_command("bootstrap")

    identities = aws_client("ses").list_identities()["Identities"]
    assert set(settings.GOMAIL.providers.ses.verify_identities) <= set(identities)


def test_bootstrap_reports_an_unreachable_endpoint(moto_server, gomail_config):
    gomail_config(aws={"endpoint_url": "http://127.0.0.1:9", "client_timeout_seconds": 0.2})

    with pytest.raises(CommandError, match="not reachable"):
        call_command("bootstrap", wait=0.5)
