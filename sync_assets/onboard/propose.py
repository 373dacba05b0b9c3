"""A proposed mapping for a real table, for the team to review: what `syncctl map` prints.

It reads the table's columns, types and primary key through SQLAlchemy inspection and samples its
first rows (`SAMPLE_ROWS`), through a read-only connection (`open_source`). From that it guesses,
per column, one normalization rule of `connectors/mappings.py` (a date format, epoch seconds, a
phone number, a 0/1 flag, cents, a decimal, a vocabulary's words, upper or lower case text), the
system's key, the column holding the catalog key, a soft-delete marker and the stamps, and writes
them as the `entities:` block of `systems/<system>.yaml`, each guess with a comment saying why.
With a catalog entity, columns are matched to its attributes by name; the rest stay as comments.

A sampled value is never printed, except the few distinct words of a low-cardinality column that
is not personal data: the team needs them to write a vocabulary.

Guessing (`propose`, `guess_rule`, `similarity`) and writing (`render`) are plain functions of
the sampled `Table`; only `read_table` touches a database.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from difflib import SequenceMatcher, get_close_matches
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from sync_assets.catalog.entities import Attribute, Entity, entity
from sync_assets.connectors.mappings import Rule, Style
from sync_assets.connectors.problems import classify, redact, scrub, url_variable
from sync_assets.connectors.sources import open_source
from sync_assets.errors import EXIT_USAGE, SyncfabricError

SAMPLE_ROWS = 10_000
"""Rows read from the table: the first ones, enough to guess from, bounded whatever its size."""
MAX_WORDS = 20
"""A text column with at most this many distinct values (each seen 3 times on average) holds a
vocabulary: its words are shown so that the team can map them to the catalog's."""
CONFIDENT = 0.9
"""The share of sampled values that must fit a guess (a date format, a phone number...)."""
FORMAT_PROBE = 1_000
"""Values tried against each date format: enough to tell formats apart, and quick."""
MATCH = 0.6
"""How similar a column's name must be to a catalog attribute's to be mapped to it."""
COMMENT_AT = 36
"""Column of the `#` of a guess's comment, as in the example project's files."""

Kind = Literal["boolean", "date", "datetime", "integer", "numeric", "text", "other"]

DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d-%m-%Y",
)
"""strptime formats tried on text, in this order of preference when several read every value
(day first before month first: the comment then says both read)."""
NATIVE_FORMATS = {"date": "%Y-%m-%d", "datetime": "%Y-%m-%d %H:%M:%S"}
"""A native DATE/TIMESTAMP column is read as it is; its format says how a write renders it."""
EPOCH_RANGE = (315_532_800, 4_102_444_800)
"""Seconds since 1970 from 1980 to 2100: integers there are taken for moments."""

BOOLEAN_PAIRS = ({"0", "1"}, {"true", "false"}, {"t", "f"}, {"yes", "no"}, {"y", "n"})
TIME_WORDS = {"at", "on", "date", "time", "ts", "timestamp", "stamp", "epoch", "when", "day"}
STAMP_WORDS = {"created", "updated", "modified", "changed", "inserted", "last"}
CREATE_WORDS = {"created", "inserted"}
AMOUNT_WORDS = {"cents", "amount", "total", "price", "cost", "fee", "balance", "subtotal", "tax"}
PHONE_WORDS = {"phone", "tel", "telephone", "mobile", "cell", "fax", "msisdn"}
FLAG_WORDS = {"is", "has", "flag", "enabled", "active", "opt", "optin", "consent", "verified"}
DELETE_WORDS = {"deleted", "voided", "archived", "removed", "void", "trashed"}
PII_WORDS = {
    *("email", "mail", "phone", "tel", "mobile", "address", "street", "birth", "dob"),
    *("ssn", "passport", "iban", "card", "password", "token", "secret", "ip"),
}
"""Without a catalog, a column named with one of these (or like a person's name) is taken for
personal data: its words are never shown. With one, the attribute's `pii` decides."""
NAME_WORDS = {
    "name",
    "first",
    "last",
    "full",
    "display",
    "given",
    "family",
    "middle",
    "nick",
    "sur",
}
"""A column named only with these (full_name, name) holds a person's name."""
KEY_WORDS = {"id", "ref", "key", "no", "number", "num", "uuid", "guid", "code"}
"""Name parts that all say 'identifier': customer_ref is named like customer_id."""
CANONICAL_WORDS = {"external", "ref", "reference", "global", "canonical", "uuid", "guid"}
SYNONYMS = {
    "mail": "email",
    "tel": "phone",
    "telephone": "phone",
    "mobile": "phone",
    "cell": "phone",
    "state": "status",
    "display": "full",
    "surname": "last",
    "forename": "first",
    "given": "first",
    "family": "last",
    "zip": "postcode",
}
"""Name parts that mean the same for matching a column to an attribute."""

