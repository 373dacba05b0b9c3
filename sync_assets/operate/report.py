"""The dashboard: one self-contained HTML page of the figures per hop (`syncctl report`).

Read at a glance by on-call: do the systems agree, is anything failing, where is time going.
Every plot is inline SVG drawn here from the `metrics` table and the bookkeeping tables, so the
page opens from the data folder with no server and no network. Only counts, times, names and ids:
never a value of a record.

| section                       | from                                                     |
| ----------------------------- | -------------------------------------------------------- |
| event volume and failure ratio| `batches`: landed per batch, dead-lettered / landed      |
| publish-to-ingest latency     | `metrics` (ingest): p50 / p95 / max per batch            |
| bus consumer lag              | `metrics` (bus): pending and oldest age, latest measurements |
| reconciliation per system     | `metrics` (reconcile): matched and differing per run     |
| delivery                      | `metrics` (deliver): success ratio, latency p50 / p95    |
| dead letters held             | `dead_letters`, `corrections` now; `metrics` dlq_depth   |
| slowest hops                  | `batches` (ingest, validate, apply) and `delivery_attempts` |
| column lineage                | the catalog and mappings (sync_assets/govern/lineage_docs.py) |
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from sync_assets.govern.lineage_docs import render_lineage_html
from sync_assets.operate.metrics import BUS
from sync_assets.project.model import Project

WIDTH, HEIGHT, PAD = 640, 220, 44
BUS_POINTS = 200
"""The bus lag's latest measurements plotted (the sensor measures every tick)."""
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#be185d")


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[str, float]]  # (label on the x axis, value)


def line_chart(title: str, unit: str, series: list[Series]) -> str:
    """An SVG line chart, one line per series over the same x labels; 'no data yet' if empty."""
    scale = _scale(series)
    if scale is None:
        return _figure(title, '<p class="empty">no data yet</p>')
    labels, top = scale
    x_step = (WIDTH - 2 * PAD) / max(len(labels) - 1, 1)

    def xy(label: str, value: float) -> tuple[float, float]:
        x = PAD + labels.index(label) * x_step
        return x, HEIGHT - PAD - (value / top) * (HEIGHT - 2 * PAD)

    parts = [_axes(top, unit)]
    for color, s in zip(COLORS * 3, series, strict=False):
        coords = [xy(label, value) for label, value in s.points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            f'<polyline class="series" data-series="{html.escape(s.name)}" fill="none" '
            f'stroke="{color}" stroke-width="2" points="{path}"/>'
        )
        parts += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
            f"<title>{html.escape(s.name)} {html.escape(label)}: {value:g} {unit}</title></circle>"
            for (x, y), (label, value) in zip(coords, s.points, strict=True)
        ]
    parts.append(_x_labels(labels, x_step))
    return _figure(title, _svg(parts), _legend(series))


def bar_chart(title: str, unit: str, series: list[Series]) -> str:
    """An SVG grouped bar chart: per x label, one bar per series."""
    scale = _scale(series)
    if scale is None:
        return _figure(title, '<p class="empty">no data yet</p>')
    labels, top = scale
    group = (WIDTH - 2 * PAD) / len(labels)
    bar = group * 0.8 / max(len(series), 1)
    parts = [_axes(top, unit)]
    for index, (color, s) in enumerate(zip(COLORS * 3, series, strict=False)):
        for label, value in s.points:
            height = (value / top) * (HEIGHT - 2 * PAD)
            x = PAD + labels.index(label) * group + group * 0.1 + index * bar
            parts.append(
                f'<rect class="bar" data-series="{html.escape(s.name)}" x="{x:.1f}" '
                f'y="{HEIGHT - PAD - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{color}"><title>{html.escape(s.name)} {html.escape(label)}: '
                f"{value:g} {unit}</title></rect>"
            )
    parts.append(_x_labels(labels, group, offset=group / 2))
    return _figure(title, _svg(parts), _legend(series))


