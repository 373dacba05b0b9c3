"""What each file of a Syncfabric project may say: one pydantic model per file kind.

These models check each file on its own (types, names, allowed words, unknown fields); what the
files say about each other (an owner that is no system, a column for an attribute the catalog
does not have) is checked by `sync_assets/project/load.py`, which also turns the models into the
runtime shapes the pipeline reads (`Entity`, `Mapping`, `PayloadVersion`).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
)
from pydantic_core import PydanticCustomError

from sync_assets.catalog.compatibility import DEFAULT_MODE, MODES

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
"""Entity, system and attribute names: they become table names, asset keys and variable names."""
ENV_PATTERN = r"^[A-Z][A-Z0-9_]{0,127}$"
URL_ENV_PATTERN = r"^[A-Z][A-Z0-9_]{0,123}_URL$"
"""A writer's URL variable: its name ends in _URL, so secret redaction masks its password."""
KEY_ENV_PATTERN = r"^[A-Z][A-Z0-9_]{0,123}_KEY$"
"""A signing key's variable: its name ends in _KEY, so secret redaction masks the key."""

IDENTIFIER_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(?: [A-Za-z0-9_]+)*"
"""Table, schema and column names in a system: ASCII letters, digits and _, not starting with a
digit, words separated by single spaces (`Order Lines`, `CustomerNo`). No quotes, backticks,
semicolons, comment markers, control characters, tabs or leading, trailing or doubled spaces:
every SQL statement quotes them all the same, but a name that needs none of those is one that no
tool (a grants script, a DBA's console) can misread."""
IDENTIFIER_MAX = 63
"""PostgreSQL's limit (NAMEDATALEN - 1 bytes); MariaDB/MySQL allow 64."""


def identifier_problem(text: str) -> str | None:
    """Why `text` cannot be a table, schema or column name (None when it can)."""
    if len(text) > IDENTIFIER_MAX:
        return f"{text[:20]!r}... is {len(text)} characters long, more than {IDENTIFIER_MAX}"
    if not re.fullmatch(IDENTIFIER_PATTERN, text):
        return f"{text!r} is not an allowed table, schema or column name"
    return None


