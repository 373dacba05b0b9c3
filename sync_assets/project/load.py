"""Load a Syncfabric project folder and check it, with every problem named where it is.

    syncfabric.yaml            settings (name, reconciliation schedule and thresholds)
    catalog/<entity>.yaml      the entity: key, attributes, owners, lifecycle owner
    systems/<system>.yaml      where a system is (kind, URL variable) and how it stores entities
    contracts/<entity>.yaml    the entity's event schema versions and how older ones upcast

Each file is read as YAML (a key written twice is an error, not silently the last one), checked on
its own by its model in `files.py`, then against the others (an owner must be a system, a column
must map a catalog attribute, a vocabulary must cover every allowed value...). All problems are
collected and raised together as one `ProjectError`: file, line, field, what is wrong, the fix.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sync_assets.catalog.compatibility import DEFAULT_MODE
from sync_assets.catalog.contracts import ContractPolicy, Deprecation, PayloadVersion, Split
from sync_assets.catalog.entities import Attribute, Entity
from sync_assets.catalog.events import ACTIONS
from sync_assets.catalog.rules import Rule
from sync_assets.connectors.mappings import Field, Lookup, Mapping, SoftDelete, Stamp
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.project import files
from sync_assets.project.model import (
    AlertLimits,
    AlertSettings,
    Project,
    Settings,
    System,
    Thresholds,
)

SETTINGS_FILE = "syncfabric.yaml"
CHANGELOG = Path("contracts") / "changelog.yaml"
"""The sign-offs of the contracts (`sync_assets/govern/changelog.py`), beside them."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}; fix: {self.fix}"


class ProjectError(SyncfabricError):
    """The project's files are wrong; every problem found, each where it is."""

    def __init__(self, root: Path, problems: list[Problem]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"the Syncfabric project at {root} has {len(problems)} {noun}:\n{lines}",
            exit_code=EXIT_USAGE,
        )


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a mapping key written twice (PyYAML keeps the last silently), and
    reads only true/false as booleans, as YAML 1.2 does: `on:`, `yes`, `no` stay words."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is written twice (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class _File:
    """One YAML file: its data and its node tree, to say on which line a field is."""

    path: Path
    relative: str
    data: Any
    node: yaml.Node | None

    def line(self, *loc: str | int) -> int | None:
        node = self.node
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if part < len(node.value) else None
            else:
                node = None
            if node is None:
                break
            line = node.start_mark.line + 1
        return line


