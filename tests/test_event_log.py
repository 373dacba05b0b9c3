"""syncctl's Dagster event log keeps its SQLite connections open (sync_assets/operate/event_log.py):
what it writes is what Dagster's own storage, as the UI and the daemon use it, reads back."""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from sync_assets.operate.event_log import RUN_FILES_KEPT_OPEN, KeptOpenSqliteEventLogStorage
from sync_assets.runner import open_instance


@dg.asset
def counted() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


def event_types(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.dagster_event.event_type_value
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None
    ]


def test_the_stock_storage_reads_every_event_the_kept_open_one_wrote(data_folder, monkeypatch):
    for variable in ("SYNCFABRIC_HOME", "DAGSTER_HOME"):  # open_instance points them here
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    data_folder.root.mkdir(parents=True)
    folder = data_folder
    written: dict[str, list[str]] = {}
    with open_instance(folder) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, KeptOpenSqliteEventLogStorage)
        for _ in range(RUN_FILES_KEPT_OPEN + 2):  # more runs than files kept open
            result = dg.materialize([counted], instance=instance)
            assert result.success
            written[result.run_id] = event_types(instance, result.run_id)
            assert {"ASSET_MATERIALIZATION", "PIPELINE_SUCCESS"} <= set(written[result.run_id])
        assert len(storage._engines) <= RUN_FILES_KEPT_OPEN + 1, "the index and the latest runs"

    stock = dg.DagsterInstance.from_ref(InstanceRef.from_dir(os.environ["DAGSTER_HOME"]))
    with stock:
        assert type(stock.event_log_storage) is SqliteEventLogStorage
        for run_id, events in written.items():
            assert event_types(stock, run_id) == events
            assert stock.get_run_by_id(run_id).is_success
        materialized = stock.get_latest_materialization_event(dg.AssetKey("counted"))
        assert materialized is not None and materialized.run_id == list(written)[-1]
