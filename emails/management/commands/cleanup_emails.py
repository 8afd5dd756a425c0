from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from emails.models import Email


class Command(BaseCommand):
    help = (
        "Delete email records (and their attempt history) older than records.retention_days "
        "that are final (sent or dead); emails still on their way are kept whatever their age."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="override records.retention_days")

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        keep_days = days if days is not None else settings.GOMAIL.records.retention_days
        cutoff = timezone.now() - timedelta(days=keep_days)
        deleted, _ = Email.objects.filter(
            accepted_at__lt=cutoff, status__in=[Email.Status.SENT, Email.Status.DEAD]
        ).delete()
        self.stdout.write(f"deleted {deleted} row(s) older than {keep_days} days")