class _Collector:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def add(self, file: _File | str, loc: tuple[str | int, ...], message: str, fix: str) -> None:
        if isinstance(file, str):
            self.problems.append(Problem(file, None, ".".join(map(str, loc)), message, fix))
            return
        field = ".".join(str(p) for p in loc)
        self.problems.append(Problem(file.relative, file.line(*loc), field, message, fix))

    def read(self, path: Path) -> _File | None:
        relative = str(path.relative_to(self.root))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            self.add(
                relative, (), f"cannot be read ({type(error).__name__})", "save it as UTF-8 text"
            )
            return None
        try:
            node = yaml.compose(text, Loader=_Loader)
            data = yaml.load(text, Loader=_Loader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            line = mark.line + 1 if mark is not None else None
            problem = f"{error.problem or error.context}".strip()
            self.problems.append(
                Problem(relative, line, "", f"is not valid YAML: {problem}", "correct the YAML")
            )
            return None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.add(relative, (), "must hold a mapping of fields", "see examples/demo/")
            return None
        return _File(path, relative, data, node)

    def model(self, file: _File, model: type[M]) -> M | None:
        try:
            return model.model_validate(file.data)
        except ValidationError as error:
            errors = error.errors()
            for e in errors:
                loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
                if e["type"] == "too_short" and _inside(e["loc"], errors):
                    continue  # pydantic counts only the valid items: its item's error says it
                message, fix = _explain(e, model)
                self.add(file, loc, message, fix)
            return None


def _inside(loc: tuple[Any, ...], errors: list[Any]) -> bool:
    """Whether another error is about an item inside `loc`."""
    return any(len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors)


def _explain(error: Any, model: type[BaseModel]) -> tuple[str, str]:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "is not a field Syncfabric knows", "remove it or correct its spelling"
    if kind == "missing":
        return "is required and missing", "add it (see examples/demo/ for one written out)"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        if pattern == files.NAME_PATTERN:
            return (
                f"{error['input']!r} is not a valid name",
                "use lower case letters, digits and _, starting with a letter",
            )
        if pattern == files.KEY_ENV_PATTERN:
            return (
                f"{error['input']!r} is not a signing key variable's name",
                "use upper case letters, digits and _, ending in _KEY (so the key is redacted "
                "everywhere), e.g. SYNCFABRIC_CRM_SIGNING_KEY",
            )
        if pattern == files.URL_ENV_PATTERN:
            return (
                f"{error['input']!r} is not a URL variable's name",
                "use upper case letters, digits and _, ending in _URL (so its password is "
                "redacted everywhere), e.g. SYNCFABRIC_CRM_WRITE_URL",
            )
        return (
            f"{error['input']!r} is not a valid environment variable name",
            "use upper case letters, digits and _, e.g. SYNCFABRIC_CRM_URL",
        )
    if kind == "identifier":
        return message, (
            "name it with letters, digits and _ (words may be separated by single spaces), "
            f"starting with a letter or _, at most {files.IDENTIFIER_MAX} characters; rename "
            "the table or column in the system if it has another name"
        )
    if kind == "literal_error":
        return f"{error['input']!r} is not allowed", message.replace("Input should be", "use")
    if kind == "value_error":
        text = message.removeprefix("Value error, ")
        return text, "correct the regular expression"
    return message, "correct the value"


def _load_folder(
    c: _Collector, folder: Path, model: type[M], *, besides: str | None = None
) -> tuple[dict[str, tuple[_File, M]], set[str]]:
    """Every `<name>.yaml` of a folder read and checked by its model: those that loaded, and the
    names of all found (a `.yml` is reported as ignored). `besides` names a file of another kind
    that lives there too (the contracts' change log)."""
    loaded: dict[str, tuple[_File, M]] = {}
    found: set[str] = set()
    if not folder.is_dir():
        return loaded, found
    for path in sorted(folder.iterdir()):
        if path.suffix == ".yml":
            c.add(
                str(path.relative_to(c.root)),
                (),
                "is ignored: project files end in .yaml",
                f"rename it to {path.stem}.yaml",
            )
        elif path.suffix == ".yaml" and path.is_file() and path.name != besides:
            found.add(path.stem)
            if (f := c.read(path)) and (checked := c.model(f, model)):
                loaded[path.stem] = (f, checked)
    return loaded, found


def load_project(root: Path | str) -> Project:
    """The project at `root`, checked; a ProjectError naming every problem otherwise."""
    root = Path(root).resolve()
    settings_path = root / SETTINGS_FILE
    if not settings_path.is_file():
        raise SyncfabricError(
            f"no Syncfabric project at {root}: it has no {SETTINGS_FILE}. Point --project or "
            "SYNCFABRIC_PROJECT at the project folder, or create one with `syncctl init DIR` "
            "(the demo's is examples/demo).",
            exit_code=EXIT_USAGE,
        )
    c = _Collector(root)
    settings_file = c.read(settings_path)
    settings = c.model(settings_file, files.SettingsFile) if settings_file else None

    systems, system_files = _load_folder(c, root / "systems", files.SystemFile)
    entities, entity_files = _load_folder(c, root / "catalog", files.EntityFile)
    contracts, _ = _load_folder(c, root / "contracts", files.ContractFile, besides=CHANGELOG.name)

    _check_names(c, systems, "systems")
    _check_names(c, entities, "catalog")
    if CHANGELOG.stem in entities:
        c.add(
            entities[CHANGELOG.stem][0],
            (),
            f"the entity name {CHANGELOG.stem!r} is taken: contracts/{CHANGELOG.name} is the "
            "change log of the contracts",
            "name the entity otherwise",
        )
    # Files that exist but did not load: named by their own problems, not again by every
    # reference to them.
    broken_systems = system_files - set(systems)
    broken_entities = entity_files - set(entities)
    if not systems and not any(p.file.startswith("systems/") for p in c.problems):
        c.add(
            "systems/", (), "holds no system", "add systems/<system>.yaml (syncctl init writes one)"
        )
    if not entities and not any(p.file.startswith("catalog/") for p in c.problems):
        c.add(
            "catalog/", (), "holds no entity", "add catalog/<entity>.yaml (syncctl init writes one)"
        )
    system_order = _system_order(c, settings_file, settings, systems, broken_systems)
    known_systems = set(systems) | broken_systems
    built_entities = {
        name: _entity(c, name, f, m, systems, known_systems) for name, (f, m) in entities.items()
    }
    for name, (f, m) in entities.items():
        rules = _rules(c, f, built_entities[name], m, built_entities, broken_entities)
        built_entities[name] = dataclasses.replace(built_entities[name], rules=rules)
    mappings = {}
    for system in system_order:
        f, system_file = systems[system]
        for entity_name, mapping_file in system_file.entities.items():
            entity = built_entities.get(entity_name)
            if entity is None and entity_name in broken_entities:
                continue
            if entity is None:
                c.add(
                    f,
                    ("entities", entity_name),
                    f"maps entity {entity_name!r}, which the catalog does not have",
                    f"add catalog/{entity_name}.yaml, or use one of: {_names(built_entities)}",
                )
                continue
            mappings[system, entity_name] = _mapping(c, f, system, entity, mapping_file)
    for entity in built_entities.values():
        if (
            entity.lifecycle_owner in systems
            and (entity.lifecycle_owner, entity.name) not in mappings
        ):
            f, _ = entities[entity.name]
            c.add(
                f,
                ("lifecycle_owner",),
                f"{entity.lifecycle_owner} owns the lifecycle of {entity.name} but maps no table for it",
                f"add entities.{entity.name} to systems/{entity.lifecycle_owner}.yaml",
            )
    payload_versions = {}
    policies = {}
    for name, (f, contract_file) in contracts.items():
        if name in broken_entities:
            continue
        if name not in built_entities:
            c.add(
                f,
                (),
                f"is the contract of {name!r}, which the catalog does not have",
                f"rename it after one of: {_names(built_entities)}",
            )
            continue
        payload_versions.update(_versions(c, f, built_entities[name], contract_file))
        policies[name] = _policy(c, f, built_entities[name], contract_file)
    for name, entity in built_entities.items():
        if name not in contracts:  # no history yet: version 1 carries every attribute as named
            payload_versions[name, 1] = PayloadVersion(
                entity, 1, {a: a for a in entity.attribute_names}
            )
            policies[name] = ContractPolicy({a: DEFAULT_MODE for a in ACTIONS})
    if (
        settings is not None
        and settings.seed
        and not (root / settings.seed / "__init__.py").is_file()
    ):
        c.add(
            settings_file or SETTINGS_FILE,
            ("seed",),
            f"{settings.seed}/__init__.py does not exist",
            "name a Python package in the project folder, or remove seed:",
        )
    _check_channels(c, {name: systems[name] for name in system_order})
    if settings is not None:
        for name in settings.alerts.systems:
            if name not in systems and name not in broken_systems:
                c.add(
                    settings_file or SETTINGS_FILE,
                    ("alerts", "systems", name),
                    f"sets alert limits for {name!r}, which is no system of the project",
                    f"use one of: {_names(systems)}",
                )
    if c.problems or settings is None:
        raise ProjectError(root, c.problems)
    return Project(
        root=root,
        settings=Settings(
            name=settings.name,
            description=settings.description,
            schedule=settings.reconcile.schedule,
            thresholds=Thresholds(settings.reconcile.error_rate, settings.reconcile.error_floor),
            alerts=_alert_settings(settings.alerts),
            seed=settings.seed,
        ),
        systems={name: _system(name, systems[name][1]) for name in system_order},
        entities=built_entities,
        mappings=mappings,
        payload_versions=dict(sorted(payload_versions.items())),
        contract_policies=policies,
    )


def _alert_settings(m: files.AlertsSettings) -> AlertSettings:
    """The alerts' limits: syncfabric.yaml's over the built-in ones, a system's over those."""

    def given(limits: files.AlertLimitsFile) -> dict[str, Any]:
        return {k: v for k, v in limits.model_dump().items() if v is not None}

    defaults = AlertLimits(**{k: v for k, v in given(m).items() if k in _LIMIT_FIELDS})
    return AlertSettings(
        defaults=defaults,
        systems={
            name: dataclasses.replace(defaults, **given(limits))
            for name, limits in m.systems.items()
        },
        correlation_ids=m.correlation_ids,
    )


_LIMIT_FIELDS = set(files.AlertLimitsFile.model_fields)


def _system(name: str, m: files.SystemFile) -> System:
    return System(
        name,
        m.kind,
        m.url_env,
        m.description,
        write_url_env=m.write_url_env,
        delivery=m.delivery.model_dump(),
        landing=m.channels.landing or name,
        signing_key_env=m.signing.key_env if m.signing else None,
        outbox=m.channels.outbox.table if m.channels.outbox else None,
    )


def _check_channels(c: _Collector, systems: dict[str, tuple[_File, files.SystemFile]]) -> None:
    """Each channel is bound to exactly one system: a landing folder two systems name would let
    either speak for the other. Reported where a file names the folder (`channels.landing`)."""
    bound: dict[str, list[str]] = {}
    for name, (f, m) in systems.items():
        bound.setdefault(m.channels.landing or name, []).append(name)
        if m.channels.outbox and m.kind != "sql":
            c.add(
                f,
                ("channels", "outbox"),
                f"an outbox is a table in the system's own database; {name} is kind {m.kind}",
                "remove channels.outbox, or give it to a SQL system",
            )
    for folder, names in bound.items():
        for name in names:
            f, m = systems[name]
            if len(names) > 1 and m.channels.landing:
                others = ", ".join(n for n in names if n != name)
                c.add(
                    f,
                    ("channels", "landing"),
                    f"landing/{folder}/ is also the channel of {others}; a channel speaks for "
                    "one system only",
                    f"name a folder no other system uses (by default its own name, {name})",
                )


def _names(found: dict[str, Any]) -> str:
    return ", ".join(sorted(found)) or "(none yet)"


def _check_names(c: _Collector, found: dict[str, Any], folder: str) -> None:
    for name in list(found):
        if not re.fullmatch(files.NAME_PATTERN, name):
            c.add(
                f"{folder}/{name}.yaml",
                (),
                f"{name!r} is not a valid name",
                "rename the file in lower case letters, digits and _",
            )
            del found[name]


def _system_order(
    c: _Collector, settings_file: _File | None, settings: Any, systems: dict, broken: set[str]
) -> list[str]:
    declared = settings.systems if settings is not None and settings.systems else None
    if declared is None:
        return sorted(systems)
    assert settings_file is not None
    for i, name in enumerate(declared):
        if name not in systems and name not in broken:
            c.add(
                settings_file,
                ("systems", i),
                f"{name!r} has no systems/{name}.yaml",
                f"add it, or remove it from the list ({_names(systems)})",
            )
    for name in systems:
        if name not in declared:
            c.add(
                settings_file,
                ("systems",),
                f"systems/{name}.yaml is not in the list",
                f"add {name} to systems:",
            )
    return [name for name in declared if name in systems]


def _entity(
    c: _Collector, name: str, f: _File, m: files.EntityFile, systems: dict, known: set[str]
) -> Entity:
    def owner(loc: tuple[str | int, ...], system: str) -> None:
        if system not in known:
            c.add(
                f,
                loc,
                f"{system!r} is no system of the project",
                f"use one of: {_names(systems)}, or add systems/{system}.yaml",
            )

    owner(("lifecycle_owner",), m.lifecycle_owner)
    attributes = []
    for attr_name, a in m.attributes.items():
        loc: tuple[str | int, ...] = ("attributes", attr_name)
        owner((*loc, "owner"), a.owner)
        if attr_name == m.key:
            c.add(
                f,
                loc,
                f"{attr_name!r} is the entity's key, not an attribute",
                "remove it from attributes: the key is in `subject`",
            )
        if a.type == "enum" and not a.allowed:
            c.add(f, (*loc, "allowed"), "an enum needs its allowed values", "list them in allowed:")
        if a.allowed and a.type not in ("enum", "string"):
            c.add(
                f,
                (*loc, "allowed"),
                f"allowed values go with type enum, not {a.type}",
                "use type: enum, or remove allowed:",
            )
        if len(set(a.allowed)) != len(a.allowed):
            c.add(f, (*loc, "allowed"), "lists a value twice", "list each value once")
        attributes.append(
            Attribute(
                attr_name, a.type, owner=a.owner, description=a.description, required=a.required,
                allowed=a.allowed, pattern=a.pattern, minimum=a.minimum, pii=a.pii,
                compare=a.compare, tolerance=a.tolerance, timestamp_precision=a.timestamp_precision,
            )
        )  # fmt: skip
    return Entity(
        name=name,
        key=m.key,
        key_pattern=m.key_pattern,
        lifecycle_owner=m.lifecycle_owner,
        consumers=m.consumers,
        description=m.description,
        attributes=tuple(attributes),
        on_undeliverable=m.on_undeliverable,
        business_rules=tuple(rule for rule in m.business_rules if isinstance(rule, str)),
    )


_RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "unique": ("attributes",),
    "allowed": ("attribute", "values"),
    "format": ("attribute", "pattern"),
    "range": ("attribute",),
    "references": ("attribute", "entity"),
    "compare": ("left", "operator", "right"),
}
"""The fields each kind of rule needs (a range needs min, max or both besides)."""
_EVERY_RULE = ("name", "kind", "severity", "description")
_COMPARABLE = {"string": "text", "enum": "text", "decimal": "number", "timestamp": "time"}
"""Attribute types a `compare` rule may put side by side: the same family on both sides."""


