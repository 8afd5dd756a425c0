"""boto3 clients for every process, built from the configuration.

Nothing here knows whether the endpoint is moto or AWS: only ``aws.endpoint_url`` differs.
Credentials come from the standard AWS environment variables or instance role.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings

from gomail_site.config import AwsConfig

_queue_urls: dict[tuple[str, str], str] = {}
_queue_urls_lock = threading.Lock()


def endpoint_of(aws: AwsConfig) -> str | None:
    return str(aws.endpoint_url).rstrip("/") if aws.endpoint_url else None


@lru_cache(maxsize=16)
def _client(service: str, aws: AwsConfig, attempts: int) -> Any:
    # boto3 clients are thread-safe once built; sessions are not, so each client gets its own.
    config = Config(
        connect_timeout=aws.client_timeout_seconds,
        read_timeout=aws.client_timeout_seconds,
        retries={"total_max_attempts": attempts, "mode": "standard"},
    )
    return boto3.session.Session().client(
        service, region_name=aws.region, endpoint_url=endpoint_of(aws), config=config
    )


def aws_client(service: str, *, attempts: int = 3, region: str | None = None) -> Any:
    """A boto3 client for ``service`` ("sqs", "ses") per the current configuration.

    ``attempts`` bounds botocore's own retries; a call that must not be repeated blindly
    (sending an email: a retry after a read timeout could deliver it twice) passes 1.
    ``region`` overrides ``aws.region`` (an SES instance of another region).
    """
    aws = settings.GOMAIL.aws
    if region and region != aws.region:
        aws = aws.model_copy(update={"region": region})
    return _client(service, aws, attempts)


def queue_url(name: str) -> str:
    """The URL of the SQS queue ``name`` (looked up once per endpoint and cached)."""
    aws = settings.GOMAIL.aws
    key = (endpoint_of(aws) or aws.region, name)
    with _queue_urls_lock:
        cached = _queue_urls.get(key)
    if cached is None:
        cached = aws_client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        with _queue_urls_lock:
            _queue_urls[key] = cached
    return cached
