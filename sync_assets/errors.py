"""Expected failures: what an operator can act on, printed as a message and an exit code.

Code that meets a situation it can name (a busy data folder, a missing variable, an unknown id)
raises `SyncfabricError` with a message that says what happened and what to do. `syncctl` prints
the message alone and exits with the error's code; `syncctl -v` adds the traceback. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_FAILED = 1
"""The work ran and found something wrong: a failing check, held dead letters, pending events."""
EXIT_USAGE = 2
"""The command cannot run as asked: an unknown id, a missing data folder, a bad setting."""
EXIT_BUSY = 75
"""Try again later (EX_TEMPFAIL): another process holds the data folder."""


class SyncfabricError(Exception):
    """A failure with a message for the operator, never shown with a traceback."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
