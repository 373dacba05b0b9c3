"""The demo landscape: a small company's CRM, billing and support desk, their events and databases.

`build_demo_landscape` simulates the company from 2025-10-01 on: the CRM creates, changes and
deletes customers; billing opens accounts (the plan), takes orders and moves them through their
statuses; the support desk sets service tiers. Every change becomes a CloudEvent landed under
`landing/<system>/` in batches, with the messiness real systems produce: duplicates, late arrivals,
shuffled lines and invalid events of every kind. The valid events alone define the truth, and
each system's SQLite database holds that truth in its own format (see `systems.py`).

Everything is drawn from one `random.Random(seed)`, event ids and times included, so a seed always
gives the same landscape.
"""

from __future__ import annotations

import functools
import json
import math
import random
import unicodedata
from bisect import bisect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from operator import attrgetter
from pathlib import Path
from typing import Any, Generic, TypeVar

from sync_assets.catalog.events import MAX_EVENT_BYTES, SIGNATURE, SPECVERSION, event_signature
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.signatures import signing_key
from sync_assets.project import current, load_project
from sync_assets.settings import DataFolder

from .systems import (
    PHONE_PLANS,
    Customer,
    Order,
    drift_systems,
    write_system_databases,
)

PROJECT = load_project(Path(__file__).resolve().parents[1])
"""The demo project (examples/demo) this generator writes systems and events for."""
SYSTEMS = PROJECT.system_names
CURRENT_VERSION = PROJECT.current_version

T = TypeVar("T")

BASE_TIME = datetime(2025, 10, 1, tzinfo=UTC)
"""Fixed, and with every event time (until ORDERS_UNTIL) in the past: validation refuses an event
dated later than its arrival plus the allowed clock skew (`settings.max_clock_skew`)."""
BASE_EPOCH = int(BASE_TIME.timestamp())
MINUTE, HOUR, DAY = 60, 3600, 86_400
SIGNUP_WINDOW = 60 * DAY
"""Customers sign up in the first two months; they order until the end of the year."""
ORDERS_UNTIL = BASE_EPOCH + 92 * DAY

INVALID_RATE = 0.03
DUPLICATE_RATE = 0.02
LATE_RATE = 0.03
CONFLICT_RATE = 0.005
DELETED_CUSTOMER_RATE = 0.02
DELETED_ORDER_RATE = 0.01
V1_RATE = 0.3
"""Share of the CRM's customer events still sent by its old integration, in schema version 1."""
ONBOARDED_RATE = 0.95
SUPPORT_RATE = 0.6


@dataclass(frozen=True)
class DemoLandscape:
    """What `build_demo_landscape` landed and wrote."""

    batches: list[str]
    """Batch ids in landing order."""
    events_landed: int
    """Lines written, duplicates and invalid events included."""
    invalid_events: int
    duplicate_events: int
    late_events: int
    conflict_events: int
    """Valid events about attributes their sender does not own."""
    customers: int
    orders: int
    deleted_customers: int
    deleted_orders: int
    invalid_by_kind: dict[str, int] = field(default_factory=dict)
    drifted: dict[str, int] = field(default_factory=dict)
    """Rows changed by hand in systems that do not own the values, by kind (see drift_systems)."""

    @property
    def valid_events(self) -> int:
        return self.events_landed - self.invalid_events - self.duplicate_events


def landscape_exists(folder: DataFolder) -> bool:
    """True once the systems' databases exist (they are written last)."""
    return all(folder.system_database(system).is_file() for system in SYSTEMS)


def build_demo_landscape(
    folder: DataFolder,
    *,
    customers: int = 10_000,
    orders: int = 50_000,
    seed: int = 7,
    batch_size: int = 50_000,
    invalid_rate: float = INVALID_RATE,
    duplicate_rate: float = DUPLICATE_RATE,
    late_rate: float = LATE_RATE,
    conflict_rate: float = CONFLICT_RATE,
    drift: int = 0,
) -> DemoLandscape:
    """Land the company's events under `folder.landing` and write the systems' databases.

    Set the rates to 0 for a tidy landscape. The databases are written last, so a landscape whose
    databases exist (`landscape_exists`) was landed completely. Batches hold up to 50,000 lines:
    the default lands 5 of them, and each costs Dagster bookkeeping in `syncctl run` (9 batches of
    20,000 took 27 s where 5 of 50,000 took 18 s). `drift` rows (and some more, in proportion)
    are then changed by hand in systems that do not own the values, for the corrections to fix.
    """
    if orders and not customers:
        raise ValueError("orders need customers to place them")
    rng = random.Random(seed)
    world = _World(rng)
    world.simulate(customers, orders, conflict_rate)
    world.add_invalid_events(invalid_rate)
    world.assign_ids()
    landing = _Landing(rng, LandingZone(folder.landing), batch_size, duplicate_rate, late_rate)
    for system in SYSTEMS:
        landing.land(system, world.events[system])
    write_system_databases(folder, world.customers, world.orders)
    drifted = drift_systems(folder, drift) if drift else {}
    invalid = Counter(e.invalid for s in SYSTEMS for e in world.events[s] if e.invalid)
    return DemoLandscape(
        batches=landing.batch_ids(),
        events_landed=landing.lines,
        invalid_events=sum(invalid.values()),
        duplicate_events=landing.duplicates,
        late_events=landing.late,
        conflict_events=world.conflicts,
        customers=len(world.customers),
        orders=len(world.orders),
        deleted_customers=sum(c.deleted for c in world.customers),
        deleted_orders=sum(o.deleted for o in world.orders),
        invalid_by_kind=dict(sorted(invalid.items())),
        drifted=drifted,
    )