def _rules(
    c: _Collector,
    f: _File,
    entity: Entity,
    m: files.EntityFile,
    entities: dict[str, Entity],
    broken: set[str],
) -> tuple[Rule, ...]:
    """The entity's structured business rules, each checked against the catalog: the fields of
    its kind, attributes the entity has and of a type the rule fits, an entity that exists."""
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, r in enumerate(m.business_rules):
        if isinstance(r, str):
            continue
        loc: tuple[str | int, ...] = ("business_rules", i)
        problems = len(c.problems)
        if r.name in seen:
            c.add(f, (*loc, "name"), f"a rule {r.name!r} is declared twice", "name each rule once")
        seen.add(r.name)
        takes = _RULE_FIELDS[r.kind] + (("min", "max") if r.kind == "range" else ())
        for extra in sorted(r.model_fields_set - set(takes) - set(_EVERY_RULE)):
            c.add(
                f,
                (*loc, extra),
                f"is not a field of a rule of kind {r.kind}",
                f"remove it; a rule of kind {r.kind} takes {', '.join(takes)}",
            )
        for needed in _RULE_FIELDS[r.kind]:
            if needed not in r.model_fields_set:
                c.add(f, loc, f"a rule of kind {r.kind} needs {needed}:", f"add {needed}:")
        if r.kind == "range" and r.min is None and r.max is None:
            c.add(f, loc, "a range rule needs min:, max: or both", "add the plausible bounds")
        if r.kind == "range" and r.min is not None and r.max is not None and r.min > r.max:
            c.add(f, (*loc, "min"), f"min {r.min:g} is above max {r.max:g}", "swap them")
        if r.kind == "allowed" and "values" in r.model_fields_set and not r.values:
            c.add(f, (*loc, "values"), "lists no value", "list the values the attribute may take")
        if r.kind == "unique" and "attributes" in r.model_fields_set and not r.attributes:
            c.add(f, (*loc, "attributes"), "lists no attribute", "list one attribute, or several")
        named: list[tuple[tuple[str | int, ...], str | None]] = (
            [((*loc, "attributes", j), a) for j, a in enumerate(r.attributes)]
            if r.kind == "unique"
            else [((*loc, side), getattr(r, side)) for side in ("left", "right")]
            if r.kind == "compare"
            else [((*loc, "attribute"), r.attribute)]
        )
        attributes = []
        for where, name in named:
            if name is None:
                continue  # missing: said above
            if name not in entity.attribute_names:
                c.add(
                    f,
                    where,
                    f"{entity.name} has no attribute {name!r}",
                    f"use one of: {', '.join(entity.attribute_names)}",
                )
                continue
            attributes.append(entity.attribute(name))
        if named and len(attributes) == len(named):
            _check_rule_types(c, f, loc, r, attributes)
        unknown = r.entity is not None and r.entity not in entities and r.entity not in broken
        if r.kind == "references" and unknown:
            c.add(
                f,
                (*loc, "entity"),
                f"{r.entity!r} is no entity of the catalog",
                f"use one of: {_names(entities)}, or add catalog/{r.entity}.yaml",
            )
        if len(c.problems) > problems:
            continue
        rules.append(
            Rule(
                name=r.name, kind=r.kind, attributes=tuple(a.name for a in attributes),
                severity=r.severity, description=r.description, values=r.values,
                pattern=r.pattern, minimum=r.min, maximum=r.max, entity=r.entity,
                operator=r.operator,
            )
        )  # fmt: skip
    return tuple(rules)


