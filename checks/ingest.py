"""Checks on the batch ledger: nothing lost, and dead letters within bounds."""

import dagster as dg

from sync_assets import ledger
from sync_assets.ledger import summarize, unbalanced_batches
from sync_assets.operate.runbooks import runbook_url
from sync_assets.warehouse import WRITER_POOL
from sync_assets.warehouse.resource import WarehouseResource

LEDGER_RUNBOOK = "docs/runbooks/counts-do-not-add-up.md"
DEAD_LETTER_RUNBOOK = "docs/runbooks/dead-letters.md"
DEAD_LETTER_WARN_RATE = 0.05


@dg.asset_check(
    asset="batch_ledger",
    blocking=True,
    pool=WRITER_POOL,
    description=(
        "Every landed event is applied, a duplicate or a dead letter, in every batch; no batch "
        "is stuck after a failed step."
    ),
)
def every_event_accounted_for(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        broken = unbalanced_batches(con)
        summary = summarize(con)
        stuck = [b for b in ledger.unfinished(con) if b.failures]
    problems = []
    if broken:
        problems.append(f"{len(broken)} batch(es) do not add up")
    if stuck:
        problems.append(
            f"{len(stuck)} batch(es) stopped on a failed step, the next run tries them again: "
            + "; ".join(b.describe() for b in stuck[:5])
        )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or None,
        metadata={
            "landed": summary.landed,
            "applied": summary.applied,
            "duplicates": summary.duplicates,
            "dead_lettered": summary.dead_lettered,
            "pending": summary.pending,
            "failed_batches": dg.MetadataValue.json([b.batch_id for b in stuck]),
            "unbalanced_batches": dg.MetadataValue.json([list(row) for row in broken]),
            "runbook": dg.MetadataValue.url(runbook_url(LEDGER_RUNBOOK)),
        },
    )


@dg.asset_check(
    asset="batch_ledger",
    pool=WRITER_POOL,
    description=(
        f"Warns when more than {DEAD_LETTER_WARN_RATE:.0%} of the landed events were "
        "dead-lettered: a producer is likely sending a broken or unknown schema."
    ),
)
def dead_letter_rate(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        summary = summarize(con)
        by_rule = dict(
            con.execute("SELECT rule, count(*) FROM dead_letters GROUP BY rule").fetchall()
        )
    rate = summary.dead_lettered / summary.landed if summary.landed else 0.0
    return dg.AssetCheckResult(
        passed=rate <= DEAD_LETTER_WARN_RATE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "dead_letter_rate": float(round(rate, 4)),
            **{f"rule_{rule}": n for rule, n in sorted(by_rule.items())},
            "runbook": dg.MetadataValue.url(runbook_url(DEAD_LETTER_RUNBOOK)),
        },
    )
