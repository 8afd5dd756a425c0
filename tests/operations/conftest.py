"""Fixtures of the operations tests: admin users and a clean health cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client


@pytest.fixture
def staff_user(db: None) -> Any:
    return get_user_model().objects.create_user(
        username="operator", password="not-used", is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff_client(staff_user: Any) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def plain_user(db: None) -> Any:
    return get_user_model().objects.create_user(username="customer", password="not-used")
