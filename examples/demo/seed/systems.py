"""The demo company's three systems and how each one stores customers and orders.

Each system keeps the same truth in its own tables, column names, id formats, date formats and
status vocabularies, as real tools do. `LAYOUTS` is the one place that describes them: every
column names the catalog attribute it holds (if any) and the convention it is written in, so a
reconciliation can map a system's rows back to the catalog.

The rows hold the final state implied by the valid events of the landscape; the conversions from
that state to each system's format are the `*_row` functions below.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sync_assets.settings import DataFolder


@dataclass(slots=True)
class Customer:
    """A customer's final state as the valid events imply it (catalog values, epoch seconds)."""

    number: int
    email: str
    full_name: str
    phone: str | None
    country: str
    status: str
    marketing_opt_in: bool | None = None
    plan: str | None = None
    support_tier: str | None = None
    created_at: int = 0
    last_at: int = 0
    """Time of the customer's newest valid event, whichever system sent it."""
    deleted: bool = False
    acct_no: int | None = None
    """Billing's account number; None when billing never opened an account."""
    support_user_id: int | None = None
    """Support's user id; None when the customer never reached the support desk."""

    @property
    def customer_id(self) -> str:
        return f"C-{self.number:06d}"


@dataclass(slots=True)
class Order:
    """An order's final state as the valid events imply it (catalog values, epoch seconds)."""

    number: int
    customer: Customer
    status: str
    cents: int
    currency: str
    placed_at: int
    """Whole minutes: billing stores the minute only, so this loses nothing there."""
    deleted: bool = False
    last_at: int = 0
    """Time of the order's newest valid event."""

    @property
    def order_id(self) -> str:
        return f"O-{self.number:07d}"


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    description: str
    attribute: str | None = None
    """The catalog attribute this column holds, as `<entity>.<attribute>`; None for local data."""


@dataclass(frozen=True)
class Table:
    name: str
    entity: str
    key: str
    """The column holding the entity's canonical key."""
    description: str
    columns: tuple[Column, ...]
    constraints: tuple[str, ...] = ()

    def ddl(self) -> str:
        parts = [f"{c.name} {c.sql_type}" for c in self.columns] + list(self.constraints)
        return f"CREATE TABLE {self.name} (\n    " + ",\n    ".join(parts) + "\n)"

    def insert_sql(self) -> str:
        names = ", ".join(c.name for c in self.columns)
        marks = ", ".join("?" for _ in self.columns)
        return f"INSERT INTO {self.name} ({names}) VALUES ({marks})"


@dataclass(frozen=True)
class SystemLayout:
    system: str
    description: str
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


CRM = SystemLayout(
    "crm",
    "The CRM, where customers are born. Soft-deletes: a deleted customer keeps its row.",
    (
        Table(
            "contacts",
            "customer",
            "contact_id",
            "One row per customer ever created, deleted ones included (deleted = 1).",
            (
                Column("contact_id", "TEXT PRIMARY KEY", "Canonical key, e.g. 'C-000123'."),
                Column("email_address", "TEXT NOT NULL", "Lower case.", "customer.email"),
                Column("display_name", "TEXT NOT NULL", "As entered.", "customer.full_name"),
                Column(
                    "phone",
                    "TEXT",
                    "For humans: '+<code> <groups>', e.g. '+44 7700 900123'; remove the "
                    "spaces for E.164.",
                    "customer.phone",
                ),
                Column(
                    "country_code", "TEXT NOT NULL", "ISO alpha-2, lower case.", "customer.country"
                ),
                Column(
                    "lifecycle_status",
                    "TEXT NOT NULL",
                    "'Active', 'Inactive' or 'Suspended'.",
                    "customer.status",
                ),
                Column(
                    "marketing_opt_in",
                    "INTEGER",
                    "1 or 0; NULL when never asked.",
                    "customer.marketing_opt_in",
                ),
                Column("plan_name", "TEXT", "Copy of billing's plan, e.g. 'Pro'.", "customer.plan"),
                Column("created_on", "TEXT NOT NULL", "'YYYY-MM-DD HH:MM:SS' in UTC."),
                Column("deleted", "INTEGER NOT NULL", "1 once deleted (soft delete), else 0."),
            ),
        ),
    ),
)

