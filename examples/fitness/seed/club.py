"""Riverside Fitness as it stands the day it adopts Syncfabric: the tables of its two systems and
their rows, drift included.

The front desk (PostgreSQL) owns the members; the dues system (MariaDB) owns the subscriptions.
Each keeps a copy of part of what the other owns, and those copies have drifted. Each row below
that differs from its owner says so in a comment: `drift` rows are what a reconciliation must
report, `same` rows differ only in how they are written (case, spaces, a system's own word,
precision) and must not be reported.

| drift                                   | where     | record       | attribute     |
| --------------------------------------- | --------- | ------------ | ------------- |
| a member without a payer                | dues      | RF00006      |               |
| a member whose payer is closed          | dues      | RF00008      |               |
| a payer for no member                   | dues      | RF00090      |               |
| receipts to an old address              | dues      | RF00004      | contact_email |
| a payer under another name              | dues      | RF00005      | last_name     |
| a subscription without a pass           | frontdesk | SUB-2025-007 |               |
| a pass for an ended subscription        | frontdesk | SUB-2024-050 |               |
| a pass for no subscription              | frontdesk | SUB-2025-099 |               |
| a pass for the wrong package            | frontdesk | SUB-2025-004 | package       |
| a pass showing another fee              | frontdesk | SUB-2025-005 | monthly_fee   |
| a pass that opens a day late            | frontdesk | SUB-2025-008 | starts_on     |

A mismatch is also a divergence between the two systems (the owner's copy against the other's).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

FRONTDESK = sa.MetaData()

people = sa.Table(
    "people",
    FRONTDESK,
    sa.Column("person_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("member_ref", sa.String(7), nullable=False, unique=True),
    sa.Column("first_name", sa.String(60), nullable=False),
    sa.Column("surname", sa.String(80), nullable=False),
    sa.Column("email", sa.String(120)),
    sa.Column("club", sa.CHAR(3), nullable=False),
    sa.Column("joined", sa.Date),
)

passes = sa.Table(
    "passes",
    FRONTDESK,
    sa.Column("pass_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("subscription_ref", sa.String(12), nullable=False, unique=True),
    sa.Column("member_ref", sa.String(7), nullable=False),
    sa.Column("package_label", sa.String(20), nullable=False),
    sa.Column("fee_shown", sa.Numeric(8, 3), nullable=False),
    sa.Column("valid_from", sa.DateTime, nullable=False),
)

DUES = sa.MetaData()

payers = sa.Table(
    "payers",
    DUES,
    sa.Column("payer_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("member_ref", sa.String(7), nullable=False),
    sa.Column("holder_surname", sa.String(80), nullable=False),
    sa.Column("receipt_email", sa.String(120)),
    sa.Column("closed", sa.CHAR(1), nullable=False),
)

subscriptions = sa.Table(
    "subscriptions",
    DUES,
    sa.Column("sub_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("contract_ref", sa.String(12), nullable=False, unique=True),
    sa.Column("member_ref", sa.String(7), nullable=False),
    sa.Column("package_code", sa.String(10), nullable=False),
    sa.Column("monthly_fee", sa.Numeric(8, 2), nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("sub_state", sa.String(8), nullable=False),
)

TABLES = {"frontdesk": FRONTDESK, "dues": DUES}
"""Each system's tables, by the system's name in systems/."""


def _rows(table: sa.Table, *values: tuple) -> tuple[sa.Table, list[dict]]:
    names = [c.name for c in table.columns]
    return table, [dict(zip(names, row, strict=True)) for row in values]


ROWS = {
    "frontdesk": [
        _rows(
            people,
            (1, "RF00001", "Ada", "Quinn", "ada.quinn@example.com", "RIV", date(2024, 1, 8)),
            (2, "RF00002", "Bram", "de Vries", "bram.devries@example.com", "OLD", date(2024, 2, 14)),
            (3, "RF00003", "Daan", "van der Berg", "daan.vdberg@example.com", "HBR", date(2024, 3, 1)),
            (4, "RF00004", "Eva", "Lund", "eva@lund.example", "RIV", date(2024, 5, 20)),
            (5, "RF00005", "Femi", "Adeyemi", "femi.adeyemi@example.com", "OLD", date(2024, 6, 2)),
            (6, "RF00006", "Gus", "Holm", "Gus.Holm@example.com", "riv", date(2024, 7, 1)),
            (7, "RF00007", "Hana", "Sato", "hana.sato@example.com", "HBR", date(2024, 9, 9)),
            (8, "RF00008", "Ivo", "Petrov", "ivo.petrov@example.com", "OLD", date(2024, 10, 10)),
            (9, "RF00009", "Jun", "Park", "jun.park@example.com", "RIV", date(2023, 11, 11)),
            (10, "RF00010", "Kai", "Berg", None, "HBR", date(2025, 1, 5)),
        ),
        _rows(
            passes,
            (7001, "SUB-2025-001", "RF00001", "Off-peak", Decimal("29.900"), datetime(2025, 1, 8, 7, 15)),  # same: printed at 07:15 that day
            (7002, "SUB-2025-002", "RF00002", "anytime", Decimal("39.904"), datetime(2025, 2, 1, 18, 40)),  # same: the word's case, a tenth of a cent
            (7003, "SUB-2025-003", "RF00003", "All clubs", Decimal("54.490"), datetime(2025, 3, 1, 9)),  # same: a cent off, within tolerance
            (7004, "SUB-2025-004", "RF00004", "Anytime", Decimal("29.900"), datetime(2025, 3, 15, 10)),  # drift: package
            (7005, "SUB-2025-005", "RF00005", "Anytime", Decimal("44.900"), datetime(2025, 4, 1, 12)),  # drift: monthly_fee
            (7006, "SUB-2025-006", "RF00007", "ANYTIME", Decimal("39.900"), datetime(2025, 4, 10, 8)),  # same: the word's case
            (7008, "SUB-2025-008", "RF00010", "All clubs", Decimal("54.500"), datetime(2025, 6, 2, 8, 30)),  # drift: starts_on
            (7009, "SUB-2024-050", "RF00009", "Anytime", Decimal("39.900"), datetime(2024, 1, 1, 10)),  # drift: the subscription ended
            (7010, "SUB-2025-009", "RF00006", " Anytime ", Decimal("39.900"), datetime(2025, 6, 15, 11)),  # same: spaces around the word
            (7099, "SUB-2025-099", "RF00010", "Off-peak", Decimal("29.900"), datetime(2025, 6, 20, 17)),  # drift: no such subscription
        ),
    ],
    "dues": [
        _rows(
            payers,
            (501, "RF00001", "Quinn", "ada.quinn@example.com", "N"),
            (502, "RF00002", "de Vries", "Bram.DeVries@Example.COM", "N"),  # same: case
            (503, "RF00003", "  van  der Berg ", "daan.vdberg@example.com", "N"),  # same: spaces
            (504, "RF00004", "Lund", "eva.lund@oldmail.example", "N"),  # drift: contact_email
            (505, "RF00005", "Adeyemi-Cole", "femi.adeyemi@example.com", "N"),  # drift: last_name
            # drift: RF00006 has no payer
            (507, "RF00007", "Sato", "hana.sato@example.com", "N"),
            (508, "RF00008", "Petrov", "ivo.petrov@example.com", "Y"),  # drift: closed, member live
            (509, "RF00009", "Park", "jun.park@example.com", "N"),
            (510, "RF00010", "Berg", None, "N"),
            (590, "RF00090", "Olsen", "lea.olsen@example.com", "N"),  # drift: no such member
            (591, "RF00091", "Stone", "ray.stone@example.com", "Y"),  # same: left, and closed
        ),
        _rows(
            subscriptions,
            (1, "SUB-2025-001", "RF00001", "OFFPEAK", Decimal("29.90"), date(2025, 1, 8), "RUNNING"),
            (2, "SUB-2025-002", "RF00002", "ANYTIME", Decimal("39.90"), date(2025, 2, 1), "RUNNING"),
            (3, "SUB-2025-003", "RF00003", "ALLCLUBS", Decimal("54.50"), date(2025, 3, 1), "RUNNING"),
            (4, "SUB-2025-004", "RF00004", "OFFPEAK", Decimal("29.90"), date(2025, 3, 15), "RUNNING"),
            (5, "SUB-2025-005", "RF00005", "ANYTIME", Decimal("39.90"), date(2025, 4, 1), "RUNNING"),
            (6, "SUB-2025-006", "RF00007", "ANYTIME", Decimal("39.90"), date(2025, 4, 10), "ON_HOLD"),
            (7, "SUB-2025-007", "RF00008", "OFFPEAK", Decimal("29.90"), date(2025, 5, 1), "RUNNING"),  # drift: no pass
            (8, "SUB-2025-008", "RF00010", "ALLCLUBS", Decimal("54.50"), date(2025, 6, 1), "RUNNING"),
            (9, "SUB-2025-009", "RF00006", "ANYTIME", Decimal("39.90"), date(2025, 6, 15), "RUNNING"),
            (50, "SUB-2024-050", "RF00009", "ANYTIME", Decimal("39.90"), date(2024, 1, 1), "ENDED"),
        ),
    ],
}  # fmt: skip
"""Each system's rows, table by table."""