def _identifier(text: str) -> str:
    problem = identifier_problem(text)
    if problem:
        raise PydanticCustomError("identifier", problem)
    return text


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Identifier = Annotated[str, AfterValidator(_identifier)]
"""A table, schema or column name in a system (`IDENTIFIER_PATTERN`); always quoted when used."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_pattern(pattern: str) -> str:
    """A regular expression the contracts can run: Python and polars (Rust) both accept it, and
    digits are written [0-9] (\\d also matches non-ASCII digits)."""
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a valid regular expression ({error})") from None
    if "\\d" in pattern:
        raise ValueError("\\d also matches non-ASCII digits; write [0-9]")
    import polars as pl

    try:
        pl.Series([""]).str.contains(pattern)
    except Exception as error:  # polars' error type varies by version
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"not a regular expression polars accepts ({first})") from None
    return pattern


# --- syncfabric.yaml ---------------------------------------------------------------------------


class ReconcileSettings(Strict):
    schedule: str = "0 * * * *"
    """Cron of the scheduled reconciliation; SYNCFABRIC_RECONCILE_CRON overrides it."""
    error_rate: float = Field(default=0.01, gt=0, le=1)
    """A check fails at ERROR past this share of the rows compared (mass drift)."""
    error_floor: int = Field(default=10, ge=0)
    """...and past at least this many discrepancies."""


class AlertLimitsFile(Strict):
    """What an alert judges a system (as a source of events, or as a destination) by; any of them
    may be set per system under `alerts.systems.<system>`."""

    dead_letters_held: int | None = Field(default=None, ge=0)
    """Ingest dead letters held (not redriven) from the system above this: an alert."""
    ingest_latency_s: float | None = Field(default=None, gt=0)
    """Publish-to-ingest SLA: an event's time to its batch's ingestion, in seconds."""
    delivery_latency_ms: float | None = Field(default=None, gt=0)
    """A delivery attempt to the system slower than this: an alert."""
    consecutive_failures: int | None = Field(default=None, ge=1)
    """This many failed delivery attempts in a row to the system, or dead letters held for it."""
    batch_within_s: float | None = Field(default=None, gt=0)
    """The system is stale when its last batch landed longer ago than this."""
    snapshot_within_s: float | None = Field(default=None, gt=0)
    """...or when its last successful snapshot is older than this."""
    bus_pending: int | None = Field(default=None, ge=0)
    """Messages on the system's bus subjects not yet acknowledged (waiting or in flight) above
    this: an alert (with SYNCFABRIC_BUS_URL)."""
    bus_oldest_s: float | None = Field(default=None, gt=0)
    """...or the oldest of them stored longer ago than this, in seconds."""


class AlertsSettings(AlertLimitsFile):
    correlation_ids: int = Field(default=5, ge=0, le=100)
    """At most this many correlation ids named in an alert."""
    systems: dict[Name, AlertLimitsFile] = {}
    """Per system: limits replacing the defaults above."""


class SettingsFile(Strict):
    name: Name
    description: str = ""
    systems: tuple[Name, ...] = ()
    """The systems in the order reports list them; every file in systems/ when not given."""
    reconcile: ReconcileSettings = ReconcileSettings()
    alerts: AlertsSettings = AlertsSettings()
    seed: str | None = None
    """A Python package in the project folder that builds example data (`syncctl demo`)."""


# --- catalog/<entity>.yaml ---------------------------------------------------------------------


class AttributeFile(Strict):
    type: Literal["string", "enum", "decimal", "timestamp", "boolean"]
    owner: Name
    description: str
    required: bool = False
    allowed: tuple[str, ...] = ()
    pattern: str | None = None
    minimum: float | None = None
    pii: bool = False
    compare: Literal["exact", "whitespace", "casefold"] = "exact"
    tolerance: float = Field(0, ge=0)
    timestamp_precision: Literal["second", "minute", "hour", "day"] | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return value if value is None else check_pattern(value)


class RuleFile(Strict):
    """A business rule written as data (sync_assets/catalog/rules.py). Which fields go with which
    kind, and the names they give, are checked against the entity in load.py."""

    name: Name
    kind: Literal["unique", "allowed", "format", "range", "references", "compare"]
    severity: Literal["warn", "error"] = "warn"
    description: str = ""
    attributes: tuple[Name, ...] = ()
    attribute: Name | None = None
    values: tuple[str, ...] = ()
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    entity: Name | None = None
    left: Name | None = None
    operator: Literal["<", "<=", ">", ">=", "=", "!="] | None = None
    right: Name | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return value if value is None else check_pattern(value)


def _rule_or_sentence(value: object) -> str:
    return "[rule]" if isinstance(value, dict) else "[sentence]"


BusinessRule = Annotated[
    Annotated[str, Tag("[sentence]")] | Annotated[RuleFile, Tag("[rule]")],
    Discriminator(_rule_or_sentence),
]
"""A plain sentence (documentation) or a mapping (a rule the checks run). The tags are bracketed
like pydantic's own steps in an error's location, which the loader leaves out of the field it
names (business_rules.0.kind, not business_rules.0.[rule].kind)."""


class EntityFile(Strict):
    key: Name
    key_pattern: str
    lifecycle_owner: Name
    consumers: tuple[Name, ...] = ()
    """The teams or systems that read the entity's events: with `approvals_required` in its
    contract, each must sign off a schema change (`syncctl schema approve --by`)."""
    description: str
    attributes: dict[Name, AttributeFile] = Field(min_length=1)
    on_undeliverable: Literal["hold", "compensate"] = "hold"
    business_rules: tuple[BusinessRule, ...] = ()

    @field_validator("key_pattern")
    @classmethod
    def _key_pattern(cls, value: str) -> str:
        return check_pattern(value)


# --- systems/<system>.yaml ---------------------------------------------------------------------


class LookupFile(Strict):
    table: Identifier
    on: dict[Identifier, Identifier] = Field(min_length=1)
    value: Identifier


Rule = Literal[
    "text", "lower", "upper", "phone", "cents", "decimal", "boolean", "epoch", "timestamp",
    "vocabulary",
]  # fmt: skip


class ColumnFile(Strict):
    column: Identifier | None = None
    lookup: LookupFile | None = None
    rule: Rule = "text"
    format: str | None = None
    vocabulary: dict[str, str | tuple[str, ...]] = {}
    style: Literal["as_is", "lower", "upper", "capitalize"] | None = None


def _column_shorthand(value: object) -> object:
    return {"column": value} if isinstance(value, str) else value


class SoftDeleteFile(Strict):
    column: Identifier
    value: str
    live: str | None = None


class StampFile(Strict):
    column: Identifier
    format: str
    on: Literal["create", "write"] = "write"


class MappingFile(Strict):
    table: Identifier
    schema_: Identifier | None = Field(None, alias="schema")
    key: tuple[Identifier, ...] = Field(min_length=1)
    canonical_key: Identifier
    columns: dict[Name, Annotated[ColumnFile, BeforeValidator(_column_shorthand)]] = Field(
        min_length=1
    )
    """Catalog attribute -> its column: `email: email_address` is short for
    `email: {column: email_address}` (rule text)."""
    soft_delete: SoftDeleteFile | None = None
    scope: tuple[Name, ...] = ()
    stamps: tuple[StampFile, ...] = ()
    description: str = ""


EnvName = Annotated[str, StringConstraints(pattern=ENV_PATTERN)]


class DeliveryFile(Strict):
    """How corrections are delivered to the system: exponential backoff with full jitter between
    `base_s` and `cap_s`, `max_attempts` in all, `batch_size` per SQL transaction, `concurrency`
    HTTP requests in flight, `timeout_s` per request or connection."""

    base_s: float = Field(default=0.05, gt=0)
    cap_s: float = Field(default=2.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    batch_size: int = Field(default=500, ge=1)
    concurrency: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)


class OutboxFile(Strict):
    """A table in the system's database (a SQL system) the system writes each event to in the
    same transaction as its change: `sequence` (identity / auto-increment), `event` (the
    CloudEvents JSON) and `created_at` (sync_assets/ingest/outbox.py)."""

    table: Identifier


class ChannelsFile(Strict):
    """Where the system's events arrive; each channel is bound to this system alone, and an event
    arriving through it may only speak for this system (`source` and `origin`). One field per
    kind of channel: a message bus subject is a field beside `landing`."""

    landing: Name | None = None
    """The folder under <data>/landing/; the system's own name when not given."""
    outbox: OutboxFile | None = None
    """The transactional outbox table the system writes its events to, in its own database."""


