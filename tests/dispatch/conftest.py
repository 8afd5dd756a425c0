"""Fixtures of the delivery pipeline's tests on the real parts: both providers built on the
SendGrid stand-in (``tests.harness.fixtures``, reset for each test) and on the test moto
server."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.sendgrid_stub import SendGridStub
from dispatch.providers import Provider
from dispatch.providers.sendgrid import SendGridProvider
from dispatch.providers.ses import SesProvider
from gomail_site.aws import aws_client
from tests.harness.fixtures import STUB_API_KEY


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
