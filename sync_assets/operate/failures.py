"""A run's failures as an operator reads them: one line per failed step, and the errors to act on.

Dagster keeps every failure in full (traceback included) in the instance, where the UI shows it.
The console gets one line per failed step with its message: a `dg.Failure`'s description, or
the first line of the error. A step that met an operator's situation (a bad system URL, a
warehouse held by another process) raises `SyncfabricError`; `as_step_failure` carries its message
and exit code through Dagster as a `dg.Failure`, and `operator_error` gives them back to syncctl,
which prints the message alone and exits with the code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sync_assets.errors import EXIT_FAILED, EXIT_USAGE, SyncfabricError
from sync_assets.security.redact import redact_error

DEFAULT_EXIT_CODE = EXIT_USAGE
"""SyncfabricError's own default: what a step's SyncfabricError without `as_step_failure` gets."""
EXIT_CODE_KEY = "syncfabric/exit_code"
"""Metadata of a dg.Failure raised for a SyncfabricError: the exit code syncctl should use."""


@contextlib.contextmanager
def as_step_failure() -> Iterator[None]:
    """Inside a Dagster step: a SyncfabricError becomes a dg.Failure with its message and exit
    code, not retried, so the run records why and syncctl can say it without a traceback.
    Outside a step (a sensor called by syncctl, say) it stays the SyncfabricError it is.

    Every error leaves redacted (sync_assets/security/redact.py), its whole chain included: Dagster
    stores what a step raises in the run's event log, which the UI, GraphQL and the debug
    download show. The resources' connections hold a step's body, so its errors pass here."""
    import dagster as dg

    try:
        yield
    except SyncfabricError as error:
        clean = redact_error(error)
        if not _in_a_step():
            raise clean from clean.__cause__
        message = clean.message if isinstance(clean, SyncfabricError) else str(clean)
        raise dg.Failure(
            description=message, metadata={EXIT_CODE_KEY: error.exit_code}, allow_retries=False
        ) from clean
    except BaseException as error:
        clean = redact_error(error)
        if clean is error:
            raise
        raise clean from clean.__cause__


def _in_a_step() -> bool:
    import dagster as dg

    try:
        dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return False
    return True


@dataclass(frozen=True)
class StepFailure:
    job: str
    step: str | None
    """None when the run failed outside any step."""
    message: str
    exit_code: int | None = None
    """Set when the step met an operator's situation (a SyncfabricError)."""

    def line(self) -> str:
        where = f"step {self.step}" if self.step else "the run"
        return f"{self.job}: {where} failed: {self.message}"


def step_failures(job: str, events: Iterable[Any]) -> list[StepFailure]:
    """The failures among a run's Dagster events, in order; the run's own failure only when no
    step failed (it repeats them otherwise)."""
    failures: list[StepFailure] = []
    run_failure: StepFailure | None = None
    for event in events:
        if event.is_step_failure:
            failures.append(_from_step(job, event))
        elif event.is_run_failure:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            message = _message(_innermost(error)) if error else event.message
            run_failure = StepFailure(job, None, message or "the run failed")
    if not failures and run_failure is not None:
        failures.append(run_failure)
    return failures


def operator_error(failures: Iterable[StepFailure]) -> SyncfabricError | None:
    """The operator's situations among the failures, as one error (each message once)."""
    found = [f for f in failures if f.exit_code is not None]
    if not found:
        return None
    messages = list(dict.fromkeys(f.message for f in found))
    return SyncfabricError("\n".join(messages), exit_code=found[0].exit_code or EXIT_FAILED)


def _from_step(job: str, event: Any) -> StepFailure:
    data = event.step_failure_data
    user = data.user_failure_data
    if user is not None and user.description:
        code = user.metadata.get(EXIT_CODE_KEY) if user.metadata else None
        return StepFailure(
            job, event.step_key, user.description, None if code is None else int(code.value)
        )
    innermost = _innermost(data.error)
    message = _message(innermost) if innermost else "failed without an error"
    if innermost is not None and innermost.cls_name == "SyncfabricError":
        # Raised outside `as_step_failure`: the message is the operator's; the code did not
        # survive Dagster's serialization, so it is the class's default.
        return StepFailure(job, event.step_key, message, DEFAULT_EXIT_CODE)
    return StepFailure(job, event.step_key, message)


def _innermost(error: Any) -> Any:
    """The error that started it: Dagster wraps a step's exception in its own."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error


MAX_MESSAGE = 400


def _message(error: Any) -> str:
    """An error's text on one line: 'ValueError: ...' for an error of the code, the bare text for
    Dagster's own and for SyncfabricError (their text is written for the operator)."""
    text = " ".join(line.strip() for line in error.message.splitlines() if line.strip())
    name, sep, rest = text.partition(": ")
    if sep and name.endswith(error.cls_name):
        own = error.cls_name.startswith("Dagster") or error.cls_name == "SyncfabricError"
        text = rest if own else f"{error.cls_name}: {rest}"
    if error.cls_name == "SyncfabricError" or len(text) <= MAX_MESSAGE:
        return text
    return text[: MAX_MESSAGE - 1] + "…"
