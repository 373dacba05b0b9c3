"""Producers that validate before they publish: an event refused here never reaches a channel.

A producer (`syncctl publish`, or a no-code tool's webhook handler calling this module) wraps a
payload in the CloudEvents envelope (`envelope`), checks it against the current contracts
(`check`) and publishes it (`publish`) through one of the system's channels.

The check runs the pipeline's own gates, not a copy of them: the candidate lines go through raw
ingest (`ingest_lines`) and `validate_batch` on a scratch in-memory DuckDB warehouse with the
project's schema and keys of this process only (nothing is written to disk, no key is stored), in
a transaction rolled back once its dead letters, the refusals, are read. So a refusal gives EXACTLY the reason the dead
letter would give had the same lines landed as one batch in the system's channel, `line N: `
included: N is the event's place in the call, which is its line in the batch `publish` writes
(and in the file `syncctl publish --file` reads).

What a single batch's validation cannot see, the check adds: two events of one call with the same
id (rule `duplicate_id`; landed, the second would be a silent duplicate). An event whose id the
warehouse already accepted is not looked up (that needs the warehouse, which one writer holds):
landed, it is recorded as a duplicate, never applied twice.

`publish` is all or nothing: one refused event refuses the call (`PublishRefused`, with every
refusal), and nothing is sent. Otherwise the events go out together, as the lines that were
checked, through a `Channel` (a `send(system, lines)` returning the reference the batch goes by):

- `LandingChannel`: one batch file in the system's landing folder, written atomically.
- `BusChannel`: NATS JetStream (SYNCFABRIC_BUS_URL), a message per event on the system's
  subjects with `Nats-Msg-Id` its id, so the server drops a resend within its duplicate window.
- `OutboxChannel`: rows of the system's outbox table (`channels: outbox:` in its file), inserted
  in one transaction, for a producer beside the system (a webhook handler) rather than the
  system's own application, which writes its rows in the transaction of its change.

Whatever the channel, the same ids: an event resent later, by any channel, is recorded as a
duplicate by ingest and never applied twice.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from sync_assets.catalog.events import make_event, sign_event, to_line
from sync_assets.errors import EXIT_FAILED, EXIT_USAGE, SyncfabricError
from sync_assets.ingest.landing import Batch, LandingZone, batch_id_for, digest
from sync_assets.ingest.raw import ingest_lines
from sync_assets.ingest.signatures import signing_key
from sync_assets.ingest.validate import validate_batch
from sync_assets.project import current
from sync_assets.project.model import Project, System
from sync_assets.security import sql as pii
from sync_assets.settings import BusSettings, DataFolder
from sync_assets.warehouse import create_schema

PUBLISHED_STEM = "published"
"""The start of the name of each batch file `LandingChannel` writes."""

Event = Mapping[str, Any] | str
"""An event to check or publish: an envelope, or a line of JSON as a producer wrote it."""


@dataclass(frozen=True)
class Refused:
    """One event a producer may not publish, and why: the dead letter it would become."""

    line: int
    """Its place in the call, from 1: its line in the batch that would be published."""
    event_id: str | None
    rule: str
    reason: str
    """The dead letter's reason, `line N: ` and all: the field, the rule broken and the fix."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "event_id": self.event_id,
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Published:
    """What a channel took: one batch of events of one system."""

    system: str
    channel: str
    batch_id: str
    """The reference the batch goes by in the channel (the landing batch id)."""
    event_ids: list[str | None] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "channel": self.channel,
            "batch_id": self.batch_id,
            "event_ids": list(self.event_ids),
        }


class PublishRefused(SyncfabricError):
    """A publish refused: at least one event is invalid, so none was sent (exit 1)."""

    def __init__(self, refused: list[Refused]) -> None:
        lines = "\n".join(f"refused {r.event_id or '(no id)'}: {r.reason}" for r in refused)
        super().__init__(
            f"{lines}\nnothing published: {len(refused)} event(s) refused; fix them and publish "
            "the call again",
            exit_code=EXIT_FAILED,
        )
        self.refused = refused


class Channel(Protocol):
    """Where published events go: one batch of a system's event lines, all or nothing."""

    name: str

    def send(self, system: str, lines: Sequence[str]) -> str:
        """Send the lines as one batch; the reference it goes by."""
        ...


class LandingChannel:
    """The system's landing folder: one batch file, written atomically (a temp file, a rename)."""

    def __init__(self, folder: DataFolder) -> None:
        self.zone = LandingZone(folder.landing)
        self.name = "landing"

    def send(self, system: str, lines: Sequence[str]) -> str:
        moment = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        stem = f"{PUBLISHED_STEM}-{moment}-{uuid.uuid4().hex[:8]}"
        return self.zone.write_batch(system, stem, lines).batch_id


class BusChannel:
    """NATS JetStream: the lines as messages on the system's subjects (`jetstream.publish_lines`);
    the reference is `<stream>:<first>-<last>`, the stream sequences holding them."""

    name = "bus"

    def __init__(self, settings: BusSettings | None = None) -> None:
        self.settings = settings

    def send(self, system: str, lines: Sequence[str]) -> str:
        from sync_assets.ingest import jetstream

        return jetstream.publish_lines(lines, system, self.settings).reference


