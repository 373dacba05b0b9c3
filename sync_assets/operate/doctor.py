"""`syncctl doctor`: everything that can be stuck in a data folder, in one report.

Each section is one kind of trouble, found by a plain function: runs whose process is gone and
pool claims nobody will free (recovery.py), batches ingested but never applied (the ledger),
landing entries refused as batches (the landing zone's scan), and who holds the data folder.
`--repair` (syncctl) marks the dead runs failed, frees the claims and resumes the batches, then
reports again. A new kind of trouble is one more field of `Report`, one more entry in `SECTIONS`.
See docs/runbooks/stuck-runs.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sync_assets.operate import recovery
from sync_assets.operate.lock import Holder, holder, is_held_here
from sync_assets.settings import DataFolder

RUNBOOK = "docs/runbooks/stuck-runs.md"


@dataclass
class Report:
    folder: str
    lock: Holder | None
    """Who holds the data folder; a holder is never stale (the kernel frees a dead one's lock)."""
    stuck_runs: list[recovery.StuckRun] = field(default_factory=list)
    stale_claims: list[recovery.StaleClaim] = field(default_factory=list)
    stranded_batches: list[str] = field(default_factory=list)
    """Not yet applied ('<batch>: <state>, waiting for <step>[; failed attempts ...]'): the
    golden records lack them until they are resumed."""
    refused_landing: list[str] = field(default_factory=list)
    """Landing entries that are not batches ('path: reason'); a person must move them."""
    not_checked: list[str] = field(default_factory=list)
    """Sections that could not be read now, and why (the warehouse in use, say)."""
    repaired: list[str] = field(default_factory=list)
    """What --repair did, when it ran."""

    @property
    def problems(self) -> int:
        return sum(len(getattr(self, name)) for name, _ in SECTIONS)

    @property
    def healthy(self) -> bool:
        return self.problems == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "healthy": self.healthy,
            "lock": self.lock.as_dict() if self.lock else None,
            "stuck_runs": [stuck.as_dict() for stuck in self.stuck_runs],
            "stale_claims": [stale.as_dict() for stale in self.stale_claims],
            "stranded_batches": self.stranded_batches,
            "refused_landing": self.refused_landing,
            "not_checked": self.not_checked,
            "repaired": self.repaired,
        }

    def lines(self) -> list[str]:
        out = [f"repaired: {action}" for action in self.repaired]
        out.append(f"data folder: {self.folder}")
        if self.lock is None:
            out.append("lock: free")
        elif self.lock.pid == os.getpid():
            out.append(f"lock: held by this command ({self.lock.describe()})")
        else:
            out.append(f"lock: held by {self.lock.describe()}")
        for name, title in SECTIONS:
            found = getattr(self, name)
            out.append(f"{title}: {len(found) if found else 'none'}")
            out += [f"  {_describe(item)}" for item in found]
        out += [f"not checked: {reason}" for reason in self.not_checked]
        if self.healthy:
            out.append("healthy")
        else:
            out.append(
                f"{self.problems} problem(s). `syncctl doctor --repair` marks dead runs failed, "
                "frees stale claims and resumes stranded batches; refused landing entries need "
                f"a person. See {RUNBOOK}."
            )
        return out


SECTIONS = [
    ("stuck_runs", "runs whose process is gone"),
    ("stale_claims", "stale pool claims"),
    ("stranded_batches", "stranded batches (not applied)"),
    ("refused_landing", "refused landing entries"),
]


def examine(folder: DataFolder, instance: Any) -> Report:
    """The report for a data folder and its Dagster instance; changes nothing."""
    report = Report(str(folder.root), holder(folder))
    findings = recovery.find(instance, lock_held_here=is_held_here(folder))
    report.stuck_runs = findings.stuck_runs
    report.stale_claims = findings.stale_claims
    report.refused_landing = refused_landing_entries(folder)
    try:
        report.stranded_batches = stranded_batches(folder)
    except Exception as error:
        from sync_assets.errors import SyncfabricError

        if not isinstance(error, SyncfabricError):
            raise
        report.not_checked.append(f"stranded batches: {error.message}")
    return report


def stranded_batches(folder: DataFolder) -> list[str]:
    """The batches not yet applied, each with its state, what it waits for and, after a failed
    step, the error (this report is the operator's, on their terminal: the error stays whole)."""
    from sync_assets.ledger import unfinished
    from sync_assets.warehouse import connect

    if not folder.warehouse.exists():
        return []
    with connect(folder.warehouse, read_only=True) as con:
        return [batch.describe(detail=True) for batch in unfinished(con)]


def refused_landing_entries(folder: DataFolder) -> list[str]:
    """Landing entries that are not batches, with why (symbolic links, folders, files of unknown
    systems): the landing zone's own judgement, which leaves them where they are."""
    from sync_assets.ingest.landing import LandingZone

    return [str(refusal) for refusal in LandingZone(folder.landing).scan().refused]


def _describe(item: Any) -> str:
    return item.describe() if hasattr(item, "describe") else str(item)
