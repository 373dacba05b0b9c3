"""Deduplication by (source, id) among valid events, as CloudEvents defines an event's identity."""

from __future__ import annotations

from conftest import customer_created, event, land, rows, run_core


def test_repeated_valid_events_point_at_their_first_accepted_copy(data_folder):
    first = land(
        data_folder,
        "0001",
        [
            customer_created("C-000001", event_id="A"),
            customer_created("C-000002", event_id="B"),
            customer_created("C-000001", event_id="A"),  # repeated within the batch
        ],
    )
    second = land(
        data_folder,
        "0002",
        [
            customer_created("C-000003", event_id="C"),
            customer_created("C-000001", event_id="A"),  # repeated across batches
            # Same id, different content: still the same event, the first one accepted wins.
            customer_created("C-000002", event_id="B", data={"email": "other@example.com"}),
            customer_created("C-000001", event_id="A"),
            customer_created("C-000003", event_id="C"),  # repeated within the second batch
        ],
    )

    results = run_core(data_folder, [first.batch_id, second.batch_id])

    assert results[first.batch_id]["validation"].duplicates == 1
    assert results[second.batch_id]["validation"].duplicates == 4
    b1, b2 = first.batch_id, second.batch_id
    assert rows(
        data_folder,
        "SELECT batch_id, line_no, source, event_id, first_batch_id, first_line_no "
        "FROM duplicate_events ORDER BY batch_id, line_no",
    ) == [
        (b1, 3, "/systems/crm", "A", b1, 1),
        (b2, 2, "/systems/crm", "A", b1, 1),
        (b2, 3, "/systems/crm", "B", b1, 2),
        (b2, 4, "/systems/crm", "A", b1, 1),
        (b2, 5, "/systems/crm", "C", b2, 1),
    ]
    assert rows(data_folder, "SELECT duplicates FROM batches ORDER BY batch_id") == [(1,), (4,)]
    assert rows(
        data_folder, "SELECT email FROM golden_customer WHERE customer_id = 'C-000002'"
    ) == [("ada@example.com",)]


def test_a_fixed_copy_of_a_dead_lettered_event_is_validated_not_dropped(data_folder):
    """A producer re-sends an event it got wrong, fixed, under the same id: it is accepted, and
    the dead letter is resolved by it."""
    first = land(data_folder, "0001", [customer_created(event_id="A", data={"status": "x"})])
    second = land(data_folder, "0002", [customer_created(event_id="A")])

    run_core(data_folder, [first.batch_id, second.batch_id])

    assert rows(data_folder, "SELECT count(*) FROM duplicate_events") == [(0,)]
    assert rows(
        data_folder, "SELECT batch_id, event_id, resolution, resolved_by FROM dead_letters"
    ) == [(first.batch_id, "A", "accepted_copy", f"{second.batch_id}:1")]
    assert rows(data_folder, "SELECT customer_id, status FROM golden_customer") == [
        ("C-000001", "active")
    ]
    assert rows(
        data_folder, "SELECT landed, validated, duplicates, dead_lettered FROM batches"
    ) == [
        (1, 0, 0, 1),
        (1, 1, 0, 0),
    ]


def test_invalid_copies_of_an_accepted_event_are_dead_letters_not_duplicates(data_folder):
    batch = land(
        data_folder,
        "0001",
        [
            customer_created(event_id="A"),
            customer_created(event_id="A", data={"status": "weird"}),  # a corrupted copy
        ],
    )

    result = run_core(data_folder, [batch.batch_id])[batch.batch_id]["validation"]

    assert (result.validated, result.duplicates, result.dead_lettered) == (1, 0, 1)
    assert rows(data_folder, "SELECT line_no, rule, resolution FROM dead_letters") == [
        (2, "isin", "accepted_copy")  # the event itself is in: nothing waits for a redrive
    ]


def test_another_systems_events_with_the_same_ids_never_make_real_events_duplicates(data_folder):
    """Junk from billing that reuses the CRM's ids: each (source, id) is its own event."""
    junk = land(
        data_folder,
        "0001",
        [
            event("customer.updated", "C-000001", {"plan": "pro"}, origin="billing", event_id="A"),
            event(
                "customer.updated", "C-000001", {"plan": "weird"}, origin="billing", event_id="B"
            ),
        ],
        system="billing",
    )
    real = land(
        data_folder,
        "0002",
        [customer_created(event_id="A"), customer_created("C-000002", event_id="B")],
    )

    run_core(data_folder, [junk.batch_id, real.batch_id])

    assert rows(data_folder, "SELECT count(*) FROM duplicate_events") == [(0,)]
    assert rows(
        data_folder, "SELECT customer_id, plan, lifecycle_state FROM golden_customer ORDER BY 1"
    ) == [("C-000001", "pro", "live"), ("C-000002", None, "live")]


def test_lines_without_a_usable_id_are_dead_letters_never_duplicates(data_folder):
    batch = land(
        data_folder,
        "0001",
        ["{oops", "{oops", b"\xff\xfe", customer_created(id=""), customer_created(id=None)],
    )

    result = run_core(data_folder, [batch.batch_id])[batch.batch_id]["validation"]

    assert (result.validated, result.duplicates, result.dead_lettered) == (0, 0, 5)