def _scale(series: list[Series]) -> tuple[list[str], float] | None:
    """The x labels in order of appearance and the top of the y axis; None when nothing to plot."""
    points = [p for s in series for p in s.points]
    if not points:
        return None
    return list(dict.fromkeys(label for label, _ in points)), max(v for _, v in points) or 1.0


def _axes(top: float, unit: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        f'stroke="#888"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        f'<text x="4" y="{PAD - 8}" font-size="11">{_number(top)} {html.escape(unit)}</text>'
        f'<text x="4" y="{HEIGHT - PAD}" font-size="11">0</text>'
    )


def _number(value: float) -> str:
    """A figure for a person: 37,176,651 rather than 3.71767e+07; 0.029 rather than 0.0289466."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def _x_labels(labels: list[str], step: float, offset: float = 0.0) -> str:
    every = max(1, len(labels) // 8)  # at most about eight labels, so they do not overlap
    return "".join(
        f'<text x="{PAD + offset + i * step:.1f}" y="{HEIGHT - PAD + 16}" font-size="10" '
        f'text-anchor="middle">{html.escape(label)}</text>'
        for i, label in enumerate(labels)
        if i % every == 0
    )


def _svg(parts: list[str]) -> str:
    return (
        f'<svg role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def _legend(series: list[Series]) -> str:
    return (
        '<ul class="legend">'
        + "".join(
            f'<li><span style="background:{color}"></span>{html.escape(s.name)}</li>'
            for color, s in zip(COLORS * 3, series, strict=False)
        )
        + "</ul>"
    )


def _figure(title: str, body: str, legend: str = "") -> str:
    return (
        f'<figure class="plot"><figcaption>{html.escape(title)}</figcaption>{body}{legend}</figure>'
    )


def _table(headers: list[str], rows: list[tuple]) -> str:
    if not rows:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def _by(rows: list[tuple], names: list[str]) -> list[Series]:
    """Rows of (label, name, value) as one series per name."""
    return [
        Series(name, [(label, float(value)) for label, n, value in rows if n == name])
        for name in names
        if any(n == name for _, n, _ in rows)
    ]


def _metric_rows(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    metrics: list[str],
    *,
    per_subject: bool = False,
    latest: int | None = None,
) -> list[tuple]:
    """(x label, series name, value) of one stage's metrics in time order. The label numbers
    each measured scope (a batch, a run) with its time; the series is the metric and subject,
    or with `per_subject` the metric alone and the subject in the label (one batch, one system).
    With `latest`, only the latest that many scopes."""
    label = (
        "'#' || dense_rank() OVER (ORDER BY first, scope) || ' ' || strftime(first, '%m-%d %H:%M')"
    )
    if per_subject:
        label += " || ' ' || subject"
    name = "metric" if per_subject else "metric || ' ' || subject"
    recent = ""
    if latest is not None:
        recent = (
            "AND scope IN (SELECT scope FROM metrics WHERE stage = $stage GROUP BY scope "
            f"ORDER BY min(measured_at) DESC, scope DESC LIMIT {int(latest)})"
        )
    return con.execute(
        f"""SELECT {label}, {name}, value
            FROM (SELECT *, min(measured_at) OVER (PARTITION BY scope) AS first FROM metrics
                  WHERE stage = $stage AND list_contains($metrics, metric) {recent})
            ORDER BY first, scope, metric, subject""",
        {"stage": stage, "metrics": metrics},
    ).fetchall()


def render(con: duckdb.DuckDBPyConnection, project: Project) -> str:
    """The whole dashboard as one HTML page, the column lineage at its end."""
    sections = [
        _volume(con),
        _latency(con),
        _reconciliation(con, project),
        _delivery(con, project),
        _dead_letters(con),
        _slowest(con),
        render_lineage_html(project),
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Syncfabric report: {html.escape(project.name)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #111; max-width: 1400px; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figure.plot {{ margin: 0; border: 1px solid #e5e7eb; padding: 8px; border-radius: 6px; }}
figcaption {{ font-weight: 600; margin-bottom: 4px; }}
ul.legend {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 12px; margin: 4px 0; }}
ul.legend span {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
.empty {{ color: #666; font-style: italic; }}
.kpi {{ display: inline-block; margin-right: 24px; font-size: 16px; }}
</style></head><body>
<h1>Syncfabric report: {html.escape(project.name)}</h1>
<p>Generated {generated} from the warehouse. Counts, times and ids only; no record values.</p>
{"".join(sections)}
</body></html>
"""


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _volume(con: duckdb.DuckDBPyConnection) -> str:
    rows = con.execute(
        """SELECT '#' || row_number() OVER (ORDER BY landed_at, batch_id) || ' '
                      || strftime(landed_at, '%m-%d %H:%M') || ' ' || system,
                  landed, coalesce(dead_lettered, 0), coalesce(duplicates, 0)
           FROM batches WHERE landed IS NOT NULL ORDER BY landed_at, batch_id"""
    ).fetchall()
    volume = [
        Series("landed", [(r[0], r[1]) for r in rows]),
        Series("dead-lettered", [(r[0], r[2]) for r in rows]),
        Series("duplicates", [(r[0], r[3]) for r in rows]),
    ]
    ratio = [Series("dead letters / landed", [(r[0], r[2] / r[1] if r[1] else 0.0) for r in rows])]
    totals = con.execute(
        "SELECT count(*), coalesce(sum(landed), 0), coalesce(sum(applied), 0), "
        "coalesce(sum(dead_lettered), 0), coalesce(sum(duplicates), 0) FROM batches"
    ).fetchone() or (0, 0, 0, 0, 0)
    kpis = "".join(
        f'<span class="kpi">{name}: <b>{value:,}</b></span>'
        for name, value in zip(
            ["batches", "landed", "applied", "dead-lettered", "duplicates"], totals, strict=True
        )
    )
    plots = bar_chart("Events per batch", "events", volume if rows else [])
    plots += line_chart("Failure ratio per batch", "", ratio if rows else [])
    return _section(
        "volume", "Event volume and failures", f'<p>{kpis}</p><div class="plots">{plots}</div>'
    )