def _check_rule_types(
    c: _Collector, f: _File, loc: tuple[str | int, ...], r: files.RuleFile, attributes: list
) -> None:
    """Whether the rule fits its attributes' types: text for allowed, format and references,
    a decimal for a range, the same family on both sides of a compare."""
    first = attributes[0]
    text = ("string", "enum")
    if r.kind in ("allowed", "format", "references") and first.type not in text:
        c.add(
            f,
            (*loc, "attribute"),
            f"a rule of kind {r.kind} reads text, and {first.name} is a {first.type}",
            "name a string or enum attribute",
        )
    if r.kind == "range" and first.type != "decimal":
        c.add(
            f,
            (*loc, "attribute"),
            f"a range rule reads numbers, and {first.name} is a {first.type}",
            "name a decimal attribute",
        )
    if r.kind == "compare":
        left, right = attributes
        families = {_COMPARABLE.get(left.type, left.type), _COMPARABLE.get(right.type, right.type)}
        if len(families) > 1:
            c.add(
                f,
                (*loc, "right"),
                f"{left.name} is a {left.type} and {right.name} a {right.type}: they do not compare",
                "compare two text, two decimal or two timestamp attributes",
            )
        elif "boolean" in families and r.operator not in ("=", "!="):
            c.add(
                f,
                (*loc, "operator"),
                f"booleans cannot be ranked, so {r.operator} does not apply",
                "use = or !=",
            )


