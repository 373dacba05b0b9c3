"""The contracts' change log: `contracts/changelog.yaml` in the project, one sign-off per entry.

`syncctl schema approve` appends an entry; nothing rewrites one. An entry says who signed, when,
why (the note), and for each subject it signs: the content hash, the compatibility mode, every
version's full schema and the changes since the subject's previous approval in words. The last
approved schemas are read back from here, so `syncctl schema check` can judge a change against
what was signed rather than against whatever the files say today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sync_assets.catalog.compatibility import VersionSchema
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.project.load import CHANGELOG

HEADER = (
    "# The contracts' change log: one sign-off per entry, appended by `syncctl schema approve`.\n"
    "# Never edit an entry: `syncctl schema check` judges every change against what was signed.\n"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SubjectEntry(_Strict):
    hash: str
    compatibility: str
    versions: list[dict[str, Any]]
    retired: list[int] = []
    changes: list[str] = []


class _Entry(_Strict):
    at: datetime
    by: str
    note: str
    subjects: dict[str, _SubjectEntry]


@dataclass(frozen=True)
class SignedSubject:
    """One subject as an entry signed it."""

    hash: str
    compatibility: str
    versions: dict[int, VersionSchema]
    retired: frozenset[int]
    changes: tuple[str, ...]


@dataclass(frozen=True)
class Signoff:
    at: datetime
    by: str
    note: str
    subjects: dict[str, SignedSubject]


class ChangelogError(SyncfabricError):
    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"{path}: {problem}; fix: restore the file from version control "
            "(it is appended by `syncctl schema approve` and never edited)",
            exit_code=EXIT_USAGE,
        )


def read(root: Path) -> list[Signoff]:
    """The project's sign-offs, oldest first; none when the project has no change log yet."""
    path = root / CHANGELOG
    if not path.is_file():
        return []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as error:
        raise ChangelogError(path, f"is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, list):
        raise ChangelogError(path, "must be a list of sign-offs")
    signoffs = []
    for i, item in enumerate(raw):
        try:
            entry = _Entry.model_validate(item)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ChangelogError(path, f"entry {i + 1}: {where}: {first['msg']}") from None
        signoffs.append(
            Signoff(
                entry.at,
                entry.by,
                entry.note,
                {
                    name: SignedSubject(
                        s.hash,
                        s.compatibility,
                        {v["version"]: VersionSchema.from_json(v) for v in s.versions},
                        frozenset(s.retired),
                        tuple(s.changes),
                    )
                    for name, s in entry.subjects.items()
                },
            )
        )
    return signoffs


def append(root: Path, signoff: Signoff) -> Path:
    """Append one sign-off to the change log (created with its header if missing)."""
    path = root / CHANGELOG
    entry = {
        "at": signoff.at.isoformat(timespec="seconds"),
        "by": signoff.by,
        "note": signoff.note,
        "subjects": {
            name: {
                "hash": s.hash,
                "compatibility": s.compatibility,
                "versions": [s.versions[v].to_json() for v in sorted(s.versions)],
                "retired": sorted(s.retired),
                "changes": list(s.changes),
            }
            for name, s in signoff.subjects.items()
        },
    }
    text = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=100)
    existing = path.read_text(encoding="utf-8") if path.is_file() else HEADER
    if existing and not existing.endswith("\n"):
        existing += "\n"
    path.write_text(existing + text, encoding="utf-8")
    return path
