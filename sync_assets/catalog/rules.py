"""Business rules as data: what the catalog holds an entity's records to, checked on every run.

An entity's `business_rules:` (catalog/<entity>.yaml) lists plain sentences, for the people who
read the catalog, and structured rules, which the asset checks run as a great-expectations suite
over the golden records and over each system's snapshot (sync_assets/catalog/expectations.py,
checks/rules.py). A structured rule names its kind:

| kind         | fields                              | holds when                                          |
| ------------ | ----------------------------------- | --------------------------------------------------- |
| `unique`     | `attributes: [..]`                  | no two records share the value (or the combination) |
| `allowed`    | `attribute`, `values: [..]`         | the value is one of `values`                        |
| `format`     | `attribute`, `pattern`              | the value contains a match of `pattern`             |
| `range`      | `attribute`, `min` and/or `max`     | min <= value <= max (a decimal attribute)           |
| `references` | `attribute`, `entity`               | the value is the key of one of `entity`'s golden records |
| `compare`    | `left`, `operator`, `right`         | left <operator> right (< <= > >= = !=)              |

A NULL value passes every rule (`required:` on the attribute is what asks for a value); a
`compare` passes a row where either side is NULL. Each rule has a `severity` (warn, the default, or
error), which its asset check fails with. The loader (sync_assets/project/load.py) checks that
each rule names attributes and entities the catalog has, and fits their types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RuleKind = Literal["unique", "allowed", "format", "range", "references", "compare"]
RULE_KINDS: tuple[RuleKind, ...] = ("unique", "allowed", "format", "range", "references", "compare")
Severity = Literal["warn", "error"]
Operator = Literal["<", "<=", ">", ">=", "=", "!="]
OPERATORS: tuple[Operator, ...] = ("<", "<=", ">", ">=", "=", "!=")


RULE_CHECK_PREFIX = "rule_"
"""Asset checks named so run a business rule (`rule_email_unique`)."""


@dataclass(frozen=True)
class Rule:
    """One structured business rule of an entity, checked (see the module docstring)."""

    name: str
    kind: RuleKind
    attributes: tuple[str, ...]
    """The entity's attributes the rule reads: the compound for `unique`, (left, right) for
    `compare`, the one attribute for the other kinds."""
    severity: Severity = "warn"
    description: str = ""
    values: tuple[str, ...] = ()
    """`allowed`: the values the attribute may take."""
    pattern: str | None = None
    """`format`: a regular expression the value must contain a match of ([0-9] for digits)."""
    minimum: float | None = None
    """`range`: the smallest plausible value, if any."""
    maximum: float | None = None
    """`range`: the largest plausible value, if any."""
    entity: str | None = None
    """`references`: the entity whose golden records' keys the value must be one of."""
    operator: Operator | None = None
    """`compare`: how `attributes[0]` compares with `attributes[1]`."""

    @property
    def check_name(self) -> str:
        """The name of the asset check that runs the rule (beside each table it applies to)."""
        return f"{RULE_CHECK_PREFIX}{self.name}"

    @property
    def attribute(self) -> str:
        """The first (for most kinds the only) attribute the rule reads."""
        return self.attributes[0]

    def describe(self) -> str:
        """The rule in words, for the catalog's documents and the check's description."""
        a = self.attribute
        if self.kind == "unique":
            return f"{' + '.join(self.attributes)} unique"
        if self.kind == "allowed":
            return f"{a} one of {', '.join(self.values)}"
        if self.kind == "format":
            return f"{a} matches `{self.pattern}`"
        if self.kind == "range":
            low = f"{self.minimum:g} <= " if self.minimum is not None else ""
            high = f" <= {self.maximum:g}" if self.maximum is not None else ""
            return f"{low}{a}{high}"
        if self.kind == "references":
            return f"{a} is the key of a {self.entity} golden record"
        return f"{a} {self.operator} {self.attributes[1]}"
