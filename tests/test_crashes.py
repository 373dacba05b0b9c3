"""The crash suite: `syncctl run` SIGKILLed at each named point, then run again, ends exactly where
an uncrashed run ends: the same golden records, counts and systems, no run left STARTED, no pool
claim left, exit 0.

The kill comes from the process itself (`SYNCFABRIC_CRASH_AT`, sync_assets/crashpoints.py): no
cleanup, no flush, as a power cut or the OOM killer would leave it.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import duckdb
import pytest
from commands import syncctl, unfinished_runs_and_claims

from sync_assets.crashpoints import POINTS
from sync_assets.project import current
from sync_assets.reconcile.snapshot import snapshot_table

pytestmark = pytest.mark.slow


LEFT_UNFINISHED = {"after-raw-insert", "after-raw-commit", "mid-validation", "mid-apply"}
"""Points where the ledger holds batches a run took and did not finish."""


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
        for entity in current().entities.values():
            columns = ", ".join(f'"{c}"' for c in (entity.key, *entity.attribute_names))
            state[entity.golden_table] = con.execute(
                f"SELECT {columns}, lifecycle_state FROM {entity.golden_table} ORDER BY 1"
            ).fetchall()
        for mapping in current().mappings.values():
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

    crashed = syncctl(home, "run", SYNCFABRIC_CRASH_AT=point)
    stopped = syncctl(home, "summary", "--json")
    again = syncctl(home, "run", "--json")

    assert crashed.returncode == -signal.SIGKILL, (
        f"the run did not reach {point}: {crashed.stderr[-2000:]}"
    )
    if point in LEFT_UNFINISHED:
        assert stopped.returncode == 1, "pending events never add up"
        assert not json.loads(stopped.stdout)["adds_up"]
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["corrections"]["discrepancies_left"] == 0
    assert end_state(home) == reference
    runs, claims = unfinished_runs_and_claims(home)
    assert [(r.job_name, r.status) for r in runs] == [], "no run is left STARTED or NOT_STARTED"
    assert [(c.pool, c.run_id) for c in claims] == [], "no pool claim is left behind"
