"""Applying validated customer events equals a plain-Python last-writer-wins model.

Whatever the events, duplicates, arrival order and batching, each golden attribute holds the value
of its owner's newest event (by event time, then event id) that sets it, and the lifecycle register
holds the lifecycle owner's newest created/reconciled (live) or deleted (tombstone) event.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import hypothesis.strategies as st
import pytest
from conftest import at, event, land, run_core
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import find as hypothesis_find
from hypothesis.errors import NoSuchExample

from sync_assets.catalog.entities import CUSTOMER
from sync_assets.settings import DataFolder
from sync_assets.state import apply as apply_module
from sync_assets.state.apply import replay
from sync_assets.warehouse import connect, transaction

KEYS = ("C-000001", "C-000002", "C-000003")
ORIGINS = ("crm", "billing", "support")
# Few instants, so that ties on time are frequent and the event id has to break them.
INSTANTS = (at(0), at(0.000001), at(60))
# The same instant may be written in different zones; ordering must use the instant.
ZONES = (timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))

POOLS: dict[str, tuple[Any, ...]] = {
    "email": ("ada@example.com", "grace@example.org", "alan@example.net"),
    "full_name": ("Ada Lovelace", "Grace Hopper"),
    "country": ("GB", "US"),
    "status": ("active", "inactive", "suspended"),
    "plan": ("free", "pro", "enterprise", None),
    "support_tier": ("standard", "priority", None),
}
REQUIRED = ("email", "full_name", "country", "status")
OPTIONAL = ("plan", "support_tier")
MODEL_ATTRIBUTES = tuple(POOLS)
COMPARED = (*CUSTOMER.attribute_names, "lifecycle_state")


@dataclass(frozen=True)
class Ev:
    event_id: str
    key: str
    action: str
    origin: str
    instant: datetime
    zone: timezone
    data: tuple[tuple[str, Any], ...]

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.instant, self.event_id)

    def to_dict(self) -> dict[str, Any]:
        built = event(
            f"customer.{self.action}",
            self.key,
            dict(self.data),
            origin=self.origin,
            time=self.instant,
            event_id=self.event_id,
        )
        # make_event always writes UTC; write the same instant in the chosen zone instead.
        built["time"] = self.instant.astimezone(self.zone).isoformat(timespec="microseconds")
        return built


def _value(name: str):
    return st.sampled_from(POOLS[name])


@st.composite
def payloads(draw, action: str) -> tuple[tuple[str, Any], ...]:
    if action == "deleted":
        return ()
    if action == "created":
        names = list(REQUIRED) + draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    else:
        names = draw(st.lists(st.sampled_from(MODEL_ATTRIBUTES), min_size=1, unique=True))
    data = []
    for name in names:
        value = draw(_value(name))
        data.append((name, value))
    return tuple(data)


@st.composite
def events(draw, event_id: str) -> Ev:
    action = draw(st.sampled_from(("created", "updated", "deleted", "reconciled")))
    return Ev(
        event_id=event_id,
        key=draw(st.sampled_from(KEYS[: draw(st.integers(2, 3))])),
        action=action,
        origin=draw(st.sampled_from(ORIGINS)),
        instant=draw(st.sampled_from(INSTANTS)),
        zone=draw(st.sampled_from(ZONES)),
        data=draw(payloads(action)),
    )


# Ids whose string order differs from their generation order (e.g. "e10" < "e9").
event_ids = st.lists(
    st.integers(0, 200).map(lambda n: f"e{n}"), min_size=1, max_size=14, unique=True
)


@st.composite
def scenarios(draw) -> tuple[list[Ev], list[list[Ev]]]:
    """Distinct events, then how they land: shuffled, some repeated, split into 1-3 batches."""
    evs = [draw(events(event_id)) for event_id in draw(event_ids)]
    repeats = draw(st.lists(st.sampled_from(evs), max_size=4))
    landed = draw(st.permutations(evs + repeats))
    n_batches = draw(st.integers(1, min(3, len(landed))))
    cuts = sorted(draw(st.lists(st.integers(1, len(landed) - 1), unique=True, min_size=n_batches - 1, max_size=n_batches - 1))) if n_batches > 1 else []
    bounds = [0, *cuts, len(landed)]
    return evs, [landed[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# -- the reference model --------------------------------------------------------------------------


def reference_model(evs: list[Ev]) -> dict[str, dict[str, Any]]:
    """Plain Python: per key, per attribute, the owner's newest event that sets it wins."""
    model: dict[str, dict[str, Any]] = {}
    newest: dict[tuple[str, str], tuple[datetime, str]] = {}
    for ev in evs:
        record = model.setdefault(ev.key, dict.fromkeys(COMPARED))
        for name, value in ev.data:
            if CUSTOMER.owner_of(name) != ev.origin:
                continue
            if (ev.key, name) not in newest or ev.order > newest[(ev.key, name)]:
                newest[(ev.key, name)] = ev.order
                record[name] = value
        if ev.origin == CUSTOMER.lifecycle_owner and ev.action != "updated":
            if (ev.key, "lifecycle") not in newest or ev.order > newest[(ev.key, "lifecycle")]:
                newest[(ev.key, "lifecycle")] = ev.order
                record["lifecycle_state"] = "deleted" if ev.action == "deleted" else "live"
    return model