# -- times ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")


@functools.lru_cache(maxsize=16_384)
def _hour(hour: int) -> str:
    day, hours = divmod(hour, 24)
    return f"{_date(day)}T{hours:02d}:"


def rfc3339(at: int) -> str:
    """Epoch seconds as the RFC 3339 UTC form `format_time` writes, without its per-call cost."""
    hour, seconds = divmod(at, HOUR)
    return f"{_hour(hour)}{seconds // MINUTE:02d}:{seconds % MINUTE:02d}.000000Z"


def _stamp(at: int) -> str:
    """A batch file's time stamp, e.g. 20251001T000000."""
    return rfc3339(at)[:19].replace("-", "").replace(":", "")


class Weighted(Generic[T]):
    """A weighted choice with its table built once (random.choices rebuilds it on every call)."""

    def __init__(self, weights: dict[T, float]):
        self.values = tuple(weights)
        self.cumulative = tuple(accumulate(weights.values()))

    def draw(self, rng: random.Random) -> T:
        return self.values[bisect(self.cumulative, rng.random() * self.cumulative[-1])]


# -- people ---------------------------------------------------------------------------------------

COUNTRIES = Weighted({"US": 22, "GB": 20, "DE": 18, "FR": 14, "NL": 8, "ES": 7, "IT": 6, "SE": 5})


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "US": _names("James,Olivia,Michael,Emma,Ethan,Ava,Daniel,Mia,Grace,Ryan,Chloe,Tyler,Madison")
    + _names("Brandon,Hailey,Marcus,Jasmine,Kevin"),
    "GB": _names("Oliver,Amelia,Harry,Isla,George,Emily,Jack,Sophie,Alfie,Ruby,Freya,Callum")
    + _names("Poppy,Rhys,Imogen,Fergus,Niamh,Rory"),
    "DE": _names("Lukas,Anna,Jonas,Lena,Felix,Hannah,Jürgen,Käthe,Paul,Mia,Tobias,Greta,Moritz")
    + _names("Leonie,Niklas,Jörg,Sabine,Uwe"),
    "FR": _names("Louis,Camille,Hugo,Léa,Gabriel,Chloé,Jules,Inès,Raphaël,Zoé,Mathis,Élise")
    + _names("Antoine,Margaux,Théo,Céline,Baptiste,Anaïs"),
    "NL": _names("Daan,Emma,Sem,Julia,Bram,Tess,Thijs,Sanne,Ruben,Lotte,Joris,Femke,Sjoerd")
    + _names("Anouk,Wouter,Marloes,Koen,Ilse"),
    "ES": _names("Hugo,Lucía,Martín,Sofía,Pablo,Paula,Álvaro,Carmen,José,Inés,Sergio,Nuria")
    + _names("Jorge,Marta,Raúl,Elena,Iñigo,Rocío"),
    "IT": _names("Leonardo,Giulia,Francesco,Sofia,Lorenzo,Aurora,Niccolò,Chiara,Matteo,Alessia")
    + _names("Davide,Federica,Tommaso,Elisa,Andrea,Martina"),
    "SE": _names("William,Alice,Oscar,Maja,Elias,Astrid,Björn,Åsa,Saga,Nils,Linnea,Gustav")
    + _names("Ebba,Axel,Sigrid,Olle,Ingrid,Måns"),
}

