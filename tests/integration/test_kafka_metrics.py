"""The Kafka workers' metrics, as /metrics serves them (the workers of `profiles dev --kafka`)."""

from __future__ import annotations

import re
import time

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.kafka_workers import start_workers
from tests.integration.kafka_support import (
    PATIENCE,
    interaction,
    kafka_settings,
    produce,
    wait_consumed,
)


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_lag_batch_sizes_dead_letters_and_relay_lag_are_exported(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    telemetry = setup_telemetry(settings)
    produce(settings, [(f"m{n}", interaction(f"m-{n}", f"m{n}")) for n in range(30)])
    produce(settings, [("m0", b"not json")])
    workers = start_workers(settings, telemetry)
    try:
        wait_consumed(settings, 31)
        deadline = time.monotonic() + PATIENCE
        events = settings.kafka.events_topic
        while True:
            text = telemetry.prometheus_text().decode()
            # The lag is as of the relay's last look at the store: 0 before it has seen the
            # stored events too, so caught up is lag 0 once it has published them.
            relay_lag = sample(text, "profiles_relay_lag", relay=events)
            published = sample(text, "profiles_relay_published_total", topic=events)
            if relay_lag == 0 and published is not None and published >= 60:
                break
            assert time.monotonic() < deadline, (
                f"the relay never caught up: lag {relay_lag}, published {published}"
            )
            time.sleep(0.1)
    finally:
        workers.stop()
    topic = settings.kafka.interactions_topic
    lags = [
        sample(text, "profiles_ingest_consumer_lag", topic=topic, partition=str(p))
        for p in range(3)
    ]
    assert lags == [0.0, 0.0, 0.0]
    assert sample(text, "profiles_ingest_dead_letters_total", code="NOT_JSON") == 1.0
    batches = re.search(r"^profiles_ingest_batch_messages_sum\{[^}]*\} (\S+)$", text, re.M)
    assert batches is not None and float(batches.group(1)) == 31.0
    assert published == 60  # 30 registrations and 30 interactions, each once
