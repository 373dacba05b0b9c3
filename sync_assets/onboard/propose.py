"""A proposed mapping for a real table, for the team to review: what `syncctl map` prints.

It reads the table's columns, types and primary key through SQLAlchemy inspection and samples its
first rows (`SAMPLE_ROWS`), through a read-only connection (`open_source`). From that it guesses
each column's rule (`guess.py`: a date format, epoch seconds, a phone number, a 0/1 flag, cents, a
decimal, a vocabulary's words, upper or lower case text), the system's key, the column holding the
catalog key, a soft-delete marker and the stamps, and writes them as the `entities:` block of
`systems/<system>.yaml`, each guess with a comment saying why. With a catalog entity, columns are
matched to its attributes by name (then by type); the rest stay as comments.

A sampled value is never printed, except the few distinct words of a low-cardinality column that
is not personal data: the team needs them to write a vocabulary.

Guessing (`propose`) and writing (`render`) are plain functions of the sampled `Table`; only
`read_table` touches a database.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

import sqlalchemy as sa

from sync_assets.catalog.entities import Entity
from sync_assets.connectors.problems import classify, url_variable
from sync_assets.connectors.sources import open_source
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.onboard.guess import (
    BOOLEAN_PAIRS,
    CANONICAL_WORDS,
    CONFIDENT,
    CREATE_WORDS,
    DELETE_WORDS,
    KEY_WORDS,
    STAMP_WORDS,
    Column,
    Guess,
    count,
    guess_rule,
    key_like,
    kind_of,
    match_columns,
    name_parts,
    sampled_share,
)
from sync_assets.security.redact import redact_text

SAMPLE_ROWS = 10_000
"""Rows read from the table: the first ones, enough to guess from, bounded whatever its size."""
COMMENT_AT = 36
"""Column of the `#` of a guess's comment, as in the example project's files."""

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


# --- what is read from the table ------------------------------------------------------------


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


def read_table(
    url: str, system: str, table: str, schema: str | None = None, limit: int = SAMPLE_ROWS
) -> Table:
    """Inspect `table` and sample its first `limit` rows, read-only. A system that cannot be
    reached or a table that is not there is a SyncfabricError (exit 2), the password hidden."""
    where = f"the {system} system at {redact_text(url)}"
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
        what, fix = redact_text(lines[0] if lines else type(error).__name__, url=url), ""
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
    left = [c.name for c in remaining if c.name not in marked]
    rest = [Proposed(a, c, guesses[c]) for a, c in zip(_names(left), left, strict=True)]
    return Proposal(
        system=system,
        entity=catalog.name if catalog else _name(table.name),
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


def _name(text: str) -> str:
    """A name the project accepts (lower case letters, digits and _, from a letter), for an
    attribute or entity named after a column or table: 'EmailAddress' -> 'email_address'."""
    name = "_".join(name_parts(text))[:63]
    return name if re.match(r"^[a-z]", name) else f"x_{name}"[:63]


def _names(columns: Sequence[str]) -> list[str]:
    """`_name` of each column, made unique ('Email' and 'email' -> email, email_2)."""
    seen: dict[str, int] = {}
    names = []
    for column in columns:
        name = _name(column)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def _match_catalog(
    columns: Sequence[Column], catalog: Entity, guesses: dict[str, Guess]
) -> dict[str, tuple[str, str]]:
    """attribute -> (column, why when not the same name): by name first; then an attribute
    left alone with its type takes the one column left that reads as that type (and is no
    stamp or delete marker)."""
    matched = {
        a: (c, "" if a == c else f"named like {a}")
        for a, c in match_columns([c.name for c in columns], catalog.attribute_names).items()
    }
    used = {c for c, _ in matched.values()}
    for kind in ("decimal", "timestamp", "boolean", "enum"):
        attributes = [
            a.name for a in catalog.attributes if a.type == kind and a.name not in matched
        ]
        candidates = [
            c.name
            for c in columns
            if c.name not in used
            and _reads_as(kind, guesses[c.name])
            and not set(name_parts(c.name)) & (STAMP_WORDS | DELETE_WORDS)
        ]
        if len(attributes) == 1 and len(candidates) == 1:
            matched[attributes[0]] = (
                candidates[0],
                f"the only column left that fits its type ({kind})",
            )
            used.add(candidates[0])
    return matched


def _reads_as(attribute_type: str, guess: Guess) -> bool:
    """Whether a column guessed so may hold an attribute of that type."""
    match attribute_type:
        case "decimal":
            return guess.rule in ("cents", "decimal")
        case "timestamp":
            return guess.rule in ("timestamp", "epoch")
        case "boolean":
            return guess.rule == "boolean"
        case "enum":
            return bool(guess.words)  # a vocabulary's words (never a personal column's)
    return False


def _key(table: Table) -> tuple[tuple[str, ...], str]:
    if table.primary_key:
        return table.primary_key, "the table's primary key"
    unique = [c for c in table.columns if c.values and len(set(c.texts)) == table.rows]
    named = [c for c in unique if name_parts(c.name) and name_parts(c.name)[-1] in KEY_WORDS]
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
            fraction = sampled_share(fitting, len(column.texts))
            return column.name, f"{fraction} match the catalog's key pattern {catalog.key_pattern}"
        for column in table.columns:
            if column.name == catalog.key or key_like(column.name, catalog.key):
                return column.name, f"named like the catalog key {catalog.key}"
    else:
        for column in table.columns:
            if column.name not in key and set(name_parts(column.name)) & CANONICAL_WORDS:
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
        if guesses[column.name].rule == "boolean" and set(name_parts(column.name)) & DELETE_WORDS:
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
        tokens = set(name_parts(column.name))
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
        f"# from the first {count(table.rows, 'row')} of {_qualified(table)} "
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


def _qualified(table: Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


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
    """The entity `name` of the current project's catalog (`--project`, SYNCFABRIC_PROJECT or
    the current directory); an unknown one, or a project that does not load, is the operator's
    error."""
    from sync_assets.project import current

    try:
        return current().entity(name)
    except KeyError as error:
        raise SyncfabricError(f"{error.args[0]}. Fix: correct --entity.") from None


def propose_mapping(
    system: str,
    table: str,
    *,
    entity_name: str | None = None,
    url: str | None = None,
    schema: str | None = None,
    limit: int | None = None,
) -> str:
    """What `syncctl map` prints: the proposed entities block for `table` of `system`."""
    catalog = catalog_entity(entity_name) if entity_name else None
    sampled = read_table(system_url(system, url), system, table, schema, limit or SAMPLE_ROWS)
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
