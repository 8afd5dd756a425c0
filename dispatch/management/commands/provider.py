from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dispatch import controls


class Command(BaseCommand):
    help = (
        "Steer a provider as the admin does: drain (no traffic, not even probes), resume, or "
        "reset its health (applied by the next pipeline run)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["drain", "resume", "reset"])
        parser.add_argument("name", help="Provider name, e.g. ses or sendgrid")

    def handle(self, *args: Any, action: str, name: str, **options: Any) -> None:
        by = f"{getpass.getuser()} (manage.py)"
        try:
            if action == "reset":
                controls.request_health_reset(name, by)
            else:
                controls.set_drained(name, action == "drain", by)
        except controls.UnknownProvider as exc:
            raise CommandError(str(exc)) from None
        done = {"drain": "drained", "resume": "resumed", "reset": "health reset requested"}
        self.stdout.write(f"{name}: {done[action]}")
