"""How a column's values read: the rule of `connectors/mappings.py` guessed from a column's
declared type, its name and its sampled values, and which catalog attribute its name is like.

Plain functions of a sampled `Column`, for `propose.py`. Each guess carries the reason a person
reviewing it needs (`Guess.why`), never a sampled value, except the distinct words of a
low-cardinality column that is not personal data.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from difflib import SequenceMatcher
from typing import Any, Literal

import sqlalchemy as sa

from sync_assets.catalog.entities import Attribute
from sync_assets.connectors.mappings import Rule, Style

MAX_WORDS = 20
"""A text column with at most this many distinct values (each seen 3 times on average) holds a
vocabulary: its words are shown so that the team can map them to the catalog's."""
CONFIDENT = 0.9
"""The share of sampled values that must fit a guess (a date format, a phone number...)."""
FORMAT_PROBE = 1_000
"""Values tried against each date format: enough to tell formats apart, and quick."""
MATCH = 0.6
"""How similar a column's name must be to a catalog attribute's to be mapped to it."""
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
STAMP_WORDS = {"created", "updated", "modified", "changed", "inserted"}
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
    *("name", "first", "last", "full", "display", "given", "family", "middle", "nick"),
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
        """'date', 'datetime' or 'boolean' when the driver returned such values (not text in a
        DATE column, which SQLite allows); else None."""
        if not self.values:
            return None
        if all(isinstance(v, datetime) for v in self.values):
            return "datetime"
        if all(isinstance(v, date) and not isinstance(v, datetime) for v in self.values):
            return "date"
        if all(isinstance(v, bool) for v in self.values):
            return "boolean"
        return None

    @functools.cached_property
    def words(self) -> list[str]:
        """Its distinct values as text, sorted; only read for a low-cardinality column."""
        return sorted(set(self.texts))


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
    tokens = set(name_parts(column.name))
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
    return Guess("boolean", f"all {count(len(column.texts))} sampled values are {words}")


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
    why = f"{sampled_share(best, len(probe))} look like {_readable(chosen)}"
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
            f"{sampled_share(len(phones), len(texts))} look like phone numbers; read in E.164 form",
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
            # No range of years: the oldest of a birth date column would be a person's.
            fraction = sampled_share(len(moments), len(texts))
            return Guess("epoch", f"{fraction} are seconds since 1970 (between 1980 and 2100)")
        if attribute is not None and attribute.type == "decimal":
            return Guess("cents", f"integers for the decimal {attribute.name}: read as cents?")
        return None
    if "cents" in tokens:
        return Guess("cents", "named like cents")
    if column.kind == "numeric":
        return Guess("decimal", f"a {column.declared} column")
    decimals = sum(1 for t in texts if _DECIMAL.match(t))
    if decimals >= CONFIDENT * len(texts) and textual:
        return Guess("decimal", f"{sampled_share(decimals, len(texts))} are decimal numbers")
    return None


def _text(column: Column, tokens: set[str], attribute: Attribute | None) -> Guess:
    """Text: e-mail addresses, a vocabulary's words, upper or lower case codes, or free text."""
    texts = column.texts
    written = _written_case(texts)
    wanted = _catalog_case(attribute)
    emails = sum(1 for t in texts if _EMAIL.match(t))
    if emails >= CONFIDENT * len(texts):
        return _styled(
            "lower", f"{sampled_share(emails, len(texts))} are e-mail addresses, compared in lower case",
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
        why = f"{len(words)} distinct values in {count(len(texts))}: {_quoted(words)}"
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


def _quoted(words: Sequence[str]) -> str:
    return ", ".join(
        json.dumps(w if len(w) <= 40 else w[:39] + "…", ensure_ascii=False) for w in words
    )


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


def name_parts(name: str) -> list[str]:
    """A name's parts, lower case, camelCase split: 'emailAddress' -> ['email', 'address']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def similarity(column: str, attribute: str) -> float:
    """How alike a column's name and an attribute's are, from 0 to 1: the same parts (once
    synonyms are read alike) score highest, one name's parts inside the other's next
    (email_address ~ email), then the share of parts in common and the spelling."""
    c = [SYNONYMS.get(t, t) for t in name_parts(column)]
    a = [SYNONYMS.get(t, t) for t in name_parts(attribute)]
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


def key_like(column: str, key: str) -> bool:
    """customer_ref, customer_no, customerId are named like the key customer_id."""
    c = [t for t in name_parts(column) if t not in KEY_WORDS]
    k = [t for t in name_parts(key) if t not in KEY_WORDS]
    return bool(c) and c == k and name_parts(column)[-1] in KEY_WORDS


def count(n: int, what: str = "") -> str:
    return f"{n:,} {what}{'s' if n != 1 else ''}".strip() if what else f"{n:,}"


def sampled_share(part: int, whole: int) -> str:
    """'97% of 1,000 sampled values', never rounded up to 100% when one did not fit."""
    percent = 100 if part == whole else min(int(100 * part / whole), 99)
    return f"{percent}% of {count(whole)} sampled values"
