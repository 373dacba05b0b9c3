"""What went wrong reaching a system, said so that an operator can fix it.

A snapshot that cannot reach its system fails at once when retrying cannot help: the address is
refused, the host unknown, the credentials rejected, the database or the platform's API not there
(404), the URL not one Syncfabric reads, the mapped table or column missing. The message names
the setting to change (the variable the system's file names, or the SQLite file in the data
folder when it is unset), what happened and the fix, with any password in the URL shown as `***`.
A transient failure (a timeout, a dropped connection,
a 5xx) is retried briefly by the reader (`TRANSIENT_ATTEMPTS`), then reported the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from sync_assets.errors import EXIT_FAILED, EXIT_USAGE, SyncfabricError
from sync_assets.security.redact import redact_text

TRANSIENT_ATTEMPTS = 3
TRANSIENT_BACKOFF_S = 0.5
"""Doubling from here between attempts: 0.5 s, then 1 s."""
_MISSING_TABLE = re.compile(
    r"no such table: (\S+)|relation \"([^\"]+)\" does not exist|table '([^']+)' doesn't exist",
    re.IGNORECASE,
)
"""SQLite's, PostgreSQL's and MySQL/MariaDB's words for a table that is not there."""
_MISSING_COLUMN = re.compile(
    r"no such column: (\S+)|column \"?([^\"\s]+)\"? does not exist|unknown column '([^']+)'",
    re.IGNORECASE,
)

T = TypeVar("T")


class PlatformApiError(RuntimeError):
    """The platform answered a read with something other than a page."""

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path


def url_variable(system: str) -> str:
    """The environment variable the project's `systems/<system>.yaml` names for its URL."""
    from sync_assets.project import current

    found = current().systems.get(system)
    return found.url_env if found else f"SYNCFABRIC_{system.upper()}_URL"


@dataclass(frozen=True)
class Problem:
    """A failure reaching a system: what happened, the fix, and whether retrying may help."""

    what: str
    fix: str
    transient: bool = False
    in_the_url: bool = True
    """Whether the fix is a change of the system's URL (else of the database or the mapping)."""


def classify(error: BaseException, url: str) -> Problem | None:
    """The problem behind a driver's or HTTP client's error, or None if it is not about reaching
    the system (a bug, say, which keeps its traceback)."""

    text = str(error)
    lowered = text.lower()
    where = _host_port(url)
    if isinstance(error, PlatformApiError) and error.status is not None:
        return _http_problem(error.status, error.path)
    if (
        "name or service not known" in lowered
        or "failed to resolve host" in lowered
        or ("could not translate host name" in lowered or "nodename nor servname" in lowered)
    ):
        return Problem(
            f"the host of {where} is unknown (the name does not resolve)", "correct the host name"
        )
    if "temporary failure in name resolution" in lowered:
        return Problem("the host name could not be resolved now (DNS)", "check the network", True)
    if "refused" in lowered:
        return Problem(
            f"nothing accepts connections at {where}",
            "start the system's server, or correct the host and port",
        )
    if (
        "password authentication failed" in lowered
        or "access denied for user" in lowered
        or re.search(r'role ".*" does not exist', lowered)
    ):
        return Problem("the server rejected the credentials", "correct the user and password")
    if re.search(r'database ".*" does not exist|unknown database', lowered):
        return Problem("the database does not exist on the server", "correct the database name")
    if missing := _MISSING_TABLE.search(text):
        table = next(name for name in missing.groups() if name)
        return Problem(
            f"the table {table} does not exist there",
            f"create the table {table}, or correct the table in the mapping",
            in_the_url=False,
        )
    if missing := _MISSING_COLUMN.search(text):
        column = next(name for name in missing.groups() if name)
        return Problem(
            f"the column {column} does not exist there",
            f"add the column {column}, or correct the column in the mapping",
            in_the_url=False,
        )
    if "unable to open database file" in lowered:
        return Problem(
            f"the SQLite file {_sqlite_path(url)} cannot be opened (is it there?)",
            "correct the file's path",
        )
    if _is_bad_url(error, lowered):
        return Problem(
            "it is not a URL Syncfabric can read",
            "use postgresql+psycopg://, mysql+pymysql://, sqlite:/// or the http(s):// address "
            "of a no-code platform's records API",
        )
    if any(
        word in lowered
        for word in (
            "timed out",
            "timeout",
            "too many connections",
            "too many clients",
            "starting up",
            "server closed the connection",
            "lost connection",
            "connection reset",
            "disconnected",
        )
    ):
        return Problem(f"{where} did not answer in time or dropped the connection", "", True)
    return None