def golden(con) -> dict[str, dict[str, Any]]:
    columns = ", ".join(f'"{c}"' for c in ("customer_id", *COMPARED))
    result = con.execute(f"SELECT {columns} FROM golden_customer").fetchall()
    return {row[0]: dict(zip(COMPARED, row[1:], strict=True)) for row in result}


def run_scenario(
    folder: DataFolder, batches: list[list[Ev]]
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Land and run the batches in order; return the incremental golden and replay's differences."""
    batch_ids = [
        land(folder, f"batch-{n}", [ev.to_dict() for ev in batch]).batch_id
        for n, batch in enumerate(batches)
    ]
    results = run_core(folder, batch_ids)
    for batch_id, result in results.items():
        assert result["validation"].dead_lettered == 0, (
            f"{batch_id}: generated events must all be valid"
        )
    with connect(folder.warehouse) as con:
        incremental = golden(con)
        with transaction(con):
            differences = replay(con)
    return incremental, differences


class Folders:
    """A fresh data folder per hypothesis example, under the session's tmp path."""

    def __init__(self, factory: pytest.TempPathFactory):
        self.factory = factory

    def __enter__(self) -> DataFolder:
        self.root = self.factory.mktemp("example")
        return DataFolder(self.root)

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def golden_matches_model(
    factory: pytest.TempPathFactory, scenario: tuple[list[Ev], list[list[Ev]]]
) -> tuple[bool, dict[str, int]]:
    evs, batches = scenario
    with Folders(factory) as folder:
        incremental, differences = run_scenario(folder, batches)
        return incremental == reference_model(evs), differences


# -- the property ---------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_golden_equals_reference_model(tmp_path_factory, scenario):
    evs, batches = scenario
    with Folders(tmp_path_factory) as folder:
        incremental, differences = run_scenario(folder, batches)
        assert incremental == reference_model(evs)
        assert differences == {"customer": 0, "order": 0}


# -- the property catches a broken ordering guard -------------------------------------------------


def always_newer(candidate: str, current: str) -> str:
    """A broken guard: whatever a later batch brings overwrites the register."""
    return f"({candidate} IS NOT NULL)"


def _ev(event_id, action, seconds, data=(), origin="crm", key="C-000001") -> Ev:
    return Ev(event_id, key, action, origin, at(seconds), timezone.utc, tuple(data))


# Two batches, the newer event in the first: only the ordering guard keeps the second from winning.
COUNTEREXAMPLES = {
    "newer time first": [
        [_ev("e1", "updated", 60, [("email", "new@example.com")])],
        [_ev("e2", "updated", 0, [("email", "old@example.com")])],
    ],
    "same time, greater id first": [
        # "e9" > "e10" as strings, so e9 is the newer of two events at the same instant.
        [_ev("e9", "updated", 0, [("plan", "pro")], origin="billing")],
        [_ev("e10", "updated", 0, [("plan", "free")], origin="billing")],
    ],
    "tombstone first, older create later": [
        [_ev("e2", "deleted", 60)],
        [_ev("e1", "created", 0, [(n, POOLS[n][0]) for n in REQUIRED])],
    ],
}


@pytest.mark.parametrize("name", sorted(COUNTEREXAMPLES))
@pytest.mark.parametrize("broken", [False, True], ids=["real guard", "broken guard"])
def test_fixed_counterexample_needs_the_ordering_guard(
    data_folder, monkeypatch, name, broken
):
    batches = COUNTEREXAMPLES[name]
    evs = [ev for batch in batches for ev in batch]
    if broken:
        monkeypatch.setattr(apply_module, "newer", always_newer)

    incremental, differences = run_scenario(data_folder, batches)

    expected = reference_model(evs)
    if broken:
        assert incremental != expected
        # A full replay folds all events at once, so it disagrees with the broken incremental state.
        assert differences["customer"] == 1
    else:
        assert incremental == expected
        assert differences == {"customer": 0, "order": 0}


def test_hypothesis_finds_a_counterexample_for_a_broken_guard(tmp_path_factory, monkeypatch):
    monkeypatch.setattr(apply_module, "newer", always_newer)

    def breaks_the_property(scenario) -> bool:
        matches, differences = golden_matches_model(tmp_path_factory, scenario)
        return not matches

    counterexample = hypothesis_find(
        scenarios(),
        breaks_the_property,
        settings=settings(
            max_examples=60, deadline=None, database=None, phases=[Phase.generate]
        ),
    )
    _, batches = counterexample
    assert len(batches) > 1  # one batch is folded at once: only later batches hit the guard


def test_hypothesis_finds_no_counterexample_for_the_real_guard_quickly(tmp_path_factory):
    """The search above is meaningful: the same search under the real guard finds nothing."""
    with pytest.raises(NoSuchExample):
        hypothesis_find(
            scenarios(),
            lambda scenario: not golden_matches_model(tmp_path_factory, scenario)[0],
            settings=settings(
                max_examples=10, deadline=None, database=None, phases=[Phase.generate]
            ),
        )
