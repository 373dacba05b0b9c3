"""An entity's business rules run as one great-expectations suite over a table of its records.

`run_rules` is pure: a pandas data frame in (the golden records, or a system's snapshot), a result
per rule out, with how many rows broke it and a few of them as samples. Each rule becomes the
great-expectations expectation that says it:

| rule                  | expectation                                                        |
| --------------------- | ------------------------------------------------------------------ |
| unique, one attribute | expect_column_values_to_be_unique                                  |
| unique, several       | expect_compound_columns_to_be_unique (a row with a NULL part passes) |
| allowed               | expect_column_values_to_be_in_set                                  |
| format                | expect_column_values_to_match_regex                                |
| range                 | expect_column_values_to_be_between                                 |
| references            | expect_column_values_to_not_be_in_set, of the values no key matches |
| compare `>` `>=`      | expect_column_pair_values_a_to_be_greater_than_b (`<` `<=` swap the columns) |
| compare `=`           | expect_column_pair_values_to_be_equal                              |
| compare `!=`          | expect_select_column_values_to_be_unique_within_record (the two differ) |

A `references` rule hands great-expectations the column's values that are no key of the
referenced entity (a set difference of the distinct values), not the keys themselves: it copies an
expectation's value set each time it builds a metric, which made a set of 10,000 customer keys
cost a second per run, and would make a million cost minutes; the values that dangle are few,
usually none.

great-expectations is imported only where a suite runs: importing it takes seconds, and
`import sync_assets.definitions` must stay fast. A command that may need it calls `warm_up`
first (`warm_up_unless_rules_held`), which imports it in a process of its own while the command
does its other work; the suites then run there, over the rules DuckDB could not tell unbroken
(`check_records`). It runs in an ephemeral context (nothing written to disk: no gx/ folder, no
stores), without its usage analytics (GX_ANALYTICS_ENABLED=false, set for the process that
imports it) and without progress bars.

Samples show the record's key and the values the rule read; a PII attribute's value is shown only
through `mask` (the data folder's keyed fingerprint), never as it is.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import importlib.metadata
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from sync_assets.catalog.entities import Entity
from sync_assets.catalog.rules import Rule
from sync_assets.catalog.unbroken import unbroken_rules
from sync_assets.connectors.mappings import Mapping
from sync_assets.security.sql import pii_of
from sync_assets.warehouse.sql import quote
from sync_assets.warehouse.tables import OUTCOMES_TABLE

if TYPE_CHECKING:
    from pathlib import Path

    import duckdb
    import pandas as pd

SAMPLE_SIZE = 5
"""Rows shown per broken rule: enough to find the records, little enough for the UI."""


@dataclass(frozen=True)
class Sample:
    """A row that broke a rule: its key and the values the rule read (PII masked)."""

    key: str | None
    """None: the row has no key (a system's row that names no canonical key)."""
    values: dict[str, str | None]


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    passed: bool
    unexpected: int
    """Rows that broke the rule (for `unique`: every row sharing a value, not one per value)."""
    rows_checked: int
    samples: tuple[Sample, ...] = ()


LIVE_GOLDEN = "lifecycle_state = 'live'"
"""The golden records the rules hold: a deleted record is history, not business."""
LIVE_SNAPSHOT = "NOT is_deleted"
"""A system's rows the rules hold: those it has not (soft-)deleted."""


def check_records(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    table: str,
    rules: Sequence[Rule],
    *,
    live: str,
    entities: dict[str, Entity],
    sample_size: int = SAMPLE_SIZE,
    remember: bool = True,
) -> list[RuleResult]:
    """Run `rules` over the rows of a warehouse table of `entity`'s records (its golden records or
    a system's snapshot) that match `live` (LIVE_GOLDEN, LIVE_SNAPSHOT).

    Only the key and the columns the rules read are loaded, decimals as doubles (pandas compares
    floats natively; two decimal places survive the trip). A `references` rule's keys are every
    golden record of the entity it names, deleted ones too: an order keeps its customer after the
    customer is deleted, as history. Samples mask PII with the warehouse's keyed fingerprint, as
    the reconciliation checks do (sync_assets/security/fingerprint.py).

    The rules no row breaks are told in DuckDB first (sync_assets/catalog/unbroken.py), with the
    outcome great-expectations gives a rule that holds; only the others go to the suite, and a
    suite whose rules all hold does not ask great-expectations at all.

    `remember`: a suite that already ran over the same rows is not run again. Its outcome is kept
    in the warehouse (`rule_outcomes`, one per table) under a fingerprint of everything it depends
    on (`_suite_fingerprint`), and read back while that fingerprint holds: a scheduled check of
    systems that did not change pays a digest of the rows (about 1 s a million), not
    great-expectations.
    """
    if not rules:
        return []
    read = sorted({a for rule in rules for a in rule.attributes})
    mask = pii_of(con).mask
    suite = ""
    if remember:
        suite = _suite_fingerprint(con, entity, table, rules, live, entities, sample_size, mask)
        remembered = _remembered(con, table, suite, rules)
        if remembered is not None:
            return remembered
    columns = [quote(entity.key)]
    for name in read:
        attribute = entity.attribute(name)
        column = quote(name)
        columns.append(
            f"CAST({column} AS DOUBLE) AS {column}" if attribute.type == "decimal" else column
        )
    source = f"(SELECT {', '.join(columns)} FROM {quote(table)} WHERE {live})"
    rows, held = unbroken_rules(con, source, rules, entities=entities)
    suspect = [rule for rule in rules if rule.name not in held]
    ran: dict[str, RuleResult] = {}
    if suspect:
        references: dict[str, Collection[str]] = {}
        for rule in suspect:
            if rule.kind == "references" and rule.entity is not None:
                other = entities[rule.entity]
                found = con.execute(f"SELECT {quote(other.key)} FROM {quote(other.golden_table)}")
                references[rule.entity] = {key for (key,) in found.fetchall()}
        judged = run_rules(
            con.execute(f"SELECT * FROM {source}").df(),
            entity.key,
            suspect,
            pii=entity.pii_attributes,
            mask=mask,
            references=references,
            sample_size=sample_size,
        )
        ran = {result.rule.name: result for result in judged}
    results = [
        ran.get(rule.name) or RuleResult(rule=rule, passed=True, unexpected=0, rows_checked=rows)
        for rule in rules
    ]
    if remember:
        _remember(con, table, suite, results)
    return results


# -- outcomes remembered ---------------------------------------------------------------------------

OUTCOMES_VERSION = 1
"""Part of every suite's fingerprint: raise it when what a suite reports changes (a rule's
expectation, the samples' shape), so no outcome remembered before is reused."""


def _rows_digest(con: duckdb.DuckDBPyConnection, columns: Sequence[str], source: str) -> list[str]:
    """The row count and the exact sum of each row's MD5 (as a 128-bit number, summed in two
    64-bit halves): a row added, removed or changed changes them, whatever the rows' order. They
    tell a change, not a forgery: someone able to write a system's rows could, with effort, craft
    rows that keep them. A row is its values as text in a JSON list, so NULL and 'NULL' differ.
    About 0.1 s per 100,000 rows; the MD5 is computed once per row, in the inner query."""
    row = f"to_json([{', '.join(f'CAST({quote(c)} AS VARCHAR)' for c in columns)}])"
    low = "18446744073709551615::UHUGEINT"  # 2**64 - 1
    return [
        str(value)
        for value in con.execute(
            f"SELECT count(*), sum(CAST(h >> 64 AS HUGEINT)), sum(CAST(h & {low} AS HUGEINT)) "
            f"FROM (SELECT md5_number({row}) AS h FROM {source})"
        ).fetchall()[0]
    ]


def _suite_fingerprint(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    table: str,
    rules: Sequence[Rule],
    live: str,
    entities: dict[str, Entity],
    sample_size: int,
    mask: Callable[[object], str],
) -> str:
    """What a suite's outcome depends on, digested: the rules, the rows they read (the key and
    their attributes, of the live rows), the keys each `references` rule looks in, which attributes
    are PII, the sample size, great-expectations' version and the mask's key (a fingerprint of a
    constant: a rotated key masks samples differently)."""
    read = sorted({a for rule in rules for a in rule.attributes})
    references = {
        rule.entity: _rows_digest(
            con, [entities[rule.entity].key], quote(entities[rule.entity].golden_table)
        )
        for rule in rules
        if rule.kind == "references" and rule.entity is not None
    }
    described = {
        "version": OUTCOMES_VERSION,
        "great_expectations": importlib.metadata.version("great_expectations"),
        "table": table,
        "live": live,
        "key": entity.key,
        "pii": sorted(entity.pii_attributes),
        "rules": [dataclasses.asdict(rule) for rule in rules],
        "sample_size": sample_size,
        "mask": mask(OUTCOMES_TABLE),
        "rows": _rows_digest(con, [entity.key, *read], f"{quote(table)} WHERE {live}"),
        "references": references,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _remembered(
    con: duckdb.DuckDBPyConnection, table: str, suite: str, rules: Sequence[Rule]
) -> list[RuleResult] | None:
    """The outcome of the suite `suite` over `table`, as the last run of it found it; None: that
    suite has not run over those rows (or its outcome is no longer kept)."""
    found = con.execute(
        f"SELECT outcomes FROM {OUTCOMES_TABLE} WHERE records = ? AND suite = ?", [table, suite]
    ).fetchall()
    if not found:
        return None
    by_rule = {o["rule"]: o for o in json.loads(found[0][0])}
    if set(by_rule) != {rule.name for rule in rules}:
        return None
    return [
        RuleResult(
            rule=rule,
            passed=by_rule[rule.name]["passed"],
            unexpected=by_rule[rule.name]["unexpected"],
            rows_checked=by_rule[rule.name]["rows_checked"],
            samples=tuple(Sample(s["key"], s["values"]) for s in by_rule[rule.name]["samples"]),
        )
        for rule in rules
    ]


def _remember(
    con: duckdb.DuckDBPyConnection, table: str, suite: str, results: Sequence[RuleResult]
) -> None:
    """Keep `results` as the outcome of `suite` over `table`, in place of the table's last one.
    Two statements, not one transaction: a crash between them leaves nothing remembered, and the
    next check runs the suite."""
    outcomes = [
        {
            "rule": r.rule.name,
            "passed": r.passed,
            "unexpected": r.unexpected,
            "rows_checked": r.rows_checked,
            "samples": [{"key": s.key, "values": s.values} for s in r.samples],
        }
        for r in results
    ]
    con.execute(f"DELETE FROM {OUTCOMES_TABLE} WHERE records = ?", [table])
    con.execute(
        f"INSERT INTO {OUTCOMES_TABLE} VALUES (?, ?, ?, now())",
        [table, suite, json.dumps(outcomes)],
    )


def snapshot_rules(entity: Entity, mapping: Mapping) -> list[Rule]:
    """The entity's rules a system's snapshot is held to: those whose attributes it holds.

    A system word that stands for several catalog values (a vocabulary's lossy word) is snapshotted
    as those values joined by '|' (sync_assets/reconcile/snapshot.py), so an `allowed` rule over
    such a column also accepts each of the system's words whose values are all allowed; a word
    outside the vocabulary is still caught.
    """
    held = set(mapping.attributes)
    rules = []
    for rule in entity.rules:
        if not set(rule.attributes) <= held:
            continue
        field = mapping.field_for(rule.attribute)
        if rule.kind == "allowed" and field.rule == "vocabulary":
            joined = {
                "|".join(sorted(values))
                for meaning in field.vocabulary.values()
                if len(values := (meaning,) if isinstance(meaning, str) else tuple(meaning)) > 1
                and set(values) <= set(rule.values)
            }
            rule = replace(rule, values=(*rule.values, *sorted(joined)))
        rules.append(rule)
    return rules


def warm_up() -> None:
    """Start importing great-expectations now, in a process of its own, for a command that may
    run rules later: the import takes seconds of CPU, which this process's other work (ingest,
    snapshots) then runs beside instead of before. `run_rules` validates in that process from then
    on. Once per process; without it, `run_rules` imports and validates here.

    The worker runs at the lowest CPU priority: it takes the cores this process leaves idle, and
    gets them all while this process waits for a suite. It is killed (SIGKILL) when the command
    ends: a command whose suites were all remembered (`check_records`) does not wait for an import
    it never used.
    """
    global _worker
    if _worker is None:
        _worker = _Worker()
        # Before multiprocessing's own exit handler (registered earlier, run later), which would
        # terminate it with SIGTERM and join it: forever, where SIGTERM is ignored (Dagster maps it
        # to SIGINT's handler, and a background job of a script ignores SIGINT).
        atexit.register(_stop_worker)


def warm_up_unless_rules_held(warehouse: Path) -> None:
    """`warm_up`, unless the rules held the last time they ran over every table the warehouse
    remembers an outcome of (`rule_outcomes`): then DuckDB most likely judges every suite alone
    (sync_assets/catalog/unbroken.py), and the worker's import would be seconds of CPU for
    nothing. A rule that breaks anyway has its suite run in the command, importing
    great-expectations there, once; the next command warms up again. Nothing remembered yet, or
    a warehouse that cannot be read now: warm up."""
    import duckdb

    from sync_assets.errors import SyncfabricError
    from sync_assets.warehouse import connect

    try:
        with connect(warehouse, read_only=True) as con:
            remembered = [
                text for (text,) in con.execute(f"SELECT outcomes FROM {OUTCOMES_TABLE}").fetchall()
            ]
    except (duckdb.Error, SyncfabricError):
        remembered = []
    held = bool(remembered) and all(
        outcome["passed"] and not outcome["unexpected"]
        for text in remembered
        for outcome in json.loads(text)
    )
    if not held:
        warm_up()


class _Worker:
    """A spawned process that imports great-expectations and validates the suites sent to it."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs,), daemon=True)
        self.process.start()
        theirs.close()

    def validate(self, *suite: Any) -> dict[str, _Outcome] | None:
        """`_validate(*suite)` in the worker; None: the worker died (killed, out of memory)."""
        try:
            self._pipe.send(suite)
            ok, found = self._pipe.recv()
        except (EOFError, OSError):
            return None
        if not ok:
            raise found
        return found

    def stop(self) -> None:
        """Kill it (it holds nothing to clean up, and may ignore SIGTERM) and reap it."""
        self._pipe.close()
        self.process.kill()
        self.process.join()


_worker: _Worker | None = None
"""The process `warm_up` started; None: `run_rules` validates in this process."""


def _stop_worker() -> None:
    global _worker
    if _worker is not None:
        _worker.stop()
        _worker = None


def run_rules(
    frame: pd.DataFrame,
    key: str,
    rules: Sequence[Rule],
    *,
    pii: Collection[str],
    mask: Callable[[object], str],
    references: dict[str, Collection[str]] | None = None,
    sample_size: int = SAMPLE_SIZE,
) -> list[RuleResult]:
    """Run `rules` over `frame` (one row per record, `key` its key column) as one suite.

    `pii`: the attributes whose values samples show only masked, through `mask`. `references`:
    entity -> the keys of its golden records, for the `references` rules.

    The suite runs where `warm_up` imported great-expectations, if it did; only the frame and
    each `references` rule's dangling values go there, and the samples come back as great-
    expectations reported them, to be masked here (the mask's key never leaves this process).
    """
    if not rules:
        return []
    dangling = {
        rule.name: _dangling(frame, rule.attribute, (references or {}).get(str(rule.entity), ()))
        for rule in rules
        if rule.kind == "references"
    }
    outcomes = None
    if _worker is not None:
        outcomes = _worker.validate(frame, key, rules, dangling, sample_size)
        if outcomes is None:  # the worker died (out of memory, killed): run here
            _stop_worker()
    if outcomes is None:
        outcomes = _validate(frame, key, rules, dangling, sample_size)
    found = []
    for rule in rules:
        outcome = outcomes[rule.name]
        if outcome.failure is not None:
            # Its message may quote a value: said only for a rule that reads no PII.
            said = "" if set(rule.attributes) & set(pii) else f": {outcome.failure}"
            raise RuntimeError(f"great-expectations could not run rule {rule.name!r}{said}")
        found.append(
            RuleResult(
                rule=rule,
                passed=outcome.passed,
                unexpected=outcome.unexpected,
                rows_checked=outcome.rows_checked,
                samples=tuple(_sample(r, key, rule, pii, mask) for r in outcome.reported),
            )
        )
    return found


@dataclass(frozen=True)
class _Outcome:
    """What great-expectations said of one rule, before any value is masked."""

    passed: bool
    unexpected: int
    rows_checked: int
    reported: list[dict[str, Any]]
    """Up to the sample size of the rows that broke it: the key and the columns the rule read."""
    failure: str | None
    """Why great-expectations could not run it; None: it ran."""


def _serve(pipe: multiprocessing.connection.Connection) -> None:
    """The worker: it leaves when the command does, however that one ends (killed, it sends no
    word, and the worker would wait for work forever); it runs at the lowest priority, imports
    great-expectations, then validates each suite it is sent, sending back (True, outcomes) or
    (False, the exception)."""
    # SIGTERM ends it, as it ends any process, even where the command's was ignored (inherited).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    os.nice(19)
    _import()
    # great-expectations makes a progress bar per suite (disabled, still made), and tqdm's lock is
    # a multiprocessing semaphore, which a worker killed at exit leaves for the resource tracker to
    # report as leaked, on the command's stderr. A thread lock does: one suite runs at a time.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    while True:
        try:
            suite = pipe.recv()
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, _validate(*suite))
        except Exception as error:
            reply = (False, error)
        pipe.send(reply)


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _import() -> None:
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations  # noqa: F401


def _validate(
    frame: pd.DataFrame,
    key: str,
    rules: Sequence[Rule],
    dangling: dict[str, list[Any]],
    sample_size: int,
) -> dict[str, _Outcome]:
    """The suite of `rules` run over `frame`: each rule's outcome, by its name."""
    _import()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("business_rules")
        .add_dataframe_asset("records")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(name="business_rules")
    for rule in rules:
        suite.add_expectation(_expectation(rule, dangling.get(rule.name, [])))
    validation = batch.validate(
        suite,
        result_format={
            "result_format": "SUMMARY",
            "unexpected_index_column_names": [key],
            "partial_unexpected_count": sample_size,
        },
    )
    by_rule = {
        r.expectation_config.meta["rule"]: r
        for r in validation.results
        if r.expectation_config is not None and r.expectation_config.meta
    }
    outcomes = {}
    for rule in rules:
        outcome = by_rule[rule.name]
        result = outcome.result
        outcomes[rule.name] = _Outcome(
            passed=bool(outcome.success),
            unexpected=int(result.get("unexpected_count") or 0),
            rows_checked=int(result.get("element_count", len(frame))),
            reported=list(result.get("partial_unexpected_index_list") or [])[:sample_size],
            failure=_failure(outcome.exception_info or {}),
        )
    return outcomes


def _dangling(frame: pd.DataFrame, column: str, keys: Collection[str]) -> list[Any]:
    """The values of `column` that are none of `keys`: a `references` rule's broken values.

    A set difference of the distinct values: pandas' isin against a million keys took seconds (it
    builds a scalar per key for an Arrow string column)."""
    known = keys if isinstance(keys, set | frozenset) else set(keys)
    return sorted(set(frame[column].dropna().unique()) - known)


def _failure(info: dict[str, Any]) -> str | None:
    """Why great-expectations could not run an expectation, if it could not: its exception info
    is flat, or one entry per metric it computed. A result that raised says passed=False with no
    row counted, which must not read as a rule broken by no row."""
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "an exception")
    return None


def _expectation(rule: Rule, dangling: list[Any]) -> Any:
    """The great-expectations expectation that says `rule`, tagged with its name; `dangling`: a
    `references` rule's broken values."""
    import great_expectations.expectations as gxe

    meta = {"rule": rule.name}
    a = rule.attribute
    if rule.kind == "unique" and len(rule.attributes) == 1:
        return gxe.ExpectColumnValuesToBeUnique(column=a, meta=meta)
    if rule.kind == "unique":
        return gxe.ExpectCompoundColumnsToBeUnique(
            column_list=list(rule.attributes), ignore_row_if="any_value_is_missing", meta=meta
        )
    if rule.kind == "allowed":
        return gxe.ExpectColumnValuesToBeInSet(column=a, value_set=list(rule.values), meta=meta)
    if rule.kind == "format":
        return gxe.ExpectColumnValuesToMatchRegex(column=a, regex=str(rule.pattern), meta=meta)
    if rule.kind == "range":
        return gxe.ExpectColumnValuesToBeBetween(
            column=a, min_value=rule.minimum, max_value=rule.maximum, meta=meta
        )
    if rule.kind == "references":
        return gxe.ExpectColumnValuesToNotBeInSet(column=a, value_set=dangling, meta=meta)
    left, right = rule.attributes
    skip: Literal["either_value_is_missing"] = "either_value_is_missing"
    if rule.operator in (">", ">=", "<", "<="):
        greater, smaller = (left, right) if rule.operator in (">", ">=") else (right, left)
        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=greater,
            column_B=smaller,
            or_equal=rule.operator in (">=", "<="),
            ignore_row_if=skip,
            meta=meta,
        )
    if rule.operator == "=":
        return gxe.ExpectColumnPairValuesToBeEqual(
            column_A=left, column_B=right, ignore_row_if=skip, meta=meta
        )
    return gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(
        column_list=[left, right], ignore_row_if="any_value_is_missing", meta=meta
    )


def _sample(
    found: dict[str, Any], key: str, rule: Rule, pii: Collection[str], mask: Callable[[object], str]
) -> Sample:
    """A row great-expectations reported (its key and the rule's columns), PII through `mask`."""
    values: dict[str, str | None] = {}
    for attribute in rule.attributes:
        value = found.get(attribute)
        if _is_null(value):
            values[attribute] = None
        else:
            values[attribute] = mask(value) if attribute in pii else str(value)
    k = found.get(key)
    return Sample(None if _is_null(k) else str(k), values)


def _is_null(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))
