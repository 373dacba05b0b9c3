"""A step's failure as the operator reads it, from real Dagster runs (sync_assets/operate/failures.py)."""

from __future__ import annotations

import dagster as dg
import pytest

from sync_assets.errors import EXIT_BUSY, EXIT_USAGE, SyncfabricError
from sync_assets.operate.failures import as_step_failure, operator_error, step_failures


@dg.op
def busy() -> None:
    with as_step_failure():
        raise SyncfabricError("the warehouse is open in another process", exit_code=EXIT_BUSY)


@dg.op
def refused() -> None:
    raise SyncfabricError("an unknown id: nope")


@dg.op
def explained() -> None:
    raise dg.Failure(description="the checks failed at ERROR; see the table")


@dg.op
def broken() -> None:
    raise ValueError("a bug\nwith a second line")


def failures_of(op: dg.OpDefinition):
    job = dg.GraphDefinition(name=f"{op.name}_job", node_defs=[op]).to_job()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    return step_failures(job.name, result.all_events)


def test_an_operator_error_in_a_step_keeps_its_message_and_exit_code():
    [failure] = failures_of(busy)

    assert failure.step == "busy"
    assert failure.message == "the warehouse is open in another process"
    error = operator_error([failure])
    assert isinstance(error, SyncfabricError) and error.exit_code == EXIT_BUSY
    assert error.message == "the warehouse is open in another process"


def test_a_syncfabric_error_raised_bare_keeps_its_message_and_the_default_code():
    [failure] = failures_of(refused)

    assert failure.message == "an unknown id: nope"
    assert operator_error([failure]).exit_code == EXIT_USAGE


def test_other_failures_are_one_line_and_not_operator_errors():
    [explained_failure] = failures_of(explained)
    [bug] = failures_of(broken)

    assert explained_failure.line() == (
        "explained_job: step explained failed: the checks failed at ERROR; see the table"
    )
    assert bug.line() == "broken_job: step broken failed: ValueError: a bug with a second line"
    assert operator_error([explained_failure, bug]) is None


def test_outside_a_step_an_operator_error_stays_itself():
    with pytest.raises(SyncfabricError, match="busy") as raised, as_step_failure():
        raise SyncfabricError("busy", exit_code=EXIT_BUSY)
    assert raised.value.exit_code == EXIT_BUSY
