"""Fixtures of the delivery pipeline's tests on the real parts: the SendGrid stand-in (one per
session, reset for each test), both providers built on it and on the test moto server, and an
empty cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from devtools.sendgrid_stub import SendGridStub, start_sendgrid_stub
from dispatch.providers import Provider, SendGridProvider, SesProvider
from gomail_site.aws import aws_client

STUB_API_KEY = "SG.pipeline-tests-key"


@pytest.fixture(scope="session")
def _sendgrid_stub_server() -> Iterator[SendGridStub]:
    with start_sendgrid_stub(host="127.0.0.1", port=0, api_key=STUB_API_KEY) as server:
        yield server


@pytest.fixture
def sendgrid_stub(_sendgrid_stub_server: SendGridStub) -> SendGridStub:
    """The stand-in with no messages, counters or injected faults."""
    _sendgrid_stub_server.reset()
    return _sendgrid_stub_server


@pytest.fixture
def providers(sendgrid_stub: SendGridStub, aws: Any) -> dict[str, Provider]:
    """Both providers, as ``dispatch.sending.build_providers`` builds them (configuration
    order: ses, then sendgrid), SendGrid pointed at the stand-in."""
    return {
        "ses": SesProvider(aws_client("ses", attempts=1)),
        "sendgrid": SendGridProvider(
            api_key=STUB_API_KEY, host=sendgrid_stub.url, timeout_seconds=2
        ),
    }


@pytest.fixture
def clean_cache(db: None) -> None:
    cache.clear()
