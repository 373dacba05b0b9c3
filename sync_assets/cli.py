"""`syncctl`: the command line for the data team, on-call and CI.

Every command works on the data folder named by SYNCFABRIC_HOME (`.syncfabric/` by default).
Heavy imports (dagster, pandera) happen inside the commands that need them.

A command that writes the data folder holds it (`@writes_data_folder`): one syncctl at a time,
a second one waits `--wait` seconds and then says who holds it (exit 75). A situation the operator
can act on raises `SyncfabricError`; the main group prints its message alone and exits with its
code (`-v` adds the traceback, and Dagster's own logs).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sync_assets.errors import SyncfabricError
from sync_assets.operate.console import CONSOLE
from sync_assets.project.active import PROJECT_ENV
from sync_assets.security.redact import redact_error, redact_text
from sync_assets.settings import DataFolder, max_clock_skew


def _folder() -> DataFolder:
    """The data folder; an error naming the path when there is none (only `demo` makes one), or
    when it belongs to another project."""
    from sync_assets.project.active import bind

    folder = DataFolder.from_env().require()
    bind(folder, record=False)
    return folder


class _Syncctl(click.Group):
    """The main group: an operator's error is its message on stderr and its exit code; a bug's
    traceback is printed as Python would, exit 1. Both redacted: no secret of the environment
    reaches the console (sync_assets/security/redact.py)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except SyncfabricError as error:
            if CONSOLE.verbose:
                traceback.print_exception(redact_error(error))
            click.echo(redact_text(error.message), err=True)
            ctx.exit(error.exit_code)
        except Exception as error:
            traceback.print_exception(redact_error(error))
            ctx.exit(1)


@click.group(cls=_Syncctl)
@click.option(
    "-v", "--verbose", is_flag=True, help="Show tracebacks and Dagster's own logs on the console."
)
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=str),
    help="The project folder (syncfabric.yaml, catalog/, systems/, contracts/).  "
    "[default: $SYNCFABRIC_PROJECT, else the current directory]",
)
def main(verbose: bool, project_dir: str | None) -> None:
    """Keep business systems in sync: ingest change events, keep golden records."""
    CONSOLE.configure(verbose=verbose)
    max_clock_skew()  # a bad setting stops every command at once, not each batch later
    if project_dir is not None:
        os.environ[PROJECT_ENV] = os.path.abspath(project_dir)  # for the processes it starts too


_wait_option = click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="If another syncctl holds the data folder, wait this long for it to finish.",
)


def writes_data_folder(command: Callable[..., Any]) -> Callable[..., Any]:
    """For a command that writes the data folder: hold the folder's lock while it runs (one
    syncctl at a time; the kernel frees it if the process dies), waiting up to `--wait` seconds
    for another holder. Put it under `@main.command()`."""
    from sync_assets.operate.lock import hold

    @_wait_option
    @functools.wraps(command)
    def holding(*args: Any, wait_s: float, **kwargs: Any) -> Any:
        name = click.get_current_context().info_name or command.__name__
        with hold(_folder(), name, wait_s=wait_s, on_wait=_say_waiting):
            return command(*args, **kwargs)

    return holding


def _say_waiting(holder: Any) -> None:
    who = holder.describe() if holder else "another process"
    click.echo(f"waiting for {who} to release the data folder", err=True)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--force", is_flag=True, help="Build new example data even if some exists.")
@_wait_option
@click.pass_context
def demo(ctx: click.Context, force: bool, wait_s: float) -> None:
    """Build the project's example data (its `seed:`) in the data folder if there is none.

    Other options go to the project's seed; the demo's: --customers N, --orders N, --seed N,
    --drift N (rows changed by hand in systems that do not own them).
    """
    from sync_assets.operate.lock import hold
    from sync_assets.project import current
    from sync_assets.project.active import bind
    from sync_assets.project.seed import load_seed

    seed = load_seed(current())
    folder = DataFolder.from_env()  # the one command that may create the data folder
    folder.root.mkdir(parents=True, exist_ok=True)
    with hold(folder, "demo", wait_s=wait_s, on_wait=_say_waiting):
        bind(folder)
        if seed.exists(folder) and not force:
            click.echo(f"example data already in {folder.root}; leaving it as it is")
            return
        click.echo(seed.build(folder, list(ctx.args)))


