"""Spans per hop through OpenTelemetry, off unless the environment names a collector.

Set `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and every stage
exports its spans over OTLP/HTTP, with the standard `OTEL_*` variables for headers, service name
and the rest; `OTEL_SDK_DISABLED=true` turns it off again. Without them nothing is set up and every
call here is a no-op (no exporter is imported).

| span                         | where                         | attributes                           |
| ---------------------------- | ----------------------------- | ------------------------------------ |
| `syncfabric.<step>`          | each ledger step: `raw_ingest`, `validation`, `apply` | batch ids, done, failed |
| `syncfabric.reconcile`       | the diff of a reconciliation  | run id, discrepancies per kind       |
| `syncfabric.correction`      | each correction emitted       | correction and correlation ids, target, entity, action |
| `syncfabric.delivery`        | each delivery attempt, child of its correction | correction id, destination, attempt, outcome |

A correction's span context travels as W3C `traceparent`: in the correction's CloudEvents envelope
(the `traceparent` extension, as the CloudEvents distributed-tracing extension names it) and in the
header of every delivery request, so a destination that traces continues the same trace.
Attributes hold ids, names and counts only: never a record's value.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE = "syncfabric"
_PROPAGATOR = TraceContextTextMapPropagator()
_provider: Any = None
"""The TracerProvider in use: built on first use from the environment, or given by `use`."""


def enabled() -> bool:
    """Whether spans are exported: a collector named, and the SDK not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_ENVS)


def _tracer() -> trace.Tracer:
    global _provider
    if _provider is None:
        if not enabled():
            return trace.NoOpTracer()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE)})
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _provider = provider
    return _provider.get_tracer(SERVICE)


@contextlib.contextmanager
def use(provider: Any) -> Iterator[None]:
    """Spans go to `provider` (a TracerProvider, e.g. with the SDK's in-memory exporter) inside
    the block, whatever the environment says."""
    global _provider
    before, _provider = _provider, provider
    try:
        yield
    finally:
        _provider = before


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span]:
    """A span around a hop, current inside the block (its children nest under it)."""
    with _tracer().start_as_current_span(name, attributes=dict(attributes or {})) as current:
        yield current


def start_span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: str | None = None
) -> trace.Span:
    """A span started now and ended by the caller (`span.end()`), not made current: for work
    done on many items at once, such as one delivery attempt of each correction of a batch."""
    context = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
    return _tracer().start_span(name, context=context, attributes=dict(attributes or {}))


def context_of(span: trace.Span) -> str | None:
    """A span's W3C traceparent; None for a span not recorded (tracing off)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent")


def traceparent() -> str | None:
    """The current span's W3C traceparent; None when no span is recorded (tracing off)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, otel_context.get_current())
    return carrier.get("traceparent")


def correction_traceparent(row: Mapping[str, Any]) -> str | None:
    """A `syncfabric.correction` span for a correction being emitted; its traceparent, for the
    envelope and the deliveries (None when tracing is off)."""
    if _provider is None and not enabled():
        return None
    attributes = {
        "syncfabric.correction_id": row["correction_id"],
        "syncfabric.correlation_id": row["correlation_id"],
        "syncfabric.target": row["target"],
        "syncfabric.entity": row["entity"],
        "syncfabric.action": row["action"],
    }
    with span("syncfabric.correction", attributes):
        return traceparent()
