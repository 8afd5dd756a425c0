"""botocore event hooks on the process's SQS client: the fault-injection point DESIGN.md names
(moto has none), for the dead-letter tests. Each hook is removed when its block ends."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import EndpointConnectionError

from gomail_site.aws import aws_client


@contextlib.contextmanager
def sqs_hook(event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Run ``handler`` on ``event`` (e.g. ``after-call.sqs.SendMessage``) of the SQS client
    every part of the process shares, for the duration of the block."""
    events = aws_client("sqs").meta.events
    unique_id = uuid.uuid4().hex
    events.register(event, handler, unique_id=unique_id)
    try:
        yield
    finally:
        events.unregister(event, unique_id=unique_id)


def unreachable(**_: Any) -> None:
    """A ``before-call`` handler: the call fails as if SQS could not be reached."""
    raise EndpointConnectionError(endpoint_url="http://sqs.unreachable.test")


def once(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` on the first event only (it may make SQS calls of its own)."""
    done = False

    def run(**kwargs: Any) -> Any:
        nonlocal done
        if done:
            return None
        done = True
        return handler(**kwargs)

    return run