class OutboxChannel:
    """The system's outbox table in its own database: the lines as rows, in one transaction (all
    or nothing), through `url_of(system)`: the URL of the system's `writer_env`, as deliveries
    write (its `write_url_env`, else its `url_env`). That role needs INSERT on the outbox table,
    which `syncctl grants` leaves to the application's own role. The outbox drain reads the rows
    as it reads the system's own. The reference is `<table>:<first>-<last>`, the sequences the
    database gave them."""

    name = "outbox"

    def __init__(self, url_of: Callable[[str], str]) -> None:
        self.url_of = url_of

    def send(self, system: str, lines: Sequence[str]) -> str:
        import sqlalchemy as sa

        from sync_assets.connectors.problems import reading
        from sync_assets.connectors.sources import open_writer
        from sync_assets.ingest.outbox import outbox_table

        table = _system(system).outbox
        if table is None:
            raise SyncfabricError(
                f"system {system!r} declares no outbox table; fix: add `channels: {{outbox: "
                f"{{table: <name>}}}}` to systems/{system}.yaml (syncctl grants prints its DDL), "
                "or publish to its landing folder or the bus",
                exit_code=EXIT_USAGE,
            )
        url = self.url_of(system)
        outbox = outbox_table(table)
        sequences = []
        with reading(system, url):
            engine = open_writer(url, timeout_s=10.0)
            try:
                with engine.begin() as connection:
                    for line in lines:  # a row at a time: each one's sequence, on every database
                        inserted = connection.execute(sa.insert(outbox).values(event=line))
                        key = inserted.inserted_primary_key
                        assert key is not None, "an insert of one row has its key"
                        sequences.append(int(key[0]))
            finally:
                engine.dispose()
        return f"{table}:{min(sequences)}-{max(sequences)}" if sequences else table


CHANNELS = ("landing", "bus", "outbox")
"""The channels a producer publishes to, by the name `syncctl publish --channel` takes."""


def channel_named(name: str | None, folder: DataFolder) -> Channel:
    """The channel called `name` (one of CHANNELS), for the data folder `folder`; by default the
    bus where SYNCFABRIC_BUS_URL names one (the channel the pipeline then drains), else the
    landing folder."""
    settings = BusSettings.from_env()
    if name is None:
        name = "landing" if settings is None else "bus"
    if name == "bus":
        if settings is None:
            raise SyncfabricError(
                "the bus channel needs SYNCFABRIC_BUS_URL; fix: export "
                "SYNCFABRIC_BUS_URL=nats://<host>:4222, or publish to the landing folder",
                exit_code=EXIT_USAGE,
            )
        return BusChannel(settings)
    if name == "outbox":
        from sync_assets.connectors.sources import configured_url

        def url_of(system: str) -> str:
            return configured_url(_system(system).writer_env, folder.system_database(system))

        return OutboxChannel(url_of)
    if name == "landing":
        return LandingChannel(folder)
    raise SyncfabricError(
        f"unknown channel {name!r}; the channels are {', '.join(CHANNELS)}", exit_code=EXIT_USAGE
    )


# -- building an event ----------------------------------------------------------------------------


