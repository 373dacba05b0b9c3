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
| references            | expect_column_values_to_be_in_set, of the referenced golden keys   |
| compare `>` `>=`      | expect_column_pair_values_a_to_be_greater_than_b (`<` `<=` swap the columns) |
| compare `=`           | expect_column_pair_values_to_be_equal                              |
| compare `!=`          | expect_select_column_values_to_be_unique_within_record (the two differ) |

great-expectations is imported inside `run_rules` only: importing it takes seconds, and
`import sync_assets.definitions` must stay fast. It runs in an ephemeral context (nothing written
to disk: no gx/ folder, no stores), without its usage analytics (GX_ANALYTICS_ENABLED=false, set
for this process before the import) and without progress bars.

Samples show the record's key and the values the rule read; a PII attribute's value is shown only
through `mask` (the data folder's keyed fingerprint), never as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sync_assets.catalog.rules import Rule

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_SIZE = 5
"""Rows shown per broken rule: enough to find the records, little enough for the UI."""


@dataclass(frozen=True)
class Sample:
    """A row that broke a rule: its key and the values the rule read (PII masked)."""

    key: str
    values: dict[str, str | None]


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    passed: bool
    unexpected: int
    """Rows that broke the rule (for `unique`: every row sharing a value, not one per value)."""
    rows_checked: int
    samples: tuple[Sample, ...] = ()


def run_rules(
    frame: pd.DataFrame,
    key: str,
    rules: Sequence[Rule],
    *,
    pii: Collection[str],
    mask: Callable[[object], str],
    references: Mapping[str, Collection[str]] | None = None,
    sample_size: int = SAMPLE_SIZE,
) -> list[RuleResult]:
    """Run `rules` over `frame` (one row per record, `key` its key column) as one suite.

    `pii`: the attributes whose values samples show only masked, through `mask`. `references`:
    entity -> the keys of its golden records, for the `references` rules.
    """
    if not rules:
        return []
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
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
        suite.add_expectation(_expectation(rule, references or {}))
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
    rows = frame.set_index(key, drop=False)
    found = []
    for rule in rules:
        outcome = by_rule[rule.name]
        if outcome.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"great-expectations could not run rule {rule.name!r}: "
                f"{outcome.exception_info.get('exception_message')}"
            )
        result = outcome.result
        keys = _sample_keys(result.get("partial_unexpected_index_list") or [], key, sample_size)
        found.append(
            RuleResult(
                rule=rule,
                passed=bool(outcome.success),
                unexpected=int(result.get("unexpected_count") or 0),
                rows_checked=int(result.get("element_count", len(frame))),
                samples=tuple(_sample(rows, k, rule, pii, mask) for k in keys),
            )
        )
    return found


def _expectation(rule: Rule, references: Mapping[str, Collection[str]]) -> Any:
    """The great-expectations expectation that says `rule`, tagged with its name."""
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
        keys = sorted(references.get(str(rule.entity), ()))
        return gxe.ExpectColumnValuesToBeInSet(column=a, value_set=keys, meta=meta)
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


def _sample_keys(found: list[dict[str, Any]], key: str, size: int) -> list[str]:
    keys: list[str] = []
    for row in found:
        k = str(row[key])
        if k not in keys:
            keys.append(k)
    return keys[:size]


def _sample(
    rows: pd.DataFrame, key: str, rule: Rule, pii: Collection[str], mask: Callable[[object], str]
) -> Sample:
    """The values `rule` read in the record `key`: PII through `mask`, NULL as None."""
    row = rows.loc[key]
    if getattr(row, "ndim", 1) > 1:  # a key held twice (a snapshot's system may do that)
        row = row.iloc[0]
    values: dict[str, str | None] = {}
    for attribute in rule.attributes:
        value = row[attribute]
        if _is_null(value):
            values[attribute] = None
        else:
            values[attribute] = mask(value) if attribute in pii else str(value)
    return Sample(key, values)


def _is_null(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))