@main.command()
@click.option(
    "--connect",
    is_flag=True,
    help="Also look at every system, read-only: tables and columns exist, rows in each.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(connect: bool, as_json: bool) -> None:
    """Check the project's files (and, with --connect, its systems); exit 2 on a file problem,
    1 on a system problem."""
    from sync_assets.connectors.probe import probe_project
    from sync_assets.project import current

    project = current()  # a ProjectError names every problem, file and line
    result: dict[str, Any] = {
        "project": project.name,
        "root": str(project.root),
        "entities": list(project.entities),
        "systems": list(project.system_names),
        "mappings": [f"{s}.{e}" for s, e in project.mappings],
        "schema_versions": [f"{e}/v{v}" for e, v in project.payload_versions],
    }
    probes = probe_project(project, DataFolder.from_env()) if connect else []
    result["probes"] = [
        {"system": p.system, "entity": p.entity, "table": p.table, "rows": p.rows,
         "problems": p.problems}
        for p in probes
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"project {project.name} at {project.root}: {len(project.entities)} entities, "
            f"{len(project.systems)} systems, {len(project.mappings)} mappings, "
            f"{len(project.payload_versions)} schema versions: the files are valid"
        )
        for p in probes:
            rows = f"{p.rows:>10,} rows" if p.rows is not None else " " * 15
            click.echo(
                f"{p.system:<14} {p.entity:<14} {p.table:<20} {rows}  {'ok' if p.ok else 'PROBLEM'}"
            )
            for problem in p.problems:
                click.echo(f"    {problem}")
    if any(not p.ok for p in probes):
        sys.exit(1)


@main.command()
@click.option("--system", required=True, help="The system's name, as in systems/<NAME>.yaml.")
@click.option("--reader", help="The read-only role.  [default: syncfabric_<SYSTEM>_reader]")
@click.option("--writer", help="The writer role.  [default: syncfabric_<SYSTEM>_writer]")
@click.option(
    "--dialect",
    type=click.Choice(["postgresql", "mariadb", "mysql"]),
    help="The server's SQL.  [default: from the system's URL in the environment]",
)
@click.option(
    "--schema",
    help="Where unqualified names are: PostgreSQL's schema (default public), MariaDB/MySQL's "
    "database (default: the URL's).",
)
@click.option(
    "--host",
    default="%",
    show_default=True,
    help="MariaDB/MySQL: where the two logins connect from.",
)
def grants(
    system: str,
    reader: str | None,
    writer: str | None,
    dialect: str | None,
    schema: str | None,
    host: str,
) -> None:
    """Print the SQL an administrator runs for SYSTEM: the bookkeeping tables, a reader role that
    can only SELECT the mapped columns, a writer role limited to the mapped tables."""
    from sync_assets.connectors.grants import system_grants
    from sync_assets.project import current

    script = system_grants(
        current(), system, dialect=dialect, reader=reader, writer=writer, host=host, schema=schema
    )
    click.echo(script, nl=False)


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write README.md, a page per entity and catalog.html into this folder.",
)
def catalog(out: str | None) -> None:
    """The project's catalog for people: systems, entities, attributes, owners, rules, PII, the
    column each system keeps them in, the event versions and their change log; Markdown on the
    terminal, or a folder of pages and one static HTML page with --out."""
    from pathlib import Path

    from sync_assets.govern import changelog
    from sync_assets.govern.docs import HTML_PAGE, catalog_html, catalog_markdown, catalog_pages
    from sync_assets.project import current

    project = current()
    signoffs = changelog.read(project.root)
    if not out:
        click.echo(catalog_markdown(project, signoffs), nl=False)
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    pages = catalog_pages(project, signoffs)
    pages[HTML_PAGE] = catalog_html(project, signoffs)
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    click.echo(f"catalog written to {folder}: {', '.join(pages)}")


@main.command()
@click.argument("target", required=False, metavar="[ENTITY[.ATTRIBUTE]]")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage as JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the lineage as one self-contained HTML page to this file.",
)
def lineage(target: str | None, as_json: bool, html_path: str | None) -> None:
    """Column lineage of an attribute (customer.email), of every attribute of an entity
    (customer), or of the whole project: the system columns it comes from, through the
    snapshots, events and golden record, to the corrections and the system columns they write."""
    from pathlib import Path

    from sync_assets.govern.lineage import build_lineage, select
    from sync_assets.govern.lineage_docs import lineage_json, lineage_page, lineage_text
    from sync_assets.project import current

    project = current()
    found = select(build_lineage(project), project, target)
    if html_path:
        Path(html_path).write_text(lineage_page(project, target), encoding="utf-8")
        click.echo(f"lineage of {len(found)} attribute(s) written to {html_path}")
    elif as_json:
        click.echo(json.dumps(lineage_json(project, found), indent=2))
    else:
        click.echo(lineage_text(found), nl=False)


@main.group()
def schema() -> None:
    """The schema registry: every event type's versions against the signed-off change log
    (contracts/changelog.yaml)."""


@schema.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print every subject's verdict as JSON.")
def schema_check(as_json: bool) -> None:
    """Compares the contracts with the last approved ones: per event type, the verdict and each
    incompatible change in words. Exits 1 on an incompatible or unapproved change."""
    from datetime import UTC, datetime

    from sync_assets.govern import changelog, deprecation, registry
    from sync_assets.project import current

    project = current()
    verdicts = registry.judge(project, changelog.read(project.root))
    deprecations = deprecation.judge(
        project, datetime.now(UTC).date(), _deprecated_senders(project)
    )
    ok = all(v.ok for v in verdicts) and all(d.ok for d in deprecations)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": ok,
                    "subjects": [v.to_json() for v in verdicts],
                    "deprecations": [d.to_json() for d in deprecations],
                },
                indent=2,
            )
        )
    else:
        for verdict in verdicts:
            click.echo(_verdict_text(verdict))
        for d in deprecations:
            click.echo(d.text)
        waiting = [v.subject.name for v in verdicts if not v.ok]
        click.echo(
            f"{len(verdicts) - len(waiting)} of {len(verdicts)} event types approved"
            + (f"; not landing: {', '.join(waiting)}" if waiting else "")
        )
    if not ok:
        sys.exit(1)


def _deprecated_senders(project: Any) -> dict[tuple[str, str], dict[str, int]] | None:
    """Who still sends a deprecated field, from the data folder's event log; None when there is
    no event log to read (no data folder yet, or another process writing it)."""
    import duckdb

    from sync_assets.govern.deprecation import still_sent
    from sync_assets.warehouse import connect

    if not any(p.deprecated for p in project.contract_policies.values()):
        return {}
    folder = DataFolder.from_env()
    if not folder.warehouse.is_file():
        return None
    try:
        with connect(folder.warehouse, read_only=True) as con:
            return still_sent(con, project)
    except (duckdb.IOException, SyncfabricError):
        click.echo("producers not checked: the warehouse is busy; only mappings count", err=True)
        return None


@schema.command("approve")
@click.option("--by", required=True, help="Who signs off (a consumer, with approvals_required).")
@click.option("--note", required=True, help="Why the change is made, for the change log.")
def schema_approve(by: str, note: str) -> None:
    """Signs off every compatible change still unapproved: appends who, when, the event types,
    their versions, content hashes and the changes in words to contracts/changelog.yaml."""
    from datetime import UTC, datetime

    from sync_assets.errors import EXIT_FAILED
    from sync_assets.govern import changelog, registry
    from sync_assets.project import current

    if not by.strip() or not note.strip():
        raise SyncfabricError("--by and --note must say something: the change log keeps them")
    project = current()
    verdicts = registry.judge(project, changelog.read(project.root))
    try:
        entry, signed = registry.signoff(verdicts, by.strip(), note.strip(), datetime.now(UTC))
    except ValueError as error:
        raise SyncfabricError(str(error), exit_code=EXIT_FAILED) from None
    if not signed:
        click.echo("nothing to sign: every event type's contract is approved, or signed by you")
        return
    path = changelog.append(project.root, entry)
    after = {v.subject.name: v for v in registry.judge(project, changelog.read(project.root))}
    for verdict in signed:
        waits = after[verdict.subject.name].missing
        still = f"; still waiting for {', '.join(waits)}" if waits else ""
        click.echo(f"signed {verdict.subject.name} ({'; '.join(verdict.changes)}){still}")
    click.echo(f"change log: {path}")


