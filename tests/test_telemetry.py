"""OpenTelemetry spans per hop (sync_assets/telemetry.py), with the SDK's in-memory exporter.

Off by default: nothing set up, no trace context anywhere. On: each ledger step, the
reconciliation, each correction and each delivery attempt is a span; a correction's trace context
is in its CloudEvents envelope (`traceparent`) and in the header of every write to the destination,
whose span is a child of the correction's, retries included.
"""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading

import pytest
from conftest import customer_created, land
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from examples.demo.seed.platform import Faults, PlatformService
from sync_assets import telemetry
from sync_assets.runner import pipeline
from sync_assets.warehouse import connect


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with telemetry.use(provider):
        yield exporter


def drift(folder, count: int) -> None:
    with sqlite3.connect(folder.system_database("support")) as con:
        con.execute("UPDATE users SET name = name || ' (old)' WHERE id IN "
                    f"(SELECT id FROM users ORDER BY id LIMIT {count})")  # fmt: skip


def w3c(span) -> str:
    """A span's context as a W3C traceparent."""
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def envelopes(folder) -> list[dict]:
    with connect(folder.warehouse, read_only=True) as con:
        return [
            json.loads(row[0]) for row in con.execute("SELECT event FROM corrections").fetchall()
        ]


def test_tracing_is_off_unless_a_collector_is_named(landscape, monkeypatch):
    for name in telemetry.ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    assert not telemetry.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert telemetry.enabled()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.enabled()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")

    drift(landscape, 2)
    with PlatformService(landscape.system_database("support"), seed=3) as platform:
        monkeypatch.setenv("SYNCFABRIC_SUPPORT_URL", platform.url)
        with pipeline(landscape) as runs:
            runs.reconcile()
            assert runs.deliver().success
        assert platform.traceparents == []
    assert envelopes(landscape) and all("traceparent" not in e for e in envelopes(landscape))


def test_each_hop_is_a_span_and_a_correction_trace_reaches_the_destination(
    landscape, monkeypatch, spans
):
    drift(landscape, 12)
    with PlatformService(landscape.system_database("support"), seed=3) as platform:
        monkeypatch.setenv("SYNCFABRIC_SUPPORT_URL", platform.url)
        with pipeline(landscape) as runs:
            runs.reconcile()
            assert runs.emit_corrections(reviewed=12)
            platform.set_faults(Faults(error_rate=0.5))
            runs.deliver()
        sent = list(platform.traceparents)

    finished = spans.get_finished_spans()
    names = {span.name for span in finished}
    assert {"syncfabric.reconcile", "syncfabric.correction", "syncfabric.delivery"} <= names
    corrections = {
        span.attributes["syncfabric.correction_id"]: span
        for span in finished
        if span.name == "syncfabric.correction"
    }
    assert len(corrections) == 12

    # Each correction's envelope carries its span's context, W3C-formatted.
    for event in envelopes(landscape):
        assert event["traceparent"] == w3c(corrections[event["id"]])

    # Every attempt is a child span of its correction, and its context went out as the header.
    deliveries = [span for span in finished if span.name == "syncfabric.delivery"]
    assert len(deliveries) > 12, "a 50% error rate retries some deliveries"
    for attempt in deliveries:
        parent = corrections[attempt.attributes["syncfabric.correction_id"]]
        assert attempt.parent.span_id == parent.context.span_id
        assert attempt.context.trace_id == parent.context.trace_id
    headers = {w3c(span) for span in deliveries}
    assert sent and set(sent) <= headers
    outcomes = {span.attributes["syncfabric.outcome"] for span in deliveries}
    assert "transient" in outcomes and "applied" in outcomes


def test_each_ledger_step_is_a_span_naming_its_batches(landscape, spans):
    batch = land(landscape, "traced", [customer_created("C-009999")])
    with pipeline(landscape) as runs:
        assert runs.ingest_pending().ok
    steps = {
        span.name: span
        for span in spans.get_finished_spans()
        if span.name in ("syncfabric.raw_ingest", "syncfabric.validation", "syncfabric.apply")
    }
    assert set(steps) == {"syncfabric.raw_ingest", "syncfabric.validation", "syncfabric.apply"}, (
        steps
    )
    for step in steps.values():
        assert batch.batch_id in step.attributes["syncfabric.batches"]
        assert step.attributes["syncfabric.done"] >= 1 and step.attributes["syncfabric.failed"] == 0


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP trace collector on loopback: keeps the span names of each export."""

    received: list[str] = []

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            export = ExportTraceServiceRequest.FromString(body)
            _Collector.received += [
                span.name
                for resource in export.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_spans_are_exported_over_otlp_to_the_collector_the_environment_names(tmp_path):
    from commands import syncctl

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        home = tmp_path / "syncfabric"
        built = syncctl(home, "demo", "--customers", "1000", "--orders", "2000")  # some drift
        assert built.returncode == 0
        ran = syncctl(
            home, "run", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}"
        )
        assert ran.returncode == 0, ran.stderr
    finally:
        server.shutdown()
        thread.join()
    received = set(_Collector.received)
    assert {"syncfabric.raw_ingest", "syncfabric.validation", "syncfabric.apply"} <= received
    assert {"syncfabric.reconcile", "syncfabric.correction", "syncfabric.delivery"} <= received
