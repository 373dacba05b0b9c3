"""Running the installed `syncctl` on a data folder, as a user would, and reading what it left.

Shared by the end-to-end, operations, safety and crash tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sync_assets.crashpoints import CRASH_ENV

SYNCCTL = str(Path(sys.executable).with_name("syncctl"))


def syncctl(home: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    """`syncctl <args>` on the data folder `home`, with `env_vars` added to the environment; a
    crash point is only ever the one a test names."""
    env = {**os.environ, "SYNCFABRIC_HOME": str(home)}
    env.pop(CRASH_ENV, None)
    return subprocess.run(
        [SYNCCTL, *args], env={**env, **env_vars}, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream and "Stack Trace" not in stream, stream[-3000:]


def instance_of(home: Path):
    """The data folder's Dagster instance, opened without touching this process's environment."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster")))


def unfinished_runs_and_claims(home: Path) -> tuple[list, list]:
    """Runs not finished, and pool claims (slots held and steps queued), in the folder's instance."""
    from sync_assets.operate.recovery import pool_claims, unfinished_runs

    with instance_of(home) as instance:
        return unfinished_runs(instance), pool_claims(instance)
