"""Loopback ports for the tests: one to serve on, and one where every connection is refused."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

_HELD = socket.socket()
_HELD.bind(("127.0.0.1", 0))
"""Bound for the whole session and never listening: a connection to its port is refused at once,
and no other socket can take the port meanwhile (a port freed after binding could be reused)."""


def refused_port() -> int:
    """A loopback port where nothing accepts connections, for as long as the tests run."""
    return _HELD.getsockname()[1]


def free_port() -> int:
    """A loopback port free now, for a server the test starts on it at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable(url: str, default_port: int) -> str | None:
    """Why a server's URL cannot be connected to (the error's class and text), or None when it
    accepts a connection within 3 s: the reason a test that needs it skips with."""
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 3
        ).close()
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None
