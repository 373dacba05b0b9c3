"""NATS JetStream as an event channel: each fetched range of messages becomes a batch file.

On when `SYNCFABRIC_BUS_URL` names a server (settings.py's `BusSettings`). One stream per
landscape (`SYNCFABRIC_<PROJECT NAME>`, or `SYNCFABRIC_BUS_STREAM`) holds the subjects
`<prefix>.<system>.<entity>.<action>`; each system has a durable pull consumer on
`<prefix>.<system>.>` with AckPolicy ALL: acknowledging a message acknowledges every earlier one.

A subject is a channel bound to its system, like the system's landing folder: the messages of one
fetch are written, one line per message, as the batch file `js-<first>-<last>.jsonl` (stream
sequences) in the system's landing folder, atomically (`LandingZone.write_batch`). From there raw
ingest, validation, dead letters, duplicates and replay are the landing zone's, whatever the
channel.

A message is acknowledged only after its batch is committed in the warehouse (state `raw` or
later in the ledger), and only when every message the consumer has delivered and not yet seen
acknowledged is in a batch file written here (`may_ack`): an acknowledgement of a later message
can never take with it one that a crashed process fetched and never wrote. What is not
acknowledged comes back after `ack_wait`; a range already committed is then acknowledged, and
one grouped differently lands again and its repeats are recorded as duplicates (event ids).
A crash between the commit and the acknowledgement loses nothing and applies nothing twice.

`publish` sets `Nats-Msg-Id` to the event's id, so the server drops a resend within its
duplicate window. The async client is wrapped with `asyncio.run`: callers stay plain functions.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import duckdb

from sync_assets.catalog.events import to_line
from sync_assets.errors import EXIT_FAILED, SyncfabricError
from sync_assets.ingest.landing import BATCH_SUFFIX, SEPARATOR, LandingZone
from sync_assets.project import Project, current
from sync_assets.settings import BusSettings

STEM_PREFIX = "js"
CONNECT_TIMEOUT_S = 3.0
SHORT_WAIT_S = 0.5
"""How long a fetch waits for messages when none is known to be on its way."""
_SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]+")

Committed = Callable[[str, Sequence[str]], set[str]]
"""(system, batch file stems) -> the stems whose batches are committed (raw or later)."""


# -- names ----------------------------------------------------------------------------------------


def batch_stem(first: int, last: int) -> str:
    """The batch file's stem for a range of stream sequences."""
    return f"{STEM_PREFIX}-{first}-{last}"


def stream_name(settings: BusSettings, project_name: str) -> str:
    if settings.stream:
        return settings.stream
    return "SYNCFABRIC_" + re.sub(r"[^A-Za-z0-9]+", "_", project_name).strip("_").upper()


def subject(prefix: str, system: str, event_type: str) -> str:
    """`<prefix>.<system>.<entity>.<action>`; refused for a type a subject cannot carry."""
    tokens = event_type.split(".")
    if len(tokens) != 2 or not all(_SUBJECT_TOKEN.fullmatch(t) for t in tokens):
        raise SyncfabricError(
            f"event type {event_type!r} is not '<entity>.<action>' in letters, digits, '_' and "
            "'-': it cannot name a NATS subject"
        )
    return f"{prefix}.{system}.{event_type}"


def system_filter(prefix: str, system: str) -> str:
    return f"{prefix}.{system}.>"


def durable_name(system: str) -> str:
    return f"syncfabric_{system}"


# -- the pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The messages of one fetch for one system, landed as one batch file."""

    system: str
    first: int
    last: int
    count: int
    reply: str
    """The last message's reply subject: acknowledging it acknowledges the range (AckPolicy ALL)."""

    @property
    def stem(self) -> str:
        return batch_stem(self.first, self.last)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Range:
        return cls(**data)


class Step(Enum):
    ACK = "ack"
    """The range's batch is committed: acknowledge it."""
    LAND = "land"
    """Write the range's batch file."""
    WAIT = "wait"
    """Its file is landed and not yet committed: the ingest run takes it."""


def decide(committed: bool, file_pending: bool) -> Step:
    if committed:
        return Step.ACK
    return Step.WAIT if file_pending else Step.LAND