def _verdict_text(verdict: Any) -> str:
    subject = verdict.subject
    versions = ", ".join(
        f"{v} (retired)" if v in subject.retired else str(v) for v in sorted(subject.versions)
    )
    head = f"{subject.name}: {subject.compatibility}, versions {versions}"
    if verdict.ok:
        return f"{head}: approved (signed by {', '.join(verdict.signed_by)})"
    lines = [f"{head}: {verdict.status.upper()}"]
    lines += [f"  change: {c}" for c in verdict.changes]
    for f in verdict.findings:
        lines += [
            f"  - version {f.version}, {f.field}: {f.old} -> {f.new}",
            f"    rule broken: {f.rule}",
            f"    what to do: {f.fix}",
        ]
    if verdict.status == "unapproved":
        who = (
            f"from {', '.join(verdict.missing)}"
            if verdict.missing
            else "(syncctl schema approve --by NAME --note TEXT)"
        )
        lines.append(f"  compatible; waiting for a sign-off {who}")
    return "\n".join(lines)


@main.command()
@writes_data_folder
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(as_json: bool) -> None:
    """Run the pipeline once: ingest what landed, reconcile, deliver the corrections, and
    reconcile again to confirm; then print the summary."""
    from sync_assets.catalog.expectations import warm_up_unless_rules_held
    from sync_assets.runner import run_once

    folder = _folder()
    warm_up_unless_rules_held(folder.warehouse)  # the business rules' import, beside the ingest
    once = run_once(folder)
    report, adopted, reconciled, delivered = (
        once.ingested,
        once.adopted,
        once.reconciled,
        once.delivered,
    )
    reconciliations, elapsed = once.reconciliations, once.seconds
    summary = _summary(folder)
    corrections = _corrections_summary(once.emitted, delivered, reconciled)
    corrections["missed_events"] = once.missed_events
    if as_json:
        click.echo(
            json.dumps(
                {
                    **summary.as_dict(),
                    "runs": report.batches,
                    "resumed": report.resumed,
                    "failed": report.failed,
                    "adoption": _adoption_json(adopted),
                    "corrections": corrections,
                    "reconciliation": _checks_json(reconciled, with_values=False),
                }
            )
        )
    else:
        resumed = f" and resumed {len(report.resumed)}" if report.resumed else ""
        click.echo(
            f"ran {len(report.batches)} batch(es){resumed}, reconciliation and delivery in "
            f"{elapsed:.1f} s"
        )
        _print_summary(summary)
        _print_adoption(adopted)
        _print_corrections(corrections)
        _print_checks(reconciled)
    failures = []
    if not report.ok:
        failures.append(
            f"{len(report.failed)} batch(es) left unfinished: {', '.join(report.failed[:5])}; "
            "the next run tries them again, syncctl doctor says why they stopped"
        )
    if not reconciled.success:
        failures.append(_not_corrected(reconciled, "syncctl reconcile"))
    if delivered is not None and not delivered.success:
        failures.append(
            f"the delivery run {delivered.run_id} failed: dead letters are held; "
            "see docs/runbooks/delivery.md"
        )
    elif reconciled.success and reconciled.discrepancies:
        failures.append(
            f"{reconciled.discrepancies:,} discrepancies left after this run (the checks above): "
            "what they are: syncctl check --json; see docs/runbooks/reconciliation.md"
        )
    failures += _not_checked_lines(reconciliations)
    for failure in failures:
        click.echo(failure, err=True)
    if any(r.skipped for r in reconciliations):
        sys.exit(reconciliations[-1].skipped_exit_code)
    if failures or not summary.balanced:
        sys.exit(1)


@main.command()
@writes_data_folder
@click.option(
    "--emit",
    is_flag=True,
    help="First emit the corrections (and land the owners' missed events) of the latest "
    "reconciliation; past a check failing at ERROR, only with --i-have-reviewed.",
)
@click.option(
    "--i-have-reviewed",
    "reviewed",
    type=int,
    metavar="N",
    help="With --emit: the number of corrections you reviewed (syncctl check --json); it must be "
    "exactly the number that would be emitted.",
)
@click.option("--redrive", multiple=True, help="A dead-lettered correction id to send again.")
@click.option("--redrive-all", is_flag=True, help="Send every dead letter again.")
@click.option("--destination", help="Only redrive the dead letters of this system.")
@click.option("--json", "as_json", is_flag=True)
def deliver(
    emit: bool,
    reviewed: int | None,
    redrive: tuple[str, ...],
    redrive_all: bool,
    destination: str | None,
    as_json: bool,
) -> None:
    """Deliver pending corrections (and redriven dead letters); exit 1 while dead letters are held.

    Each correction is re-checked against the system's record just before it is written: a record
    that changed since the reconciliation saw it is not overwritten, one already right is not
    written, and a correction whose golden record changed since it was emitted is not sent.
    """
    from sync_assets.errors import EXIT_FAILED, EXIT_USAGE
    from sync_assets.runner import pipeline

    if reviewed is not None and not emit:
        raise SyncfabricError("--i-have-reviewed goes with --emit", exit_code=EXIT_USAGE)
    if destination is not None and not (redrive or redrive_all):
        raise SyncfabricError(
            "--destination chooses whose dead letters to redrive: add --redrive-all",
            exit_code=EXIT_USAGE,
        )
    with pipeline(_folder()) as runs:
        if emit and not runs.emit_corrections(
            reviewed, confirm="syncctl deliver --emit --i-have-reviewed {n}"
        ):
            raise SyncfabricError(
                "emitting the corrections failed: its failed steps are above", exit_code=EXIT_FAILED
            )
        delivered = runs.deliver(
            redrive=list(redrive), redrive_all=redrive_all, destination=destination
        )
    if as_json:
        click.echo(
            json.dumps(
                {"run_id": delivered.run_id, "success": delivered.success, **delivered.counts}
            )
        )
    else:
        for name, count in delivered.counts.items():
            click.echo(f"{name:<16} {count:>8,}")
    if not delivered.success:
        click.echo(
            "dead letters are held: syncctl dead-letters; docs/runbooks/delivery.md", err=True
        )
        sys.exit(1)


