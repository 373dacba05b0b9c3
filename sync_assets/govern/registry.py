"""The schema registry: every event subject's versions, judged against what was signed off.

A subject is one event type (`customer.created`); its versions are the entity's schema versions as
that type reads them (a created event's required attributes are required; an update's are not; a
delete carries no field). Each version's schema is derived from the project's files
(`contracts/<entity>.yaml` over the catalog) into the compatibility module's terms.

`judge` compares the working tree with the change log (`changelog.py`):
- a version already approved must not change (approved versions are immutable, as in Confluent's
  registry): a catalog edit that changes one is reported with what to pin;
- a new version must be compatible with the earlier ones under the subject's mode;
- a subject whose content differs from its last approved content needs a sign-off, from every
  consumer the catalog lists when its contract says `approvals_required`.
Pure: the project and the sign-offs in, verdicts out; `syncctl schema` prints them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from sync_assets.catalog import compatibility
from sync_assets.catalog.compatibility import FieldSchema, VersionSchema
from sync_assets.catalog.contracts import Contract, PayloadVersion
from sync_assets.catalog.events import ACTIONS
from sync_assets.govern.changelog import SignedSubject, Signoff
from sync_assets.project.model import Project


@dataclass(frozen=True)
class Subject:
    """One event type's history, as the working tree declares it."""

    name: str
    entity: str
    compatibility: str
    approvers: tuple[str, ...]
    versions: dict[int, VersionSchema]
    retired: frozenset[int]

    @property
    def current(self) -> int:
        return max(self.versions)

    @property
    def hash(self) -> str:
        """What a sign-off covers: the mode, every version's schema and which are retired."""
        content = {
            "compatibility": self.compatibility,
            "versions": {str(v): s.content_hash() for v, s in sorted(self.versions.items())},
            "retired": sorted(self.retired),
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def version_schema(project: Project, payload: PayloadVersion, action: str) -> VersionSchema:
    """One version of one event type in the compatibility module's terms."""
    contract = Contract(payload, action)
    earlier = [p for p in project.versions_of(payload.entity.name) if p.version < payload.version]
    fields = {}
    for name, attribute_name in contract.fields.items():
        attribute = payload.attribute(name)
        # Earlier names of the same attribute, and earlier fields it was split out of: a reader
        # of this version finds its value there (a declared rename or split).
        aliases = sorted(
            (
                {f for p in earlier for f, a in p.fields.items() if a == attribute_name}
                | {f for p in earlier for f, s in p.splits.items() if attribute_name in s.into}
            )
            - {name}
        )
        fields[name] = FieldSchema(
            type=attribute.type,
            required=name in contract.required_fields(),
            default=payload.defaults.get(attribute_name),
            allowed=attribute.allowed if attribute.type == "enum" else (),
            aliases=tuple(aliases),
        )
    return VersionSchema(payload.version, fields)


def subjects(project: Project) -> list[Subject]:
    found = []
    for entity in project.entities.values():
        policy = project.contract_policies[entity.name]
        versions = project.versions_of(entity.name)
        for action in ACTIONS:
            found.append(
                Subject(
                    name=f"{entity.name}.{action}",
                    entity=entity.name,
                    compatibility=policy.compatibility[action],
                    approvers=policy.approvers,
                    versions={p.version: version_schema(project, p, action) for p in versions},
                    retired=frozenset(p.version for p in versions if p.retired),
                )
            )
    return found


@dataclass(frozen=True)
class Finding:
    """One thing that stops a subject's change from landing, in words."""

    field: str
    old: str
    new: str
    rule: str
    fix: str
    version: int

    def to_json(self) -> dict[str, object]:
        return {
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "rule": self.rule,
            "fix": self.fix,
            "version": self.version,
        }


@dataclass(frozen=True)
class Verdict:
    subject: Subject
    status: str
    """approved | unapproved | incompatible | changed (an approved version was edited)."""
    approved: SignedSubject | None
    findings: tuple[Finding, ...] = ()
    changes: tuple[str, ...] = ()
    """What differs from the last approved content, in words."""
    signed_by: tuple[str, ...] = ()
    """Who already signed the current content."""
    missing: tuple[str, ...] = field(default=())
    """Consumers whose sign-off the current content still needs."""

    @property
    def ok(self) -> bool:
        return self.status == "approved"

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.subject.name,
            "status": self.status,
            "compatibility": self.subject.compatibility,
            "versions": sorted(self.subject.versions),
            "current": self.subject.current,
            "retired": sorted(self.subject.retired),
            "hash": self.subject.hash,
            "approved_hash": self.approved.hash if self.approved else None,
            "changes": list(self.changes),
            "signed_by": list(self.signed_by),
            "missing_approvals": list(self.missing),
            "findings": [f.to_json() for f in self.findings],
        }


