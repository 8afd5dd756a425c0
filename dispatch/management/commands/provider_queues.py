"""``manage.py provider_queues``: the Celery queues of the configured providers, comma-separated,
for a provider worker's ``-Q`` (the Procfile's ``providers`` line), so that a provider added to
the configuration is consumed without editing the command line. A disabled provider's queue is
among them: what was dispatched to it before is still sent, by the providers left."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Print the configured providers' Celery queues, comma-separated (a worker's -Q)."

    def handle(self, *args: Any, **options: Any) -> None:
        names = settings.GOMAIL.celery_queues[1:]  # after the pipeline's
        if not names:
            raise CommandError("no provider is configured")
        self.stdout.write(",".join(names))