def _mapping(c: _Collector, f: _File, system: str, entity: Entity, m: files.MappingFile) -> Mapping:
    base: tuple[str | int, ...] = ("entities", entity.name)
    fields = []
    for attr_name, spec in m.columns.items():
        loc = (*base, "columns", attr_name)
        if attr_name not in entity.attribute_names:
            c.add(
                f,
                loc,
                f"{entity.name} has no attribute {attr_name!r}",
                f"use one of: {', '.join(entity.attribute_names)}, or add it to catalog/{entity.name}.yaml",
            )
            continue
        column = spec
        if (column.column is None) == (column.lookup is None):
            c.add(f, loc, "names neither or both of column: and lookup:", "give exactly one")
            continue
        if column.rule == "timestamp" and not column.format:
            c.add(
                f,
                (*loc, "format"),
                "a timestamp rule needs the column's format",
                "add format: in strptime form, e.g. '%d/%m/%Y %H:%M'",
            )
        if (column.rule == "vocabulary") != bool(column.vocabulary):
            c.add(
                f,
                (*loc, "vocabulary"),
                "vocabulary: goes with rule: vocabulary",
                "give both, or neither",
            )
        if column.vocabulary:
            _check_vocabulary(c, f, loc, entity.attribute(attr_name), column.vocabulary)
        source: str | Lookup = (
            Lookup(column.lookup.table, dict(column.lookup.on), column.lookup.value)
            if column.lookup
            else str(column.column)
        )
        vocabulary = {
            word: (value if isinstance(value, str) else tuple(value))
            for word, value in column.vocabulary.items()
        }
        fields.append(
            Field(attr_name, source, column.rule, column.format, vocabulary, column.style)
        )
    mapped = {f_.attribute for f_ in fields}
    for i, name in enumerate(m.scope):
        if name not in mapped:
            c.add(
                f,
                (*base, "scope", i),
                f"{name!r} is not a column this system maps",
                f"use one of: {', '.join(sorted(mapped))}",
            )
    soft = m.soft_delete
    return Mapping(
        system=system,
        entity=entity.name,
        table=m.table,
        key=m.key,
        canonical_key=Field(entity.key, m.canonical_key),
        fields=tuple(fields),
        soft_delete=SoftDelete(soft.column, soft.value, soft.live) if soft else None,
        scope=m.scope,
        stamps=tuple(Stamp(s.column, s.format, s.on) for s in m.stamps),
        schema=m.schema_,
        description=m.description,
    )


