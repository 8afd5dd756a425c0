"""What the fuzz tests of ``POST /email/send`` share: their Hypothesis settings, the request,
and the checks of an answer against the contract (the error shape; what a refusal must leave
behind: nothing queued, nothing in the payloads bucket)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings as django_settings
from django.test import Client
from hypothesis import HealthCheck, settings

from dispatch.queues import QueueSetup
from gomail_site.aws import aws_client

# Bounded and derandomized: the same examples every run, no example database.
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def post(client: Client, body: bytes, content_type: str, **extra: Any) -> Any:
    return client.generic("POST", "/email/send", body, content_type=content_type, **extra)


def assert_error_shape(response: Any) -> None:
    """The API's one error shape: ``{"errors": {"<place>": "<sentence>", ...}}``, as JSON."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert type(body) is dict and set(body) == {"errors"}, body
    errors = body["errors"]
    assert type(errors) is dict and errors, body
    assert all(type(key) is str and type(value) is str and value for key, value in errors.items())


def queued_message(setup: QueueSetup, message_id: str) -> dict[str, Any] | None:
    """The SQS body of ``message_id``, deleting whatever was received on the way."""
    sqs = aws_client("sqs")
    for url in setup.incoming_urls.values():
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            found = None
            for message in messages:
                body = json.loads(message["Body"])
                if body.get("id") == message_id:
                    found = body
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if found is not None:
                return found
    return None


def queued_bodies(setup: QueueSetup) -> list[str]:
    """Every message waiting on the incoming queues (received, so gone for a while)."""
    sqs = aws_client("sqs")
    return [
        message["Body"]
        for url in setup.incoming_urls.values()
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    ]


def payload_keys() -> list[str]:
    """The keys of every object in the payloads bucket (the claim checks)."""
    answer = aws_client("s3").list_objects_v2(Bucket=django_settings.GOMAIL.payloads.bucket)
    return [item["Key"] for item in answer.get("Contents", [])]


def payload_document(key: str) -> dict[str, Any]:
    """The SQS body a claim check's object holds, as JSON."""
    bucket = django_settings.GOMAIL.payloads.bucket
    return json.loads(aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def delete_payload(key: str) -> None:
    aws_client("s3").delete_object(Bucket=django_settings.GOMAIL.payloads.bucket, Key=key)
