"""The scenarios' verdict (``ledger.judge``) catches each way an email can go wrong: a pure
check, tested here without any process, so that a green table means something."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.harness import DeadLetter, Ledger
from tests.system.ledger import judge, table


def ledger(
    statuses: dict[str, str],
    *,
    ses: dict[str, int] | None = None,
    sendgrid: dict[str, int] | None = None,
    smtp: dict[str, int] | None = None,
    unknown: dict[str, int] | None = None,
    dead: dict[str, str] | None = None,
) -> Ledger:
    return Ledger(
        ids=list(statuses),
        sendgrid=Counter(sendgrid or {}),
        ses=Counter(ses or {}),
        statuses=statuses,
        providers={i: "ses" for i in statuses},
        unknown_outcomes=unknown or {},
        rejections={},
        dead=[
            DeadLetter(f"m-{i}", "{}", {"emailId": i, "reason": reason})
            for i, reason in (dead or {}).items()
        ],
        stub_attempts=0,
        stub_failures=0,
        smtp=Counter(smtp or {}),
    )


def test_every_email_sent_once_holds():
    result, problems = judge(
        "ok", "sqlite", ledger({"a": "sent", "b": "sent"}, ses={"a": 1, "b": 1}), drain_seconds=1.0
    )

    assert problems == []
    assert (result.accepted, result.sent, result.lost, result.duplicates) == (2, 2, 0, 0)


def test_a_copy_at_the_smtp_relay_counts_like_the_others():
    relayed = ledger({"a": "sent", "b": "sent"}, ses={"a": 1}, smtp={"b": 1})
    twice = ledger({"a": "sent"}, sendgrid={"a": 1}, smtp={"a": 1})

    result, problems = judge("x", "sqlite", relayed, drain_seconds=1.0)
    _, duplicated = judge("x", "sqlite", twice, drain_seconds=1.0)

    assert problems == [] and (result.sent, result.lost) == (2, 0)
    assert relayed.delivered_by("smtp") == 1 and relayed.undelivered == []
    assert duplicated == ["a delivered 2 times"]


def test_an_email_neither_delivered_nor_dead_lettered_is_lost():
    for statuses, ses in [
        ({"a": "queued"}, {}),  # still waiting when the scenario ended
        ({"a": "sent"}, {}),  # its record says sent, no provider has it
        ({"a": "missing"}, {}),  # no record at all
        ({"a": "dead"}, {}),  # dead, but not in the dead-letter queue
    ]:
        result, problems = judge("x", "sqlite", ledger(statuses, ses=ses), drain_seconds=1.0)

        assert result.lost == 1 and len(problems) == 1 and "lost" in problems[0], statuses


def test_a_dead_letter_needs_a_reason_and_permission():
    with_reason = ledger({"a": "dead"}, dead={"a": "rejected by every provider: ses: no"})
    without_reason = ledger({"a": "dead"}, dead={"a": ""})

    _, unexpected = judge("x", "sqlite", with_reason, drain_seconds=1.0)
    allowed, none = judge("x", "sqlite", with_reason, drain_seconds=1.0, dead_allowed={"a"})
    silent, lost = judge("x", "sqlite", without_reason, drain_seconds=1.0, dead_allowed={"a"})

    assert unexpected == ["a dead-lettered: rejected by every provider: ses: no"]
    assert none == [] and allowed.dead_lettered == 1
    assert silent.lost == 1 and "lost" in lost[0]


@pytest.mark.parametrize(
    ("copies", "unknown", "allowed", "expected"),
    [
        (2, 0, False, ["a delivered 2 times"]),
        (2, 1, False, ["a delivered 2 times"]),
        (2, 1, True, []),
        (3, 1, True, ["a delivered 3 times with only 1 unknown outcomes"]),
        (2, 0, True, ["a delivered 2 times with only 0 unknown outcomes"]),
    ],
)
def test_duplicates_only_where_allowed_and_within_the_unknown_outcomes(
    copies, unknown, allowed, expected
):
    sent = ledger({"a": "sent"}, ses={"a": copies - 1}, sendgrid={"a": 1}, unknown={"a": unknown})

    result, problems = judge("x", "sqlite", sent, drain_seconds=1.0, duplicates_allowed=allowed)

    assert problems == expected
    assert (result.sent, result.duplicates, result.lost) == (1, copies - 1, 0)


def test_sent_and_dead_lettered_at_once_is_a_violation():
    _, problems = judge(
        "x",
        "sqlite",
        ledger({"a": "sent"}, ses={"a": 1}, dead={"a": "undecodable"}),
        drain_seconds=1.0,
    )

    assert problems == ["a sent and also dead-lettered"]


def test_the_table_has_a_row_per_scenario_and_the_notes_below():
    first, _ = judge("baseline", "sqlite", ledger({"a": "sent"}, ses={"a": 1}), drain_seconds=1.25)
    second, _ = judge("burst", "sqlite", ledger({"b": "queued"}), drain_seconds=2.0, note="slow")

    lines = table([first, second]).splitlines()

    assert lines[0].split("|")[1].strip() == "scenario"
    assert [cell.strip() for cell in lines[2].split("|")[1:-1]] == [
        "baseline",
        "sqlite",
        "1",
        "1",
        "0",
        "0",
        "0",
        "1.2",
    ]
    assert [cell.strip() for cell in lines[3].split("|")[1:-1]][-2:] == ["1", "2.0"]
    assert lines[-1] == "- burst: slow"
