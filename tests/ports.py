"""A port on 127.0.0.1 that nothing listens on: bound, then released. For a server that cannot
pick its own (the in-process test moto, whose URL the settings need first) and for a client
that must find nobody there."""

from __future__ import annotations

import socket


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