def envelope(
    entity: str,
    action: str,
    key: str,
    data: Any,
    *,
    system: str,
    time: datetime | None = None,
    event_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    schema_version: int | None = None,
) -> dict[str, Any]:
    """The event `<entity>.<action>` of `key` from `system`, carrying `data`, in the current
    schema version, dated now unless `time` says; signed when the system signs (its key from the
    variable its file names). Nothing is judged here: `check` does, as ingest would."""
    owner = _system(system)
    built = make_event(
        event_type=f"{entity}.{action}",
        subject=key,
        origin=owner.name,
        source=owner.source,
        data=data,
        time=time or datetime.now(UTC),
        schema_version=schema_version or current().current_version.get(entity, 1),
        event_id=event_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    signing = signing_key(owner)
    return built if signing is None else sign_event(built, signing)


# -- checking and publishing ----------------------------------------------------------------------


def check(events: Sequence[Event], system: str) -> list[Refused]:
    """The events of the call that `system`'s channel would refuse, with the reasons ingest would
    give them (nothing refused: an empty list). Nothing is sent."""
    return _refusals(_lines(events), _system(system))


def publish(
    events: Sequence[Event],
    system: str,
    *,
    folder: DataFolder | None = None,
    channel: Channel | None = None,
) -> Published:
    """Check the events, then send them as one batch through `channel` (by default the landing
    folder of the data folder `folder`). One refused event refuses the call: `PublishRefused`,
    with every refusal, and nothing sent."""
    if channel is None:
        if folder is None:
            raise TypeError("publish needs the data folder, or a channel")
        channel = LandingChannel(folder)
    owner = _system(system)
    lines = _lines(events)
    refused = _refusals(lines, owner)
    if refused:
        raise PublishRefused(refused)
    reference = channel.send(owner.name, lines)
    return Published(owner.name, channel.name, reference, [_event_id(line) for line in lines])


def _system(name: str) -> System:
    systems = current().systems
    if name not in systems:
        raise SyncfabricError(
            f"unknown system {name!r}; the project's systems are {', '.join(systems)}",
            exit_code=EXIT_USAGE,
        )
    return systems[name]


def _lines(events: Sequence[Event]) -> list[str]:
    if isinstance(events, str | Mapping):
        raise TypeError("events is a list of events (envelopes or JSON lines), not one event")
    if not events:
        raise SyncfabricError("nothing to publish: no event given", exit_code=EXIT_USAGE)
    lines = []
    for n, event in enumerate(events, 1):
        if isinstance(event, str):
            if "\n" in event:
                raise SyncfabricError(
                    f"event {n} holds a line break: an event is one line of JSON",
                    exit_code=EXIT_USAGE,
                )
            lines.append(event)
            continue
        try:
            lines.append(to_line(dict(event)))
        except (TypeError, ValueError) as error:
            raise SyncfabricError(
                f"event {n} cannot be written as JSON ({error}); fix: send only JSON values "
                "(strings, numbers, booleans, null, lists and objects)",
                exit_code=EXIT_USAGE,
            ) from None
    return lines


def _event_id(line: str) -> str | None:
    try:
        found = json.loads(line).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return found if isinstance(found, str) else None


def _refusals(lines: list[str], system: System) -> list[Refused]:
    """Dead letters of the lines landed as one batch of `system`'s channel, and the ids sent twice
    in the call; by line."""
    refused = {r.line: r for r in _dead_letters(lines, system)}
    ids = [_event_id(line) for line in lines]
    first: dict[str, int] = {}
    for line_no, event_id in enumerate(ids, 1):
        if event_id is None or line_no in refused:
            continue
        if event_id in first:
            refused[line_no] = Refused(
                line_no,
                event_id,
                "duplicate_id",
                f"line {line_no}: event id {event_id!r} is also the id of line "
                f"{first[event_id]} of this call, and an event's id names it alone; fix: give "
                "every event its own id (a copy would be dropped as a duplicate)",
            )
        else:
            first[event_id] = line_no
    return [refused[n] for n in sorted(refused)]


def _dead_letters(lines: list[str], system: System) -> list[Refused]:
    """What validation dead-letters of the lines, landed as one batch in `system`'s channel, on a
    throwaway in-memory warehouse: raw ingest and `validate_batch` as the pipeline runs them, in a
    transaction rolled back once the dead letters are read."""
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    name = f"{PUBLISHED_STEM}-check.jsonl"
    # The batch never touches a disk: its lines go in as bytes, from memory.
    batch = Batch(batch_id_for(system.name, name, digest(data)), system.name, Path(name))
    with _SCRATCH_LOCK:
        con = _scratch_warehouse()
        con.execute("BEGIN TRANSACTION")
        try:
            ingest_lines(con, batch, data)
            validate_batch(con, batch.batch_id)
            found = con.execute(
                "SELECT line_no, event_id, rule, reason FROM dead_letters ORDER BY line_no"
            ).fetchall()
        except duckdb.Error as error:
            pii.raise_failure(con, error)
            raise
        finally:
            _roll_back(con)
    return [Refused(line_no, event_id, rule, reason) for line_no, event_id, rule, reason in found]


_SCRATCH_LOCK = threading.Lock()
"""One check at a time per process on the scratch warehouse (a webhook's threads wait here)."""
_scratch: tuple[int, Project, duckdb.DuckDBPyConnection] | None = None
"""The scratch warehouse: (process, project, connection). Making the schema costs about as much as
checking one event, so it is made once per process and project, and every check rolls back."""


def _scratch_warehouse() -> duckdb.DuckDBPyConnection:
    """The in-memory warehouse with the current project's tables and PII functions, keys of this
    process only (none written anywhere; with the PII variables set, those keys). Under the lock."""
    global _scratch
    project = current()
    if _scratch is not None and _scratch[0] == os.getpid() and _scratch[1] is project:
        return _scratch[2]
    _discard_scratch()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    create_schema(con)
    pii.install(con)
    _scratch = (os.getpid(), project, con)
    return con


def _roll_back(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:  # a connection DuckDB gave up on: the next check makes another
        _discard_scratch()


def _discard_scratch() -> None:
    global _scratch
    if _scratch is not None and _scratch[0] == os.getpid():
        pii.forget(_scratch[2])
        _scratch[2].close()
    _scratch = None


def read_event_lines(path: Path | str) -> list[str]:
    """The lines of a JSON Lines file of events, as written (the last line break dropped), for
    `check` and `publish`: line N of the file is line N of the batch, and of its refusal."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SyncfabricError(
            f"cannot read {path}: {error.strerror}", exit_code=EXIT_USAGE
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SyncfabricError(
            f"{path} is not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); fix: "
            "write the events in UTF-8",
            exit_code=EXIT_USAGE,
        ) from None
    return text.removesuffix("\n").split("\n") if text else []
