"""OpenTelemetry: traces and metrics for commands, the event store and projections.

Providers are per service instance (not the global ones) so that tests and the one-process
dev server can hold several. Metrics are always readable as Prometheus text at /metrics; OTLP
export happens only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import INVALID_SPAN, Span, Tracer
from prometheus_client import CollectorRegistry, generate_latest

from adapters.settings import Settings

# Latencies from half a millisecond (a cached query) to seconds (a store outage).
SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
COUNTS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000]

# (read model name) -> (position, head, lag seconds)
ProjectionProbe = Callable[[], Mapping[str, tuple[int, int, float]]]
# Kafka lags: (value, attributes) per partition or relay
LagProbe = Callable[[], Iterable[tuple[float, Mapping[str, str | int]]]]


class SpanSink(TracerProvider):
    """A tracer provider that knows whether anything receives its spans."""

    receiving = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.receiving = True


@dataclass
class Telemetry:
    tracer: Tracer
    tracer_provider: SpanSink
    meter_provider: MeterProvider
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        meter = self.meter_provider.get_meter("profiles")
        self.command_duration = meter.create_histogram(
            "profiles.command.duration",
            unit="s",
            description="GraphQL mutation latency",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self.query_duration = meter.create_histogram(
            "profiles.query.duration",
            unit="s",
            description="GraphQL query latency (query and audit sides)",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self.events_appended = meter.create_counter(
            "profiles.events.appended", description="events written to the event store"
        )
        self.group_commit_units = meter.create_histogram(
            "profiles.group_commit.units",
            description="command units per transaction",
            explicit_bucket_boundaries_advisory=COUNTS,
        )
        self.fast_path_answers = meter.create_counter(
            "profiles.graphql.fast_path", description="operations answered by compiled plans"
        )
        self.projection_batch = meter.create_histogram(
            "profiles.projection.batch.events",
            description="events per projection batch",
            explicit_bucket_boundaries_advisory=COUNTS,
        )
        self._probes: list[ProjectionProbe] = []
        meter.create_observable_gauge(
            "profiles.projection.position",
            callbacks=[self._observe(0)],
            description="last applied position",
        )
        meter.create_observable_gauge(
            "profiles.projection.lag.events",
            callbacks=[self._observe(1)],
            description="head - position",
        )
        meter.create_observable_gauge(
            "profiles.projection.lag.seconds",
            unit="s",
            callbacks=[self._observe(2)],
            description="age of the newest applied event while behind",
        )

        self._kafka_metrics(meter)

    def _kafka_metrics(self, meter: Any) -> None:
        self.ingest_batch = meter.create_histogram(
            "profiles.ingest.batch.messages",
            description="messages per ingest transaction",
            explicit_bucket_boundaries_advisory=COUNTS,
        )
        self.dead_letters = meter.create_counter(
            "profiles.ingest.dead_letters", description="messages sent to the dead-letter topic"
        )
        self.relay_published = meter.create_counter(
            "profiles.relay.published", description="records the relay had acknowledged"
        )
        self._lags: dict[str, list[LagProbe]] = {"consumer": [], "relay": []}
        meter.create_observable_gauge(
            "profiles.ingest.consumer_lag",
            callbacks=[self._lag("consumer")],
            description="messages between the ingest position and the partition's end",
        )
        meter.create_observable_gauge(
            "profiles.relay.lag",
            callbacks=[self._lag("relay")],
            description="events (or stream entries) stored but not yet published",
        )

    def watch_lag(self, kind: str, probe: LagProbe) -> None:
        """`kind`: consumer (per topic and partition) or relay (per relay)."""
        self._lags[kind].append(probe)

    def _lag(self, kind: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            for probe in self._lags[kind]:
                for value, attributes in probe():
                    yield Observation(value, dict(attributes))

        return callback

    def watch_projections(self, probe: ProjectionProbe) -> None:
        self._probes.append(probe)

    def _observe(self, which: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            for probe in self._probes:
                for name, (position, head, lag_seconds) in probe().items():
                    value = (position, max(head - position, 0), lag_seconds)[which]
                    yield Observation(value, {"read_model": name})

        return callback

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Span]:
        """A span of the current trace; none is made while nothing would receive it (no OTLP
        endpoint): making it was ~5% of a profile read's CPU, for a span nobody sees."""
        if not self.tracer_provider.receiving:
            yield INVALID_SPAN
            return
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(settings: Settings) -> Telemetry:
    resource = Resource.create({"service.name": settings.service_name})
    registry = CollectorRegistry()
    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    tracer_provider = SpanSink(resource=resource)
    if settings.otlp_endpoint:
        # Imported only when used: the exporter pulls in an HTTP stack at import time.
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = settings.otlp_endpoint.rstrip("/")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
        )
        readers.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))
        )
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(
        tracer=tracer_provider.get_tracer("profiles"),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        registry=registry,
    )
