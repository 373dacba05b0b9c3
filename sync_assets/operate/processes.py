"""Is a process still there, and is it the one we think it is?

A pid alone can lie: once a process dies, the kernel may give its number to a new one. So a
process counts as the one that started a run only if it is alive *and* it started no later than
the run did. Start times come from /proc (Linux); where there is no /proc, liveness alone is used.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

PROC = Path("/proc")
START_SLACK_S = 2.0
"""How much later than a run's recorded start its process may seem to have started: /proc's start
time is in clock ticks since boot and boot time in whole seconds, so both are a little coarse."""


def is_alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies, dead but not yet reaped, count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return _state(pid) != "Z"


def started_at(pid: int) -> datetime | None:
    """When the process started, or None where /proc cannot say."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in (PROC / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    # Field 22 of /proc/<pid>/stat (starttime, in clock ticks since boot); fields[0] is field 3.
    ticks = int(fields[19])
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def is_same_process(pid: int, not_after: datetime | None) -> bool:
    """Whether `pid` is alive and is the process that was there at `not_after` (a run's start):
    a process that started later only reuses the number."""
    if not is_alive(pid):
        return False
    if not_after is None:
        return True
    start = started_at(pid)
    return start is None or start.timestamp() <= not_after.timestamp() + START_SLACK_S


def _state(pid: int) -> str | None:
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