def may_ack(outstanding: int, held: int) -> bool:
    """Whether an acknowledgement may go out: AckPolicy ALL acknowledges every message up to the
    one acknowledged, so only when the consumer's `outstanding` messages (delivered, not
    acknowledged) are exactly the `held` ones here, all written to batch files. More outstanding:
    some process fetched messages and never wrote them; they come back after ack_wait."""
    return outstanding == held


def ack_through(ranges: Sequence[Range], committed: set[str]) -> Range | None:
    """The last range of the longest run of ranges, in sequence order, whose batches are all
    committed: acknowledging its last message acknowledges exactly them."""
    through = None
    for found in sorted(ranges, key=lambda r: r.first):
        if found.stem not in committed:
            break
        through = found
    return through


def lines_of(payloads: Iterable[bytes]) -> list[bytes]:
    """One line per message. A line break inside a message (pretty-printed JSON) becomes a space:
    between JSON tokens it means the same, and inside a JSON string it was never valid."""
    return [payload.replace(b"\r", b" ").replace(b"\n", b" ") for payload in payloads]


@dataclass(frozen=True)
class Lag:
    """How far a system's consumer is behind its subjects."""

    system: str
    waiting: int
    """Messages not yet delivered (num_pending)."""
    unacknowledged: int
    """Messages delivered and not yet acknowledged (num_ack_pending)."""
    oldest_age_s: float | None
    """Seconds since the oldest message not yet acknowledged was stored; None when none is."""

    @property
    def pending(self) -> int:
        """Messages the consumer has not had acknowledged: waiting or in flight."""
        return self.waiting + self.unacknowledged


def oldest_pending_seq(info: Any) -> int:
    """The stream sequence from which the oldest message not acknowledged is looked up: the one
    after the consumer's ack floor (AckPolicy ALL: everything up to the floor is acknowledged);
    the first message on the system's subjects at or after it is that message."""
    return int(info.ack_floor.stream_seq) + 1