LAST_NAMES: dict[str, tuple[str, ...]] = {
    "US": _names("Johnson,Miller,Davis,Garcia,Wilson,Anderson,Moore,Clark,Lewis,Nguyen,Patel")
    + _names("Robinson,Walker,Young,Hernandez,King"),
    "GB": _names("Smith,Jones,Taylor,Brown,Evans,Roberts,Walker,Wright,Hughes,Davies,O'Brien")
    + _names("Patel,Campbell,Thompson,MacLeod,Khan"),
    "DE": _names("Müller,Schmidt,Schneider,Fischer,Weber,Becker,Hoffmann,Groß,Wagner,Schäfer")
    + _names("Koch,Bauer,Richter,Klein,Wolf,Neumann"),
    "FR": _names("Martin,Bernard,Dubois,Durand,Leroy,Moreau,Lefèvre,Girard,Roux,Fournier")
    + _names("Lambert,Faure,Rousseau,Mercier,Garnier,Chevalier"),
    "NL": _names("de Jong,Jansen,de Vries,van den Berg,van Dijk,Bakker,Visser,Smit,Meijer")
    + _names("de Boer,Mulder,Bos,Vos,Peters,Hendriks,van Leeuwen"),
    "ES": _names("García,Fernández,González,López,Martínez,Sánchez,Pérez,Jiménez,Ruiz")
    + _names("Moreno,Muñoz,Álvarez,Romero,Navarro,Torres,Domínguez"),
    "IT": _names("Rossi,Russo,Ferrari,Esposito,Bianchi,Romano,Colombo,Ricci,Marino,Greco")
    + _names("Bruno,Gallo,Conti,De Luca,Mancini,Costa"),
    "SE": _names("Andersson,Johansson,Karlsson,Nilsson,Eriksson,Lindström,Öberg,Larsson")
    + _names("Olsson,Persson,Svensson,Gustafsson,Lindqvist,Bergström,Holm,Sjöberg"),
}

COMPANY_SUFFIXES = {"US": "Inc.", "GB": "Ltd", "DE": "GmbH", "FR": "SARL", "NL": "B.V."}
COMPANY_SUFFIXES |= {"ES": "S.L.", "IT": "S.r.l.", "SE": "AB"}
COMPANY_WORDS = ("Analytics", "Logistics", "Design", "Foods", "Systems", "Studio", "Partners")
COMPANY_RATE = 0.15

MAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")
COUNTRY_TLDS = {"US": "com", "GB": "co.uk", "DE": "de", "FR": "fr", "NL": "nl", "ES": "es"}
COUNTRY_TLDS |= {"IT": "it", "SE": "se"}
CURRENCIES = {"US": "USD", "GB": "GBP"}  # everywhere else EUR

_ASCII = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE"})


@functools.lru_cache(maxsize=2048)
def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text.translate(_ASCII)).encode("ascii", "ignore")
    return "".join(ch for ch in plain.decode().lower() if ch.isalnum() or ch == " ")


# -- events ---------------------------------------------------------------------------------------


