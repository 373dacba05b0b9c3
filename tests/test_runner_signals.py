"""syncctl stays stoppable by SIGTERM after a run, even where it started with SIGINT ignored.

Dagster maps SIGTERM to SIGINT's handler while a run executes in the process, and leaves it so:
in a background job of a script, where SIGINT is ignored, a process would ignore SIGTERM from
its first run on, and every process it started after would inherit that. `Pipeline._execute`
runs each job inside `sigterm_kept`.
"""

from __future__ import annotations

import subprocess
import sys

RUN_WITH_SIGINT_IGNORED = """
import contextlib
import signal
import sys

import dagster as dg

from sync_assets.runner import sigterm_kept

signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job of a script


@dg.op
def one():
    return 1


@dg.job
def job():
    one()


kept = sys.argv[1] == "kept"
with sigterm_kept() if kept else contextlib.nullcontext():
    job.execute_in_process()
print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
"""


def sigterm_default_after_a_run(mode: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITH_SIGINT_IGNORED, mode],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1] == "True"


def test_a_run_leaves_sigterm_as_it_found_it():
    assert sigterm_default_after_a_run("kept")


def test_without_it_dagster_leaves_sigterm_ignored():
    """What `sigterm_kept` is for: if Dagster stops doing this, it can go."""
    assert not sigterm_default_after_a_run("bare")
