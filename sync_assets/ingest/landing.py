"""The landing zone: systems drop batches of JSON lines under `landing/<system>/`.

A batch is one `.jsonl` file, written atomically (a temp file, then a rename), so a reader never sees
half a batch. Its id is `<system>__<file stem>@<content digest>`: the same name landed again with
other content is another batch, never mistaken for the first. Once its raw events are committed,
the file moves to `landing/<system>/archive/<file stem>@<content digest>.jsonl`, a name no later
file can collide with; whatever is left at the top of a system's folder is pending.

Only regular files are read. Anything else a scan meets is refused, left where it is and listed
with the reason (the sensor logs it, `raw_events` counts it, `syncctl doctor` shows it):
symbolic links (never followed: a link to /etc/passwd is not a batch), folders, files that are
not `.jsonl`, names a batch id cannot carry, and entries outside any catalog system's folder.

Each folder is a channel bound to one system (`channels: {landing: ...}` in the system's file,
its name by default): the batch ledger records that system, and validation refuses an event of
the batch that speaks for another (rule `origin`, sync_assets/ingest/validate.py).
Dot-files are a producer's writes in progress and are skipped silently.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sync_assets.project import current

BATCH_SUFFIX = ".jsonl"
ARCHIVE = "archive"
SEPARATOR = "__"
DIGEST_MARK = "@"
DIGEST_LENGTH = 12
"""Hex digits of the content's SHA-256 kept in the batch id (48 bits)."""
STEM_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""File stems a batch id can carry: Dagster partition keys refuse control characters and '...'."""


@dataclass(frozen=True)
class Batch:
    batch_id: str
    system: str
    path: Path

    @property
    def file_name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Refusal:
    """Something in the landing zone that is not a batch, and why it is not read."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Scan:
    batches: list[Batch] = field(default_factory=list)
    """Pending batches, oldest file name first."""
    refused: list[Refusal] = field(default_factory=list)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]


def batch_id_for(system: str, file_name: str, content_digest: str) -> str:
    return f"{system}{SEPARATOR}{Path(file_name).stem}{DIGEST_MARK}{content_digest}"


def parse_batch_id(batch_id: str) -> tuple[str, str, str | None]:
    """(system, file stem, content digest); the digest is None for ids made before it existed."""
    system, sep, rest = batch_id.partition(SEPARATOR)
    stem, mark, content_digest = rest.rpartition(DIGEST_MARK)
    if not mark:
        stem, content_digest = rest, ""
    if not sep or system not in current().system_names or not stem:
        raise ValueError(
            f"batch id {batch_id!r} is not '<system>{SEPARATOR}<file stem>{DIGEST_MARK}<digest>' "
            f"with a system in {current().system_names}"
        )
    return system, stem, content_digest or None


