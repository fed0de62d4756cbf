"""Telemetry from the start: spans around operations, metrics readable at /metrics."""

from __future__ import annotations

import time
from dataclasses import replace

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.projector_job import start_projector
from tests.integration.conftest import Service
from tests.integration.queries import PROFILE, RECORD
from tests.integration.test_commands_over_http import interaction


def test_metrics_report_commands_events_and_projection_lag(service: Service) -> None:
    written = service.command(RECORD, input=interaction("e-1"))["data"]["recordInteraction"]
    service.query(PROFILE, id="c-1", min=written["position"])
    text = service.client.get("/metrics").text
    for name in (
        "profiles_command_duration",
        "profiles_events_appended_total",
        "profiles_projection_position",
        "profiles_projection_lag_events",
        "profiles_projection_lag_seconds",
    ):
        assert name in text, name
    assert 'profiles_events_appended_total{otel_scope_name="profiles"' in text


def test_projection_batches_are_traced(settings: Settings, service: Service) -> None:
    # A namespace of its own: the service's projector has applied the event already.
    settings = replace(settings, redis_namespace=settings.redis_namespace + "traced:")
    telemetry = setup_telemetry(settings)
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    service.command(RECORD, input=interaction("e-1"))
    handle = start_projector(settings, telemetry)
    deadline = time.monotonic() + 10
    while not spans.get_finished_spans() and time.monotonic() < deadline:
        time.sleep(0.02)
    handle.close()
    batch = [s for s in spans.get_finished_spans() if s.name == "projection.batch"]
    assert batch and batch[0].attributes == {"read_model": "profile", "events": 2}


def test_no_exporter_is_configured_without_an_otlp_endpoint(settings: Settings) -> None:
    telemetry = setup_telemetry(settings)
    processors = telemetry.tracer_provider._active_span_processor._span_processors
    assert processors == ()


def test_spans_are_made_only_while_something_receives_them(settings: Settings) -> None:
    telemetry = setup_telemetry(settings)
    with telemetry.span("graphql anonymous") as span:
        assert not span.is_recording()
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    with telemetry.span("graphql anonymous", field="profile") as span:
        assert span.is_recording()
    assert [(s.name, s.attributes) for s in spans.get_finished_spans()] == [
        ("graphql anonymous", {"field": "profile"})
    ]