@main.command("dead-letters")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--ingest",
    is_flag=True,
    help="Events refused by validation, instead of undelivered corrections.",
)
@click.option("--rule", help="With --ingest: only the dead letters of this rule.")
@click.option(
    "--redrive",
    "refs",
    multiple=True,
    help="With --ingest: send this one again once fixed (an event id, or <batch>:<line>).",
)
@click.option(
    "--redrive-rule",
    is_flag=True,
    help="With --ingest and --rule: send every one of the rule again.",
)
def dead_letters(
    as_json: bool, ingest: bool, rule: str | None, refs: tuple[str, ...], redrive_rule: bool
) -> None:
    """Dead letters held, with why (values not shown): corrections not delivered, or with
    --ingest, events refused by validation; --redrive sends ingest dead letters again."""
    if ingest:
        _ingest_dead_letters(as_json, rule, list(refs), redrive_rule)
        return
    from sync_assets.deliver.outbox import held_dead_letters
    from sync_assets.warehouse import connect

    with connect(_folder().warehouse, read_only=True) as con:
        held = held_dead_letters(con)
    if as_json:
        click.echo(json.dumps(held, default=str))
        return
    for letter in held:
        click.echo(
            f"{letter['correction_id']}  {letter['destination']:<8} {letter['entity']} "
            f"{letter['entity_key']}  {letter['attempts']} attempt(s): {letter['reason']}"
        )
    click.echo(f"{len(held)} dead letter(s) held; redrive with: syncctl deliver --redrive <id>")


def _ingest_dead_letters(
    as_json: bool, rule: str | None, refs: list[str], redrive_rule: bool
) -> None:
    from dataclasses import asdict

    from sync_assets.ingest.redrive import held
    from sync_assets.runner import pipeline
    from sync_assets.warehouse import connect

    folder = _folder()
    if refs or redrive_rule:
        if redrive_rule and not rule:
            raise click.UsageError("--redrive-rule needs --rule RULE")
        from sync_assets.operate.lock import hold

        with hold(folder, "dead-letters --redrive"), pipeline(folder) as runs:
            landed = runs.redrive_ingest_dead_letters(refs, rule)
        if as_json:
            click.echo(json.dumps(landed))
            return
        click.echo(
            f"redrove {landed['events']} dead letter(s) into "
            + ", ".join(landed["batches"].values())
            + "; syncctl run (or the sensor) ingests them, and syncctl dead-letters --ingest "
            "shows what is still held"
        )
        return
    with connect(folder.warehouse, read_only=True) as con:
        letters = held(con, rule)
    if as_json:
        click.echo(json.dumps([asdict(d) | {"ref": d.ref} for d in letters], default=str))
        return
    for d in letters:
        click.echo(f"{d.ref}  {d.event_id or '-'}  {d.rule:<10} {d.reason}")
    click.echo(
        f"{len(letters)} ingest dead letter(s) held; once fixed, send them again with: "
        "syncctl dead-letters --ingest --redrive <event id or batch:line> "
        "(or --rule RULE --redrive-rule)"
    )


@main.command()
@writes_data_folder
@click.option("--json", "as_json", is_flag=True, help="Each check with its counts and findings.")
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warn"]),
    default="error",
    show_default=True,
    help="Exit non-zero when a check fails at this level or above.",
)
def check(as_json: bool, fail_on: str) -> None:
    """Snapshot every system, diff it, run the reconciliation checks; exit 1 on failure.

    Read-only: it lands no missed event and emits no correction (`syncctl reconcile` does).
    The JSON output carries the values of the discrepancies; PII as the keyed fingerprints the
    warehouse stores (docs/security.md), as the Dagster UI shows them.
    """
    from sync_assets.catalog.expectations import warm_up_unless_rules_held
    from sync_assets.runner import pipeline

    folder = _folder()
    warm_up_unless_rules_held(folder.warehouse)  # the business rules' import, beside the snapshots
    with pipeline(folder) as runs:
        reconciled = runs.reconcile(emit=False)
    if as_json:
        click.echo(json.dumps(_checks_json(reconciled, with_values=True), default=str))
    else:
        _print_checks(reconciled)
    click.echo(
        "read-only: no missed event landed, no correction emitted (syncctl reconcile does that)",
        err=True,
    )
    for line in _not_checked_lines([reconciled]):
        click.echo(line, err=True)
    if not reconciled.checks:
        click.echo(f"the reconciliation run {reconciled.run_id} failed", err=True)
        sys.exit(2)
    failing = [c for c in reconciled.failing(fail_on) if c.not_checked is None]
    broken = reconciled.broken_rules(fail_on)
    if failing:
        click.echo(f"{len(failing)} check(s) failed at {fail_on} level or above", err=True)
    if broken:
        click.echo(
            f"{len(broken)} business rule(s) broken at {fail_on} level or above: "
            "the masked samples are on each check's page in the Dagster UI",
            err=True,
        )
    if reconciled.skipped:
        sys.exit(reconciled.skipped_exit_code)
    if failing or broken:
        sys.exit(1)