def _latency(con: duckdb.DuckDBPyConnection) -> str:
    percentiles = ["latency_p50_s", "latency_p95_s", "latency_max_s"]
    rows = _metric_rows(con, "ingest", percentiles, per_subject=True)
    rate = _metric_rows(con, "ingest", ["events_per_second"], per_subject=True)
    plots = bar_chart("Publish-to-ingest latency per batch", "s", _by(rows, percentiles))
    plots += bar_chart("Events per second per batch (landed to applied)", "events/s",
                       _by(rate, ["events_per_second"]))  # fmt: skip
    pending = _metric_rows(con, BUS, ["pending"], latest=BUS_POINTS)
    oldest = _metric_rows(con, BUS, ["oldest_pending_s"], latest=BUS_POINTS)
    plots += line_chart("Bus consumer lag: messages not acknowledged", "messages",
                        _by(pending, _names(pending)))  # fmt: skip
    plots += line_chart("Bus consumer lag: oldest message pending", "s",
                        _by(oldest, _names(oldest)))  # fmt: skip
    return _section("latency", "Latency", f'<div class="plots">{plots}</div>')


def _reconciliation(con: duckdb.DuckDBPyConnection, project: Project) -> str:
    kinds = ["matched", "missing", "extra", "mismatch", "divergence", "corrected"]
    rows = _metric_rows(con, "reconcile", kinds) + _metric_rows(con, "correct", ["corrected"])
    plots = []
    for system in project.system_names:
        mine = [(label, name.split(" ")[0], value) for label, name, value in rows
                if name.endswith(f" {system}")]  # fmt: skip
        differing = [r for r in mine if r[1] != "matched"]
        plots.append(line_chart(f"{system}: records differing per reconciliation", "records",
                                _by(differing, kinds[1:])))  # fmt: skip
    return _section("reconciliation", "Reconciliation outcomes per system",
                    f'<div class="plots">{"".join(plots)}</div>')  # fmt: skip


