"""The landing zone: systems drop batches of JSON lines under `landing/<system>/`.

A batch is one `.jsonl` file, written atomically (a temp file, then a rename), so a reader never sees
half a batch. Once ingested, the batch moves to `landing/<system>/archive/`; whatever is left at the
top of a system's folder is pending. A batch id is `<system>__<file stem>`, unique per landing zone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sync_assets.catalog.entities import SYSTEMS

BATCH_SUFFIX = ".jsonl"
ARCHIVE = "archive"
SEPARATOR = "__"


@dataclass(frozen=True)
class Batch:
    batch_id: str
    system: str
    path: Path

    @property
    def file_name(self) -> str:
        return self.path.name


def batch_id_for(system: str, file_name: str) -> str:
    return f"{system}{SEPARATOR}{Path(file_name).stem}"


def parse_batch_id(batch_id: str) -> tuple[str, str]:
    system, sep, stem = batch_id.partition(SEPARATOR)
    if not sep or system not in SYSTEMS or not stem:
        raise ValueError(
            f"batch id {batch_id!r} is not '<system>{SEPARATOR}<file stem>' with a system in "
            f"{SYSTEMS}"
        )
    return system, stem


class LandingZone:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def system_folder(self, system: str) -> Path:
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; the catalog has {SYSTEMS}")
        return self.root / system

    def pending(self) -> list[Batch]:
        """Batches landed and not yet ingested, oldest file name first."""
        batches = []
        for system in SYSTEMS:
            folder = self.system_folder(system)
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.is_file() and path.suffix == BATCH_SUFFIX:
                    batches.append(Batch(batch_id_for(system, path.name), system, path))
        return sorted(batches, key=lambda b: (b.path.name, b.system))

    def locate(self, batch_id: str) -> Batch:
        """Find a batch whether it is pending or already archived (for re-runs and replays)."""
        system, stem = parse_batch_id(batch_id)
        folder = self.system_folder(system)
        for candidate in (
            folder / f"{stem}{BATCH_SUFFIX}",
            folder / ARCHIVE / f"{stem}{BATCH_SUFFIX}",
        ):
            if candidate.is_file():
                return Batch(batch_id, system, candidate)
        raise FileNotFoundError(
            f"batch {batch_id} is neither pending nor archived under {folder}; was the file "
            "removed by hand?"
        )

    def archive(self, batch: Batch) -> Path:
        target_folder = batch.path.parent
        if target_folder.name != ARCHIVE:
            target_folder = target_folder / ARCHIVE
        target_folder.mkdir(parents=True, exist_ok=True)
        target = target_folder / batch.path.name
        if batch.path != target:
            os.replace(batch.path, target)
        return target

    def write_batch(self, system: str, file_stem: str, lines: Iterable[str | bytes]) -> Batch:
        """Land a batch atomically: readers see the whole file or nothing."""
        folder = self.system_folder(system)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{file_stem}{BATCH_SUFFIX}"
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".landing-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                for line in lines:
                    handle.write(line if isinstance(line, bytes) else line.encode("utf-8"))
                    handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return Batch(batch_id_for(system, target.name), system, target)
