"""Fixtures of the security tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def generous_limits(gomail_config: Any) -> None:
    # The fuzz runs are a few hundred requests a minute: keep the rate limits out of their way.
    gomail_config(api={"rate_limit_per_key": "100000/min", "rate_limit_per_user": "100000/min"})