class SigningFile(Strict):
    key_env: Annotated[str, StringConstraints(pattern=KEY_ENV_PATTERN)]
    """The environment variable holding the system's HMAC-SHA256 key: when given, every event of
    the system must carry a valid `signature` (docs/security.md)."""


class SystemFile(Strict):
    kind: Literal["sql", "http"]
    url_env: EnvName
    write_url_env: Annotated[str, StringConstraints(pattern=URL_ENV_PATTERN)] | None = None
    """The URL deliveries write through (a writer role's credentials); `url_env` when not given.
    `url_env` is then only read (snapshots, `validate --connect`): it can be a read-only role."""
    description: str = ""
    entities: dict[Name, MappingFile] = Field(min_length=1)
    delivery: DeliveryFile = DeliveryFile()
    channels: ChannelsFile = ChannelsFile()
    signing: SigningFile | None = None


# --- contracts/<entity>.yaml -------------------------------------------------------------------


def _mode(text: str) -> str:
    if text not in MODES:
        raise ValueError(f"unknown compatibility mode {text!r}; use one of: {', '.join(MODES)}")
    return text


Compatibility = Annotated[str, AfterValidator(_mode)]
"""One of Confluent's compatibility modes (`sync_assets/catalog/compatibility.py`)."""
Action = Literal["created", "updated", "deleted", "reconciled"]


class OverrideFile(Strict):
    """How an attribute read in an older version differs from the catalog's current definition,
    so that version keeps meaning what was approved when the catalog moves on."""

    type: Literal["string", "enum", "decimal", "timestamp", "boolean"] | None = None
    required: bool | None = None
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    minimum: float | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return value if value is None else check_pattern(value)


class SplitFile(Strict):
    into: tuple[Name, ...] = Field(min_length=2)
    separator: str = Field(" ", min_length=1)


class VersionFile(Strict):
    version: int = Field(ge=1)
    renamed: dict[str, Name] = {}
    """Payload field in this version -> the catalog attribute it holds."""
    absent: tuple[Name, ...] = ()
    """Catalog attributes events of this version do not carry."""
    overrides: dict[Name, OverrideFile] = {}
    """Attribute -> how this version's field differs from the catalog's current attribute."""
    defaults: dict[Name, str | float | bool] = {}
    """Attribute -> the value a created event of an earlier version, which lacks it, takes when
    upcast to this version (an update's missing field means 'unchanged' and takes none)."""
    retired: bool = False
    """Events of a retired version are dead letters; the version stays in the history."""
    split: dict[Name, SplitFile] = {}
    """Field of this version -> the catalog text attributes it holds joined (cut when upcast)."""


class DeprecationFile(Strict):
    removal_version: int | None = Field(None, ge=2)
    """The version that no longer carries the field."""
    after: date | None = None
    """The end of the window: from this day, a producer still sending the field fails the check."""
    note: str = ""


class ContractFile(Strict):
    compatibility: Compatibility = DEFAULT_MODE
    """What a new version must stay compatible with (Confluent's modes)."""
    compatibility_by_action: dict[Action, Compatibility] = {}
    """A mode for one event type of the entity (e.g. `deleted: NONE`), else `compatibility`."""
    approvals_required: bool = False
    """A change needs the sign-off of every consumer the catalog lists for the entity."""
    deprecated: dict[Name, DeprecationFile] = {}
    """Attribute -> its deprecation window."""
    versions: tuple[VersionFile, ...] = Field(min_length=1)
