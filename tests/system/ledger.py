"""The system tests' verdict on a scenario: where every accepted email ended, and the table.

The rule (DESIGN.md invariants 2 and 3): every accepted ``messageId`` ends ``sent`` and was
delivered (counted at moto's SES store, the SendGrid stand-in's record and, on a stack that runs
it, the SMTP stand-in's), or ``dead`` and in the dead-letter queue with a reason; nothing else.
A second copy is allowed only where the caller says so (a provider call's outcome was unknown:
a crash or a timeout), and then no more extra copies than the record's ``unknown_outcomes``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from tests.harness import Ledger


@dataclass
class ScenarioResult:
    scenario: str
    database: str
    accepted: int
    sent: int
    dead_lettered: int
    duplicates: int  # extra copies delivered, summed over the emails
    lost: int  # neither delivered and sent, nor dead-lettered with a reason
    drain_seconds: float
    note: str = ""


# Every scenario's result in this session, in order; printed by conftest's terminal summary.
RESULTS: list[ScenarioResult] = []


def judge(
    scenario: str,
    database: str,
    ledger: Ledger,
    *,
    drain_seconds: float,
    duplicates_allowed: bool = False,
    dead_allowed: Collection[str] = (),
    note: str = "",
) -> tuple[ScenarioResult, list[str]]:
    """The scenario's row of the table and every violation of the rule (empty: it held).

    ``dead_allowed``: ids that may end in the dead-letter queue (a permanent rejection the
    scenario provoked on purpose); any other dead-lettered email is a violation.
    """
    problems: list[str] = []
    sent = dead = lost = duplicates = 0
    for email_id in ledger.ids:
        status = ledger.statuses.get(email_id, "missing")
        copies = ledger.deliveries(email_id)
        letters = ledger.dead_for(email_id)
        if status == "sent" and copies >= 1:
            sent += 1
        elif status == "dead" and copies == 0 and any(d.attributes.get("reason") for d in letters):
            dead += 1
            if email_id not in dead_allowed:
                problems.append(f"{email_id} dead-lettered: {letters[0].attributes['reason']}")
        else:
            lost += 1
            problems.append(
                f"{email_id} lost: status {status}, {copies} deliveries, "
                f"{len(letters)} dead letters"
            )
        if copies > 1:
            extra = copies - 1
            duplicates += extra
            unknown = ledger.unknown_outcomes.get(email_id, 0)
            if not duplicates_allowed:
                problems.append(f"{email_id} delivered {copies} times")
            elif extra > unknown:
                problems.append(
                    f"{email_id} delivered {copies} times with only {unknown} unknown outcomes"
                )
        if status == "sent" and letters:
            problems.append(f"{email_id} sent and also dead-lettered")
    result = ScenarioResult(
        scenario=scenario,
        database=database,
        accepted=len(ledger.ids),
        sent=sent,
        dead_lettered=dead,
        duplicates=duplicates,
        lost=lost,
        drain_seconds=drain_seconds,
        note=note,
    )
    return result, problems


HEADER = ("scenario", "db", "accepted", "sent", "dead-lettered", "duplicates", "lost", "drain s")


def table(results: list[ScenarioResult]) -> str:
    """The results as a Markdown table (readable in a terminal too)."""
    rows = [
        (
            r.scenario,
            r.database,
            str(r.accepted),
            str(r.sent),
            str(r.dead_lettered),
            str(r.duplicates),
            str(r.lost),
            f"{r.drain_seconds:.1f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    notes = [f"- {r.scenario}: {r.note}" for r in results if r.note]
    return "\n".join([line(HEADER), separator, *map(line, rows), *(["", *notes] if notes else [])])
