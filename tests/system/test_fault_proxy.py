"""The AWS fault proxy's request matching (``faults.request_matches``): pure, no process."""

from __future__ import annotations

import pytest

from tests.system.faults import request_matches

LEVELS_BODY = (
    b'{"QueueUrl": "http://127.0.0.1:1/123456789012/gomail-incoming-2", '
    b'"AttributeNames": ["ApproximateNumberOfMessages"]}'
)


@pytest.mark.parametrize(
    ("match", "target", "expected"),
    [
        ((), "", True),
        ((b"AmazonSQS.GetQueueAttributes",), "AmazonSQS.GetQueueAttributes", True),
        (
            (b"AmazonSQS.GetQueueAttributes", b'gomail-incoming-2"'),
            "AmazonSQS.GetQueueAttributes",
            True,
        ),
        (
            (b"AmazonSQS.GetQueueAttributes", b'gomail-incoming-1"'),
            "AmazonSQS.GetQueueAttributes",
            False,
        ),
        (
            (b"AmazonSQS.GetQueueAttributes", b'gomail-incoming-2"'),
            "AmazonSQS.ReceiveMessage",
            False,
        ),
    ],
    ids=["no parts: every request", "action", "action and queue", "other queue", "other action"],
)
def test_a_request_matches_when_it_contains_every_part(
    match: tuple[bytes, ...], target: str, expected: bool
) -> None:
    assert request_matches(match, target, LEVELS_BODY) is expected
