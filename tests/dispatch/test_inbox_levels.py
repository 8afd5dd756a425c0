"""One incoming queue whose levels cannot be read (``GetQueueAttributes`` fails) against the
test moto: that queue is skipped for the run, the others are read as usual."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from dispatch.inbox import ReceivedMessage, read_levels
from dispatch.pipeline import run_pipeline
from dispatch.reading import QueueLevels
from tests.dispatch.realparts import put, wire_email

pytestmark = pytest.mark.django_db

MISSING = "gomail-test-no-such-queue"


def test_levels_of_a_missing_queue_are_skipped_and_the_others_read(aws, caplog) -> None:
    present = settings.GOMAIL.sqs.incoming_queues[0]
    put(wire_email().encode(), present)

    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(2) as pool:
        levels = read_levels([MISSING, present], pool)

    assert levels == [QueueLevels(depth=0, in_flight=0, skipped=True), QueueLevels(1, 0)]
    assert any(MISSING in record.getMessage() for record in caplog.records), caplog.text


def test_pipeline_reads_the_other_queues_when_one_fails(aws, gomail_config) -> None:
    present = list(settings.GOMAIL.sqs.incoming_queues)
    ids = {put(wire_email().encode(), queue) for queue in present for _ in range(3)}
    gomail_config(sqs={"incoming_queues": [MISSING, *present]})
    dispatched: list[ReceivedMessage] = []

    report = run_pipeline(lambda provider, batch_id, batch, probe=False: dispatched.extend(batch))

    assert report.read == len(ids)
    assert {message.sqs_message_id for message in dispatched} == ids
