from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dispatch import dead_letters


class Command(BaseCommand):
    help = (
        "The dead-letter queue: list (looking hides nothing), redrive to an incoming queue, or "
        "delete for good."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "redrive", "delete"])
        parser.add_argument("ids", nargs="*", help="SQS message ids (from list)")
        parser.add_argument("--all", action="store_true", help="redrive every message")
        parser.add_argument("--yes", action="store_true", help="confirm a delete")
        parser.add_argument("--limit", type=int, default=1000)

    def handle(self, *args: Any, action: str, ids: list[str], **options: Any) -> None:
        if action == "list":
            for message in dead_letters.peek(options["limit"]):
                self.stdout.write(
                    f"{message.sqs_message_id}  {message.dead_lettered_at or '-'}  "
                    f"email={message.email_id or '-'}  receives={message.receive_count}  "
                    f"{message.reason}  | {message.summary}"
                )
            return
        if action == "redrive":
            if not ids and not options["all"]:
                raise CommandError("name the message ids to redrive, or --all")
            report = dead_letters.redrive(None if options["all"] else set(ids), options["limit"])
            self.stdout.write(f"redrove {report.moved} message(s)")
            for note in report.notes():
                self.stdout.write(f"  {note}")
            return
        if not ids:
            raise CommandError("name the message ids to delete")
        if not options["yes"]:
            raise CommandError("deleting is for good: add --yes to confirm")
        self.stdout.write(f"deleted {dead_letters.delete(set(ids), options['limit'])} message(s)")
