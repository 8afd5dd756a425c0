"""The dead-letter queue's decisions, without I/O: what a redrive does with each message, what
a dead letter SQS moved by itself says, and why an email is not resent."""

from __future__ import annotations

import pytest

from dispatch.dead_letters import RecordState, RedriveReport, RedriveStep, _parse, plan_redrive
from emails.models import Email
from emails.resending import refusal_for_status
from tests.dispatch.realparts import wire_email


def test_a_message_without_a_record_is_moved_as_it_is():
    assert plan_redrive(None) == (RedriveStep.MOVE, "")


def test_a_dead_record_is_queued_again():
    assert plan_redrive(RecordState(Email.Status.DEAD)) == (RedriveStep.REQUEUE, "")


def test_the_copy_of_a_sent_email_is_a_leftover():
    step, why = plan_redrive(RecordState(Email.Status.SENT))
    assert step is RedriveStep.LEFTOVER
    assert "sent" in why


@pytest.mark.parametrize(
    "status",
    [Email.Status.QUEUED, Email.Status.SENDING, Email.Status.FAILED, Email.Status.WITHDRAWN],
)
def test_a_record_that_is_not_dead_is_never_queued_again(status):
    step, why = plan_redrive(RecordState(status))
    assert step is RedriveStep.SKIP
    assert f"is {status}, not dead" in why


def test_a_dead_record_a_resend_claimed_is_left_to_it():
    step, why = plan_redrive(RecordState(Email.Status.DEAD, resend_claimed=True))
    assert step is RedriveStep.SKIP
    assert "resent" in why


def sqs_message(body: str, receives: int, **attributes: str) -> dict:
    return {
        "MessageId": "m-1",
        "ReceiptHandle": "h-1",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1764655200000"},
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    }


def test_a_message_sqs_moved_reads_its_email_from_the_body_and_leaves_out_this_receive():
    email = wire_email()

    parsed = _parse(sqs_message(email.encode(), receives=1001))

    assert parsed.moved_by_sqs
    assert parsed.email_id == email.id
    assert parsed.receive_count == 1000
    assert parsed.reason == "moved by SQS after 1000 receives"


def test_an_undecodable_message_sqs_moved_has_no_email():
    parsed = _parse(sqs_message("not json", receives=3))

    assert parsed.moved_by_sqs
    assert parsed.email_id == ""


def test_gomails_own_dead_letter_keeps_its_attributes():
    parsed = _parse(
        sqs_message("x", receives=9, reason="undecodable message", receiveCount="1", emailId="")
    )

    assert not parsed.moved_by_sqs
    assert (parsed.reason, parsed.receive_count, parsed.email_id) == ("undecodable message", 1, "")


def test_the_report_notes_every_message_not_simply_moved():
    report = RedriveReport(
        moved=2,
        leftovers=["a", "b"],
        skipped={"c": "its email is queued, not dead: not redriven"},
        failed={"d": "unreachable"},
        undeleted=["b", "e"],
    )

    assert report.notes() == [
        "c: its email is queued, not dead: not redriven",
        "d: SQS refused the copy (unreachable): left",
        "a: its email was sent: a leftover, deleted",
        "b: SQS did not delete it: left",
        "e: SQS did not delete it: left",
    ]


@pytest.mark.parametrize(
    ("status", "refusal"),
    [
        (Email.Status.DEAD, ""),
        (Email.Status.FAILED, "not dead (failed): a failed email is retried automatically"),
        (Email.Status.SENT, "not dead (sent)"),
        (Email.Status.QUEUED, "not dead (queued)"),
    ],
)
def test_only_a_dead_email_is_resent(status, refusal):
    assert refusal_for_status(status) == refusal