def _delivery(con: duckdb.DuckDBPyConnection, project: Project) -> str:
    def rows(metrics: list[str]) -> list[tuple]:
        return _metric_rows(con, "deliver", metrics, per_subject=True)

    plots = bar_chart("Delivery success ratio per run and destination", "",
                      _by(rows(["success_ratio"]), ["success_ratio"]))  # fmt: skip
    latency = ["latency_p50_ms", "latency_p95_ms"]
    plots += bar_chart(
        "Delivery latency per run and destination", "ms", _by(rows(latency), latency)
    )
    counts = ["attempts", "retries", "dead_lettered"]
    plots += bar_chart("Attempts, retries and dead letters per run", "", _by(rows(counts), counts))
    return _section("delivery", "Delivery", f'<div class="plots">{plots}</div>')


def _names(rows: list[tuple]) -> list[str]:
    return list(dict.fromkeys(r[1] for r in rows))


def _dead_letters(con: duckdb.DuckDBPyConnection) -> str:
    ingest = con.execute(
        "SELECT rule, count(*) FROM dead_letters WHERE resolution IS NULL GROUP BY rule ORDER BY 2 DESC"
    ).fetchall()
    delivery = con.execute(
        "SELECT target, count(*) FROM corrections WHERE status = 'dead_lettered' GROUP BY target "
        "ORDER BY 2 DESC"
    ).fetchall()
    depth = _metric_rows(con, "deliver", ["dlq_depth"])
    body = '<div class="plots">'
    body += bar_chart("Ingest dead letters held, by rule", "events",
                      [Series("held", [(rule, n) for rule, n in ingest])] if ingest else [])  # fmt: skip
    body += line_chart("Delivery dead letters held after each run", "corrections",
                       _by(depth, _names(depth)))  # fmt: skip
    body += "</div>" + _table(["destination", "corrections held"], delivery)
    return _section("dead-letters", "Dead letters (DLQ depth)", body)


def _slowest(con: duckdb.DuckDBPyConnection) -> str:
    batches = con.execute(
        """SELECT batch_id, system, landed,
                  epoch(ingested_at) - epoch(landed_at), epoch(validated_at) - epoch(ingested_at),
                  epoch(applied_at) - epoch(validated_at)
           FROM batches WHERE applied_at IS NOT NULL
           ORDER BY epoch(applied_at) - epoch(landed_at) DESC LIMIT 10"""
    ).fetchall()
    attempts = con.execute(
        """SELECT c.correlation_id, a.destination, a.attempt, a.outcome, a.latency_ms
           FROM delivery_attempts a JOIN corrections c USING (correction_id)
           ORDER BY a.latency_ms DESC LIMIT 10"""
    ).fetchall()
    body = "<h3>Batches (seconds per hop)</h3>" + _table(
        ["batch", "system", "events", "land to ingest", "ingest to validate", "validate to apply"],
        batches,
    )
    body += "<h3>Delivery attempts</h3>" + _table(
        ["correlation id (syncctl trace ID)", "destination", "attempt", "outcome",
         "latency ms"],
        attempts,
    )  # fmt: skip
    return _section("slowest", "Slowest hops", body)


REPORT_FILE = "report.html"
"""The dashboard's file, beside the warehouse in the data folder."""


def write_report(con: duckdb.DuckDBPyConnection, project: Project, path: Path) -> Path:
    """Render the dashboard of the warehouse `con` to `path`; the path written."""
    page = render(con, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