class _Event:
    """One event before it is written: times in epoch seconds, its id given once all are known."""

    __slots__ = (
        "at",
        "cause",
        "data",
        "flow",
        "id",
        "invalid",
        "origin",
        "subject",
        "type",
        "version",
    )

    def __init__(
        self,
        at: int,
        origin: str,
        event_type: str,
        subject: str,
        version: int,
        data: dict,
        flow: _Event | None,
        cause: _Event | None,
        invalid: str | None = None,
    ):
        self.at = at
        self.origin = origin
        self.type = event_type
        self.subject = subject
        self.version = version
        self.data = data
        self.flow = flow
        """The event whose id is this one's correlation id; None: its own."""
        self.cause = cause
        self.invalid = invalid
        """The kind of invalid event this is, or None for a valid one."""
        self.id = ""

    def envelope(self) -> dict:
        return {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": f"/systems/{self.origin}",
            "type": self.type,
            "time": rfc3339(self.at),
            "subject": self.subject,
            "datacontenttype": "application/json",
            "schemaversion": self.version,
            "correlationid": self.flow.id if self.flow else self.id,
            "causationid": self.cause.id if self.cause else None,
            "origin": self.origin,
            "data": self.data,
        }


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Writes what `to_line` writes; one encoder, as json.dumps builds a new one per call."""


def _line(event: _Event) -> str | bytes:
    if event.invalid:
        return _INVALID_LINES.get(event.invalid, _ENCODER.encode)(event.envelope())
    return _valid_line(event)


def _valid_line(e: _Event) -> str:
    """`to_line(e.envelope())`, twice as fast: only the payload needs a JSON encoder, as every
    envelope field is an id, key, name or time generated here, plain ASCII without quotes."""
    correlation = e.flow.id if e.flow else e.id
    cause = f'"{e.cause.id}"' if e.cause else "null"
    return (
        f'{{"specversion":"{SPECVERSION}","id":"{e.id}","source":"/systems/{e.origin}",'
        f'"type":"{e.type}","time":"{rfc3339(e.at)}","subject":"{e.subject}",'
        f'"datacontenttype":"application/json","schemaversion":{e.version},'
        f'"correlationid":"{correlation}","causationid":{cause},"origin":"{e.origin}",'
        f'"data":{_payload(e.data)}}}'
    )


_SHORT_PAYLOADS: dict[tuple, str] = {}
"""JSON of one-field payloads, by (field, value type, value); bounded, as emails and names vary."""


def _payload(data: dict) -> str:
    """The payload as JSON; the many one-field payloads ({"status": "paid"}) encoded once each."""
    if len(data) != 1:
        return _ENCODER.encode(data)
    ((name, value),) = data.items()
    key = (name, type(value), value)
    text = _SHORT_PAYLOADS.get(key)
    if text is None:
        text = _ENCODER.encode(data)
        if len(_SHORT_PAYLOADS) < 1024:
            _SHORT_PAYLOADS[key] = text
    return text


def _truncated(envelope: dict) -> str:
    text = _ENCODER.encode(envelope)
    return text[: len(text) * 2 // 3]


def _latin1(envelope: dict) -> bytes:
    return _ENCODER.encode(envelope).encode("latin-1", errors="replace")


def _null_subject(envelope: dict) -> str:
    return _ENCODER.encode(envelope | {"subject": None})


def _without_zone(envelope: dict) -> str:
    return _ENCODER.encode(envelope | {"time": envelope["time"][:19]})


_INVALID_LINES: dict[str, Callable[[dict], str | bytes]] = {
    "truncated_json": _truncated,
    "invalid_utf8": _latin1,
    "null_subject": _null_subject,
    "time_without_zone": _without_zone,
}
"""Invalid kinds broken in the line itself; the others carry a bad type, version or payload."""

INVALID_KINDS: dict[str, tuple[str, ...]] = {
    "crm": (
        "truncated_json",
        "missing_required",
        "wrong_type",
        "unknown_type",
        "unknown_version",
        "invalid_utf8",
        "null_subject",
        "bad_enum",
        "bad_email",
        "oversized",
        "time_without_zone",
    ),
    "billing": (
        "truncated_json",
        "missing_required",
        "wrong_type",
        "unknown_type",
        "unknown_version",
        "null_subject",
        "bad_enum",
        "time_without_zone",
    ),
    "support": (
        "truncated_json",
        "wrong_type",
        "unknown_type",
        "unknown_version",
        "null_subject",
        "bad_enum",
        "time_without_zone",
    ),
}
LATIN1_NAMES = ("Zoë Brontë", "José Núñez", "Søren Ødegård", "Renée Faß", "Ångström Nyström")


# -- the simulation -------------------------------------------------------------------------------

ORDER_FLOW: dict[str, Weighted] = {
    # status: {(next status, mean delay): weight}; a next status of None: the order stays
    "pending": Weighted({("paid", 2 * HOUR): 80, ("cancelled", DAY): 15, (None, 0): 5}),
    "paid": Weighted(
        {("shipped", DAY): 85, ("refunded", 5 * DAY): 3, ("cancelled", HOUR): 3, (None, 0): 9}
    ),
    "shipped": Weighted({("refunded", 10 * DAY): 4, (None, 0): 96}),
}

CRM_UPDATES = Weighted({0: 50, 1: 30, 2: 15, 3: 5})
"""How many times the CRM changes a customer after creating it."""
CRM_CHANGES = Weighted(
    {"phone": 3, "status": 1.5, "email": 1.5, "full_name": 1, "marketing_opt_in": 2, "country": 0.5}
)
STATUSES = Weighted({"active": 88, "inactive": 8, "suspended": 4})
PLANS = Weighted({"free": 40, "starter": 30, "pro": 22, "enterprise": 8})
TIERS = ("standard", "priority")


class _World:
    """The company over time: its customers and orders, and every change as a system's event.

    Each entity's history is generated in time order and applied to its state as it goes, so the
    final `customers` and `orders` are what the valid events imply.
    """

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.events: dict[str, list[_Event]] = {system: [] for system in SYSTEMS}
        self.customers: list[Customer] = []
        self.orders: list[Order] = []
        self.conflicts = 0
        self._emails: set[str] = set()
        self._companies: set[int] = set()
        self._onboarded_at: dict[int, int] = {}
        self._last_order_at: dict[int, int] = {}
        self._order_created: dict[int, _Event] = {}
        self._support_users = 0

    def simulate(self, customers: int, orders: int, conflict_rate: float) -> None:
        signups = sorted(self.rng.randrange(SIGNUP_WINDOW) for _ in range(customers))
        for number, offset in enumerate(signups, start=1):
            self._customer_history(number, BASE_EPOCH + offset)
        self._place_orders(orders)
        self._delete_customers(round(DELETED_CUSTOMER_RATE * customers))
        self._delete_orders(round(DELETED_ORDER_RATE * orders))
        total = sum(len(events) for events in self.events.values())
        for _ in range(round(conflict_rate * total)):
            self._conflict(self._pick(self.customers))

    def emit(self, at, origin, event_type, subject, data, version, flow=None, cause=None):
        event = _Event(at, origin, event_type, subject, version, data, flow, cause)
        self.events[origin].append(event)
        return event

    def _pick(self, values):
        """rng.choice, without its per-call overhead (it runs some 100,000 times)."""
        return values[int(self.rng.random() * len(values))]

    def _between(self, low: int, high: int) -> int:
        """rng.randint, without its per-call overhead."""
        return low + int(self.rng.random() * (high - low + 1))

    def _gap(self, mean: int) -> int:
        return MINUTE + int(self.rng.expovariate(1 / mean))

    def _crm_version(self) -> int:
        return 1 if self.rng.random() < V1_RATE else CURRENT_VERSION["customer"]

    # -- customers ---------------------------------------------------------------------------------

    def _customer_history(self, number: int, at: int) -> None:
        rng = self.rng
        c = self._new_customer(number, at)
        created = self._created_event(c)
        if rng.random() < ONBOARDED_RATE:
            at += self._between(MINUTE, 10 * MINUTE)
            self._open_account(c, at, created)
        if rng.random() < SUPPORT_RATE:
            at += self._between(HOUR, 3 * DAY)
            self._open_support_user(c, at, created)
        changes = ["crm"] * CRM_UPDATES.draw(rng)
        if c.acct_no is not None and rng.random() < 0.3:
            changes.append("plan")
        if c.support_user_id is not None and rng.random() < 0.15:
            changes.append("tier")
        rng.shuffle(changes)
        for change in changes:
            at += self._gap(6 * DAY)
            self._change(c, change, at)
        c.last_at = at

    def _new_customer(self, number: int, at: int) -> Customer:
        rng = self.rng
        country = COUNTRIES.draw(rng)
        company = rng.random() < COMPANY_RATE
        if company:
            self._companies.add(number)
        name = self._name(country, company)
        customer = Customer(
            number=number,
            email=self._email(name, country, company),
            full_name=name,
            phone=self._phone(country) if rng.random() < 0.85 else None,
            country=country,
            status=STATUSES.draw(rng),
            created_at=at,
        )
        self.customers.append(customer)
        return customer

    def _name(self, country: str, company: bool) -> str:
        last = self._pick(LAST_NAMES[country])
        if company:
            words = (last, self._pick(COMPANY_WORDS), COMPANY_SUFFIXES[country])
            return " ".join(words)
        return f"{self._pick(FIRST_NAMES[country])} {last}"

    def _email(self, name: str, country: str, company: bool) -> str:
        words = _slug(name).split()
        if company:
            local = self._pick(("info", "accounts", "office", "billing"))
            domain = f"{''.join(words[:-1])}.{COUNTRY_TLDS[country]}"
        else:
            local = self._pick((".".join(words), "".join(words), f"{words[0][0]}.{words[-1]}"))
            domain = self._pick((*MAIL_DOMAINS, f"example.{COUNTRY_TLDS[country]}"))
        email, n = f"{local}@{domain}", 1
        while email in self._emails:
            n += 1
            email = f"{local}{n}@{domain}"
        self._emails.add(email)
        return email

    def _phone(self, country: str) -> str:
        code, starts, groups = PHONE_PLANS[country]
        start = self._pick(starts)
        digits = sum(groups) - len(start)
        return f"+{code}{start}{self.rng.randrange(10**digits):0{digits}d}"

    def _created_event(self, c: Customer) -> _Event:
        version = self._crm_version()
        data: dict[str, Any] = {
            "email": c.email,
            _name_field(version): c.full_name,
            "country": c.country,
            "status": c.status,
        }
        if c.phone:
            data["phone"] = c.phone
        if version >= 2 and self.rng.random() < 0.7:
            c.marketing_opt_in = data["marketing_opt_in"] = self.rng.random() < 0.45
        return self.emit(c.created_at, "crm", "customer.created", c.customer_id, data, version)

    def _open_account(self, c: Customer, at: int, created: _Event) -> None:
        c.plan = PLANS.draw(self.rng)
        c.acct_no = 100_000 + len(self._onboarded_at) + 1
        self._onboarded_at[c.number] = at
        self._customer_update(c, at, "billing", {"plan": c.plan}, created)

    def _open_support_user(self, c: Customer, at: int, created: _Event) -> None:
        c.support_tier = "priority" if self.rng.random() < 0.25 else "standard"
        self._support_users += 1
        c.support_user_id = self._support_users
        self._customer_update(c, at, "support", {"support_tier": c.support_tier}, created)

    def _customer_update(self, c, at, origin, data, flow=None, version=None) -> _Event:
        """A change to a customer; one that follows from `flow` is correlated with and caused by
        it (billing opening an account for a customer the CRM just created)."""
        version = version or CURRENT_VERSION["customer"]
        return self.emit(at, origin, "customer.updated", c.customer_id, data, version, flow, flow)

    def _change(self, c: Customer, change: str, at: int) -> None:
        if change == "plan":
            c.plan = self._next_plan(c.plan)
            self._customer_update(c, at, "billing", {"plan": c.plan})
        elif change == "tier":
            c.support_tier = self._other(TIERS, c.support_tier)
            self._customer_update(c, at, "support", {"support_tier": c.support_tier})
        else:
            self._crm_update(c, at)

    def _next_plan(self, plan: str | None) -> str:
        """One step up (mostly) or down the plans, as customers upgrade and downgrade."""
        plans = PLANS.values
        step = 1 if self.rng.random() < 0.7 else -1
        index = plans.index(plan) + step if plan else 0
        return plans[index] if 0 <= index < len(plans) else plans[index - 2 * step]

    def _other(self, values: tuple[str, ...], current: str | None) -> str:
        return self._pick([v for v in values if v != current])

    def _crm_update(self, c: Customer, at: int) -> None:
        version = self._crm_version()
        count = 1 if self.rng.random() < 0.75 else 2
        changes = {CRM_CHANGES.draw(self.rng) for _ in range(count)}
        if version == 1:
            changes.discard("marketing_opt_in")
        data = {}
        for attribute in sorted(changes or {"status"}):
            value = self._new_value(c, attribute)
            setattr(c, attribute, value)
            data[_name_field(version) if attribute == "full_name" else attribute] = value
        self._customer_update(c, at, "crm", data, version=version)

    def _new_value(self, c: Customer, attribute: str):
        rng = self.rng
        company = c.number in self._companies
        if attribute == "phone":
            return None if c.phone and rng.random() < 0.1 else self._phone(c.country)
        if attribute == "status":
            return self._new_status(c.status)
        if attribute == "email":
            return self._email(c.full_name, c.country, company)
        if attribute == "full_name":
            if company:
                return self._name(c.country, company)
            return f"{c.full_name.split(' ', 1)[0]} {self._pick(LAST_NAMES[c.country])}"
        if attribute == "marketing_opt_in":
            return not c.marketing_opt_in if c.marketing_opt_in is not None else rng.random() < 0.5
        return self._other(COUNTRIES.values, c.country)

    def _new_status(self, status: str) -> str:
        if status == "active":
            return "inactive" if self.rng.random() < 0.6 else "suspended"
        # mostly reactivated; otherwise the other of inactive and suspended
        return (
            "active" if self.rng.random() < 0.8 else self._other(("inactive", "suspended"), status)
        )

    def _delete_customers(self, count: int) -> None:
        for c in self.rng.sample(self.customers, count):
            at = max(c.last_at, self._last_order_at.get(c.number, 0)) + self._gap(10 * DAY)
            self.emit(at, "crm", "customer.deleted", c.customer_id, {}, self._crm_version())
            c.deleted, c.last_at = True, at

    def _conflict(self, c: Customer) -> None:
        """A valid event about an attribute its sender does not own: it changes nothing."""
        end = c.last_at if c.deleted else c.last_at + 5 * DAY
        at = self._between(c.created_at + 1, max(c.created_at + 1, end - 1))
        kind = self._pick(("support_status", "billing_email", "crm_plan"))
        if kind == "support_status":
            data = {"status": self._other(("active", "inactive", "suspended"), c.status)}
            self._customer_update(c, at, "support", data)
        elif kind == "billing_email":
            data = {"email": f"invoices+{c.number}@{c.email.partition('@')[2]}"}
            self._customer_update(c, at, "billing", data)
        else:
            self._customer_update(c, at, "crm", {"plan": self._other(PLANS.values, c.plan)})
        if not c.deleted:
            c.last_at = max(c.last_at, at)
        self.conflicts += 1

    # -- orders -----------------------------------------------------------------------------------

    def _place_orders(self, count: int) -> None:
        accounts = [c for c in self.customers if c.acct_no is not None]
        if count and not accounts:
            raise ValueError("no customer has a billing account to place orders with")
        drafts = []
        for _ in range(count):
            c = self._pick(accounts)
            placed = self._between(self._onboarded_at[c.number] + HOUR, ORDERS_UNTIL)
            drafts.append((placed - placed % MINUTE, c.number, c))
        drafts.sort(key=lambda draft: draft[:2])
        for number, (placed, _, c) in enumerate(drafts, start=1):
            self._order_history(Order(number, c, "", self._price(), _currency(c), placed))

    def _price(self) -> int:
        if self.rng.random() < 0.01:
            return 0  # a free sample
        whole = int(self.rng.lognormvariate(math.log(60), 0.9))
        return whole * 100 + self._pick((0, 49, 50, 95, 99))

    def _order_history(self, order: Order) -> None:
        order.status = "paid" if self.rng.random() < 0.6 else "pending"
        self.orders.append(order)
        key = order.order_id
        data = {
            "customer_id": order.customer.customer_id,
            "status": order.status,
            "amount": order.cents / 100,
            "currency": order.currency,
            "placed_at": _placed_at(order.placed_at),
        }
        at = order.placed_at + self._between(1, 30)
        created = self.emit(at, "billing", "order.created", key, data, 1)
        self._order_created[order.number] = created
        billing = self.events["billing"]  # the hot loop: some 65,000 events
        for status, delay in self._transitions(order.status):
            at += self._gap(delay)
            billing.append(
                _Event(at, "billing", "order.updated", key, 1, {"status": status}, created, None)
            )
            order.status = status
        order.last_at = at
        number = order.customer.number
        self._last_order_at[number] = max(self._last_order_at.get(number, 0), at)

    def _transitions(self, status: str) -> list[tuple[str, int]]:
        path = []
        while status in ORDER_FLOW:
            following, delay = ORDER_FLOW[status].draw(self.rng)
            if following is None:
                break
            path.append((following, delay))
            status = following
        return path

    def _delete_orders(self, count: int) -> None:
        for order in self.rng.sample(self.orders, count):
            created = self._order_created[order.number]
            at = order.last_at + self._gap(3 * DAY)
            self.emit(at, "billing", "order.deleted", order.order_id, {}, 1, created)
            order.deleted = True

    # -- invalid events and ids ---------------------------------------------------------------------

    def add_invalid_events(self, rate: float) -> None:
        for system in SYSTEMS:
            valid = list(self.events[system])
            count = round(rate * len(valid))
            kinds = INVALID_KINDS[system]
            for n in range(count):
                anchor = self._pick(valid)
                self.events[system].append(self._invalid(kinds[n % len(kinds)], anchor))

    def _invalid(self, kind: str, anchor: _Event) -> _Event:
        event_type, version, data = self._invalid_content(kind, anchor)
        at = anchor.at + self._between(0, 5 * MINUTE)
        return _Event(
            at, anchor.origin, event_type, anchor.subject, version, data, None, None, kind
        )

    def _invalid_content(self, kind: str, anchor: _Event) -> tuple[str, int, dict]:
        is_order = anchor.type.startswith("order.")
        if kind in ("truncated_json", "null_subject", "time_without_zone"):
            return anchor.type, anchor.version, anchor.data
        if kind == "unknown_version":
            return anchor.type, 9, anchor.data
        if kind == "unknown_type":
            return _UNKNOWN_TYPES[anchor.origin]
        if is_order:
            return _invalid_order_content(kind, self.orders[int(anchor.subject[2:]) - 1])
        c = self.customers[int(anchor.subject[2:]) - 1]
        if kind == "missing_required":
            return "customer.created", 2, {"full_name": c.full_name, "country": c.country}
        if kind == "invalid_utf8":
            return "customer.updated", 2, {"full_name": self._pick(LATIN1_NAMES)}
        if kind == "oversized":
            repeats = MAX_EVENT_BYTES // (len(c.full_name) + 1) + 1  # over the limit, however short
            return "customer.updated", 2, {"full_name": (c.full_name + " ") * repeats}
        if kind == "bad_email":
            return "customer.updated", 2, {"email": c.email.replace("@", " at ")}
        return "customer.updated", 2, _BAD_CUSTOMER_VALUES[kind][anchor.origin]

    def assign_ids(self) -> None:
        """Number each system's events in time order, as its outbox would."""
        for system, events in self.events.items():
            events.sort(key=attrgetter("at"))
            for n, event in enumerate(events, start=1):
                event.id = f"{system}-{n:08d}"


