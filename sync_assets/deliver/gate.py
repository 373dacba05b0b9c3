"""The review gate: a mass correction is emitted only by someone who names how many they reviewed.

A reconciliation check failing at ERROR (more drift than is plausible: a broken mapping, a system
restored from an old backup, golden records left empty by a crash) stops the automatic
corrections: the checks are blocking. What the reconciliation found may still be right, so it can
be emitted by hand, but only by naming exactly the number of corrections reviewed:

- `syncctl deliver --emit --i-have-reviewed N`, or `syncctl reconcile --i-have-reviewed N`;
- in the Dagster UI, the run config `ops.corrections.config.i_have_reviewed: N` (and the same for
  `missed_events`, whose owners' events are landed under the same review).

A number that does not match (the systems changed since the review) is refused as well. The
refusal says how many corrections, by target and action, how to review them, and what to pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sync_assets.deliver.corrections import RUNBOOK, plan_corrections
from sync_assets.errors import EXIT_FAILED, SyncfabricError
from sync_assets.project import current
from sync_assets.reconcile.comparisons import Comparison, comparisons
from sync_assets.reconcile.missed import planned_missed_events
from sync_assets.reconcile.policy import verdict

UI_CONFIRM = (
    "materialize `corrections` and `missed_events` with the run config "
    "ops.<asset>.config.i_have_reviewed: {n}"
)
"""How to confirm a review in the Dagster UI; syncctl names its own flag."""


@dataclass(frozen=True)
class Proposal:
    """What emitting a reconciliation run's outcome would do, and what its checks said."""

    run_id: str
    corrections: dict[tuple[str, str], int]
    """The run's corrections by (target, action): those it would emit, and those it emitted
    already (so the count does not depend on which of the gated assets ran first)."""
    missed_events: dict[tuple[str, str], int]
    """Owners' missed events to land, by (owner, action)."""
    already_open: int
    withheld: int
    failing: list[Comparison]
    """The run's comparisons whose check fails at ERROR."""

    @property
    def total(self) -> int:
        """The number an operator must name: the run's corrections."""
        return sum(self.corrections.values())

    def describe(self) -> list[str]:
        """'15,167 corrections: support deleted 9,800, billing deleted 5,367', and the missed
        events landed with them."""
        lines = [f"{self.total:,} corrections{_breakdown(self.corrections)}"]
        missed = sum(self.missed_events.values())
        if missed:
            lines.append(
                f"and {missed:,} missed events to land for their owners"
                f"{_breakdown(self.missed_events)}"
            )
        return lines


def propose(con: duckdb.DuckDBPyConnection, run_id: str) -> Proposal:
    planned = plan_corrections(con, run_id)
    counts = planned.by_target_action()
    emitted = con.execute(
        "SELECT target, action, count(*) FROM corrections "
        "WHERE reconcile_run_id = ? AND kind = 'correction' GROUP BY ALL",
        [run_id],
    ).fetchall()
    for target, action, n in emitted:
        counts[target, action] = counts.get((target, action), 0) + n
    return Proposal(
        run_id=run_id,
        corrections=counts,
        missed_events=planned_missed_events(con, run_id),
        already_open=planned.already_open,
        withheld=planned.withheld,
        failing=failing_at_error(con, run_id),
    )


def failing_at_error(con: duckdb.DuckDBPyConnection, run_id: str) -> list[Comparison]:
    """The comparisons of a run whose reconciliation check fails at ERROR (same policy)."""
    return [
        c
        for c in comparisons(con, run_id)
        if verdict(c.discrepancies, c.rows_compared, current().settings.thresholds) == "error"
    ]


class ReviewRequired(SyncfabricError):
    """A mass correction, not (or not rightly) confirmed: nothing was emitted."""


def require_review(proposal: Proposal, reviewed: int | None, confirm: str) -> None:
    """Raise `ReviewRequired` when the run fails a check at ERROR and `reviewed` does not name
    the number of corrections exactly, or whenever a `reviewed` given does not match.

    `confirm` says how to pass the number, with `{n}` where it goes.
    """
    if reviewed is None:
        if not proposal.failing or not (proposal.total or proposal.missed_events):
            return
        failing = "; ".join(
            f"{c.check_name} {c.discrepancies:,} of {c.rows_compared:,} rows"
            for c in proposal.failing
        )
        why = (
            f"refusing to emit: the reconciliation {proposal.run_id} has "
            f"{len(proposal.failing)} check(s) failing at ERROR ({failing}): too much drift to "
            "correct without a review. Nothing was emitted."
        )
    elif reviewed == proposal.total:
        return
    else:
        why = (
            f"refusing to emit: you reviewed {reviewed:,}, but the reconciliation "
            f"{proposal.run_id} calls for {proposal.total:,} corrections (did the systems "
            "change since?). Nothing was emitted."
        )
    raise ReviewRequired(
        "\n".join(
            [
                why,
                *proposal.describe(),
                "review them: syncctl check --json lists every discrepancy with its values "
                f"(see {RUNBOOK})",
                f"to emit exactly these: {confirm.format(n=proposal.total)}",
            ]
        ),
        exit_code=EXIT_FAILED,
    )


def _breakdown(counts: dict[tuple[str, str], int]) -> str:
    if not counts:
        return ""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ": " + ", ".join(f"{target} {action} {n:,}" for (target, action), n in ranked)


def enforce(
    con: duckdb.DuckDBPyConnection, run_id: str, reviewed: int | None, confirm: str
) -> None:
    """`require_review` for a run, computing the proposal only when a review is in question."""
    if reviewed is None and not failing_at_error(con, run_id):
        return
    require_review(propose(con, run_id), reviewed, confirm)