def stored_at(stored: datetime | str | None) -> datetime | None:
    """A stream message's time as the server stored it (the client gives a datetime; an RFC 3339
    string is read too); None when not known."""
    if isinstance(stored, str):
        try:
            stored = datetime.fromisoformat(stored.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(stored, datetime) and stored.tzinfo is None:
        stored = stored.replace(tzinfo=UTC)
    return stored if isinstance(stored, datetime) else None


def lag_of(system: str, info: Any, oldest: datetime | None, now: datetime) -> Lag:
    """A system's lag from its consumer's info (num_pending, num_ack_pending) and the time its
    oldest message not acknowledged was stored (`oldest_pending_seq`): no age when nothing is
    pending, or when that time is not known; never negative (clocks of two hosts)."""
    waiting, unacknowledged = int(info.num_pending or 0), int(info.num_ack_pending or 0)
    age = None
    if (waiting or unacknowledged) and oldest is not None:
        age = max(0.0, (now - oldest).total_seconds())
    return Lag(system, waiting, unacknowledged, age)


# -- the warehouse side ---------------------------------------------------------------------------


def committed_stems(con: duckdb.DuckDBPyConnection, system: str, stems: Sequence[str]) -> set[str]:
    """The stems among `stems` whose batches of `system` are committed (raw or later)."""
    if not stems:
        return set()
    rows = con.execute(
        """SELECT stem FROM unnest(?) AS t(stem)
           WHERE EXISTS (SELECT 1 FROM batches WHERE system = ? AND state <> 'landed'
                         AND starts_with(batch_id, ? || stem || '@'))""",
        [list(stems), system, f"{system}{SEPARATOR}"],
    ).fetchall()
    return {row[0] for row in rows}


# -- the bus side ---------------------------------------------------------------------------------


def _where(settings: BusSettings) -> str:
    """The server's address without credentials, for messages."""
    parts = urlsplit(settings.url)
    return f"{parts.hostname}:{parts.port or 4222}" if parts.hostname else "the server"


async def _quiet(_error: Exception) -> None:
    """Errors are raised to the caller as a SyncfabricError; nothing printed on the way."""


async def _connect(settings: BusSettings) -> Any:
    import nats

    try:
        return await nats.connect(
            settings.url,
            connect_timeout=CONNECT_TIMEOUT_S,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=_quiet,  # the client's default prints a traceback per attempt
        )
    except Exception as error:  # the client raises its own, OSError or TimeoutError
        raise SyncfabricError(
            f"cannot reach the NATS server at {_where(settings)} (SYNCFABRIC_BUS_URL): "
            f"{type(error).__name__}; fix: start it, or unset SYNCFABRIC_BUS_URL to take events "
            "from the landing folders alone",
            exit_code=EXIT_FAILED,
        ) from error


async def _ensure(js: Any, settings: BusSettings, project: Project) -> str:
    """The landscape's stream and each system's durable consumer, created where missing."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    name = stream_name(settings, project.name)
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(name=name, subjects=[f"{settings.prefix}.>"])
    for system in project.system_names:
        await js.add_consumer(
            name,
            ConsumerConfig(
                durable_name=durable_name(system),
                ack_policy=AckPolicy.ALL,
                ack_wait=settings.ack_wait,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=system_filter(settings.prefix, system),
                max_ack_pending=-1,
            ),
        )
    return name


async def _fetch(subscription: Any, size: int, timeout: float) -> list[Any]:
    import nats.errors

    try:
        return list(await subscription.fetch(size, timeout=timeout))
    except (nats.errors.TimeoutError, TimeoutError):  # the client raises either, as it goes
        return []


def _range(system: str, messages: list[Any]) -> Range:
    seqs = [m.metadata.sequence.stream for m in messages]
    return Range(system, min(seqs), max(seqs), len(messages), messages[-1].reply)


def _land(zone: LandingZone, found: Range, messages: list[Any], committed: Committed) -> Step:
    """Write the range's batch file unless it is committed or already pending."""
    pending = (zone.system_folder(found.system) / f"{found.stem}{BATCH_SUFFIX}").is_file()
    step = decide(bool(committed(found.system, [found.stem])), pending)
    if step is Step.LAND:
        zone.write_batch(found.system, found.stem, lines_of(m.data for m in messages))
    return step


async def _ack(nc: Any, found: Range) -> bool:
    """Acknowledge `found` (and, AckPolicy ALL, everything before it); False if the server did
    not confirm: what it did not take comes back after ack_wait."""
    try:
        await nc.request(found.reply, b"+ACK", timeout=CONNECT_TIMEOUT_S)
    except Exception:
        return False
    return True


async def _lag(js: Any, stream: str, settings: BusSettings, system: str, info: Any) -> Lag:
    oldest = None
    if info.num_pending or info.num_ack_pending:
        try:
            message = await js.get_msg(
                stream,
                seq=oldest_pending_seq(info),
                subject=system_filter(settings.prefix, system),
                next=True,
            )
            oldest = stored_at(message.time)
        except Exception:  # the age is a nicety; the counts are what matter
            oldest = None
    return lag_of(system, info, oldest, datetime.now(UTC))


# -- what callers use -----------------------------------------------------------------------------


@dataclass
class Published:
    published: int = 0
    duplicates: int = 0
    """Messages the server dropped: their event id was stored within its duplicate window."""
    stream: str = ""
    sequences: list[int] = field(default_factory=list)
    """Each message's stream sequence (a dropped one's: the sequence of the one it repeats)."""

    @property
    def reference(self) -> str:
        """`<stream>:<first>-<last>`, the stream sequences holding the messages."""
        if not self.sequences:
            return self.stream
        return f"{self.stream}:{min(self.sequences)}-{max(self.sequences)}"


def publish(
    events: Iterable[dict[str, Any]],
    system: str,
    settings: BusSettings | None = None,
    project: Project | None = None,
) -> Published:
    """Publish events on the system's subjects, each with `Nats-Msg-Id` its CloudEvents id."""
    messages = [(str(e.get("type", "")), str(e["id"]), to_line(e)) for e in events]
    return _publish_messages(messages, system, settings, project)


def publish_lines(
    lines: Sequence[str],
    system: str,
    settings: BusSettings | None = None,
    project: Project | None = None,
) -> Published:
    """`publish` of events already written as lines (a producer's checked batch), sent as they
    are: each on the subject of its `type`, with `Nats-Msg-Id` its `id`."""
    messages = []
    for line in lines:
        event = json.loads(line)
        messages.append((str(event.get("type", "")), str(event["id"]), line))
    return _publish_messages(messages, system, settings, project)


def _publish_messages(
    messages: list[tuple[str, str, str]],
    system: str,
    settings: BusSettings | None,
    project: Project | None,
) -> Published:
    """(event type, event id, line) of each event, published in order."""
    settings, project = _settings(settings), project or current()
    if system not in project.system_names:
        raise SyncfabricError(f"unknown system {system!r}; the project has {project.system_names}")
    return asyncio.run(_publish(messages, system, settings, project))


async def _publish(
    messages: list[tuple[str, str, str]], system: str, settings: BusSettings, project: Project
) -> Published:
    nc = await _connect(settings)
    try:
        js = nc.jetstream()
        result = Published(stream=await _ensure(js, settings, project))
        for event_type, event_id, line in messages:
            ack = await js.publish(
                subject(settings.prefix, system, event_type),
                line.encode("utf-8"),
                headers={"Nats-Msg-Id": event_id},
            )
            result.sequences.append(ack.seq)
            if ack.duplicate:
                result.duplicates += 1
            else:
                result.published += 1
        return result
    finally:
        await nc.close()


@dataclass
class Drained:
    """What a drain fetched: the ranges landed (or found committed), and per system how many
    distinct messages they hold (a message delivered again during the drain counts once)."""

    ranges: list[Range] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)


