"""One syncctl at a time writes a data folder; a second one says who is in the way.

Every command that writes (run, check, deliver, replay, demo, doctor --repair, ...) holds an
exclusive `flock` on `<data folder>/syncctl.lock` (`DataFolder.lock_file`) while it works. The kernel releases an flock when
its process dies, however it dies, so a SIGKILLed syncctl never leaves a stale lock behind. The
file records who holds it (pid, command, since when) for the next one to print; the record is only
read while the lock is held, so a record left by a dead process is never believed.

DuckDB has a lock of its own: a process outside syncctl (a run launched from the Dagster UI, a
notebook) may hold the warehouse open. `warehouse_refusal` turns DuckDB's refusal into the same
kind of message, with the pid DuckDB names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sync_assets.errors import EXIT_BUSY, SyncfabricError
from sync_assets.settings import DataFolder

POLL_S = 0.05
"""How often a waiting syncctl tries the lock again (flock has no timeout of its own)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a data folder: the process, the command it runs, and since when."""

    pid: int
    command: str
    since: datetime

    def describe(self) -> str:
        return f"pid {self.pid} (syncctl {self.command}, since {self.since:%Y-%m-%d %H:%M:%S} UTC)"

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "command": self.command, "since": self.since.isoformat()}


_held: dict[Path, Holder] = {}
"""The lock files this process holds, and as whom."""


@contextlib.contextmanager
def hold(
    folder: DataFolder,
    command: str,
    *,
    wait_s: float = 0,
    on_wait: Callable[[Holder | None], None] | None = None,
) -> Iterator[Holder]:
    """Hold the data folder for `command`, waiting up to `wait_s` seconds for another
    holder to finish; raise a SyncfabricError (exit 75) naming the holder if it does not.

    `on_wait` is told once who is waited for (None if the holder could not be read), so a command
    can say why it pauses. Holding it again from the same process just goes on.
    """
    path = folder.lock_file
    if path in _held:
        yield _held[path]
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd, fcntl.LOCK_EX):
            holder = _read(fd)
            deadline = time.monotonic() + wait_s
            if wait_s > 0 and on_wait is not None:
                on_wait(holder)
            while True:
                if time.monotonic() >= deadline:
                    raise busy_error(folder, _read(fd) or holder, wait_s)
                time.sleep(POLL_S)
                if _try_lock(fd, fcntl.LOCK_EX):
                    break
        me = Holder(os.getpid(), command, datetime.now(UTC).replace(microsecond=0))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me.as_dict()).encode() + b"\n", 0)
        _held[path] = me
        try:
            yield me
        finally:
            del _held[path]
            os.ftruncate(fd, 0)  # "free" reads as free, even to a reader that ignores the flock
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(folder: DataFolder) -> Holder | None:
    """Who holds the data folder now, or None when it is free."""
    path = folder.lock_file
    if path in _held:
        return _held[path]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        # A shared lock is refused only while someone holds the exclusive one; given back at once.
        if _try_lock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read(fd) or Holder(0, "(unknown command)", datetime.now(UTC))
    finally:
        os.close(fd)


def is_held_here(folder: DataFolder) -> bool:
    """Whether this process holds the data folder (so no other syncctl is at work in it)."""
    return folder.lock_file in _held


def busy_error(folder: DataFolder, holder: Holder | None, waited_s: float = 0) -> SyncfabricError:
    who = holder.describe() if holder else "another process"
    waited = f" (waited {waited_s:g} s)" if waited_s > 0 else ""
    return SyncfabricError(
        f"the data folder {folder.root} is in use by {who}{waited}. Let it finish, or run again with "
        "--wait SECONDS to wait for it; `syncctl doctor` shows what holds the folder.",
        exit_code=EXIT_BUSY,
    )


_DUCKDB_LOCK = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def warehouse_refusal(error: Exception, path: Path | str) -> SyncfabricError | None:
    """DuckDB refused the warehouse because another process holds it: that, said plainly (exit
    75); None for any other error."""
    found = _DUCKDB_LOCK.search(str(error))
    if not found:
        return None
    pid = int(found["pid"])
    program = Path(found["program"]).name
    current = holder(DataFolder(Path(path).parent))
    if current and current.pid == pid:
        who = current.describe()
    else:
        who = (
            f"pid {pid} ({program}), which is not a syncctl command: a run launched from the "
            "Dagster UI or its daemon, or another program"
        )
    return SyncfabricError(
        f"the warehouse {path} is open in another process: {who}. DuckDB lets one process use "
        "it at a time; try again when that process is done (`syncctl doctor` lists the runs "
        "still in progress).",
        exit_code=EXIT_BUSY,
    )


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read(fd: int) -> Holder | None:
    """The holder recorded in the file; None if it is being rewritten or is not a record."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"null")
        return Holder(
            int(record["pid"]), str(record["command"]), datetime.fromisoformat(record["since"])
        )
    except (ValueError, TypeError, KeyError):
        return None
