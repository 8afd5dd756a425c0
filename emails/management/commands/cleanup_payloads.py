from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from emails import claim_check


class Command(BaseCommand):
    help = (
        "Delete the claim checks (S3 objects in payloads.bucket) no email can need any more: "
        "of emails sent, withdrawn or unknown, once payloads.cleanup_after_hours old; of dead "
        "emails once their dead letter is past the dead-letter queue's retention. Objects of "
        "emails that can still be delivered are kept, whatever their age."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = claim_check.cleanup()
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(
                f"cleanup of {settings.GOMAIL.payloads.bucket} failed: {exc}"
            ) from exc
        self.stdout.write(
            f"deleted {report.deleted} of {report.examined} payload(s), kept {report.kept}"
        )
