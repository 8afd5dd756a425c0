from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dispatch.queues import ensure_queues, verify_ses_identities
from gomail_site.aws import aws_client


class Command(BaseCommand):
    help = (
        "Idempotently create the incoming SQS queues, the dead-letter queue with its redrive "
        "policy, the cache table, and verify the configured SES sender identities."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Wait up to SECONDS for the AWS endpoint to answer (for a moto just starting)",
        )

    def handle(self, *args: Any, wait: float, **options: Any) -> None:
        call_command("createcachetable", verbosity=0)
        self._wait_for_sqs(wait)
        gomail = settings.GOMAIL
        try:
            setup = ensure_queues(gomail.sqs)
            if gomail.providers.ses.enabled:
                verify_ses_identities(gomail.providers.ses.verify_identities)
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(f"bootstrap failed: {exc}") from exc
        self.stdout.write(f"dead-letter queue: {setup.dead_letter_url}")
        for name, url in setup.incoming_urls.items():
            self.stdout.write(f"incoming queue {name}: {url}")

    @staticmethod
    def _wait_for_sqs(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                aws_client("sqs").list_queues(MaxResults=1)
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() >= deadline:
                    if seconds:
                        raise CommandError(f"AWS endpoint not reachable: {exc}") from exc
                    return
                time.sleep(0.5)
