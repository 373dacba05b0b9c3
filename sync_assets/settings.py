"""Where Syncfabric keeps its files: one data folder holds everything on the embedded default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sync_assets.errors import EXIT_USAGE, SyncfabricError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = ".syncfabric"
HOME_ENV = "SYNCFABRIC_HOME"


@dataclass(frozen=True)
class DataFolder:
    """The layout of the data folder (`SYNCFABRIC_HOME`, `.syncfabric/` by default)."""

    root: Path

    @classmethod
    def from_env(cls) -> DataFolder:
        return cls(Path(os.environ.get(HOME_ENV, DEFAULT_HOME)).resolve())

    def require(self) -> DataFolder:
        """This folder, if it is a data folder; otherwise an error naming the path and how to
        fix it, rather than zeros read from an empty place that looks like success.

        A data folder is a directory holding at least one of what Syncfabric keeps there: the
        landing zone, the warehouse, Dagster's instance or the demo's systems.
        """
        named = (
            f"{HOME_ENV}={os.environ[HOME_ENV]}"
            if os.environ.get(HOME_ENV)
            else (f"{HOME_ENV} is not set, so the default {DEFAULT_HOME}/ in the current folder")
        )
        if not self.root.exists():
            problem = "there is no such folder"
        elif not self.root.is_dir():
            problem = "it is not a folder"
        elif not any(
            p.exists() for p in (self.landing, self.warehouse, self.dagster_home, self.systems)
        ):
            problem = "it holds no landing/, warehouse.duckdb, dagster/ or systems/"
        else:
            return self
        raise SyncfabricError(
            f"no Syncfabric data folder at {self.root} ({named}): {problem}. Point {HOME_ENV} at "
            "the data folder (a typo?), or create one: `syncctl demo` builds the demo landscape, "
            "and systems landing batches in <folder>/landing/<system>/ make a real one.",
            exit_code=EXIT_USAGE,
        )

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def systems(self) -> Path:
        return self.root / "systems"

    @property
    def lock_file(self) -> Path:
        """Held by the syncctl command writing the folder (sync_assets/operate/lock.py)."""
        return self.root / "syncctl.lock"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    def system_database(self, system: str) -> Path:
        return self.systems / f"{system}.sqlite"

    def prepare_dagster_home(self) -> Path:
        """Create DAGSTER_HOME with the project's dagster.yaml (the DuckDB writer pool limit)."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        instance_yaml = (PROJECT_ROOT / "dagster.yaml").read_text()
        target = self.dagster_home / "dagster.yaml"
        if not target.exists() or target.read_text() != instance_yaml:
            target.write_text(instance_yaml)
        return self.dagster_home
