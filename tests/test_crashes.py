"""The crash suite: `syncctl run` SIGKILLed at each named point, then run again, ends exactly where
an uncrashed run ends: the same golden records, counts and systems, no run left STARTED, no pool
claim left, exit 0.

The kill comes from the process itself (`SYNCFABRIC_CRASH_AT`, sync_assets/crashpoints.py): no
cleanup, no flush, as a power cut or the OOM killer would leave it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sync_assets.catalog.entities import ENTITIES
from sync_assets.connectors.mappings import MAPPINGS
from sync_assets.crashpoints import CRASH_ENV, POINTS
from sync_assets.reconcile.snapshot import snapshot_table

SYNCCTL = str(Path(sys.executable).with_name("syncctl"))

pytestmark = pytest.mark.slow


def syncctl(home: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYNCFABRIC_HOME": str(home)}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [SYNCCTL, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    """A demo landscape nobody ran yet, with drift for the corrections to repair."""
    home = tmp_path_factory.mktemp("crash-template") / "syncfabric"
    built = syncctl(home, "demo", "--customers", "300", "--orders", "1200", "--drift", "6")
    assert built.returncode == 0, built.stderr
    return home


def copy_of(landscape: Path, where: Path) -> Path:
    home = where / "syncfabric"
    shutil.copytree(landscape, home)
    return home


def end_state(home: Path) -> dict[str, object]:
    """What an operator would compare: golden values, the ledger's counts, what the systems hold
    (their normalized snapshots from the last reconciliation), and what is left to do."""
    state: dict[str, object] = {}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        for entity in ENTITIES.values():
            columns = ", ".join(f'"{c}"' for c in (entity.key, *entity.attribute_names))
            state[entity.golden_table] = con.execute(
                f"SELECT {columns}, lifecycle_state FROM {entity.golden_table} ORDER BY 1"
            ).fetchall()
        for mapping in MAPPINGS.values():
            table = snapshot_table(mapping)
            state[table] = con.execute(
                f"SELECT * EXCLUDE (system_key) FROM {table} ORDER BY ALL"
            ).fetchall()
        state["open_corrections"] = con.execute(
            "SELECT count(*) FROM corrections WHERE status IN ('pending', 'dead_lettered')"
        ).fetchall()
    summary = json.loads(syncctl(home, "summary", "--json").stdout)
    state["summary"] = {
        k: summary[k]
        for k in (
            "landed",
            "applied",
            "duplicates",
            "dead_lettered",
            "pending",
            "golden",
            "deleted",
        )
    }
    return state


def unfinished_runs_and_claims(home: Path) -> tuple[list[str], list[str]]:
    code = (
        "import dagster as dg, json\n"
        "with dg.DagsterInstance.get() as i:\n"
        "    runs = [f'{r.job_name}:{r.status.value}' for r in i.get_runs() if not r.is_finished]\n"
        "    s = i.event_log_storage\n"
        "    claims = [f'{k}:{c.run_id}' for k in s.get_concurrency_keys()\n"
        "              for c in s.get_concurrency_info(k).claimed_slots]\n"
        "    claims += [f'{k}:pending:{p.run_id}' for k in s.get_concurrency_keys()\n"
        "               for p in s.get_concurrency_info(k).pending_steps]\n"
        "    print(json.dumps([runs, claims]))\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster")}
    found = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    runs, claims = json.loads(found.stdout)
    return runs, claims


@pytest.fixture(scope="module")
def reference(landscape, tmp_path_factory) -> dict[str, object]:
    home = copy_of(landscape, tmp_path_factory.mktemp("uncrashed"))
    ran = syncctl(home, "run", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout)["corrections"]["delivered"] > 0, "the suite must reach delivery"
    return end_state(home)


@pytest.mark.parametrize("point", list(POINTS))
def test_a_run_killed_at_any_point_is_resumed_by_the_next(point, landscape, reference, tmp_path):
    home = copy_of(landscape, tmp_path)

    crashed = syncctl(home, "run", crash_at=point)
    again = syncctl(home, "run", "--json")

    assert crashed.returncode == -signal.SIGKILL, (
        f"the run did not reach {point}: {crashed.stderr[-2000:]}"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["corrections"]["discrepancies_left"] == 0
    assert end_state(home) == reference
    runs, claims = unfinished_runs_and_claims(home)
    assert runs == [], "no run is left STARTED or NOT_STARTED"
    assert claims == [], "no pool claim is left behind"
