from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from emails import idempotency, records


class Command(BaseCommand):
    help = (
        "Delete email records (and their attempt history) older than records.retention_days "
        "that are final (sent or dead); emails still on their way are kept whatever their age. "
        "Idempotency-Keys older than api.idempotency_retention_hours are forgotten."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="override records.retention_days")

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        keep_days = days if days is not None else settings.GOMAIL.records.retention_days
        cutoff = timezone.now() - timedelta(days=keep_days)
        deleted = records.delete_final_before(cutoff)
        self.stdout.write(f"deleted {deleted} row(s) older than {keep_days} days")
        # Daily is enough: a key past its retention is replaced on use before it is deleted.
        keys = idempotency.delete_expired()
        if keys:  # a second line only when there is news: most callers send no key
            self.stdout.write(f"deleted {keys} expired Idempotency-Key(s)")
