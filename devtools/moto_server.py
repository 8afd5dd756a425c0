"""The project's moto launcher: a local AWS (SQS, SES, ...) whose backend calls are serialised.

Run it in the foreground with ``python -m devtools.moto_server [--host H] [--port P]``, or start
it in-process with :func:`start_moto_server` (tests, scripts).

Why not plain ``moto_server``: moto's SQS backend is not thread-safe under its threaded server.
Two concurrent ReceiveMessage calls can hand out the same message, and a DeleteMessage racing a
receive can resurrect a deleted message (DESIGN.md section 12). Any test asserting "delivered
exactly once" would then measure moto's duplicates, not ours. This launcher therefore runs every
request to the backends under one process-wide lock. See :class:`SerialisingMiddleware`.
One deliberate exception: an SQS long poll (WaitTimeSeconds > 0) releases the lock while it
waits between its receive attempts, each of which runs locked. See
:func:`_install_long_poll_release`.

Stock moto's SQS queue also asks the clock twice per stored message (``Message.visible`` and
``.delayed``, each through naive datetimes) on every call that counts or lists its messages,
SendMessage included: at 5,000 waiting messages one ReceiveMessage costs seconds, so moto, not
the service, would set the pace of any test or benchmark with a backlog. The launcher replaces
those scans with one clock reading per scan (:func:`install_single_clock_scans`): the same
answers, since a scan runs under the backend lock. ``--stock-scans`` keeps moto's own.

Development tool only: it must not import Django or any product package.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sqs.models import Queue, SQSBackend
from werkzeug.serving import BaseWSGIServer, make_server

from devtools.serving import BackgroundServer, run_until_signalled, serve_in_thread

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
_READY_TIMEOUT_SECONDS = 10.0
# moto's own long-poll wait returns at once while a queue holds visible messages it may not
# hand out (FIFO groups in flight); without a short pause our retry loop would spin on the lock.
_MIN_LONG_POLL_PAUSE_SECONDS = 0.02

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _BackendLock:
    """One lock for all moto backends, which also knows whether the current thread holds it.

    moto keeps its backends in module-level state, so every server in this process shares them:
    the lock must be process-wide, not per server.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = threading.local()

    def held_here(self) -> bool:
        return getattr(self._owner, "held", False)

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            self._owner.held = True
            try:
                yield
            finally:
                self._owner.held = False

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let other requests run for the duration; a no-op if this thread does not hold it."""
        if not self.held_here():
            yield
            return
        self._owner.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._owner.held = True


_BACKEND_LOCK = _BackendLock()
_PATCH_LOCK = threading.Lock()


class SerialisingMiddleware:
    """WSGI middleware running each request, body iteration included, under the backend lock.

    The response body is read into memory before the lock is released: WSGI lets an app return
    a lazy iterable, and one consumed after the release could read backend state unlocked.
    Buffering also means the lock is never held while writing to a slow or stalled client.
    """

    def __init__(self, app: WSGIApp) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with _BACKEND_LOCK.held():
            result = self._app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]


def _install_long_poll_release() -> None:
    """Make SQS long polls wait for messages with the backend lock released.

    moto implements ReceiveMessage's WaitTimeSeconds by looping inside the backend call. Under a
    request-wide lock, one long poll on an empty queue would block every other request, including
    the SendMessage it is waiting for, for up to 20 s (kombu, Celery's SQS transport, long-polls
    10 s by default). So long polls become a series of non-waiting receives, each one a complete
    moto receive under the lock, with the waits between them outside it. Idempotent.
    """
    with _PATCH_LOCK:
        original = SQSBackend.receive_message
        if getattr(original, "_gomail_long_poll_release", False):
            return

        def receive_message(
            self: SQSBackend,
            queue_name: str,
            count: int,
            wait_seconds_timeout: int,
            visibility_timeout: int,
            message_attribute_names: list[str] | None = None,
        ) -> list[Any]:
            deadline = time.monotonic() + wait_seconds_timeout
            while True:
                result = original(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
                remaining = deadline - time.monotonic()
                if result or remaining <= 0:
                    return result
                _wait_for_messages(self.get_queue(queue_name), min(remaining, 1.0))

        receive_message._gomail_long_poll_release = True  # type: ignore[attr-defined]
        SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


def _wait_for_messages(queue: Any, timeout: float) -> None:
    started = time.monotonic()
    with _BACKEND_LOCK.released():
        # Wakes as soon as a message is added; it peeks at the queue unlocked, but only as a
        # hint: the next receive looks again under the lock.
        queue.wait_for_messages(timeout)
        pause = _MIN_LONG_POLL_PAUSE_SECONDS - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)


def build_app() -> WSGIApp:
    """The WSGI app moto's own server runs (all services), wrapped in the serialising middleware."""
    _install_long_poll_release()
    return SerialisingMiddleware(DomainDispatcherApplication(create_backend_app))


