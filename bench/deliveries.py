"""Where each email of a benchmark went: its record's status (polled from the database, never
through the API or SQS, so the bench's own calls stay out of the counts) and the copies the
providers received, counted at the SendGrid stand-in and at the AWS call log's SES sends.

The result is a ``tests.harness.Ledger``: duplicates and undelivered emails are its properties.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests import harness
from tests.system.stack import StubClient


def sent_ids(ids: set[str]) -> set[str]:
    """Those of ``ids`` whose record is ``sent``."""
    from emails.models import Email

    rows = Email.objects.filter(status=Email.Status.SENT).values_list("id", flat=True)
    return {str(i) for i in rows} & ids


def wait_all_sent(ids: Sequence[str], timeout: float, interval: float = 0.25) -> float | None:
    """Poll until every one of ``ids`` is ``sent``; the seconds it took (from now), None if
    ``timeout`` passed first."""
    wanted = {str(i) for i in ids}
    began = time.monotonic()
    while len(sent_ids(wanted)) < len(wanted):
        if time.monotonic() - began >= timeout:
            return None
        time.sleep(interval)
    return time.monotonic() - began


@dataclass(frozen=True)
class Copy:
    """One copy of an email that reached a provider, and when (``time.time()``)."""

    email_id: str
    provider: str
    at: float


def provider_copies(
    ids: Sequence[str], stub: StubClient, calls: Mapping[str, Any]
) -> tuple[list[Copy], dict[str, Any]]:
    """Every copy of ``ids`` at the providers, and the stand-in's snapshot. SendGrid's carry
    ``custom_args.gomail_id``; SES sends are matched by their ``gomail_id`` tag, else by the
    record's unique subject."""
    from emails.models import Email

    wanted = set(ids)
    snapshot = stub.snapshot()
    copies = []
    for message in snapshot["messages"]:
        email_id = message["payload"].get("custom_args", {}).get("gomail_id")
        if email_id in wanted:
            received = datetime.fromisoformat(message["receivedAt"].replace("Z", "+00:00"))
            copies.append(Copy(email_id, "sendgrid", received.timestamp()))
    by_subject = {
        subject: str(i)
        for i, subject in Email.objects.filter(id__in=list(ids)).values_list("id", "subject")
    }
    for send in calls["ses_sends"]:
        email_id = send["id"] if send["id"] in wanted else by_subject.get(send["subject"])
        if email_id is not None:
            copies.append(Copy(email_id, "ses", send["at"]))
    return copies, snapshot


def take_ledger(ids: Sequence[str], stub: StubClient, calls: Mapping[str, Any]) -> harness.Ledger:
    """The ledger of ``ids`` from the records, the providers' copies and the dead-letter queue
    (``calls``: the AWS call log's snapshot, taken before: reading the dead letters is a call)."""
    from emails.models import Email

    ids = [str(i) for i in ids]
    copies, snapshot = provider_copies(ids, stub, calls)
    sendgrid = Counter(c.email_id for c in copies if c.provider == "sendgrid")
    ses = Counter(c.email_id for c in copies if c.provider == "ses")
    records = {
        str(r["id"]): r for r in Email.objects.filter(id__in=ids).values("id", "status", "provider")
    }
    return harness.Ledger(
        ids=ids,
        sendgrid=sendgrid,
        ses=ses,
        statuses={i: r["status"] for i, r in records.items()},
        providers={i: r["provider"] for i, r in records.items()},
        unknown_outcomes={},
        rejections={},
        dead=harness.dead_letters(),
        stub_attempts=snapshot["attempts"],
        stub_failures=snapshot["failures"],
    )


def ledger_figures(ledger: harness.Ledger) -> dict[str, Any]:
    """The JSON of a ledger: statuses, copies by provider, duplicates, lost."""
    return {
        "emails": len(ledger.ids),
        "statuses": dict(ledger.status_counts),
        "delivered_by": {p: ledger.delivered_by(p) for p in ("ses", "sendgrid")},
        "duplicates": sum(ledger.duplicates.values()),
        "emails_duplicated": len(ledger.duplicates),
        "lost": len(ledger.undelivered),
        "dead_letters": len(ledger.dead),
    }
