from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from emails.models import ApiKey


class Command(BaseCommand):
    help = (
        "Create an API key for POST /email/send. The key is printed once, alone on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for, e.g. the calling service")
        parser.add_argument("--user", help="Username of the key's owner (optional)")

    def handle(self, *args: Any, name: str, user: str | None, **options: Any) -> None:
        owner = None
        if user:
            try:
                owner = get_user_model().objects.get(username=user)
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user named {user!r}") from None
        api_key, raw_key = ApiKey.create_key(name, owner)
        self.stderr.write(f"Created API key {api_key} (store it now: it is not shown again)")
        self.stdout.write(raw_key)
