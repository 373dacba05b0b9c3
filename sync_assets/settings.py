"""Syncfabric's settings: where it keeps its files (one data folder holds everything on the
embedded default) and the knobs read from the environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sync_assets.errors import EXIT_USAGE, SyncfabricError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = ".syncfabric"

MAX_CLOCK_SKEW_ENV = "SYNCFABRIC_MAX_CLOCK_SKEW_SECONDS"
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)
_MAX_CLOCK_SKEW_LIMIT = timedelta(days=365)


def max_clock_skew() -> timedelta:
    """How far an event's `time` may lie after its arrival before it is dead-lettered.

    Event times decide which write wins, so a time in the future (a wrong clock, a typo such as
    9999-12-31) would beat every later real change forever. A few minutes absorb ordinary clock
    drift between a producer and this machine; `SYNCFABRIC_MAX_CLOCK_SKEW_SECONDS` changes it.
    """
    raw = os.environ.get(MAX_CLOCK_SKEW_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CLOCK_SKEW
    limit = int(_MAX_CLOCK_SKEW_LIMIT.total_seconds())
    # ASCII digits only: int() would also take "1_000" and non-ASCII digits
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) > limit:
        raise SyncfabricError(
            f"{MAX_CLOCK_SKEW_ENV}={raw!r} is not a whole number of seconds from 0 to {limit}; "
            f"fix: set it to e.g. {int(DEFAULT_MAX_CLOCK_SKEW.total_seconds())} (the default), "
            "or unset it",
            exit_code=EXIT_USAGE,
        )
    return timedelta(seconds=int(raw))


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
