from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dispatch.queues import ensure_celery_queues, ensure_queues
from emails.claim_check import ensure_bucket
from gomail_site.aws import aws_client, queue_url
from gomail_site.config import provider_type


class Command(BaseCommand):
    help = (
        "Idempotently create the incoming SQS queues, the dead-letter queue with its redrive "
        "policy, the payloads bucket with its lifecycle rule, the cache tables, and each "
        "enabled provider's own set-up (SES: its sender "
        "identities in the local moto)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Wait up to SECONDS for the AWS endpoint to answer (for a moto just starting)",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Create nothing: wait (see --wait) until the incoming queues exist",
        )

    def handle(self, *args: Any, wait: float, check: bool, **options: Any) -> None:
        if check:
            self._wait_for_queues(wait)
            return
        call_command("createcachetable", verbosity=0)
        self._wait_for_sqs(wait)
        gomail = settings.GOMAIL
        try:
            setup = ensure_queues(gomail.sqs)
            ensure_bucket(gomail.payloads)
            celery_queues = (
                {}
                if gomail.celery.queue_urls
                else ensure_celery_queues(gomail.celery, gomail.celery_queues)
            )
            for name in gomail.enabled_providers:
                instance = gomail.providers[name]
                set_up = provider_type(instance.type).bootstrap
                if set_up is not None:
                    set_up(instance)
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(f"bootstrap failed: {exc}") from exc
        self.stdout.write(f"dead-letter queue: {setup.dead_letter_url}")
        for name, url in setup.incoming_urls.items():
            self.stdout.write(f"incoming queue {name}: {url}")
        self.stdout.write(f"payloads bucket: {gomail.payloads.bucket}")
        for name, url in celery_queues.items():
            self.stdout.write(f"celery queue {name}: {url}")

    @staticmethod
    def _wait_for_queues(seconds: float) -> None:
        Command._wait_for(
            seconds, lambda: [queue_url(name) for name in settings.GOMAIL.sqs.incoming_queues]
        )

    @staticmethod
    def _wait_for_sqs(seconds: float) -> None:
        Command._wait_for(seconds, lambda: aws_client("sqs").list_queues(MaxResults=1))

    @staticmethod
    def _wait_for(seconds: float, probe: Callable[[], object]) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                probe()
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() >= deadline:
                    if seconds:
                        raise CommandError(f"AWS endpoint not reachable: {exc}") from exc
                    return
                time.sleep(0.5)
