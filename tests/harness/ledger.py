"""The ledger: where each email of a test went, counted at the providers themselves (the
SendGrid stand-in's record, moto's SES store and, when a test runs it, the SMTP stand-in's
record), beside its record and the dead-letter queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.harness.queues import DeadLetter, dead_letters, ses_messages


@dataclass
class Ledger:
    """Where each email of a test went, counted at the providers themselves."""

    ids: list[str]
    sendgrid: Counter[str]  # email id -> deliveries recorded by the SendGrid stand-in
    ses: Counter[str]  # email id -> deliveries recorded by moto's SES
    statuses: dict[str, str]
    providers: dict[str, str]
    unknown_outcomes: dict[str, int]
    rejections: dict[str, dict[str, str]]
    dead: list[DeadLetter]
    stub_attempts: int
    stub_failures: int
    # email id -> deliveries recorded by the SMTP stand-in (empty when the test runs none)
    smtp: Counter[str] = field(default_factory=Counter)

    def _counts(self, provider: str) -> Counter[str]:
        return {"sendgrid": self.sendgrid, "ses": self.ses, "smtp": self.smtp}[provider]

    def deliveries(self, email_id: str) -> int:
        return self.sendgrid[email_id] + self.ses[email_id] + self.smtp[email_id]

    @property
    def duplicates(self) -> dict[str, int]:
        """Email id -> copies delivered beyond the first."""
        return {i: self.deliveries(i) - 1 for i in self.ids if self.deliveries(i) > 1}

    @property
    def undelivered(self) -> list[str]:
        return [i for i in self.ids if self.deliveries(i) == 0]

    @property
    def status_counts(self) -> Counter[str]:
        return Counter(self.statuses.get(i, "missing") for i in self.ids)

    def delivered_by(self, provider: str) -> int:
        counts = self._counts(provider)
        return sum(counts[i] for i in self.ids)

    def dead_for(self, email_id: str) -> list[DeadLetter]:
        return [d for d in self.dead if d.attributes.get("emailId") == email_id]

    def summary(self) -> str:
        return (
            f"{len(self.ids)} emails: statuses {dict(self.status_counts)}, "
            f"delivered by ses {self.delivered_by('ses')}, sendgrid "
            f"{self.delivered_by('sendgrid')}, smtp {self.delivered_by('smtp')}, "
            f"undelivered {len(self.undelivered)}, "
            f"duplicates {self.duplicates}, dead letters {len(self.dead)}, "
            f"stub attempts {self.stub_attempts} (failed {self.stub_failures})"
        )

    def assert_each_sent_once(self) -> None:
        """Every email is ``sent`` and delivered exactly once, by the provider its record
        names, and none of them is in the dead-letter queue."""
        assert self.status_counts == Counter({"sent": len(self.ids)}), self.summary()
        assert not self.undelivered and not self.duplicates, self.summary()
        for email_id in self.ids:
            provider = self.providers[email_id]
            assert self._counts(provider)[email_id] == 1, (email_id, provider, self.summary())
        assert not any(self.dead_for(email_id) for email_id in self.ids), self.summary()


def take_ledger(ids: Sequence[str], stub: Any, moto_url: str, smtp_stub: Any = None) -> Ledger:
    """Count, for each of ``ids``, the copies at the SendGrid stand-in (``custom_args``
    ``gomail_id``), at moto's SES (by the email's unique subject) and, given ``smtp_stub`` (an
    object whose ``snapshot()`` is the SMTP stand-in's ``GET /_stub/messages``), at the SMTP
    stand-in (by the ``X-Gomail-Id`` header), with its record and the dead-letter queue."""
    from emails.models import Email

    ids = [str(i) for i in ids]
    wanted = set(ids)
    records = {
        str(r["id"]): r
        for r in Email.objects.filter(id__in=ids).values(
            "id", "status", "provider", "subject", "unknown_outcomes", "rejections"
        )
    }
    by_subject = {r["subject"]: email_id for email_id, r in records.items() if r["subject"]}
    snapshot = stub.snapshot()
    sendgrid: Counter[str] = Counter()
    for message in snapshot["messages"]:
        email_id = message["payload"].get("custom_args", {}).get("gomail_id")
        if email_id in wanted:
            sendgrid[email_id] += 1
    ses: Counter[str] = Counter()
    for message in ses_messages(moto_url):
        email_id = by_subject.get(message.get("subject"))
        if email_id is not None:
            ses[email_id] += 1
    smtp: Counter[str] = Counter()
    if smtp_stub is not None:
        for message in smtp_stub.snapshot()["messages"]:
            email_id = gomail_id_header(message.get("headers") or {})
            if email_id in wanted:
                smtp[email_id] += 1
    return Ledger(
        ids=ids,
        sendgrid=sendgrid,
        ses=ses,
        statuses={i: r["status"] for i, r in records.items()},
        providers={i: r["provider"] for i, r in records.items()},
        unknown_outcomes={i: r["unknown_outcomes"] for i, r in records.items()},
        rejections={i: r["rejections"] or {} for i, r in records.items()},
        dead=dead_letters(),
        stub_attempts=snapshot["attempts"],
        stub_failures=snapshot["failures"],
        smtp=smtp,
    )


def gomail_id_header(headers: dict[str, str]) -> str | None:
    """The ``X-Gomail-Id`` of a message recorded by the SMTP stand-in (header names are
    case-insensitive)."""
    for name, value in headers.items():
        if name.lower() == "x-gomail-id":
            return value.strip()
    return None