def _check_vocabulary(
    c: _Collector, f: _File, loc: tuple[str | int, ...], attribute: Attribute, vocabulary: dict
) -> None:
    reached: set[str] = set()
    for word, value in vocabulary.items():
        values = (value,) if isinstance(value, str) else tuple(value)
        for v in values:
            if attribute.allowed and v not in attribute.allowed:
                c.add(
                    f,
                    (*loc, "vocabulary", word),
                    f"{v!r} is not an allowed {attribute.name}",
                    f"use one of: {', '.join(attribute.allowed)}",
                )
        reached.update(values)
    missed = [v for v in attribute.allowed if v not in reached]
    if missed:
        c.add(
            f,
            (*loc, "vocabulary"),
            f"no word of the system stands for {', '.join(missed)}",
            "add the system's word for each, or list it with the words that stand for several",
        )


def _versions(
    c: _Collector, f: _File, entity: Entity, m: files.ContractFile
) -> dict[tuple[str, int], PayloadVersion]:
    found: dict[tuple[str, int], PayloadVersion] = {}
    previous = 0
    for i, v in enumerate(m.versions):
        loc: tuple[str | int, ...] = ("versions", i)
        if v.version <= previous:
            c.add(
                f,
                (*loc, "version"),
                f"version {v.version} comes after {previous}",
                "list versions once each, oldest first",
            )
            continue
        previous = v.version
        if i == len(m.versions) - 1 and (v.renamed or v.absent):
            c.add(
                f,
                loc,
                "the current (last) version carries every attribute as named",
                "add a new version without renamed:/absent:, or move them to an older one",
            )
        for field_name, attr in v.renamed.items():
            if attr not in entity.attribute_names:
                c.add(
                    f,
                    (*loc, "renamed", field_name),
                    f"{entity.name} has no attribute {attr!r}",
                    f"use one of: {', '.join(entity.attribute_names)}",
                )
            if field_name in entity.attribute_names:
                c.add(
                    f,
                    (*loc, "renamed", field_name),
                    f"{field_name!r} is an attribute's own name",
                    "rename to a field the version used",
                )
        for j, attr in enumerate(v.absent):
            if attr not in entity.attribute_names:
                c.add(
                    f,
                    (*loc, "absent", j),
                    f"{entity.name} has no attribute {attr!r}",
                    f"use one of: {', '.join(entity.attribute_names)}",
                )
        if v.retired and i == len(m.versions) - 1:
            c.add(
                f,
                (*loc, "retired"),
                "the current (last) version cannot be retired",
                "add the version that replaces it first",
            )
        by_attribute = {attr: name for name, attr in v.renamed.items()}
        fields = {by_attribute.get(a, a): a for a in entity.attribute_names if a not in v.absent}
        overrides = {}
        splits = {}
        for field_name, split in v.split.items():
            joined = _split_field(c, f, (*loc, "split", field_name), entity, field_name, split)
            if joined is None:
                continue
            for part in split.into:
                fields.pop(by_attribute.get(part, part), None)
            fields[field_name] = field_name
            overrides[field_name] = joined
            splits[field_name] = Split(split.into, split.separator)
        for attr, override in v.overrides.items():
            if attr not in fields.values():
                c.add(
                    f,
                    (*loc, "overrides", attr),
                    f"version {v.version} does not carry {attr!r}",
                    f"override one of: {', '.join(fields.values())}",
                )
                continue
            changed = override.model_dump(exclude_none=True)
            overrides[attr] = dataclasses.replace(entity.attribute(attr), **changed)
        for attr, value in v.defaults.items():
            if attr not in fields.values():
                c.add(
                    f,
                    (*loc, "defaults", attr),
                    f"version {v.version} does not carry {attr!r}",
                    "declare a default in the version that carries the attribute",
                )
                continue
            problem = _default_problem(overrides.get(attr) or entity.attribute(attr), value)
            if problem:
                c.add(f, (*loc, "defaults", attr), problem, "give a value the attribute can hold")
        found[entity.name, v.version] = PayloadVersion(
            entity, v.version, fields, overrides, dict(v.defaults), v.retired, splits
        )
    for attr in m.deprecated:
        if attr not in entity.attribute_names:
            c.add(
                f,
                ("deprecated", attr),
                f"{entity.name} has no attribute {attr!r}",
                f"use one of: {', '.join(entity.attribute_names)}",
            )
    return found