def _approved(subject: Subject, signoffs: list[Signoff]) -> tuple[SignedSubject | None, set[str]]:
    """The subject's last fully approved content, and who has signed its current content."""
    signers: dict[str, set[str]] = {}
    approved = None
    for signoff in signoffs:
        signed = signoff.subjects.get(subject.name)
        if signed is None:
            continue
        signers.setdefault(signed.hash, set()).add(signoff.by)
        if not subject.approvers or set(subject.approvers) <= signers[signed.hash]:
            approved = signed
    return approved, signers.get(subject.hash, set())


def judge(project: Project, signoffs: list[Signoff]) -> list[Verdict]:
    """Every subject's verdict: approved, awaiting sign-off, incompatible, or an approved version
    changed."""
    return [_judge(subject, signoffs) for subject in subjects(project)]


def _judge(subject: Subject, signoffs: list[Signoff]) -> Verdict:
    approved, signed_by = _approved(subject, signoffs)
    if approved is not None and approved.hash == subject.hash:
        return Verdict(subject, "approved", approved, signed_by=tuple(sorted(signed_by)))
    findings: list[Finding] = []
    changes: list[str] = []
    edited = False  # an approved version changed or went missing
    old_versions = approved.versions if approved else {}
    for number, schema in sorted(subject.versions.items()):
        old = old_versions.get(number)
        if old is None:
            previous = [s for v, s in sorted(subject.versions.items()) if v < number]
            changes.append(f"version {number} added")
            findings += [
                Finding(p.field, p.old, p.new, p.rule, p.fix, number)
                for p in compatibility.check(subject.compatibility, previous, schema)
            ]
        elif old.content_hash() != schema.content_hash():
            described = compatibility.describe_changes(old, schema)
            changes += [f"version {number}: {c}" for c in described]
            edited = True
            findings.append(
                Finding(
                    field="; ".join(described) or "(the schema)",
                    old=f"version {number} as approved",
                    new=f"version {number} as the files now say",
                    rule=f"approved versions are immutable: version {number} changed after "
                    "its sign-off, under producers that already send it",
                    fix=f"revert it, or pin the approved definition in version {number} "
                    "(`overrides:` in the contract) and make the change a new version",
                    version=number,
                )
            )
    for number in sorted(set(old_versions) - set(subject.versions)):
        edited = True
        findings.append(
            Finding(
                field="(the whole version)",
                old=f"version {number}, approved",
                new="gone from the contract",
                rule="an approved version stays in the history; events of it may be stored",
                fix=f"restore version {number}, and mark it `retired: true` to refuse its events",
                version=number,
            )
        )
    if approved is not None:
        if approved.compatibility != subject.compatibility:
            changes.append(f"compatibility {approved.compatibility} -> {subject.compatibility}")
        for number in sorted(subject.retired - approved.retired):
            changes.append(f"version {number} retired")
    status = "changed" if edited else "incompatible" if findings else "unapproved"
    missing = tuple(a for a in subject.approvers if a not in signed_by)
    return Verdict(
        subject,
        status,
        approved,
        tuple(findings),
        tuple(changes),
        tuple(sorted(signed_by)),
        missing if subject.approvers else (),
    )


def signoff(
    verdicts: list[Verdict], by: str, note: str, at: datetime
) -> tuple[Signoff, list[Verdict]]:
    """The sign-off `by` gives to every unapproved subject it may sign, and those subjects.

    Raises ValueError when a subject is incompatible or an approved version changed (nothing is
    signed then), or when `by` may sign none of the waiting subjects."""
    blocked = [v for v in verdicts if v.status in ("incompatible", "changed")]
    if blocked:
        names = ", ".join(v.subject.name for v in blocked)
        raise ValueError(
            f"cannot approve: {names} {'is' if len(blocked) == 1 else 'are'} not compatible "
            "(`syncctl schema check` says why); fix the contracts first"
        )
    waiting = [v for v in verdicts if v.status == "unapproved"]
    allowed = [v for v in waiting if not v.subject.approvers or by in v.subject.approvers]
    mine = [v for v in allowed if by not in v.signed_by]
    if waiting and not allowed:
        consumers = sorted({a for v in waiting for a in v.subject.approvers})
        raise ValueError(
            f"{by!r} may not sign: the waiting subjects need the consumers "
            f"{', '.join(consumers)} (`consumers:` in the catalog)"
        )
    signed = {
        v.subject.name: SignedSubject(
            v.subject.hash,
            v.subject.compatibility,
            dict(v.subject.versions),
            v.subject.retired,
            v.changes,
        )
        for v in mine
    }
    return Signoff(at, by, note, signed), mine