def drain(
    zone: LandingZone,
    committed: Committed,
    settings: BusSettings | None = None,
    project: Project | None = None,
) -> Drained:
    """Fetch every message waiting for each system into batch files (`syncctl run`), without
    acknowledging any; `acknowledge` does, once the batches are committed. Messages delivered
    earlier and not acknowledged (a crashed run's) are waited for, up to ack_wait, so this run
    takes them."""
    settings, project = _settings(settings), project or current()
    return asyncio.run(_drain(zone, committed, settings, project))


async def _drain(
    zone: LandingZone, committed: Committed, settings: BusSettings, project: Project
) -> Drained:
    nc = await _connect(settings)
    try:
        js = nc.jetstream()
        stream = await _ensure(js, settings, project)
        drained = Drained()
        for system in project.system_names:
            subscription = await js.pull_subscribe_bind(durable_name(system), stream)
            try:
                info = await subscription.consumer_info()
                expected = info.num_pending + info.num_ack_pending
                seen: set[int] = set()
                last_fresh = time.monotonic()
                while expected:  # nothing waiting: the next run takes what comes meanwhile
                    wait = settings.ack_wait + 1 if len(seen) < expected else SHORT_WAIT_S
                    messages = await _fetch(subscription, settings.batch_size, wait)
                    fresh = {m.metadata.sequence.stream for m in messages} - seen
                    if not fresh:  # nothing, or only messages back that a file here holds
                        gave_up = time.monotonic() - last_fresh > settings.ack_wait + 1
                        if len(seen) >= expected or not messages or gave_up:
                            break
                        continue
                    last_fresh = time.monotonic()
                    found = _range(system, messages)
                    _land(zone, found, messages, committed)
                    drained.ranges.append(found)
                    seen |= fresh
                drained.held[system] = len(seen)
            finally:
                await subscription.unsubscribe()
        return drained
    finally:
        await nc.close()


def acknowledge(
    drained: Drained,
    committed: Committed,
    settings: BusSettings | None = None,
    project: Project | None = None,
) -> list[Range]:
    """Acknowledge, per system, the committed ranges of a drain (see `ack_through`, `may_ack`);
    returns the ranges acknowledged through (one per system at most)."""
    settings, project = _settings(settings), project or current()
    if not drained.ranges:
        return []
    return asyncio.run(_acknowledge(drained, committed, settings, project))


async def _acknowledge(
    drained: Drained, committed: Committed, settings: BusSettings, project: Project
) -> list[Range]:
    nc = await _connect(settings)
    try:
        js = nc.jetstream()
        stream = stream_name(settings, project.name)
        acked = []
        for system in sorted({r.system for r in drained.ranges}):
            held = [r for r in drained.ranges if r.system == system]
            through = ack_through(held, committed(system, [r.stem for r in held]))
            if through is None:
                continue
            info = await js.consumer_info(stream, durable_name(system))
            if may_ack(info.num_ack_pending, drained.held[system]) and await _ack(nc, through):
                acked.append(through)
        return acked
    finally:
        await nc.close()