def _split_field(
    c: _Collector,
    f: _File,
    loc: tuple[str | int, ...],
    entity: Entity,
    field_name: str,
    split: files.SplitFile,
) -> Attribute | None:
    """The text attribute a split field is validated as (required when a part is, PII when a
    part is), or None after naming what is wrong with the split."""
    problems = []
    if field_name in entity.attribute_names:
        problems.append(
            (f"{field_name!r} is an attribute's own name", "split a field the version used")
        )
    for part in split.into:
        if part not in entity.attribute_names:
            problems.append((f"{entity.name} has no attribute {part!r}", "split into attributes"))
        elif entity.attribute(part).type != "string":
            problems.append((f"{part!r} is not a string attribute", "split text into text only"))
    if len(set(split.into)) != len(split.into):
        problems.append(("an attribute appears twice in into", "name each part once"))
    for message, fix in problems:
        c.add(f, loc, message, fix)
    if problems:
        return None
    parts = [entity.attribute(p) for p in split.into]
    return Attribute(
        name=field_name,
        type="string",
        owner=parts[0].owner,
        description=f"{', '.join(split.into)} joined by {split.separator!r}",
        required=any(p.required for p in parts),
        pii=any(p.pii for p in parts),
    )


def _default_problem(attribute: Attribute, value: object) -> str | None:
    """Why `value` cannot be the attribute's default (None when it can)."""
    if attribute.type == "boolean" and not isinstance(value, bool):
        return f"the default of boolean {attribute.name!r} must be true or false, not {value!r}"
    if attribute.type == "decimal" and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        return f"the default of decimal {attribute.name!r} must be a number, not {value!r}"
    if attribute.type in ("string", "enum", "timestamp") and not isinstance(value, str):
        return f"the default of {attribute.type} {attribute.name!r} must be text, not {value!r}"
    if attribute.allowed and value not in attribute.allowed:
        return f"the default {value!r} is not one of {', '.join(attribute.allowed)}"
    return None


def _policy(c: _Collector, f: _File, entity: Entity, m: files.ContractFile) -> ContractPolicy:
    if m.approvals_required and not entity.consumers:
        c.add(
            f,
            ("approvals_required",),
            f"the catalog lists no consumers of {entity.name} to approve a change",
            f"list them under consumers: in catalog/{entity.name}.yaml",
        )
    by_action: dict[str, str] = {str(a): mode for a, mode in m.compatibility_by_action.items()}
    return ContractPolicy(
        compatibility={a: by_action.get(a, m.compatibility) for a in ACTIONS},
        approvers=entity.consumers if m.approvals_required else (),
        deprecated=tuple(
            Deprecation(attr, d.removal_version, d.after, d.note)
            for attr, d in m.deprecated.items()
        ),
    )