BILLING = SystemLayout(
    "billing",
    "Billing: accounts and the orders it takes. Never deletes: closes accounts, voids orders.",
    (
        Table(
            "accounts",
            "customer",
            "customer_ref",
            "One row per customer billing opened an account for (those with a plan).",
            (
                Column("acct_no", "INTEGER PRIMARY KEY", "Billing's own account number."),
                Column("customer_ref", "TEXT NOT NULL UNIQUE", "Canonical key, e.g. 'C-000123'."),
                Column("billing_email", "TEXT NOT NULL", "Upper case.", "customer.email"),
                Column("plan", "TEXT NOT NULL", "Upper case, e.g. 'PRO'.", "customer.plan"),
                Column(
                    "account_state",
                    "TEXT NOT NULL",
                    "'ACTIVE', 'INACTIVE' or 'SUSPENDED'; 'CLOSED' once the customer is deleted.",
                    "customer.status",
                ),
                Column("country", "TEXT NOT NULL", "ISO alpha-2, upper case.", "customer.country"),
                Column("updated", "TEXT NOT NULL", "'dd/mm/yyyy' (UTC) of the last change."),
            ),
        ),
        Table(
            "orders",
            "order",
            "order_number",
            "Every order ever taken, voided ones included (voided = 1).",
            (
                Column("order_number", "TEXT PRIMARY KEY", "Canonical key, e.g. 'O-0000001'."),
                Column(
                    "acct_no",
                    "INTEGER NOT NULL REFERENCES accounts (acct_no)",
                    "The customer's account; join accounts for the customer_ref.",
                    "order.customer_id",
                ),
                Column(
                    "state",
                    "TEXT NOT NULL",
                    "Upper case: 'PENDING', 'PAID', 'SHIPPED', 'CANCELLED', 'REFUNDED'.",
                    "order.status",
                ),
                Column("total_cents", "INTEGER NOT NULL", "Amount in cents.", "order.amount"),
                Column("currency", "TEXT NOT NULL", "ISO 4217, lower case.", "order.currency"),
                Column("placed", "TEXT NOT NULL", "'dd/mm/yyyy HH:MM' in UTC.", "order.placed_at"),
                Column("voided", "INTEGER NOT NULL", "1 once deleted, else 0."),
            ),
        ),
    ),
)

SUPPORT = SystemLayout(
    "support",
    "The support desk. Hard-deletes: a deleted customer's user is gone.",
    (
        Table(
            "users",
            "customer",
            "external_id",
            "One row per live customer who reached the support desk (those with a tier).",
            (
                Column("id", "INTEGER PRIMARY KEY", "Support's own user id."),
                Column("external_id", "TEXT NOT NULL UNIQUE", "Canonical key, e.g. 'C-000123'."),
                Column(
                    "email",
                    "TEXT NOT NULL",
                    "Mixed case as typed; compare lower-cased.",
                    "customer.email",
                ),
                Column("name", "TEXT NOT NULL", "As entered.", "customer.full_name"),
                Column(
                    "tier", "TEXT NOT NULL", "'Standard' or 'Priority'.", "customer.support_tier"
                ),
                Column(
                    "state",
                    "TEXT NOT NULL",
                    "'enabled' when active; 'disabled' when inactive or suspended.",
                    "customer.status",
                ),
                Column("updated_at", "INTEGER NOT NULL", "Epoch seconds of the last change."),
            ),
        ),
    ),
)

LAYOUTS: dict[str, SystemLayout] = {layout.system: layout for layout in (CRM, BILLING, SUPPORT)}


# -- phone numbers --------------------------------------------------------------------------------

PHONE_PLANS: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = {
    # country: (calling code, how national mobile numbers start, digit groups humans write)
    "GB": ("44", ("7",), (4, 6)),
    "DE": ("49", ("151", "160", "170", "176"), (3, 8)),
    "FR": ("33", ("6", "7"), (1, 2, 2, 2, 2)),
    "US": ("1", ("212", "312", "415", "512", "617", "646", "718"), (3, 3, 4)),
    "NL": ("31", ("6",), (1, 8)),
    "ES": ("34", ("6", "7"), (3, 3, 3)),
    "IT": ("39", ("32", "33", "34", "39"), (3, 3, 4)),
    "SE": ("46", ("70", "72", "73", "76"), (2, 3, 2, 2)),
}


def phone_for_humans(e164: str) -> str:
    """'+447700900123' -> '+44 7700 900123', grouped as people in that country write it."""
    for code, _, groups in PHONE_PLANS.values():
        national = e164[1 + len(code) :]
        if e164.startswith("+" + code) and len(national) == sum(groups):
            parts, start = [], 0
            for size in groups:
                parts.append(national[start : start + size])
                start += size
            return f"+{code} " + " ".join(parts)
    return e164


# -- each system's rows ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _date(day: int, day_format: str) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime(day_format)


def _format(epoch: int, day_format: str, clock: bool) -> str:
    """strftime for the formats below, each day's date formatted once (orders share days)."""
    day, seconds = divmod(epoch, 86_400)
    text = _date(day, day_format)
    if clock:
        text += f" {seconds // 3600:02d}:{seconds // 60 % 60:02d}"
    return text


def _mixed_case(email: str) -> str:
    local, _, domain = email.partition("@")
    return ".".join(part[:1].upper() + part[1:] for part in local.split(".")) + "@" + domain


