"""Operating Syncfabric: what keeps a data folder usable when processes die or collide.

- `instance.py`: the Dagster instance's dagster.yaml (SQLite, or PostgreSQL where
  SYNCFABRIC_DAGSTER_PG_URL is set).
- `lock.py`: one syncctl at a time writes a data folder (an flock the kernel releases on death);
  DuckDB's own refusal of the warehouse, said plainly.
- `recovery.py`: runs whose process is gone are marked failed and their pool claims freed.
- `failures.py`: a run's step failures as one line each, and the operator errors among them.
- `doctor.py`: one report of everything that can be stuck, and its repair.
- `progress.py`: what a long command is doing, on a terminal.
- `trace.py`: one change followed through every hop (`syncctl trace`).
- `metrics.py`: figures per hop, kept in the `metrics` table and plotted in the UI.
- `report.py`: the HTML dashboard of those figures (`syncctl report`).

Pure logic lives in plain functions; the Dagster instance is passed in where one is needed.
"""
