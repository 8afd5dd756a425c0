from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from emails.models import ApiKey

DEMO_USERNAME = "demo"
DEMO_KEY_NAME = "demo"


class Command(BaseCommand):
    help = (
        "For local runs: ensure the demo staff user exists and replace its demo API key. "
        "Prints the login and the new key."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # A local-only account; the password can be chosen by the environment.
        password = os.environ.get("GOMAIL_DEMO_PASSWORD", "gomail-demo")
        with transaction.atomic():
            user, _ = get_user_model().objects.get_or_create(
                username=DEMO_USERNAME, defaults={"email": "demo@example.com"}
            )
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            # A fresh key per run: the old one is revoked since its value was printed before.
            ApiKey.objects.filter(user=user, name=DEMO_KEY_NAME, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            _, raw_key = ApiKey.create_key(DEMO_KEY_NAME, user)
        self.stdout.write(
            f"Demo login: {DEMO_USERNAME} / {password}  (http://127.0.0.1:8000/admin/)"
        )
        self.stdout.write(f"Demo API key: {raw_key}")