class MotoServer(BackgroundServer):
    """A running moto server in a daemon thread of this process. Use :func:`start_moto_server`.

    All servers in one process share moto's backends: resetting one resets them all.
    """

    def reset(self) -> None:
        """Empty every moto backend (``POST /moto-api/reset``); ``RuntimeError`` on failure."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=_READY_TIMEOUT_SECONDS)
        try:
            conn.request("POST", "/moto-api/reset")
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"moto reset failed with HTTP {response.status}")


_single_clock_scans = False


def _now_millis() -> float:
    # moto's unix_time_millis() is the same instant, computed through naive datetimes.
    return time.time() * 1000.0


def install_single_clock_scans() -> None:
    """Replace the three per-message clock scans of moto's SQS ``Queue`` by scans that read the
    clock once (see the module docstring). Idempotent; process-wide, like moto's backends."""
    global _single_clock_scans
    if _single_clock_scans:
        return

    def messages(self: Queue) -> list[Any]:
        now = _now_millis()
        return [m for m in self._messages if now > m.visible_at and now >= m.delayed_until]

    def not_visible(self: Queue) -> int:
        now = _now_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delayed(self: Queue) -> int:
        now = _now_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    Queue.messages = property(messages)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(not_visible)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_delayed = property(delayed)  # type: ignore[method-assign,assignment]
    _single_clock_scans = True


def start_moto_server(
    host: str = DEFAULT_HOST, port: int = 0, *, stock_scans: bool = False
) -> MotoServer:
    """Start a serialised moto server in a daemon thread; return once it accepts connections.

    ``port=0`` picks a free port (read it from ``.port`` / ``.url``). Raises ``OSError`` when the
    address cannot be bound, ``TimeoutError`` if the server does not come up in time.
    ``stock_scans``: keep moto's per-message clock scans (a process that started a server
    without it already has the single-clock ones).
    """
    if not stock_scans:
        install_single_clock_scans()
    server = _make_server(host, port)
    moto = MotoServer(server, serve_in_thread(server, f"moto-server:{server.server_address[1]}"))
    try:
        _wait_until_accepting(moto.host, moto.port, _READY_TIMEOUT_SECONDS)
    except BaseException:
        moto.stop()
        raise
    return moto


class _RequestHandler(MotoRequestHandler):
    # Our own subclass: werkzeug sets protocol_version on the handler class it is given, and
    # moto's class should stay as moto left it for anyone else in the process.
    pass


def _make_server(host: str, port: int) -> BaseWSGIServer:
    try:
        return make_server(host, port, build_app(), threaded=True, request_handler=_RequestHandler)
    except SystemExit as exc:
        # werkzeug reports bind failures by printing and calling sys.exit(1).
        raise OSError(f"cannot listen on {host}:{port}") from exc


def _wait_until_accepting(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"moto server on {host}:{port} is not accepting") from exc
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until SIGINT/SIGTERM, then return 0."""
    parser = argparse.ArgumentParser(description="Local moto server with serialised backends.")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    parser.add_argument(
        "--stock-scans",
        action="store_true",
        help="keep moto's per-message clock scans of SQS queues (slower with every message)",
    )
    args = parser.parse_args(argv)

    return run_until_signalled(
        lambda: start_moto_server(args.host, args.port, stock_scans=args.stock_scans),
        lambda server: f"moto server listening on {server.url} (backend calls serialised)",
    )


if __name__ == "__main__":
    raise SystemExit(main())
