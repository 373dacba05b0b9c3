"""Named points where a test may kill the process, to prove a crash there loses nothing.

Off by default. With `SYNCFABRIC_CRASH_AT=<point>` in the environment, the process SIGKILLs
itself the first time it reaches that point: no cleanup, no flush, as a power cut or the OOM
killer would. The crash suite (tests/test_crashes.py) runs `syncctl run` once per point, then runs
it again and compares everything with an uncrashed run.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "SYNCFABRIC_CRASH_AT"

POINTS: dict[str, str] = {
    "after-raw-insert": "raw events inserted, their transaction not yet committed",
    "after-raw-commit": "raw events committed, the batch files not yet archived",
    "mid-validation": "one batch validated, the validation transaction not yet committed",
    "mid-apply": "golden records merged, the apply transaction not yet committed",
    "after-sensor-request": (
        "the batches to run were asked for and their partitions added, the run not yet started"
    ),
    "mid-delivery": "a destination applied corrections, the verdicts not yet recorded",
    "mid-record": "delivery verdicts written, their transaction not yet committed",
    "before-bus-ack": "a syncctl run's batches from the message bus committed, not yet acknowledged",
    "after-step-start": "a syncctl run's first step started, holding its pool slot; nothing of it done",
}


def crash_point(name: str) -> None:
    """SIGKILL this process here if the environment asks for a crash at `name`."""
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}; known: {', '.join(POINTS)}")
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