def _http_problem(status: int, path: str) -> Problem:
    if status == 404:
        return Problem(
            f"the platform answered 404 Not Found for {path}",
            "point it at the platform's base address (the part before /v1/), and check that the "
            "mapping's table exists there",
        )
    if status in (401, 403):
        return Problem(
            f"the platform refused access ({status})",
            "correct the credentials in the URL, or the platform's grants",
        )
    if status in (408, 429) or status >= 500:
        return Problem(f"the platform answered {status}", "", True)
    return Problem(f"the platform answered {status} for {path}", "check the URL")


def setting(system: str, url: str) -> str:
    """The setting an operator changes: the variable (its value redacted), or the demo file."""
    variable = url_variable(system)
    if os.environ.get(variable):
        return f"{variable} ({redact_text(url)})"
    return f"the embedded default, the SQLite file at {_sqlite_path(url)} ({variable} is not set)"


def message(system: str, url: str, problem: Problem, attempts: int = 1) -> str:
    variable = url_variable(system)
    tried = f" (tried {attempts} times)" if attempts > 1 else ""
    if not problem.in_the_url:
        fix = f"{problem.fix}, or point {variable} at the {system} database that has it"
    elif not os.environ.get(variable):
        fix = f"set {variable} to the {system} system's URL, or build the project's example data with `syncctl demo`"
    elif problem.fix:
        fix = f"{problem.fix} in {variable}"
    else:
        fix = f"check that the {system} system is up, and {variable}"
    return f"cannot read the {system} system from {setting(system, url)}: {problem.what}{tried}. Fix: {fix}."


@contextlib.contextmanager
def reading(system: str, url: str) -> Iterator[None]:
    """Around a read of a system: its errors as the operator's message (SyncfabricError), exit 2
    for a setting to fix, 1 for a system that stayed unavailable."""
    try:
        yield
    except SyncfabricError:
        raise
    except Exception as error:
        problem = classify(error, url)
        if problem is None:
            raise
        attempts = getattr(error, "syncfabric_attempts", 1)
        raise SyncfabricError(
            message(system, url, problem, attempts),
            exit_code=EXIT_FAILED if problem.transient else EXIT_USAGE,
        ) from error


def retrying(action: Callable[[], T], url: str, *, attempts: int = TRANSIENT_ATTEMPTS) -> T:
    """`action()`, tried again after a short pause while it fails transiently; a permanent
    failure (or the last transient one) is raised at once, marked with the attempts made."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            problem = classify(error, url)
            if problem is None or not problem.transient or attempt == attempts:
                error.syncfabric_attempts = attempt  # type: ignore[attr-defined]
                raise
            time.sleep(TRANSIENT_BACKOFF_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _host_port(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "the address"
    if not host:
        return "the address"
    return f"{host}:{port}" if port else host


def _sqlite_path(url: str) -> str:
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    return str(Path(path.removeprefix("file:")))


def _is_bad_url(error: BaseException, lowered: str) -> bool:
    import sqlalchemy as sa

    return isinstance(error, sa.exc.ArgumentError | sa.exc.NoSuchModuleError) or (
        isinstance(error, ValueError) and "no read-only setup known" in lowered
    )
