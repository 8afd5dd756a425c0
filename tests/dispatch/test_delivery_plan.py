"""The worker's delivery decisions (``dispatch.delivery``), as tables: no I/O."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dispatch.delivery import (
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
from gomail_site.config import GomailConfig

CONFIGURED = ["ses", "sendgrid", "smtp"]


@pytest.mark.parametrize(
    ("own", "rejections", "drained", "expected"),
    [
        # Its own provider first, then every other one in configuration order.
        ("ses", {}, (), ["ses", "sendgrid", "smtp"]),
        ("sendgrid", {}, (), ["sendgrid", "ses", "smtp"]),
        ("smtp", {}, (), ["smtp", "ses", "sendgrid"]),
        # Its own provider rejected it before: the others, in configuration order.
        ("ses", {"ses": "no"}, (), ["sendgrid", "smtp"]),
        ("ses", {"ses": "no", "sendgrid": "no"}, (), ["smtp"]),
        ("ses", {"ses": "no", "sendgrid": "no", "smtp": "no"}, (), []),
        # A drained provider is never a fallback, but the batch's own is still tried.
        ("ses", {}, ("sendgrid",), ["ses", "smtp"]),
        ("ses", {}, ("ses",), ["ses", "sendgrid", "smtp"]),
        ("ses", {"ses": "no"}, ("sendgrid", "smtp"), []),
        # A provider no longer configured is not tried, not even as the batch's own.
        ("gone", {}, (), ["ses", "sendgrid", "smtp"]),
    ],
)
def test_try_order(own, rejections, drained, expected):
    assert try_order(own, CONFIGURED, rejections, drained) == expected


# (own, configured, rejections, drained, expected): 3 to 5 providers.
TRY_ORDER_N = [
    pytest.param("c", "abcd", "", "", "cabd", id="four: own, then the rest in order"),
    pytest.param("c", "abcd", "c", "", "abd", id="four: own rejected before"),
    pytest.param("a", "abcd", "ab", "", "cd", id="four: two rejected"),
    pytest.param("a", "abcd", "abc", "", "d", id="four: the last one left"),
    pytest.param("a", "abcd", "abcd", "", "", id="four: all rejected"),
    pytest.param("b", "abcd", "", "ad", "bc", id="four: two drained"),
    pytest.param("b", "abcd", "", "b", "bacd", id="four: own drained, still first"),
    pytest.param("b", "abcd", "c", "a", "bd", id="four: one rejected, one drained"),
    pytest.param("e", "abcde", "", "", "eabcd", id="five: the last configured as own"),
    pytest.param("c", "abcde", "bd", "e", "ca", id="five: rejected and drained left out"),
    pytest.param("a", "abcde", "", "bcde", "a", id="five: every other drained"),
    pytest.param("z", "abcde", "a", "c", "bde", id="five: own no longer configured"),
    pytest.param("b", "abc", "", "", "bac", id="three"),
    pytest.param("b", "abc", "b", "ac", "", id="three: nothing left to try"),
]


@pytest.mark.parametrize(("own", "configured", "rejections", "drained", "expected"), TRY_ORDER_N)
def test_try_order_with_three_to_five_providers(own, configured, rejections, drained, expected):
    rejected = {name: "no" for name in rejections}
    assert try_order(own, list(configured), rejected, set(drained)) == list(expected)


@pytest.mark.parametrize("count", range(1, 6))
def test_try_order_tries_every_enabled_provider_at_most_once(count):
    """The permanent-rejection fallback goes through every other enabled provider, one call
    each at most: ``len(configured)`` calls, which the start-up timing check budgets for (a
    batch's rounds times the number of enabled providers)."""
    configured = [f"p{index}" for index in range(count)]
    for own in [*configured, "gone"]:
        for mask in range(2 ** (2 * count)):
            rejected = {n: "no" for i, n in enumerate(configured) if mask >> i & 1}
            drained = {n for i, n in enumerate(configured) if mask >> (count + i) & 1}
            order = try_order(own, configured, rejected, drained)
            assert len(order) == len(set(order)) <= max(1, len(configured))
            assert not set(order) & set(rejected)
            expected_rest = [n for n in configured if n != own and n not in drained]
            head = [own] if own in configured and own not in rejected else []
            assert order == head + [n for n in expected_rest if n not in rejected]


def test_the_timing_check_budgets_one_call_per_enabled_provider():
    """``_timings_fit``: a batch's rounds times the number of enabled providers, plus one."""
    everyone = GomailConfig()
    enabled = len(everyone.enabled_providers)
    assert enabled >= 2
    rounds = -(-everyone.pipeline.batch_size // everyone.providers.ses.send_concurrency)
    for config, count in (
        ({}, enabled),
        ({"providers": {"ses": {"enabled": False}, "sendgrid": {}, "smtp": {}}}, enabled - 1),
    ):
        with pytest.raises(ValidationError) as error:
            GomailConfig(**config, sqs={"visibility_timeout_seconds": 10})
        assert f"at least {rounds * count + 1} times" in str(error.value)
        assert f"{rounds} round(s) of {count} calls" in str(error.value)


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
