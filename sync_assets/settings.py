"""Where Syncfabric keeps its files: one data folder holds everything on the embedded default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = ".syncfabric"


@dataclass(frozen=True)
class DataFolder:
    """The layout of the data folder (`SYNCFABRIC_HOME`, `.syncfabric/` by default)."""

    root: Path

    @classmethod
    def from_env(cls) -> DataFolder:
        return cls(Path(os.environ.get("SYNCFABRIC_HOME", DEFAULT_HOME)).resolve())

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