@main.command()
@writes_data_folder
@click.option("--json", "as_json", is_flag=True, help="Print the checks and counts as JSON.")
@click.option(
    "--i-have-reviewed",
    "reviewed",
    type=int,
    metavar="N",
    help="Past a check failing at ERROR: the number of corrections you reviewed (syncctl check "
    "--json); it must be exactly the number that would be emitted.",
)
def reconcile(as_json: bool, reviewed: int | None) -> None:
    """Reconcile and emit: snapshot, diff and check every system, land the owners' missed events
    and emit the corrections of the drift, for `syncctl deliver` (or the sensor) to deliver.

    Past a check failing at ERROR nothing is emitted unless --i-have-reviewed names the number of
    corrections; while a landed batch is not applied, nothing is emitted at all.
    """
    from sync_assets.catalog.expectations import warm_up_unless_rules_held
    from sync_assets.deliver.outbox import emitted_by, pending_count
    from sync_assets.runner import pipeline
    from sync_assets.warehouse import connect

    folder = _folder()
    warm_up_unless_rules_held(folder.warehouse)  # the business rules' import, beside the snapshots
    refusal: SyncfabricError | None = None
    with pipeline(folder) as runs:
        reconciled = runs.reconcile(reviewed=reviewed)
        emitted_by_hand = False
        if not reconciled.success and reconciled.failing("error"):
            try:
                emitted_by_hand = runs.emit_corrections(
                    reviewed, confirm="syncctl reconcile --i-have-reviewed {n}"
                )
            except SyncfabricError as refused:
                refusal = refused
    with connect(folder.warehouse, read_only=True) as con:
        emitted, pending = emitted_by(con, reconciled.run_id), pending_count(con)
    if as_json:
        report = _checks_json(reconciled, with_values=False)
        click.echo(json.dumps(report | {"emitted": emitted, "pending": pending}))
    else:
        _print_checks(reconciled)
        click.echo(f"{'corrections emitted':<41}  {emitted:>10,}")
        click.echo(f"{'corrections pending delivery':<41}  {pending:>10,}")
    for line in _not_checked_lines([reconciled]):
        click.echo(line, err=True)
    if refusal is not None:
        raise refusal  # after the checks it judged: printed alone, with its exit code
    if not (reconciled.success or emitted_by_hand):
        click.echo(_not_corrected(reconciled, "syncctl reconcile"), err=True)
        sys.exit(1)
    if pending:
        click.echo("deliver them: syncctl deliver", err=True)
    if reconciled.skipped:
        sys.exit(reconciled.skipped_exit_code)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def keys(ctx: click.Context, as_json: bool) -> None:
    """Where the PII keys come from, and how many stored values each key id seals (never a key).

    Production sets SYNCFABRIC_PII_KEYS and SYNCFABRIC_PII_FINGERPRINT_KEY; without them the keys
    are generated once into the data folder (docs/security.md).
    """
    if ctx.invoked_subcommand is not None:
        return
    from sync_assets.warehouse import connect
    from sync_assets.warehouse.rotation import status

    folder = _folder()
    with connect(folder.warehouse, read_only=True) as con:
        found = status(con)
    if as_json:
        click.echo(json.dumps(found.as_dict()))
        return
    click.echo(f"keys from          {found.origin}")
    click.echo(f"current key id     {found.current_id} (seals new values)")
    click.echo(f"keyring            {', '.join(found.ring)} (each opens its own tokens)")
    width = max(len(place) for place in found.by_key)
    for place, counts in found.by_key.items():
        shown = ", ".join(f"{kid}: {n:,}" for kid, n in sorted(counts.items())) or "none"
        click.echo(f"{place:<{width}}  {shown}")
    if found.origin.startswith("the file"):
        click.echo(
            "production must set SYNCFABRIC_PII_KEYS and SYNCFABRIC_PII_FINGERPRINT_KEY "
            "(keys kept beside the warehouse protect a copy of the warehouse alone)",
            err=True,
        )


@keys.command("rotate")
@writes_data_folder
@click.option(
    "--batch-size",
    default=5000,
    show_default=True,
    type=click.IntRange(1),
    help="Rows a transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def keys_rotate(batch_size: int, as_json: bool) -> None:
    """Re-seal every stored PII value under the current key (the first of SYNCFABRIC_PII_KEYS).

    Keep the old key in the keyring until this is done: each batch commits on its own, and
    readers open old and new tokens alike meanwhile. Running it again re-seals nothing.
    """
    from sync_assets.warehouse import connect
    from sync_assets.warehouse.rotation import rotate

    with connect(_folder().warehouse) as con:
        counts = rotate(con, batch_size)
    if as_json:
        click.echo(json.dumps({"resealed": counts}))
        return
    width = max(len(place) for place in counts)
    for place, count in counts.items():
        click.echo(f"{place:<{width}}  {count:>10,} re-sealed")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def summary(as_json: bool) -> None:
    """Counts for the whole data folder: landed, applied, duplicates, dead letters, golden."""
    result = _summary(_folder())
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        _print_summary(result)
    if not result.balanced:
        sys.exit(1)


@main.command()
@writes_data_folder
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as JSON.")
def alerts(as_json: bool) -> None:
    """Evaluate the alert rules now (raising new alerts to the log and the webhook in
    SYNCFABRIC_ALERT_WEBHOOK_URL, resolving cleared ones) and list the open alerts, ERROR first.
    Exit 1 when an ERROR alert is open. Each names its runbook (docs/runbooks/)."""
    from sync_assets.operate.notify import evaluate_now
    from sync_assets.project import current

    evaluation = evaluate_now(_folder(), current())
    if as_json:
        click.echo(json.dumps(evaluation.as_dict()))
    else:
        for line in evaluation.lines():
            click.echo(line)
    if evaluation.errors:
        sys.exit(1)


@main.command()
@click.argument("correlation_id", required=False)
@click.option(
    "--record",
    help="Every change of one record instead, as <entity>:<key> (an entity of the catalog).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as JSON.")
def trace(correlation_id: str | None, record: str | None, as_json: bool) -> None:
    """One change's timeline through every hop (landed, validated or dead-lettered, applied,
    discrepancy, correction, each delivery attempt, confirmed), with the time each hop took;
    --record: every change of one record and which system set each attribute. No values shown."""
    from sync_assets.operate.trace import trace_change, trace_record
    from sync_assets.project import current
    from sync_assets.warehouse import connect

    if (correlation_id is None) == (record is None):
        raise click.UsageError("give a CORRELATION_ID or --record <entity>:<key> (one of them)")
    with connect(_folder().warehouse, read_only=True) as con:
        if record is not None:
            history = trace_record(con, current(), record)
            timeline = history.timeline
        else:
            timeline = trace_change(con, current(), correlation_id)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps(history.as_json() if record else timeline.as_json(), default=str))
        return
    click.echo(
        f"{timeline.subject}: {len(timeline.hops)} hop(s) over {timeline.total_seconds:.3f} s"
    )
    shown = ""
    for hop, seconds in zip(timeline.hops, timeline.durations(), strict=True):
        took = "" if seconds is None else f"+{seconds:.3f}s"
        click.echo(f"  {hop.at:%Y-%m-%d %H:%M:%S.%f} {took:>14}  {hop.hop:<14} {hop.detail}")
        ids = " ".join(f"{k}={v}" for k, v in hop.ids.items() if v)
        if ids != shown:  # the ids a hop is found by, when they change
            click.echo(f"  {'':>44}{ids}")
            shown = ids
    if record is not None:
        state = history.lifecycle or ("present" if history.exists else "no golden record")
        click.echo(f"golden record: {state}; each attribute set by:")
        for setter in history.setters:
            by = f"{setter.origin} event {setter.event_id} ({setter.event_time})"
            click.echo(f"  {setter.attribute:<16} {by if setter.event_id else 'never set'}")


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Where to write the page.  [default: report.html in the data folder]",
)
def report(out: str | None) -> None:
    """Write the dashboard: one self-contained HTML page with event volume and failure ratio,
    latency percentiles, reconciliation outcomes per system, delivery, dead letters held and the
    slowest hops, over time (no values of records)."""
    from sync_assets.operate.report import REPORT_FILE, write_report
    from sync_assets.project import current
    from sync_assets.warehouse import connect

    folder = _folder()
    with connect(folder.warehouse, read_only=True) as con:
        path = write_report(con, current(), Path(out) if out else folder.root / REPORT_FILE)
    click.echo(f"wrote {path} (open it in a browser: file://{path.resolve()})")