_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)$")
_FRACTION = re.compile(r"^[+-]?\d*\.\d+$")
_DATEISH = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_PHONE = re.compile(r"^(\+|00)?[\d\s().\-/]{6,24}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


# --- what is read from the table ------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column as inspected and sampled. Its values are guessed from, never printed."""

    name: str
    kind: Kind
    """From the type the database declares."""
    declared: str
    """The type as the database names it, e.g. VARCHAR(120)."""
    values: tuple[Any, ...]
    """The sampled values that are not NULL."""

    @functools.cached_property
    def texts(self) -> list[str]:
        """The values as trimmed text, empty ones left out (the rules read empty as NULL)."""
        return [t for t in (str(v).strip() for v in self.values) if t]

    @functools.cached_property
    def native(self) -> Kind | None:
        """'date' or 'datetime' when the driver returned real dates (not text in a DATE column,
        which SQLite allows), 'boolean' or 'integer' likewise; else None."""
        if not self.values:
            return None
        if all(isinstance(v, datetime) for v in self.values):
            return "datetime"
        if all(isinstance(v, date) and not isinstance(v, datetime) for v in self.values):
            return "date"
        if all(isinstance(v, bool) for v in self.values):
            return "boolean"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in self.values):
            return "integer"
        return None

    @functools.cached_property
    def words(self) -> list[str]:
        """Its distinct values as text, sorted; only read for a low-cardinality column."""
        return sorted(set(self.texts))


@dataclass(frozen=True)
class Table:
    name: str
    schema: str | None
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    rows: int
    """Rows sampled (at most `limit`)."""
    limit: int = SAMPLE_ROWS

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def kind_of(type_: sa.types.TypeEngine) -> Kind:
    """The kind of a column from the type SQLAlchemy reflected."""
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.DateTime):
        return "datetime"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Numeric):  # Float too
        return "numeric"
    if isinstance(type_, sa.String):
        return "text"
    return "other"


def read_table(
    url: str, system: str, table: str, schema: str | None = None, limit: int = SAMPLE_ROWS
) -> Table:
    """Inspect `table` and sample its first `limit` rows, read-only. A system that cannot be
    reached or a table that is not there is a SyncfabricError (exit 2), the password hidden."""
    where = f"the {system} system at {redact(url)}"
    try:
        engine = open_source(url)
    except Exception as error:
        raise _unreadable(error, url, where) from error
    try:
        inspector = sa.inspect(engine)
        if not inspector.has_table(table, schema=schema):
            raise _missing_table(inspector, table, schema, where)
        reflected = inspector.get_columns(table, schema=schema)
        primary = inspector.get_pk_constraint(table, schema=schema).get("constrained_columns")
        names = [c["name"] for c in reflected]
        # Untyped columns: the driver's own values, so text in a SQLite DATE column stays text.
        source = sa.table(table, *(sa.column(n) for n in names), schema=schema)
        with engine.connect() as connection:
            rows = connection.execute(sa.select(source).limit(limit)).fetchall()
    except SyncfabricError:
        raise
    except (sa.exc.SQLAlchemyError, OSError) as error:
        raise _unreadable(error, url, where) from error
    finally:
        engine.dispose()
    columns = tuple(
        Column(
            name=c["name"],
            kind=kind_of(c["type"]),
            declared=_declared(c["type"], engine.dialect),
            values=tuple(row[i] for row in rows if row[i] is not None),
        )
        for i, c in enumerate(reflected)
    )
    return Table(table, schema, columns, tuple(primary or ()), len(rows), limit)