def _name_field(version: int) -> str:
    return "name" if version == 1 else "full_name"


def _currency(c: Customer) -> str:
    return CURRENCIES.get(c.country, "EUR")


def _placed_at(at: int) -> str:
    return rfc3339(at)[:16] + ":00Z"


_BAD_CUSTOMER_VALUES: dict[str, dict[str, dict]] = {
    # kind: {sender: payload}, each about an attribute the sender owns
    "wrong_type": {"crm": {"status": 1}, "billing": {"plan": 3}, "support": {"support_tier": 2}},
    "bad_enum": {
        "crm": {"status": "archived"},
        "billing": {"plan": "platinum"},
        "support": {"support_tier": "gold"},
    },
}

_UNKNOWN_TYPES: dict[str, tuple[str, int, dict]] = {
    "crm": ("customer.merged", 2, {"merged_into": "C-000001"}),
    "billing": ("invoice.issued", 1, {"amount": 19.99, "currency": "EUR"}),
    "support": ("ticket.opened", 1, {"channel": "email"}),
}


def _invalid_order_content(kind: str, order: Order) -> tuple[str, int, dict]:
    data = {
        "customer_id": order.customer.customer_id,
        "status": "pending",
        "amount": order.cents / 100,
        "currency": order.currency,
        "placed_at": _placed_at(order.placed_at),
    }
    if kind == "missing_required":
        del data["amount"]
        return "order.created", 1, data
    if kind == "wrong_type":
        return "order.created", 1, data | {"amount": f"{order.cents / 100:.2f}"}
    return "order.updated", 1, {"status": "delivered"}  # bad_enum