@dataclass
class Tick:
    """What one sensor tick did."""

    landed: list[Range] = field(default_factory=list)
    acked: list[Range] = field(default_factory=list)
    in_flight: dict[str, Range] = field(default_factory=dict)
    """System -> the range landed and not yet acknowledged (the sensor's cursor)."""
    lag: list[Lag] = field(default_factory=list)


def advance(
    zone: LandingZone,
    committed: Committed,
    in_flight: dict[str, Range],
    settings: BusSettings | None = None,
    project: Project | None = None,
) -> Tick:
    """One sensor tick, per system: acknowledge the range in flight once its batch is committed;
    with none in flight, fetch up to batch_size messages and land them (or acknowledge them, if
    they came back and their batch is committed already). One range in flight per system keeps
    acknowledgements exact: its reply subject, kept in the cursor, acknowledges it without
    waiting for a redelivery."""
    settings, project = _settings(settings), project or current()
    return asyncio.run(_advance(zone, committed, dict(in_flight), settings, project))


async def _advance(
    zone: LandingZone,
    committed: Committed,
    in_flight: dict[str, Range],
    settings: BusSettings,
    project: Project,
) -> Tick:
    nc = await _connect(settings)
    try:
        js = nc.jetstream()
        stream = await _ensure(js, settings, project)
        tick = Tick(in_flight=in_flight)
        for system in project.system_names:
            await _advance_system(nc, js, stream, zone, committed, settings, system, tick)
            info = await js.consumer_info(stream, durable_name(system))
            tick.lag.append(await _lag(js, stream, settings, system, info))
        return tick
    finally:
        await nc.close()


async def _advance_system(
    nc: Any,
    js: Any,
    stream: str,
    zone: LandingZone,
    committed: Committed,
    settings: BusSettings,
    system: str,
    tick: Tick,
) -> None:
    held = tick.in_flight.get(system)
    if held is not None:
        folder = zone.system_folder(system)
        step = decide(
            bool(committed(system, [held.stem])), (folder / f"{held.stem}{BATCH_SUFFIX}").is_file()
        )
        if step is Step.WAIT:
            return  # the ingest run has not committed it yet
        if step is Step.ACK:
            info = await js.consumer_info(stream, durable_name(system))
            if may_ack(info.num_ack_pending, held.count) and await _ack(nc, held):
                tick.acked.append(held)
        # acknowledged; or not acknowledgeable now, or its file is gone: redelivery settles it
        del tick.in_flight[system]
    subscription = await js.pull_subscribe_bind(durable_name(system), stream)
    try:
        messages = await _fetch(subscription, settings.batch_size, SHORT_WAIT_S)
        if not messages:
            return
        found = _range(system, messages)
        if _land(zone, found, messages, committed) is Step.ACK:
            info = await subscription.consumer_info()
            if may_ack(info.num_ack_pending, found.count) and await _ack(nc, found):
                tick.acked.append(found)
            return
        tick.landed.append(found)
        tick.in_flight[system] = found
    finally:
        await subscription.unsubscribe()


def lag(settings: BusSettings | None = None, project: Project | None = None) -> list[Lag]:
    """Each system's consumer lag: messages waiting, unacknowledged, and the oldest one's age."""
    settings, project = _settings(settings), project or current()
    return asyncio.run(_lags(settings, project))


async def _lags(settings: BusSettings, project: Project) -> list[Lag]:
    nc = await _connect(settings)
    try:
        js = nc.jetstream()
        stream = await _ensure(js, settings, project)
        found = []
        for system in project.system_names:
            info = await js.consumer_info(stream, durable_name(system))
            found.append(await _lag(js, stream, settings, system, info))
        return found
    finally:
        await nc.close()


def _settings(settings: BusSettings | None) -> BusSettings:
    found = settings or BusSettings.from_env()
    if found is None:
        raise SyncfabricError("no message bus: set SYNCFABRIC_BUS_URL (e.g. nats://127.0.0.1:4222)")
    return found
