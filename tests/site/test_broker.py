"""The Celery broker transport (gomail_site.broker): kombu's SQS with the failed-receive fix."""

from __future__ import annotations

from unittest import mock

from gomail_site.celery import app


def test_the_workers_use_the_fixed_sqs_transport_on_the_configured_endpoint() -> None:
    connection = app.connection_for_read()
    from gomail_site.broker import Transport

    assert connection.get_transport_cls() is Transport
    assert connection.transport.driver_type == "sqs"
    endpoint = app.conf.broker_url.removeprefix("sqs://")
    assert f"{connection.hostname}:{connection.port}" == endpoint


def test_a_receive_that_failed_is_no_messages_not_a_stopped_consumer() -> None:
    # kombu's async client answers a timed-out or 5xx receive (pycurl's 599 for a dropped
    # connection) with [] instead of the parsed dict; kombu's own channel then raised
    # AttributeError out of the worker's event loop, which stopped consuming for good.
    channel_cls = app.connection_for_read().get_transport_cls().Channel
    channel = mock.Mock(spec=channel_cls)
    assert channel_cls._on_messages_ready(channel, "queue", "queue", []) == 0
    assert channel_cls._on_messages_ready(channel, "queue", "queue", {}) == 0
