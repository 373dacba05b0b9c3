"""Loopback ports for the tests: one to serve on, and one where every connection is refused."""

from __future__ import annotations

import socket

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