# -- landing --------------------------------------------------------------------------------------


def _signed(line: str | bytes, key: bytes) -> str | bytes:
    """A line of a system that signs (`signing:` in its file), signed as its producer would: each
    line holding a JSON object, the deliberately bad ones too (so each is refused for what is
    wrong with it, not for a missing signature). The signature is added to the text as it is, so
    what makes a bad line bad (a key twice, NaN) is kept."""
    if isinstance(line, bytes):
        return line
    try:
        event = json.loads(line)
        signature = event_signature(event, key) if isinstance(event, dict) and event else None
    except ValueError:  # not JSON, or a number the canonical form cannot carry
        return line
    if signature is None:
        return line
    body = line.rstrip()
    return f'{body[:-1]},"{SIGNATURE}":"{signature}"}}'


class _Landing:
    """Lands each system's events in batches: shuffled, some late, some sent twice."""

    def __init__(self, rng, zone: LandingZone, batch_size: int, duplicate_rate, late_rate):
        self.rng = rng
        self.zone = zone
        self.batch_size = batch_size
        self.duplicate_rate = duplicate_rate
        self.late_rate = late_rate
        self.batches: list[tuple[str, str]] = []
        """(file name, batch id) of each batch landed."""
        self.lines = self.duplicates = self.late = 0

    def batch_ids(self) -> list[str]:
        return [batch_id for _, batch_id in sorted(self.batches)]

    def _chunks(self, events: list[_Event]) -> list[list[_Event]]:
        # Room for the duplicates and late arrivals added later keeps every batch within size.
        slack = (self.duplicate_rate > 0) + (self.late_rate > 0)
        room = (self.batch_size - slack) / (1 + self.duplicate_rate + self.late_rate)
        per_chunk = max(1, math.floor(room))
        count = math.ceil(len(events) / per_chunk)
        size = math.ceil(len(events) / count) if count else 0
        return [events[i : i + size] for i in range(0, len(events), size)] if size else []

    def land(self, system: str, events: list[_Event]) -> None:
        key = signing_key(current().systems[system])
        chunks = self._chunks(events)
        previous: list[str | bytes] = []
        for i, batch in enumerate(self._with_late_arrivals(chunks)):
            lines = [_line(e) if key is None else _signed(_line(e), key) for e in batch]
            sent = [line for e, line in zip(batch, lines, strict=True) if not e.invalid]
            lines += self._resent(sent, previous, len(chunks[i]))
            previous = sent
            self.rng.shuffle(lines)
            stem = f"{_stamp(max(e.at for e in batch))}-{i + 1:04d}"
            landed = self.zone.write_batch(system, stem, lines)
            self.batches.append((landed.file_name, landed.batch_id))
            self.lines += len(lines)

    def _with_late_arrivals(self, chunks: list[list[_Event]]) -> list[list[_Event]]:
        """Move some events of each chunk to the next one: they arrive late, with older times."""
        batches = [list(chunk) for chunk in chunks]
        for i in range(len(chunks) - 1):
            late = self.rng.sample(chunks[i], round(self.late_rate * len(chunks[i])))
            late_ids = {id(e) for e in late}
            batches[i] = [e for e in batches[i] if id(e) not in late_ids]
            batches[i + 1].extend(late)
            self.late += len(late)
        return batches

    def _resent(self, sent: list, previous: list, chunk_size: int) -> list:
        """Valid lines sent again, mostly from this batch, some from the previous one."""
        if not sent:
            return []
        earlier = previous or sent
        count = round(self.duplicate_rate * chunk_size)
        picks = [
            self.rng.choice(earlier if self.rng.random() < 0.3 else sent) for _ in range(count)
        ]
        self.duplicates += len(picks)
        return picks
