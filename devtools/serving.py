"""What both local stand-ins share: serving in a background thread, and running in the
foreground until SIGINT / SIGTERM (how honcho stops them on Ctrl-C)."""

from __future__ import annotations

import copy
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Protocol, Self

POLL_INTERVAL_SECONDS = 0.1
STOP_TIMEOUT_SECONDS = 10.0


class _Serving(Protocol):
    def serve_forever(self, poll_interval: float = ...) -> None: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


def serve_in_thread(server: _Serving, name: str) -> threading.Thread:
    """Run ``server.serve_forever`` in a started daemon thread."""
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": POLL_INTERVAL_SECONDS},
        name=name,
        daemon=True,
    )
    thread.start()
    return thread


def stop_serving(server: _Serving, thread: threading.Thread) -> None:
    """Stop accepting requests and close the listening socket. Idempotent."""
    if thread.is_alive():
        server.shutdown()
        thread.join(STOP_TIMEOUT_SECONDS)
    server.server_close()


class BackgroundServer:
    """A server running in a daemon thread of this process: its address, ``stop()``, and use as
    a context manager. The stand-ins' handles extend it."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]
        self.port: int = server.server_address[1]
        self.url: str = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket. Idempotent."""
        stop_serving(self._server, self._thread)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"


def run_until_signalled(start: Callable[[], Any], announce: Callable[[Any], str]) -> int:
    """Start a server with ``start()``, print ``announce(server)``, serve until SIGINT or
    SIGTERM, stop it (its ``.stop()``) and return 0. Main thread only."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handlers first: a signal arriving right after the "listening" line must still exit cleanly.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = start()
    print(announce(server), flush=True)
    try:
        # Short waits in a loop, so the main thread gets back to run the signal handler.
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


class ControlledStub(BackgroundServer):
    """A stand-in with fault controls and a record (``self._server.state``: ``configure``,
    ``config``, ``snapshot``, ``reset``), as both the SendGrid and the SMTP stand-ins are:
    the in-process handle of what their ``/_stub/`` HTTP API does.

    ``_KWARGS`` maps each snake_case option to its camelCase config key; ``_config_error`` is
    the stand-in's ``ConfigError(field, message)``."""

    _KWARGS: dict[str, str]
    _config_error: type[ValueError]

    def configure(self, **kwargs: object) -> dict[str, Any]:
        """Merge snake_case options into the fault config; return it as JSON (camelCase).
        Raises the stand-in's ``ConfigError`` (a ``ValueError``) and changes nothing if any
        is invalid."""
        unknown = sorted(set(kwargs) - set(self._KWARGS))
        if unknown:
            raise self._config_error(unknown[0], f"Unknown option {unknown[0]!r}.")
        updates = {self._KWARGS[name]: value for name, value in kwargs.items()}
        return self._server.state.configure(updates).to_json()

    def config(self) -> dict[str, Any]:
        """The current fault config, as ``GET /_stub/config`` returns it."""
        return self._server.state.config().to_json()

    def messages(self) -> list[dict[str, Any]]:
        """Copies of the recorded messages (their keys: the stand-in's module docstring)."""
        return copy.deepcopy(self._server.state.snapshot()["messages"])

    def snapshot(self) -> dict[str, Any]:
        """A copy of what ``GET /_stub/messages`` returns."""
        return copy.deepcopy(self._server.state.snapshot())

    def reset(self) -> None:
        """Clear messages, counters and config, as ``POST /_stub/reset`` does."""
        self._server.state.reset()
