"""The worker's delivery decisions (``dispatch.delivery``), as tables: no I/O."""

from __future__ import annotations

import pytest

from dispatch.delivery import (
    MAX_CALLS,
    Step,
    Waiting,
    after_call,
    give_up_reason,
    hand_back_delay,
    hold_or_give_up,
    receive_limit_for,
    try_order,
    when_tried_out,
)
from dispatch.providers.errors import ErrorKind

CONFIGURED = ["ses", "sendgrid", "smtp"]


@pytest.mark.parametrize(
    ("own", "rejections", "drained", "expected"),
    [
        ("ses", {}, (), ["ses", "sendgrid"]),
        ("sendgrid", {}, (), ["sendgrid", "ses"]),
        ("smtp", {}, (), ["smtp", "ses"]),
        # Its own provider rejected it before: the others, in configuration order.
        ("ses", {"ses": "no"}, (), ["sendgrid", "smtp"]),
        ("ses", {"ses": "no", "sendgrid": "no"}, (), ["smtp"]),
        ("ses", {"ses": "no", "sendgrid": "no", "smtp": "no"}, (), []),
        # A drained provider is never a fallback, but the batch's own is still tried.
        ("ses", {}, ("sendgrid",), ["ses", "smtp"]),
        ("ses", {}, ("ses",), ["ses", "sendgrid"]),
        ("ses", {"ses": "no"}, ("sendgrid", "smtp"), []),
        # A provider no longer configured is not tried, not even as the batch's own.
        ("gone", {}, (), ["ses", "sendgrid"]),
    ],
)
def test_try_order(own, rejections, drained, expected):
    assert try_order(own, CONFIGURED, rejections, drained) == expected


def test_try_order_never_makes_more_calls_than_the_visibility_timeout_holds():
    assert len(try_order("a", list("abcdefg"), {})) == MAX_CALLS


@pytest.mark.parametrize(
    ("kind", "step"),
    [
        (None, Step.DONE),
        (ErrorKind.PERMANENT, Step.NEXT),
        (ErrorKind.TRANSIENT, Step.RETRY),
        (ErrorKind.PROVIDER_CONFIG, Step.RETRY),
    ],
)
def test_after_call(kind, step):
    assert after_call(kind) is step


def test_rejected_by_every_configured_provider_is_dead_with_each_reason():
    unsent = when_tried_out(["ses", "sendgrid"], {"ses": "bad address", "sendgrid": "HTTP 400"})
    assert unsent.dead
    assert unsent.reason == "rejected by every provider: ses: bad address; sendgrid: HTTP 400"


@pytest.mark.parametrize(
    ("configured", "rejections"),
    [
        (["ses", "sendgrid"], {"ses": "bad address"}),  # sendgrid drained or not reached
        (["ses", "sendgrid"], {}),
        ([], {}),  # nothing configured: kept, not dead-lettered
    ],
)
def test_a_provider_left_to_try_means_later(configured, rejections):
    unsent = when_tried_out(configured, rejections)
    assert not unsent.dead
    assert unsent.reason == "retrying on another provider"


@pytest.mark.parametrize(
    ("age", "attempts", "error", "expected"),
    [
        (3599, 5, "HTTP 500", None),
        (3600, 5, "HTTP 500", "gave up after 5 attempts over 1.0 hours; last error: HTTP 500"),
        (9000, 1, "", "gave up after 1 attempt over 2.5 hours; last error: none"),
    ],
)
def test_give_up_reason(age, attempts, error, expected):
    assert give_up_reason(age, 3600, attempts, error) == expected


@pytest.mark.parametrize(
    ("waiting", "expected"),
    [
        # Past the max age: dead-lettered with the give-up reason.
        (
            Waiting(3600, 2),
            ("gave up after 2 attempts over 1.0 hours; last error: drained", 0),
        ),
        # Young: hidden for the hold, or until its max age when that comes sooner.
        (Waiting(0, 0), (None, 900)),
        (Waiting(3000, 0), (None, 600)),
        (Waiting(3599.5, 0), (None, 1.0)),
        # Unknown age (another producer's message, no record): only held.
        (Waiting(None), (None, 900)),
    ],
)
def test_hold_or_give_up(waiting, expected):
    assert hold_or_give_up(waiting, 3600, 900, "drained") == expected


def test_a_message_received_nearly_as_often_as_sqs_allows_is_given_up_however_young():
    assert give_up_reason(60, 3600, 3, "HTTP 500", receives=949, receive_limit=950) is None
    assert give_up_reason(60, 3600, 3, "HTTP 500", receives=950, receive_limit=950) == (
        "gave up after 3 attempts over 0.0 hours, received 950 times; last error: HTTP 500"
    )


@pytest.mark.parametrize(
    ("max_receive_count", "limit"), [(1000, 950), (100, 95), (20, 19), (2, 1), (1, 1)]
)
def test_receive_limit_for(max_receive_count, limit):
    assert receive_limit_for(max_receive_count) == limit


@pytest.mark.parametrize(
    ("receives", "attempts", "delay"),
    [
        (1, 1, 1.0),  # the first hand-back: quick, health routes it on
        (2, 1, 2.0),
        (5, 1, 16.0),
        (12, 1, 900.0),  # capped at the backoff's maximum
        (40, 38, 4.0),  # counted from the receives that made no call
    ],
)
def test_hand_back_delay(receives, attempts, delay):
    assert hand_back_delay(receives, attempts, 1.0, 900) == delay