@main.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Mark dead runs failed, free stale pool claims and resume stranded batches; then report "
    "again. Holds the data folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_wait_option
def doctor(repair: bool, as_json: bool, wait_s: float) -> None:
    """What is stuck: runs whose process is gone, stale pool claims, stranded batches, refused
    landing entries, and who holds the data folder. Exit 0 when healthy, 1 when something
    remains wrong. See docs/runbooks/stuck-runs.md."""
    from sync_assets.operate.doctor import examine
    from sync_assets.operate.lock import hold
    from sync_assets.runner import open_instance

    folder = _folder()
    if repair:
        with hold(folder, "doctor --repair", wait_s=wait_s, on_wait=_say_waiting):
            report = _repair(folder)
    else:
        with open_instance(folder) as instance:
            report = examine(folder, instance)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        for line in report.lines():
            click.echo(line)
    if not report.healthy:
        sys.exit(1)


def _repair(folder: DataFolder):
    """Recover the instance (dead runs failed, stale claims freed, as any pipeline does), resume
    the stranded batches, and examine the folder again."""
    from sync_assets.operate.doctor import examine, stranded_batches
    from sync_assets.runner import pipeline

    with pipeline(folder) as runs:
        repaired = [f"marked failed: {stuck.describe()}" for stuck in runs.recovered.stuck_runs]
        repaired += [f"freed: {stale.describe()}" for stale in runs.recovered.stale_claims]
        if stranded_batches(folder):
            resumed = runs.ingest_pending()
            if resumed.resumed:
                repaired.append(
                    f"resumed {len(resumed.resumed)} stranded batch(es): {', '.join(resumed.resumed)}"
                )
            if not resumed.ok:
                repaired.append(f"still unfinished: {', '.join(resumed.failed)}")
        report = examine(folder, runs.instance)
    report.repaired = repaired
    return report


@main.command()
@writes_data_folder
@click.option("--json", "as_json", is_flag=True)
def replay(as_json: bool) -> None:
    """Rebuild every golden record from the event log and compare with the incremental state."""
    from sync_assets.state.apply import replay as replay_log
    from sync_assets.warehouse import connect, transaction

    folder = _folder()
    with connect(folder.warehouse) as con, transaction(con):
        differences = replay_log(con)
    if as_json:
        click.echo(json.dumps({"differences": differences}))
    else:
        for entity, count in differences.items():
            verdict = "identical" if count == 0 else f"{count} rows differed (now rebuilt)"
            click.echo(f"golden_{entity}: replay of the log {verdict}")
    if any(differences.values()):
        sys.exit(1)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--port", default=3000, show_default=True)
@click.option(
    "--read-only",
    is_flag=True,
    help="For analysts: lineage, runs and checks, but no launching, no schedules or sensors "
    "switched, no runs deleted (the webserver alone, without the daemon).",
)
def ui(port: int, read_only: bool) -> None:
    """Start the Dagster UI on 127.0.0.1 over the data folder (docs/security.md: behind a proxy)."""
    from sync_assets.runner import use_data_folder

    use_data_folder(_folder())
    where = ["-h", "127.0.0.1", "-p", str(port), "-m", "sync_assets.definitions"]
    if read_only:
        webserver = os.path.join(os.path.dirname(sys.executable), "dagster-webserver")
        os.execv(webserver, [webserver, *where, "--read-only"])
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    os.execv(dagster, [dagster, "dev", *where])


@main.command()
@click.option("--name", help="The worker's name, before @host (default: syncfabric).")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Steps this worker runs at once (one process each).",
)
def worker(name: str | None, concurrency: int) -> None:
    """Run the reconciliation's steps sent through SYNCFABRIC_CELERY_BROKER_URL (RabbitMQ), until
    stopped: start one or more on hosts that see this data folder (docs/scaling.md)."""
    from sync_assets.operate.workers import run_worker

    run_worker(_folder(), name, concurrency)


