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
HOME_ENV = "SYNCFABRIC_HOME"

_URL_CHARACTERS = "?%"
"""Characters a path pasted into a URL does not keep as written ('#' it keeps, on SQLite)."""

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


DUCKDB_MEMORY_LIMIT_ENV = "SYNCFABRIC_DUCKDB_MEMORY_LIMIT"
DUCKDB_TEMP_DIRECTORY_ENV = "SYNCFABRIC_DUCKDB_TEMP_DIRECTORY"
_MEMORY_SIZE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,3})? ?(%|[KMGT]i?B|B)", re.IGNORECASE)


def duckdb_memory_limit() -> str | None:
    """How much memory DuckDB may use on the warehouse before it spills to its temporary
    directory (`SYNCFABRIC_DUCKDB_MEMORY_LIMIT`, as DuckDB writes it: `2GB`, `512MiB`, `50%`);
    None keeps DuckDB's own limit, 80% of the machine's memory. It bounds DuckDB's buffers, not
    the rows Python holds while reading a system."""
    raw = os.environ.get(DUCKDB_MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return None
    if not _MEMORY_SIZE.fullmatch(raw):
        raise SyncfabricError(
            f"{DUCKDB_MEMORY_LIMIT_ENV}={raw!r} is not an amount of memory; fix: set it to e.g. "
            "2GB, 512MiB or 50% (of the machine's memory), or unset it for DuckDB's own 80%",
            exit_code=EXIT_USAGE,
        )
    return raw


WAREHOUSE_WAIT_ENV = "SYNCFABRIC_WAREHOUSE_WAIT_SECONDS"
DEFAULT_WAREHOUSE_WAIT = 10.0


def warehouse_wait_seconds() -> float:
    """How long opening the warehouse waits while another process holds it before it refuses
    (`SYNCFABRIC_WAREHOUSE_WAIT_SECONDS`, 10 by default; 0 refuses at once). A sensor's read
    holds the file for a moment between runs; a step that meets it waits instead of failing."""
    raw = os.environ.get(WAREHOUSE_WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_WAREHOUSE_WAIT
    if not re.fullmatch(r"[0-9]{1,4}(\.[0-9]{1,3})?", raw):
        raise SyncfabricError(
            f"{WAREHOUSE_WAIT_ENV}={raw!r} is not a number of seconds from 0 to 9999; fix: set "
            f"it to e.g. {DEFAULT_WAREHOUSE_WAIT:g} (the default), 0 to refuse at once, or unset it",
            exit_code=EXIT_USAGE,
        )
    return float(raw)


def duckdb_temp_directory(warehouse: Path) -> Path:
    """Where DuckDB spills what does not fit its memory limit: `SYNCFABRIC_DUCKDB_TEMP_DIRECTORY`,
    else `<warehouse file>.tmp` beside the warehouse, in the data folder (made only when used)."""
    raw = os.environ.get(DUCKDB_TEMP_DIRECTORY_ENV, "").strip()
    return Path(raw).resolve() if raw else warehouse.with_name(warehouse.name + ".tmp")


BUS_URL_ENV = "SYNCFABRIC_BUS_URL"
BUS_PREFIX_ENV = "SYNCFABRIC_BUS_PREFIX"
BUS_STREAM_ENV = "SYNCFABRIC_BUS_STREAM"
BUS_ACK_WAIT_ENV = "SYNCFABRIC_BUS_ACK_WAIT_SECONDS"
BUS_BATCH_ENV = "SYNCFABRIC_BUS_BATCH_SIZE"
_BUS_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class BusSettings:
    """NATS JetStream as an event channel (sync_assets/ingest/jetstream.py), on when
    `SYNCFABRIC_BUS_URL` names a server: subjects `<prefix>.<system>.<entity>.<action>` in one
    stream per landscape, a batch file of at most `batch_size` messages per fetch, and messages
    not acknowledged within `ack_wait` seconds delivered again."""

    url: str
    prefix: str = "syncfabric"
    stream: str | None = None
    """The stream's name; None: `SYNCFABRIC_<PROJECT NAME>`."""
    ack_wait: float = 60.0
    batch_size: int = 1000

    @classmethod
    def from_env(cls) -> BusSettings | None:
        url = os.environ.get(BUS_URL_ENV, "").strip()
        if not url:
            return None
        prefix = _bus_token(BUS_PREFIX_ENV, "syncfabric")
        stream = _bus_token(BUS_STREAM_ENV, None)
        ack_wait = _whole_number(BUS_ACK_WAIT_ENV, 60, 1, 86_400)
        batch_size = _whole_number(BUS_BATCH_ENV, 1000, 1, 100_000)
        return cls(url, prefix or "syncfabric", stream, float(ack_wait), batch_size)


def _bus_token(env: str, default: str | None) -> str | None:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    if not _BUS_TOKEN.fullmatch(raw):
        raise SyncfabricError(
            f"{env}={raw!r} cannot be a NATS subject token or stream name; fix: use letters, "
            "digits, '_' and '-' (at most 64), or unset it",
            exit_code=EXIT_USAGE,
        )
    return raw


def _whole_number(env: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not low <= int(raw) <= high:
        raise SyncfabricError(
            f"{env}={raw!r} is not a whole number from {low} to {high}; fix: set it to e.g. "
            f"{default} (the default), or unset it",
            exit_code=EXIT_USAGE,
        )
    return int(raw)


INGEST_INTERVAL_ENV = "SYNCFABRIC_INGEST_INTERVAL_SECONDS"


def ingest_interval_seconds() -> int:
    """How often the sensors that bring events in tick (landed batches, the bus, the outbox):
    every 30 s unless `SYNCFABRIC_INGEST_INTERVAL_SECONDS` says otherwise (1 to 3600). Lower is
    nearer real time (an event waits up to about two intervals before its run starts: the bus
    sensor lands it, then the landed-batches sensor requests its run), at the cost of a read of
    the landing folders and the warehouse per tick."""
    return _whole_number(INGEST_INTERVAL_ENV, 30, 1, 3600)


OUTBOX_GAP_GRACE_ENV = "SYNCFABRIC_OUTBOX_GAP_GRACE_SECONDS"
OUTBOX_BATCH_ENV = "SYNCFABRIC_OUTBOX_BATCH_SIZE"


@dataclass(frozen=True)
class OutboxSettings:
    """Reading a system's transactional outbox (sync_assets/ingest/outbox.py): a gap in its
    sequence is waited for up to `gap_grace_s` seconds (a transaction still open), then skipped (a
    rolled-back one); a batch file holds at most `batch_size` rows."""

    gap_grace_s: float = 60.0
    batch_size: int = 1000

    @classmethod
    def from_env(cls) -> OutboxSettings:
        return cls(
            float(_whole_number(OUTBOX_GAP_GRACE_ENV, 60, 0, 86_400)),
            _whole_number(OUTBOX_BATCH_ENV, 1000, 1, 100_000),
        )


CELERY_BROKER_URL_ENV = "SYNCFABRIC_CELERY_BROKER_URL"
CELERY_RESULT_BACKEND = "rpc://"
"""Where workers send a step's events back: RabbitMQ itself, as replies to the run's process."""
_CELERY_SCHEMES = ("pyamqp", "amqp", "amqps")


def celery_broker_url() -> str | None:
    """The RabbitMQ broker through which the snapshot and check steps run in `syncctl worker`
    processes (Dagster's celery executor, sync_assets/operate/workers.py); None: they run in the
    run's own process, as without it. Only AMQP: the results come back over the broker itself
    (`rpc://`). The URL's password never appears in an error."""
    raw = os.environ.get(CELERY_BROKER_URL_ENV, "").strip()
    if not raw:
        return None
    from sync_assets.security.redact import redact_text

    scheme, _, rest = raw.partition("://")
    if scheme.lower() not in _CELERY_SCHEMES or not rest.strip("/"):
        shown = redact_text(raw, url=raw) if "://" in raw else "(not shown: not a URL)"
        raise SyncfabricError(
            f"{CELERY_BROKER_URL_ENV}={shown} is not a RabbitMQ URL; fix: set it to e.g. "
            "pyamqp://user:password@rabbitmq-host:5672// (the vhost after the last /), or unset "
            "it to run every step in the run's own process",
            exit_code=EXIT_USAGE,
        )
    return raw


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
    def project_file(self) -> Path:
        """The path of the project this data folder belongs to (sync_assets/project/active.py)."""
        return self.root / "project"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    def system_database(self, system: str) -> Path:
        return self.systems / f"{system}.sqlite"

    def prepare_dagster_home(self) -> Path:
        """Create DAGSTER_HOME with the instance's dagster.yaml (sync_assets/operate/instance.py:
        the project's, with PostgreSQL storage where SYNCFABRIC_DAGSTER_PG_URL is set).

        Dagster builds its SQLite storage's URL by pasting the folder's path into `sqlite:///`, so
        a path holding '?' or '%' would make it open files elsewhere: refused, by name."""
        misread = sorted({c for c in str(self.dagster_home) if c in _URL_CHARACTERS})
        if misread:
            raise SyncfabricError(
                f"the data folder {self.root} holds {' '.join(map(repr, misread))} in its path, "
                "which Dagster's run storage reads as part of a URL (it would keep its runs "
                f"outside the folder); fix: set {HOME_ENV} to a path without ? or %",
                exit_code=EXIT_USAGE,
            )
        from sync_assets.operate.instance import render

        instance_yaml = render()
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        target = self.dagster_home / "dagster.yaml"
        if not target.exists() or target.read_text() != instance_yaml:
            target.write_text(instance_yaml)
        return self.dagster_home
