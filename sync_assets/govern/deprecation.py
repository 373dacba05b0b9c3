"""Deprecation windows: a field marked deprecated in its contract (`deprecated:` in
`contracts/<entity>.yaml`) may be sent until its window ends (`after:`), with a warning metric per
batch (`deprecated_<entity>_<attribute>` on `validated_events`). Once the window has passed,
`syncctl schema check` fails while any producer still sends it (events dated after the window in
the event log) or any system's mapping still reads it; when neither does, it says the attribute
can go, in the version the deprecation names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import duckdb

from sync_assets.catalog.contracts import Deprecation
from sync_assets.project.model import Project
from sync_assets.warehouse import quote


@dataclass(frozen=True)
class DeprecationVerdict:
    entity: str
    deprecation: Deprecation
    status: str
    """in_window | expired_in_use (fails the check) | expired_unused (safe to remove)."""
    senders: dict[str, int]
    """Origin -> events dated after the window that still carry the field (when looked at)."""
    readers: tuple[str, ...]
    """Systems whose mapping reads the attribute."""
    looked_at_events: bool

    @property
    def ok(self) -> bool:
        return self.status != "expired_in_use"

    @property
    def text(self) -> str:
        d = self.deprecation
        name = f"{self.entity}.{d.attribute}"
        window = (f"removed in version {d.removal_version}" if d.removal_version else "") + (
            f"{', ' if d.removal_version else ''}window ends {d.after}" if d.after else ""
        )
        head = f"{name}: deprecated ({window or 'no end set'}){f': {d.note}' if d.note else ''}"
        if self.status == "in_window":
            return f"{head}; still accepted, each event that carries it counted"
        if self.status == "expired_unused":
            return (
                f"{head}; the window has passed and nothing sends or reads it: remove it from "
                f"the catalog in version {d.removal_version or 'the next version'}"
            )
        still = [f"{origin} ({n} events since {d.after})" for origin, n in self.senders.items()]
        still += [f"the {system} mapping" for system in self.readers]
        return (
            f"{head}; the window has passed but {', '.join(still)} still use it; fix: move "
            "those producers to the current version and drop the column from those mappings, "
            "or extend the window (`after:`) with the consumers' sign-off"
        )

    def to_json(self) -> dict[str, object]:
        d = self.deprecation
        return {
            "entity": self.entity,
            "attribute": d.attribute,
            "removal_version": d.removal_version,
            "after": d.after.isoformat() if d.after else None,
            "status": self.status,
            "senders": self.senders,
            "readers": list(self.readers),
            "looked_at_events": self.looked_at_events,
        }


def judge(
    project: Project, today: date, senders: dict[tuple[str, str], dict[str, int]] | None
) -> list[DeprecationVerdict]:
    """Each deprecation's verdict on `today`; `senders` from `still_sent` (None: no event log to
    look at, so only the mappings count)."""
    verdicts = []
    for entity, policy in project.contract_policies.items():
        for d in policy.deprecated:
            readers = tuple(
                m.system for m in project.mappings_for(entity) if d.attribute in m.attributes
            )
            sent = (senders or {}).get((entity, d.attribute), {})
            expired = d.after is not None and today > d.after
            status = (
                "in_window"
                if not expired
                else "expired_in_use"
                if sent or readers
                else "expired_unused"
            )
            verdicts.append(
                DeprecationVerdict(entity, d, status, sent, readers, senders is not None)
            )
    return verdicts


def still_sent(
    con: duckdb.DuckDBPyConnection, project: Project
) -> dict[tuple[str, str], dict[str, int]]:
    """(entity, attribute) -> origin -> how many events dated after the deprecation window carry
    the field, from the event log."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for entity, policy in project.contract_policies.items():
        table = project.entity(entity).events_table
        for d in policy.deprecated:
            if d.after is None:
                continue
            since = datetime.combine(d.after, time.max, tzinfo=UTC)
            rows = con.execute(
                f"SELECT origin, count(*) FROM {quote(table)} "
                "WHERE list_contains(set_attributes, ?) AND event_time > ? GROUP BY origin ORDER BY 1",
                [d.attribute, since],
            ).fetchall()
            found[entity, d.attribute] = dict(rows)
    return found
