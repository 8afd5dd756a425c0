"""``manage.py provider_queues``: the Celery queues of the enabled providers, comma-separated,
for a provider worker's ``-Q`` (the Procfile's ``providers`` line), so that a provider added to
the configuration is consumed without editing the command line."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Print the enabled providers' Celery queues, comma-separated (a worker's -Q)."

    def handle(self, *args: Any, **options: Any) -> None:
        names = settings.GOMAIL.enabled_providers
        if not names:
            raise CommandError("no provider is enabled")
        self.stdout.write(",".join(names))