def read_batch(path: Path) -> bytes:
    """The file's bytes, refusing to follow a symbolic link even if one replaced the file since
    the scan."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def file_digest(path: Path) -> str:
    """The digest of a file's content, remembered per (path, size, mtime, inode), so the sensor
    does not hash every pending batch again at every tick."""
    info = path.stat(follow_symlinks=False)
    return _file_digest(path, info.st_size, info.st_mtime_ns, info.st_ino)


@functools.lru_cache(maxsize=4096)
def _file_digest(path: Path, _size: int, _mtime_ns: int, _inode: int) -> str:
    return digest(read_batch(path))


class LandingZone:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def system_folder(self, system: str) -> Path:
        """The folder of the system's landing channel: what lands there speaks for it alone."""
        if system not in current().system_names:
            raise ValueError(f"unknown system {system!r}; the catalog has {current().system_names}")
        return self.root / current().systems[system].landing

    def scan(self) -> Scan:
        """The pending batches and every refused entry."""
        scan = Scan()
        if not self.root.is_dir():
            return scan
        bound = current().landing_systems
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.name not in bound or entry.is_symlink() or not entry.is_dir():
                scan.refused.append(Refusal(entry, _outside_reason(entry)))
                continue
            self._scan_system(bound[entry.name], entry, scan)
        scan.batches.sort(key=lambda b: (b.path.name, b.system))
        return scan

    def pending(self) -> list[Batch]:
        """Batches landed and not yet ingested, oldest file name first."""
        return self.scan().batches

    def _scan_system(self, system: str, folder: Path, scan: Scan) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or (entry.name == ARCHIVE and _is_real_dir(entry)):
                continue
            reason = _refusal(entry)
            if reason:
                scan.refused.append(Refusal(entry, reason))
                continue
            batch_id = batch_id_for(system, entry.name, file_digest(entry))
            scan.batches.append(Batch(batch_id, system, entry))

    def locate(self, batch_id: str) -> Batch:
        """Find a batch whether it is pending or already archived (for re-runs and replays)."""
        system, stem, content_digest = parse_batch_id(batch_id)
        folder = self.system_folder(system)
        pending = folder / f"{stem}{BATCH_SUFFIX}"
        if content_digest is None:  # an id from before content digests: name alone
            candidates = [pending, folder / ARCHIVE / pending.name]
        else:
            archived = folder / ARCHIVE / f"{stem}{DIGEST_MARK}{content_digest}{BATCH_SUFFIX}"
            candidates = [archived]
            if _is_regular(pending) and file_digest(pending) == content_digest:
                candidates.insert(0, pending)
        for candidate in candidates:
            if _is_regular(candidate):
                return Batch(batch_id, system, candidate)
        raise FileNotFoundError(
            f"batch {batch_id} is neither pending nor archived under {folder}: was the file "
            "removed, or replaced by other content (which is another batch)?"
        )

    def archive(self, batch: Batch) -> Path:
        """Move a pending batch into the archive under a name no other content can take."""
        if batch.path.parent.name == ARCHIVE:
            return batch.path
        _, stem, content_digest = parse_batch_id(batch.batch_id)
        folder = batch.path.parent / ARCHIVE
        folder.mkdir(parents=True, exist_ok=True)
        name = stem if content_digest is None else f"{stem}{DIGEST_MARK}{content_digest}"
        target = folder / f"{name}{BATCH_SUFFIX}"
        os.replace(batch.path, target)
        return target

    def write_batch(self, system: str, file_stem: str, lines: Iterable[str | bytes]) -> Batch:
        """Land a batch atomically: readers see the whole file or nothing."""
        if not STEM_PATTERN.fullmatch(file_stem) or ".." in file_stem:
            raise ValueError(f"batch file stem {file_stem!r} does not match {STEM_PATTERN.pattern}")
        folder = self.system_folder(system)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{file_stem}{BATCH_SUFFIX}"
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".landing-", suffix=".tmp")
        content = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle:
                for line in lines:
                    data = (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
                    content.update(data)
                    handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        content_digest = content.hexdigest()[:DIGEST_LENGTH]
        return Batch(batch_id_for(system, target.name, content_digest), system, target)


def _is_real_dir(path: Path) -> bool:
    return not path.is_symlink() and path.is_dir()


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat(follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _outside_reason(entry: Path) -> str:
    if entry.name not in current().landing_systems:
        return f"not a folder of a catalog system ({', '.join(current().landing_systems)}); batches go in landing/<system>/"
    return "a system's landing folder must be a real folder, not a symbolic link or a file"


def _refusal(entry: Path) -> str | None:
    """Why an entry of a system's folder is not a batch, or None when it is one."""
    if entry.is_symlink():
        return "a symbolic link; links are never followed, land the file itself"
    if entry.is_dir():
        return f"a folder; only {BATCH_SUFFIX} files and the {ARCHIVE}/ folder belong here"
    if not _is_regular(entry):
        return "not a regular file"
    if entry.suffix != BATCH_SUFFIX:
        return f"not a {BATCH_SUFFIX} batch file"
    if not STEM_PATTERN.fullmatch(entry.stem) or ".." in entry.stem:
        return (
            f"file name {entry.name!r} cannot name a batch; use letters, digits, '.', '_' and '-' "
            "(no '..'), starting with a letter or digit"
        )
    return None