def _not_corrected(reconciled, gated: str) -> str:
    """Why a reconciliation run emitted nothing, and what to do: never advice that corrects
    without the review gate (`gated`: the command whose gate names the count)."""
    failing = reconciled.failing("error")
    if failing:
        names = ", ".join(c.name for c in failing)
        return (
            f"the reconciliation run {reconciled.run_id} found too much drift to correct "
            f"automatically ({names} failed at ERROR): nothing was corrected. Review it "
            f"(syncctl check --json); if it is right, {gated} names the number of corrections "
            "to confirm with --i-have-reviewed"
        )
    return (
        f"the reconciliation run {reconciled.run_id} failed and corrected nothing: its failed "
        "steps are above (corrections and missed events refuse while batches are not applied)"
    )


def _checks_json(reconciled, *, with_values: bool) -> dict[str, object]:
    findings = _findings(reconciled) if with_values else {}
    checks = []
    for outcome in reconciled.checks:
        entry: dict[str, object] = {
            "check": outcome.name,
            "passed": outcome.passed,
            "severity": outcome.severity,
            "discrepancies": outcome.discrepancies,
            "rows_compared": outcome.rows_compared,
            "counts": outcome.counts,
            "not_checked": outcome.not_checked,
        }
        if with_values:
            entry["found"] = findings.get(outcome.name, [])
        checks.append(entry)
    return {
        "run_id": reconciled.run_id,
        "success": reconciled.success,
        "checks": checks,
        "skipped": [
            {"system": s.system, "entity": s.entity, "reason": s.reason} for s in reconciled.skipped
        ],
        "business_rules": [
            {
                "table": r.table,
                "rule": r.name,
                "passed": r.passed,
                "severity": r.severity,
                "broken": r.broken,
                "rows_checked": r.rows_checked,
                "says": r.rule,
            }
            for r in reconciled.rules
        ],
    }


def _not_checked_lines(reconciliations) -> list[str]:
    """What the reconciliations could not check, one line per system and reason (each names
    the setting and the fix), then what it means; none when every system was checked."""
    entities: dict[tuple[str, str], list[str]] = {}
    for reconciled in reconciliations:
        for s in reconciled.skipped:
            seen = entities.setdefault((s.system, s.reason), [])
            if s.entity not in seen:
                seen.append(s.entity)
    if not entities:
        return []
    lines = [
        f"{system} ({', '.join(names)}) not checked: {reason}"
        for (system, reason), names in entities.items()
    ]
    systems = sorted({system for system, _ in entities})
    lines.append(
        f"{len(systems)} system(s) not checked ({', '.join(systems)}): their old snapshots were "
        "not used, and nothing was found or corrected for them; the others were reconciled. "
        "Fix the above and run again (docs/runbooks/reconciliation.md)"
    )
    return lines


def _findings(reconciled) -> dict[str, list[dict[str, object]]]:
    from sync_assets.reconcile.comparisons import comparisons, found
    from sync_assets.warehouse import connect

    with connect(_folder().warehouse, read_only=True) as con:
        return {
            comparison.check_name: found(con, reconciled.run_id, comparison)
            for comparison in comparisons(con, reconciled.run_id)
        }


def _print_checks(reconciled) -> None:
    for outcome in reconciled.checks:
        if outcome.not_checked is not None:
            click.echo(f"{outcome.name:<40} {'NOT CHECKED':<16} (a snapshot failed, below)")
            continue
        verdict = "passed" if outcome.passed else f"FAILED ({outcome.severity})"
        kinds = ", ".join(f"{kind} {n}" for kind, n in outcome.counts.items() if n)
        click.echo(
            f"{outcome.name:<40} {verdict:<16} {outcome.discrepancies:>6} of "
            f"{outcome.rows_compared:>7} rows" + (f"  ({kinds})" if kinds else "")
        )
    for rule in reconciled.rules:
        verdict = "passed" if rule.passed else f"FAILED ({rule.severity})"
        click.echo(
            f"{rule.table + ':' + rule.name:<40} {verdict:<16} {rule.broken:>6} of "
            f"{rule.rows_checked:>7} rows break the rule: {rule.rule}"
        )


def _corrections_summary(emitted: int, delivered, reconciled) -> dict[str, object]:
    counts = delivered.counts if delivered else {}
    return {
        "emitted": emitted,
        "delivered": counts.get("delivered", 0),
        "duplicate": counts.get("duplicate", 0),
        "superseded": counts.get("superseded", 0),
        "not_written": sum(counts.get(s, 0) for s in ("stale", "changed", "in_sync")),
        "dead_lettered": counts.get("dead_lettered", 0),
        "compensations": counts.get("compensations", 0),
        "retries": counts.get("retries", 0),
        "discrepancies_left": sum(c.discrepancies for c in reconciled.checks),
    }


def _adoption_json(adopted) -> dict[str, object]:
    return {
        "run_id": adopted.run_id,
        "entities": adopted.entities,
        "landed": adopted.landed,
        "events": adopted.events,
        "orphans": adopted.orphans,
        "not_adopted": adopted.not_adopted,
    }


def _print_adoption(adopted) -> None:
    if adopted.run_id is None:
        return
    events = ", ".join(
        f"{owner} {action} {n:,}" for owner, actions in adopted.events.items()
        for action, n in actions.items()
    )  # fmt: skip
    click.echo(
        f"adopted {', '.join(adopted.entities) or 'nothing'} from the owners' rows: "
        f"{adopted.landed:,} events ({events or 'none'})"
    )
    for name, why in adopted.not_adopted.items():
        click.echo(f"  not adopted yet: {name}: {why}; the next syncctl run tries again")
    for system, by_entity in adopted.orphans.items():
        for entity, n in by_entity.items():
            click.echo(
                f"  left alone: {n:,} {entity} row(s) only {system} holds, not their lifecycle "
                "owner: not adopted, never deleted; syncctl check --json lists them (orphan)"
            )


def _print_corrections(corrections: dict[str, object]) -> None:
    labels = {
        "missed_events": "missed events absorbed (owners' values)",
        "emitted": "corrections emitted",
        "delivered": "corrections delivered",
        "not_written": "not written (stale, changed, in sync)",
        "dead_lettered": "corrections dead-lettered",
        "retries": "delivery retries",
        "discrepancies_left": "discrepancies left",
    }
    for key, label in labels.items():
        click.echo(f"{label:<41}  {corrections[key]:>10,}")


