"""Polling: the one way a test waits for something to become true (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError after
    ``timeout`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_steady(read: Callable[[], Any], quiet: float, timeout: float, what: str) -> Any:
    """Poll ``read`` until it returns the same value for ``quiet`` seconds (returned).

    For a state that other parties may still be moving: e.g. a statement a killed client had
    already sent, which the database server finishes after the client is gone."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} to settle")
        time.sleep(0.1)
        current = read()
        if current != value:
            value, since = current, time.monotonic()
    return value