def _declared(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # a type the dialect cannot render (NullType): its class says enough
        return type(type_).__name__.upper()


def _unreadable(error: BaseException, url: str, where: str) -> SyncfabricError:
    problem = classify(error, url)
    if problem is None:
        lines = str(getattr(error, "orig", None) or error).strip().splitlines()
        what, fix = scrub(lines[0] if lines else type(error).__name__, url), ""
    else:
        what, fix = problem.what, problem.fix
    fix = f" Fix: {fix}." if fix else ""
    return SyncfabricError(f"cannot read {where}: {what}.{fix}", exit_code=EXIT_USAGE)


def _missing_table(
    inspector: sa.Inspector, table: str, schema: str | None, where: str
) -> SyncfabricError:
    known = inspector.get_table_names(schema=schema)
    close = get_close_matches(table, known, n=5, cutoff=0.5)
    hint = f" Tables with similar names: {', '.join(close)}." if close else ""
    place = f"schema {schema!r}" if schema else "its default schema"
    return SyncfabricError(
        f"table {table!r} is not in {place} of {where} ({len(known)} tables there).{hint} "
        "Fix: correct --table (or --schema).",
        exit_code=EXIT_USAGE,
    )


# --- guessing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guess:
    """How a column's values read, and why that was guessed."""

    rule: Rule = "text"
    why: str = ""
    format: str | None = None
    style: Style | None = None
    words: tuple[str, ...] = ()
    """A vocabulary column's distinct values: the only sampled values ever printed."""


def guess_rule(column: Column, attribute: Attribute | None = None) -> Guess:
    """The rule (and format, style) that reads `column`'s values, from its type, name and
    sampled values; `attribute`, the catalog attribute it maps to, refines case and amounts."""
    texts = column.texts
    if not texts:
        return Guess(why="no value in the sampled rows: nothing to guess from")
    tokens = set(_tokens(column.name))
    native = column.native
    if native in ("date", "datetime"):
        return Guess(
            "timestamp",
            f"a native {column.declared} column, read as it is; the format is how a write fills it",
            format=NATIVE_FORMATS[native],
        )
    if column.kind == "boolean" or native == "boolean":
        return Guess("boolean", f"a {column.declared} column")
    if flag := _boolean(column, tokens):
        return flag
    if column.kind in ("text", "other", "date", "datetime") and (found := _date(texts)):
        return found
    if phone := _phone(texts, tokens):
        return phone
    numeric = _numeric(column, tokens, attribute)
    if numeric:
        return numeric
    if column.kind in ("integer", "numeric"):
        return Guess(why=f"{column.declared} values, compared as text")
    return _text(column, tokens, attribute)


def _boolean(column: Column, tokens: set[str]) -> Guess | None:
    found = {t.lower() for t in column.texts}
    pair = next((p for p in BOOLEAN_PAIRS if found <= p), None)
    if pair is None or (len(found) < 2 and not tokens & (FLAG_WORDS | DELETE_WORDS)):
        return None
    words = " or ".join(sorted(found, reverse=True))
    return Guess("boolean", f"all {_count(len(column.texts))} sampled values are {words}")


def _date(texts: Sequence[str]) -> Guess | None:
    probe = texts[:FORMAT_PROBE]
    if sum(1 for t in probe if _DATEISH.match(t)) < CONFIDENT * len(probe):
        return None
    reads = {f: _parsing(probe, f) for f in DATE_FORMATS}
    best = max(reads.values())
    if best < CONFIDENT * len(probe):
        return None
    chosen = next(f for f, n in reads.items() if n == best)
    also = [_readable(f) for f, n in reads.items() if n == best and f != chosen]
    why = f"{_share(best, len(probe))} look like {_readable(chosen)}"
    if also:
        why += f"; they also read as {' and '.join(also)}: check which"
    return Guess("timestamp", why, format=chosen)


def _parsing(values: Sequence[str], fmt: str) -> int:
    """How many of `values` strptime reads with `fmt` (none tried past 20 failures in a row at
    the start: a format that reads nothing is dropped quickly)."""
    read = 0
    for i, value in enumerate(values):
        try:
            datetime.strptime(value, fmt)
            read += 1
        except ValueError:
            if i >= 20 and read == 0:
                return 0
    return read


def _readable(fmt: str) -> str:
    for code, shown in (("%Y", "yyyy"), ("%m", "mm"), ("%d", "dd"), ("%H", "HH")):
        fmt = fmt.replace(code, shown)
    for code, shown in (("%M", "MM"), ("%S", "SS"), ("%f", "ffffff"), ("%z", "+zzzz")):
        fmt = fmt.replace(code, shown)
    return fmt


def _phone(texts: Sequence[str], tokens: set[str]) -> Guess | None:
    phones = [t for t in texts if _looks_like_phone(t)]
    written = sum(1 for t in phones if t.startswith(("+", "00")) or any(c in " -()/." for c in t))
    named = bool(tokens & PHONE_WORDS)
    if len(phones) >= (0.5 if named else CONFIDENT) * len(texts) and (
        named or written >= 0.5 * len(phones)
    ):
        return Guess(
            "phone",
            f"{_share(len(phones), len(texts))} look like phone numbers; read in E.164 form",
        )
    return None


def _looks_like_phone(text: str) -> bool:
    """7 to 15 digits, maybe with +, spaces, dashes, dots or brackets; not a date, not 12.50."""
    return (
        bool(_PHONE.match(text))
        and 7 <= sum(c.isdigit() for c in text) <= 15
        and not _DATEISH.match(text)
        and not _FRACTION.match(text)
    )


def _numeric(column: Column, tokens: set[str], attribute: Attribute | None) -> Guess | None:
    """Epoch seconds, cents or a decimal amount, from integer or decimal values."""
    texts = column.texts
    integers = [int(t) for t in texts if _INTEGER.match(t)]
    textual = column.kind in ("text", "other")
    if column.kind == "integer" or (textual and len(integers) >= CONFIDENT * len(texts)):
        if tokens & AMOUNT_WORDS:
            return Guess("cents", "integers named like an amount: read as cents (check: not units)")
        moments = [n for n in integers if EPOCH_RANGE[0] <= n <= EPOCH_RANGE[1]]
        timely = bool(tokens & (TIME_WORDS | STAMP_WORDS))
        plausible = timely or (len(set(moments)) > 1 and not tokens & KEY_WORDS)
        if len(moments) >= CONFIDENT * len(texts) and plausible:
            years = f"{_year(min(moments))} to {_year(max(moments))}"
            return Guess(
                "epoch", f"{_share(len(moments), len(texts))} are seconds since 1970 ({years})"
            )
        if attribute is not None and attribute.type == "decimal":
            return Guess("cents", f"integers for the decimal {attribute.name}: read as cents?")
        return None
    if "cents" in tokens:
        return Guess("cents", "named like cents")
    if column.kind == "numeric":
        return Guess("decimal", f"a {column.declared} column")
    decimals = sum(1 for t in texts if _DECIMAL.match(t))
    if decimals >= CONFIDENT * len(texts) and textual:
        return Guess("decimal", f"{_share(decimals, len(texts))} are decimal numbers")
    return None


def _text(column: Column, tokens: set[str], attribute: Attribute | None) -> Guess:
    """Text: e-mail addresses, a vocabulary's words, upper or lower case codes, or free text."""
    texts = column.texts
    written = _written_case(texts)
    wanted = _catalog_case(attribute)
    emails = sum(1 for t in texts if _EMAIL.match(t))
    if emails >= CONFIDENT * len(texts):
        return _styled(
            "lower", f"{_share(emails, len(texts))} are e-mail addresses, compared in lower case",
            written,
        )  # fmt: skip
    words = column.words
    private = attribute.pii if attribute is not None else _personal(tokens)
    if len(words) <= MAX_WORDS and len(texts) >= 3 * len(words):
        codes = all(len(w) <= 3 and w.isalpha() for w in words)
        rule = wanted or ("upper" if codes and written == "upper" else "lower")
        if private:
            return _styled(
                rule, f"{len(words)} distinct values (not shown: personal data)", written
            )
        why = f"{len(words)} distinct values in {_count(len(texts))}: {_quoted(words)}"
        if attribute is not None and attribute.allowed:
            outside = sorted({w.lower() for w in words} - {a.lower() for a in attribute.allowed})
            if outside:
                why += f"; not the catalog's words ({', '.join(outside)}): write a vocabulary"
        elif attribute is None:
            why += "; write a vocabulary if they are not the catalog's words"
        return _styled(rule, why, written, words=tuple(words))
    if wanted and attribute is not None:
        return _styled(wanted, f"the catalog's {attribute.name} is {wanted} case", written)
    if written in ("upper", "lower"):
        return _styled(written, f"all sampled values are {written} case", written)
    return Guess(why="free text, read as it is (trimmed)")


def _personal(tokens: set[str]) -> bool:
    """Named like personal data: an e-mail, a phone, a person's name (not plan_name)..."""
    if tokens & PII_WORDS:
        return True
    return "name" in tokens and tokens <= NAME_WORDS


def _styled(rule: Rule, why: str, written: Style | None, words: tuple[str, ...] = ()) -> Guess:
    """The guess, with the way the system writes its text when that differs from the rule's
    case (a correction is written the system's way)."""
    style = written if written and written != rule else None
    if style:
        why += f"; written in {style} case" if style != "capitalize" else "; written capitalized"
    return Guess(rule, why, style=style, words=words)


def _written_case(texts: Sequence[str]) -> Style | None:
    lettered = [t for t in texts if any(c.isalpha() for c in t)]
    if not lettered:
        return None
    for style, cased in (
        ("upper", str.upper),
        ("lower", str.lower),
        ("capitalize", str.capitalize),
    ):
        if all(t == cased(t) for t in lettered):
            return style  # type: ignore[return-value]
    return None


def _catalog_case(attribute: Attribute | None) -> Literal["lower", "upper"] | None:
    """The case the catalog wants: that of its allowed values, or of its pattern's letters."""
    if attribute is None:
        return None
    if attribute.allowed:
        if all(a == a.lower() for a in attribute.allowed):
            return "lower"
        if all(a == a.upper() for a in attribute.allowed):
            return "upper"
        return None
    pattern = attribute.pattern or ""
    if "A-Z" in pattern and "a-z" not in pattern:
        return "upper"
    if "a-z" in pattern and "A-Z" not in pattern:
        return "lower"
    return None


# --- matching names ---------------------------------------------------------------------------


def _tokens(name: str) -> list[str]:
    """A name's parts, lower case, camelCase split: 'emailAddress' -> ['email', 'address']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def similarity(column: str, attribute: str) -> float:
    """How alike a column's name and an attribute's are, from 0 to 1: the same parts (once
    synonyms are read alike) score highest, one name's parts inside the other's next
    (email_address ~ email), then the share of parts in common and the spelling."""
    c = [SYNONYMS.get(t, t) for t in _tokens(column)]
    a = [SYNONYMS.get(t, t) for t in _tokens(attribute)]
    if not c or not a:
        return 0.0
    if c == a or "".join(c) == "".join(a):
        return 1.0
    if set(a) <= set(c):
        return max(0.9 - 0.05 * (len(c) - len(a)), 0.7)
    if set(c) <= set(a):
        return max(0.85 - 0.05 * (len(a) - len(c)), 0.65)
    shared = len(set(a) & set(c)) / len(set(a) | set(c))
    spelling = SequenceMatcher(None, "_".join(c), "_".join(a)).ratio()
    return 0.8 * max(shared, spelling)


def match_columns(columns: Iterable[str], attributes: Iterable[str]) -> dict[str, str]:
    """attribute -> column, one to one, the most similar pairs first, none below `MATCH`."""
    pairs = sorted(
        ((similarity(c, a), a, c) for c in columns for a in attributes),
        key=lambda p: -p[0],
    )
    matched: dict[str, str] = {}
    for score, attribute, column in pairs:
        if score < MATCH:
            break
        if attribute not in matched and column not in matched.values():
            matched[attribute] = column
    return matched


def _key_like(column: str, key: str) -> bool:
    """customer_ref, customer_no, customerId are named like the key customer_id."""
    c = [t for t in _tokens(column) if t not in KEY_WORDS]
    k = [t for t in _tokens(key) if t not in KEY_WORDS]
    return bool(c) and c == k and _tokens(column)[-1] in KEY_WORDS


# --- the proposal -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposed:
    """A column in the proposal: the attribute it holds, its rule, and why they were guessed."""

    attribute: str
    column: str
    guess: Guess
    named: str = ""
    """Why the column was matched to this attribute, when its name is not the attribute's."""


@dataclass(frozen=True)
class Proposal:
    system: str
    entity: str
    table: Table
    key: tuple[str, ...]
    key_why: str
    canonical_key: str | None
    canonical_why: str
    columns: tuple[Proposed, ...]
    unmatched: tuple[Proposed, ...] = ()
    """Columns no catalog attribute looks like: written as comments."""
    missing: tuple[str, ...] = ()
    """Catalog attributes no column looks like."""
    soft_delete: tuple[str, str, str, str] | None = None
    """(column, value when deleted, value while live, why)."""
    stamps: tuple[tuple[str, str, str, str], ...] = ()
    """(column, format, on, why) of the columns the system fills itself."""
    catalog: bool = False
    """Whether the columns were matched to a catalog entity."""


def propose(table: Table, system: str, catalog: Entity | None = None) -> Proposal:
    """The proposed mapping of `table` in `system`, for `catalog`'s entity if given."""
    key, key_why = _key(table)
    canonical, canonical_why = _canonical_key(table, key, catalog)
    taken = {*key, *([canonical] if canonical else [])}
    remaining = [c for c in table.columns if c.name not in taken]
    guesses = {c.name: guess_rule(c) for c in remaining}
    proposed: list[Proposed] = []
    missing: tuple[str, ...] = ()
    if catalog is not None:
        matched = _match_catalog(remaining, catalog, guesses)
        for attribute in catalog.attributes:
            if attribute.name in matched:
                column, named = matched[attribute.name]
                guess = guess_rule(table.column(column), attribute)
                proposed.append(Proposed(attribute.name, column, guess, named))
        missing = tuple(a for a in catalog.attribute_names if a not in matched)
        used = {column for column, _ in matched.values()}
        remaining = [c for c in remaining if c.name not in used]
    soft_delete = _soft_delete(remaining, guesses)
    stamps = _stamps(remaining, guesses)
    marked = {s[0] for s in stamps} | ({soft_delete[0]} if soft_delete else set())
    rest = [Proposed(c.name, c.name, guesses[c.name]) for c in remaining if c.name not in marked]
    return Proposal(
        system=system,
        entity=catalog.name if catalog else table.name,
        table=table,
        key=key,
        key_why=key_why,
        canonical_key=canonical,
        canonical_why=canonical_why,
        columns=tuple(proposed) if catalog else tuple(rest),
        unmatched=tuple(rest) if catalog else (),
        missing=missing,
        soft_delete=soft_delete,
        stamps=stamps,
        catalog=catalog is not None,
    )


TYPE_RULES: dict[str, tuple[Rule, ...]] = {
    "decimal": ("cents", "decimal"),
    "timestamp": ("timestamp", "epoch"),
    "boolean": ("boolean",),
}
"""The rules whose columns may hold an attribute of each type, for matching by type."""


def _match_catalog(
    columns: Sequence[Column], catalog: Entity, guesses: dict[str, Guess]
) -> dict[str, tuple[str, str]]:
    """attribute -> (column, why when not the same name): by name first; then an attribute
    left alone with its type (decimal, timestamp, boolean) takes the one column left that reads
    as that type and is no stamp or delete marker."""
    matched = {
        a: (c, "" if a == c else f"named like {a}")
        for a, c in match_columns([c.name for c in columns], catalog.attribute_names).items()
    }
    used = {c for c, _ in matched.values()}
    for kind, rules in TYPE_RULES.items():
        attributes = [
            a.name for a in catalog.attributes if a.type == kind and a.name not in matched
        ]
        candidates = [
            c.name
            for c in columns
            if c.name not in used
            and guesses[c.name].rule in rules
            and not set(_tokens(c.name)) & (STAMP_WORDS | DELETE_WORDS)
        ]
        if len(attributes) == 1 and len(candidates) == 1:
            why = f"the only column left that reads as a {kind}"
            matched[attributes[0]] = (candidates[0], why)
            used.add(candidates[0])
    return matched


def _key(table: Table) -> tuple[tuple[str, ...], str]:
    if table.primary_key:
        return table.primary_key, "the table's primary key"
    unique = [c for c in table.columns if c.values and len(set(c.texts)) == table.rows]
    named = [c for c in unique if _tokens(c.name) and _tokens(c.name)[-1] in KEY_WORDS]
    if named or unique:
        chosen = (named or unique)[0].name
        return (chosen,), f"no primary key; {chosen} is unique and filled in every sampled row"
    return (), "no primary key and no column unique in the sample: name the key column(s)"


def _canonical_key(
    table: Table, key: tuple[str, ...], catalog: Entity | None
) -> tuple[str | None, str]:
    """The column holding the catalog key: values that match the catalog's key pattern, else
    a name like the key's (or like external_id without a catalog), else the system's key."""
    if catalog is not None:
        fits = _fitting_key_pattern(table, catalog.key_pattern)
        if fits:
            # The best share first; among equals a column of unique values, then the first.
            column, fitting = max(fits, key=lambda f: (f[1] / len(f[0].texts), _unique(f[0])))
            share = _share(fitting, len(column.texts))
            return column.name, f"{share} match the catalog's key pattern {catalog.key_pattern}"
        for column in table.columns:
            if column.name == catalog.key or _key_like(column.name, catalog.key):
                return column.name, f"named like the catalog key {catalog.key}"
    else:
        for column in table.columns:
            if column.name not in key and set(_tokens(column.name)) & CANONICAL_WORDS:
                return column.name, "named like a key shared with other systems"
    if len(key) == 1:
        return key[0], "the system's key: change it if another column holds the catalog key"
    return None, "no column holds an evident catalog key: name it"


def _unique(column: Column) -> bool:
    return len(set(column.texts)) == len(column.texts)


def _fitting_key_pattern(table: Table, key_pattern: str) -> list[tuple[Column, int]]:
    """(column, how many of its values match) for the columns whose values match the pattern."""
    try:
        pattern = re.compile(key_pattern)
    except re.error:
        return []
    found = []
    for column in table.columns:
        fitting = sum(1 for t in column.texts if pattern.search(t))
        if column.texts and fitting >= CONFIDENT * len(column.texts):
            found.append((column, fitting))
    return found


def _soft_delete(
    columns: Sequence[Column], guesses: dict[str, Guess]
) -> tuple[str, str, str, str] | None:
    """A 0/1 (true/false, yes/no) column named like deleted: how a deleted record shows."""
    for column in columns:
        if guesses[column.name].rule == "boolean" and set(_tokens(column.name)) & DELETE_WORDS:
            found = {t.lower() for t in column.texts}
            pair = next((p for p in BOOLEAN_PAIRS if found <= p), {"1", "0"})
            yes, no = sorted(pair, key=lambda w: w in ("0", "false", "f", "no", "n"))
            return column.name, yes, no, f"a {no}/{yes} column named like a delete marker"
    return None


def _stamps(
    columns: Sequence[Column], guesses: dict[str, Guess]
) -> tuple[tuple[str, str, str, str], ...]:
    """Moments named like created/updated: the system fills them, and so must a write."""
    found = []
    for column in columns:
        guess = guesses[column.name]
        tokens = set(_tokens(column.name))
        if guess.rule in ("timestamp", "epoch") and tokens & STAMP_WORDS:
            fmt = guess.format or "epoch"
            on = "create" if tokens & CREATE_WORDS else "write"
            found.append((column.name, fmt, on, f"named like a stamp; {guess.why}"))
    return tuple(found)


# --- writing it out ---------------------------------------------------------------------------


def render(proposal: Proposal, command: str = "") -> str:
    """The proposal as the `entities:` block of systems/<system>.yaml, every guess commented."""
    table = proposal.table
    system = proposal.system
    lines = [
        f"# Proposed by {command or '`syncctl map`'}",
        f"# from the first {_count(table.rows, 'row')} of {_qualified(table)} "
        f"(at most {table.limit:,} are read).",
        f"# Every guess says why: review them all, then put this block in systems/{system}.yaml",
        f"# (a new file starts with `kind: sql` and `url_env: {url_variable(system)}` above it).",
        "entities:",
    ]
    if not proposal.catalog:
        lines.append(
            _commented(
                f"  {_scalar(proposal.entity)}:",
                "rename to the catalog entity the table holds (--entity matches the columns)",
            )
        )
    else:
        lines.append(f"  {_scalar(proposal.entity)}:")
    lines.append(f"    table: {_scalar(table.name)}")
    if table.schema:
        lines.append(f"    schema: {_scalar(table.schema)}")
    lines.append(
        _commented(f"    key: [{', '.join(_scalar(k) for k in proposal.key)}]", proposal.key_why)
    )
    if proposal.canonical_key:
        line = f"    canonical_key: {_scalar(proposal.canonical_key)}"
        lines.append(_commented(line, proposal.canonical_why))
    else:
        lines.append(f"    # canonical_key: ?  # {proposal.canonical_why}")
    lines.append(f"    # description: what one row of {table.name} is, in a sentence")
    what = "catalog attribute -> column" if proposal.catalog else "attribute (the column's name)"
    lines.append(_commented("    columns:", f"{what}, and how its values read"))
    lines.extend(_commented(f"      {_entry(p)}", _why(p)) for p in proposal.columns)
    if not proposal.columns:
        lines[-1] = "    columns: {}  # no column matched: map them by hand from the comments"
    if proposal.unmatched:
        lines.append(
            "      # columns no catalog attribute looks like; map them by hand, or drop them:"
        )
        lines.extend(_commented(f"      # {_entry(p)}", p.guess.why) for p in proposal.unmatched)
    if proposal.missing:
        lines.append(f"      # no column looks like: {', '.join(proposal.missing)}")
    if proposal.soft_delete:
        column, value, live, why = proposal.soft_delete
        line = f"    soft_delete: {{column: {_scalar(column)}, value: {json.dumps(value)}, live: {json.dumps(live)}}}"
        lines.append(_commented(line, why))
    if proposal.stamps:
        lines.append(
            "    stamps:                         # columns the system fills itself on a write"
        )
        for column, fmt, on, why in proposal.stamps:
            when = ", on: create" if on == "create" else ""
            line = f"      - {{column: {_scalar(column)}, format: {_scalar(fmt)}{when}}}"
            lines.append(_commented(line, why))
    return "\n".join(lines) + "\n"


def _entry(p: Proposed) -> str:
    guess = p.guess
    if guess.rule == "text" and guess.style is None:
        return f"{_scalar(p.attribute)}: {_scalar(p.column)}"
    parts = [f"column: {_scalar(p.column)}", f"rule: {guess.rule}"]
    if guess.format:
        parts.append(f"format: {json.dumps(guess.format)}")
    if guess.style:
        parts.append(f"style: {guess.style}")
    return f"{_scalar(p.attribute)}: {{{', '.join(parts)}}}"


def _why(p: Proposed) -> str:
    return f"{p.named}; {p.guess.why}" if p.named else p.guess.why


def _commented(line: str, why: str) -> str:
    if not why:
        return line
    why = " ".join(why.split())  # a comment stays on its line
    if len(line) < COMMENT_AT - 1:
        return f"{line.ljust(COMMENT_AT)}# {why}"
    return f"{line}  # {why}"


def _scalar(text: str) -> str:
    """`text` as a YAML scalar: bare when it is a plain name, else double-quoted."""
    if _BARE.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _quoted(words: Sequence[str]) -> str:
    return ", ".join(
        json.dumps(w if len(w) <= 40 else w[:39] + "…", ensure_ascii=False) for w in words
    )


def _qualified(table: Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def _count(n: int, what: str = "") -> str:
    return f"{n:,} {what}{'s' if n != 1 else ''}".strip() if what else f"{n:,}"


def _share(part: int, whole: int) -> str:
    """'97% of 1,000 sampled values', never rounded up to 100% when one did not fit."""
    percent = 100 if part == whole else min(int(100 * part / whole), 99)
    return f"{percent}% of {_count(whole)} sampled values"


def _year(epoch: int) -> int:
    return datetime.fromtimestamp(epoch, UTC).year


# --- the command ------------------------------------------------------------------------------


def system_url(system: str, url: str | None) -> str:
    """--url, else SYNCFABRIC_<SYSTEM>_URL; neither is an error naming both."""
    found = url or os.environ.get(url_variable(system))
    if not found:
        raise SyncfabricError(
            f"no URL for the {system} system: pass --url, or set {url_variable(system)} "
            "(e.g. postgresql+psycopg://user@host:5432/db, mysql+pymysql://..., sqlite:///file)",
            exit_code=EXIT_USAGE,
        )
    return found


def catalog_entity(name: str) -> Entity:
    """The catalog's entity `name`; an unknown one is the operator's error."""
    try:
        return entity(name)
    except KeyError as error:
        raise SyncfabricError(f"{error.args[0]}. Fix: correct --entity.") from None


def propose_mapping(
    system: str,
    table: str,
    *,
    entity_name: str | None = None,
    url: str | None = None,
    schema: str | None = None,
    limit: int = SAMPLE_ROWS,
) -> str:
    """What `syncctl map` prints: the proposed entities block for `table` of `system`."""
    catalog = catalog_entity(entity_name) if entity_name else None
    sampled = read_table(system_url(system, url), system, table, schema, limit)
    command = f"`syncctl map --system {system} --table {table}"
    command += f" --entity {entity_name}`" if entity_name else "`"
    return render(propose(sampled, system, catalog), command)


def write_new(path: str | Path, text: str) -> None:
    """Write `text` to a new file; an existing file is never overwritten."""
    path = Path(path)
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise SyncfabricError(
            f"{path} exists; not overwriting it. Fix: choose another --out, or remove it.",
            exit_code=EXIT_USAGE,
        ) from None
    except FileNotFoundError:
        raise SyncfabricError(
            f"{path.parent} does not exist. Fix: create it, or choose another --out.",
            exit_code=EXIT_USAGE,
        ) from None