def crm_contact_row(c: Customer) -> tuple:
    return (
        c.customer_id,
        c.email,
        c.full_name,
        phone_for_humans(c.phone) if c.phone else None,
        c.country.lower(),
        c.status.capitalize(),
        None if c.marketing_opt_in is None else int(c.marketing_opt_in),
        c.plan.capitalize() if c.plan else None,
        datetime.fromtimestamp(c.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        int(c.deleted),
    )


def billing_account_row(c: Customer) -> tuple:
    assert c.plan is not None
    return (
        c.acct_no,
        c.customer_id,
        c.email.upper(),
        c.plan.upper(),
        "CLOSED" if c.deleted else c.status.upper(),
        c.country,
        _format(c.last_at, "%d/%m/%Y", clock=False),
    )


def billing_order_row(o: Order) -> tuple:
    return (
        o.order_id,
        o.customer.acct_no,
        o.status.upper(),
        o.cents,
        o.currency.lower(),
        _format(o.placed_at, "%d/%m/%Y", clock=True),
        int(o.deleted),
    )


def support_user_row(c: Customer) -> tuple:
    assert c.support_tier is not None
    return (
        c.support_user_id,
        c.customer_id,
        _mixed_case(c.email),
        c.full_name,
        c.support_tier.capitalize(),
        "enabled" if c.status == "active" else "disabled",
        c.last_at,
    )


def _rows(
    customers: Sequence[Customer], orders: Sequence[Order]
) -> dict[str, dict[str, Iterable[tuple]]]:
    with_account = [c for c in customers if c.acct_no is not None]
    with_user = [c for c in customers if c.support_user_id is not None and not c.deleted]
    return {
        "crm": {"contacts": map(crm_contact_row, customers)},
        "billing": {
            "accounts": map(billing_account_row, with_account),
            "orders": map(billing_order_row, orders),
        },
        "support": {"users": map(support_user_row, with_user)},
    }


def write_system_databases(
    folder: DataFolder, customers: Sequence[Customer], orders: Sequence[Order]
) -> None:
    """Write each system's SQLite file, replacing any earlier one only once it is complete."""
    folder.systems.mkdir(parents=True, exist_ok=True)
    for system, tables in _rows(customers, orders).items():
        _write_database(folder.system_database(system), LAYOUTS[system], tables.items())


def _write_database(
    path: Path, layout: SystemLayout, tables: Iterable[tuple[str, Iterable[tuple]]]
) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    con = sqlite3.connect(temp)
    try:
        # Written to a temp file that replaces the database only once complete: no journal needed.
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        with con:
            for name, rows in tables:
                table = layout.table(name)
                con.execute(table.ddl())
                con.executemany(table.insert_sql(), rows)
    finally:
        con.close()
    os.replace(temp, path)


# -- drift, as people make it -----------------------------------------------------------------------

DRIFT: tuple[tuple[str, str, str, float], ...] = (
    # (kind, database, statement over the rows chosen, share of `rows`)
    (
        "billing email typed by hand",
        "billing",
        "UPDATE accounts SET billing_email = 'OLD.' || billing_email WHERE acct_no IN ({chosen})",
        1.0,
    ),
    (
        "support name edited",
        "support",
        "UPDATE users SET name = name || ' Jr' WHERE id IN ({chosen})",
        0.5,
    ),
    (
        "crm plan not updated",
        "crm",
        "UPDATE contacts SET plan_name = 'Free' WHERE rowid IN ({chosen})",
        0.25,
    ),
    ("support user removed", "support", "DELETE FROM users WHERE id IN ({chosen})", 0.1),
    (
        "billing account closed by mistake",
        "billing",
        "UPDATE accounts SET account_state = 'CLOSED' WHERE acct_no IN ({chosen})",
        0.1,
    ),
)
_CANDIDATES = {
    "billing": "SELECT acct_no FROM accounts WHERE account_state <> 'CLOSED'",
    "support": "SELECT id FROM users",
    "crm": "SELECT rowid FROM contacts WHERE deleted = 0 AND plan_name NOT IN ('Free', '')",
}


def drift_systems(folder: DataFolder, rows: int) -> dict[str, int]:
    """Change rows by hand in systems that do not own the values (billing's copy of the e-mail,
    support's copy of the name, the CRM's copy of the plan) and remove or close records whose
    lifecycle another system owns: drift a reconciliation finds and corrections repair. Rows are
    picked evenly through each table, each at most once; returns the rows changed by kind."""
    changed: dict[str, int] = {}
    taken: dict[str, set[int]] = {}
    for kind, system, statement, share in DRIFT:
        wanted = max(1, round(rows * share))
        with sqlite3.connect(folder.system_database(system)) as con:
            candidates = [row[0] for row in con.execute(_CANDIDATES[system])]
            used = taken.setdefault(system, set())
            free = [c for c in candidates if c not in used]
            step = max(1, len(free) // wanted)
            chosen = free[::step][:wanted]
            used.update(chosen)
            con.execute(statement.format(chosen=", ".join(str(int(c)) for c in chosen)))
        changed[kind] = len(chosen)
    return changed