def _summary(folder: DataFolder):
    from sync_assets.ledger import summarize
    from sync_assets.warehouse import connect

    with connect(folder.warehouse, read_only=True) as con:
        return summarize(con)


def _print_summary(summary) -> None:
    rows = [
        ("batches", summary.batches),
        ("events landed", summary.landed),
        ("applied", summary.applied),
        ("duplicates", summary.duplicates),
        ("dead letters", summary.dead_lettered),
        ("dead letters held (not redriven)", summary.dead_letters_held),
        ("pending", summary.pending),
        ("ownership conflicts (applied, owner kept)", summary.conflicts),
    ]
    for entity, live in summary.golden.items():
        rows.append((f"golden {entity} records (live)", live))
        rows.append((f"golden {entity} records (deleted)", summary.deleted[entity]))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value:>10,}")
    if summary.balanced:
        verdict = "yes"
    elif summary.unbalanced_batches:
        verdict = f"NO, batches that do not add up: {', '.join(summary.unbalanced_batches)}"
    else:
        failed = (
            f", {len(summary.failed_batches)} after a failed step" if summary.failed_batches else ""
        )
        verdict = (
            f"NO, {summary.pending:,} events pending in {len(summary.unfinished_batches)} "
            f"unfinished batch(es){failed}; syncctl run resumes them, syncctl doctor says why"
        )
    click.echo(f"{'counts add up':<{width}}  {verdict:>10}")


# --- producers: validate, then publish (logic in sync_assets/ingest/publish.py) -----------------


@main.command()
@click.option("--system", required=True, help="The system whose change this is, and whose channel.")
@click.option("--entity", help="The catalog entity the event is of.")
@click.option(
    "--action", type=click.Choice(["created", "updated", "deleted"]), help="What happened."
)
@click.option("--key", help="The entity's canonical key (the event's subject).")
@click.option(
    "--data", "data_json", metavar="JSON", help="The payload, a JSON object.  [default: {}]"
)
@click.option("--file", "events_file", type=click.Path(dir_okay=False),
              help="Publish the complete events of this JSON Lines file instead, one per line.")  # fmt: skip
@click.option(
    "--channel",
    type=click.Choice(["landing", "bus", "outbox"]),
    help="Where the events go: the system's landing folder, the bus (NATS JetStream) or the "
    "system's outbox table.  [default: bus with SYNCFABRIC_BUS_URL set, else landing]",
)
@click.option("--json", "as_json", is_flag=True, help="What was published, or refused, as JSON.")
def publish(
    system: str,
    entity: str | None,
    action: str | None,
    key: str | None,
    data_json: str | None,
    events_file: str | None,
    channel: str | None,
    as_json: bool,
) -> None:
    """Validate events against the current contracts and publish them, as one batch, to one of
    the system's channels; an invalid event is refused with the reason its dead letter would
    give, and then nothing is published (exit 1)."""
    from sync_assets.ingest import publish as producer
    from sync_assets.project.active import bind

    if events_file is not None:
        if entity or action or key or data_json is not None:
            raise click.UsageError("--file takes complete events: leave out --entity, --action, "
                                   "--key and --data")  # fmt: skip
        events: list[Any] = producer.read_event_lines(events_file)
    else:
        if not (entity and action and key):
            raise click.UsageError("give --entity, --action and --key (and --data), or --file")
        try:
            data = json.loads(data_json) if data_json is not None else {}
        except ValueError as error:
            raise click.UsageError(f"--data is not JSON: {error}") from None
        events = [producer.envelope(entity, action, key, data, system=system)]
    folder = DataFolder.from_env()
    if folder.root.exists():
        bind(folder, record=False)  # not into another project's data folder
    try:
        published = producer.publish(
            events, system, channel=producer.channel_named(channel, folder)
        )
    except producer.PublishRefused as refusal:
        if as_json:
            click.echo(json.dumps({"refused": [r.as_dict() for r in refusal.refused]}))
        else:
            click.echo(redact_text(refusal.message), err=True)
        sys.exit(refusal.exit_code)
    if as_json:
        click.echo(json.dumps(published.as_dict()))
        return
    click.echo(
        f"published {len(published.event_ids)} event(s) of {published.system} to its "
        f"{published.channel} channel as {published.batch_id}; syncctl run (or the sensor) "
        "ingests it"
    )
    for event_id in published.event_ids:
        click.echo(f"  {event_id}")


# --- onboarding: a starter project and a proposed mapping (logic in sync_assets/onboard/) -------


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
def init(directory: str) -> None:
    """Write a commented starter project into DIRECTORY (new or empty), and say what next."""
    from sync_assets.onboard.starter import next_steps, write_starter

    for path in write_starter(directory):
        click.echo(f"wrote {path}")
    click.echo(next_steps(directory))


@main.command("map")
@click.option("--system", required=True, help="The system's name, as in systems/<NAME>.yaml.")
@click.option("--table", required=True, help="The table to read (read-only).")
@click.option("--entity", "entity_name", help="The catalog entity it holds: match its attributes.")
@click.option("--url", help="The database URL.  [default: $SYNCFABRIC_<SYSTEM>_URL]")
@click.option("--schema", help="The table's schema, if not the connection's default.")
@click.option("--rows", type=click.IntRange(min=1),
              help="Rows sampled, the first ones.  [default: 10,000]")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the proposal to this new file instead of printing it.")  # fmt: skip
def map_table(
    system: str,
    table: str,
    entity_name: str | None,
    url: str | None,
    schema: str | None,
    rows: int | None,
    out: str | None,
) -> None:
    """Propose the mapping of a real table: its columns, with a guessed rule and why, as the
    entities block of systems/<SYSTEM>.yaml, for you to review."""
    from sync_assets.onboard.propose import propose_mapping, write_new

    text = propose_mapping(
        system, table, entity_name=entity_name, url=url, schema=schema, limit=rows
    )
    if out is None:
        click.echo(text, nl=False)
    else:
        write_new(out, text)
        click.echo(f"wrote {out}: review every guess, then add it to systems/{system}.yaml")
