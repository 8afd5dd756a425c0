"""Email records of a given status and age, written as the API and workers leave them."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from emails.models import Email


def record(status: str, age: timedelta) -> Email:
    """An email record in ``status``, accepted ``age`` ago."""
    return Email.objects.create(
        from_email="a@example.com",
        to_email="b@example.org",
        status=status,
        accepted_at=timezone.now() - age,
    )
