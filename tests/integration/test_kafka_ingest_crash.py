"""Exactly once under fire: `profiles ingest` SIGKILLed mid-batch, again and again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from adapters.settings import Settings
from tests.integration.kafka_support import (
    PATIENCE,
    event_counts,
    interaction,
    kafka_settings,
    produce,
    stored_offsets,
    wait_consumed,
)

ROOT = Path(__file__).resolve().parents[2]
INTERACTIONS, GRANTS = 5_000, 1_000


def ingest_process(settings: Settings) -> subprocess.Popen[bytes]:
    kafka = settings.kafka
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "PROFILES_KAFKA_INTERACTIONS_TOPIC": kafka.interactions_topic,
        "PROFILES_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
        "PROFILES_KAFKA_GROUP_ID": kafka.group_id,
        "PROFILES_KAFKA_SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "PROFILES_INGEST_BATCH": "61",  # small, odd batches: many instants to die in
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_ingest_killed_mid_batch_stores_every_message_exactly_once(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    messages: list[tuple[str, dict[str, object]]] = []
    for n in range(INTERACTIONS):
        messages.append((f"k{n % 40}", interaction(f"k-{n}", f"k{n % 40}")))
        if n % 5 == 0:  # a grant per fifth interaction, each with its own policy version
            grant = {"kind": "grantConsent", "customerId": f"k{n % 40}", "purpose": "SMS"}
            messages.append((f"k{n % 40}", {**grant, "source": "f", "policyVersion": f"v{n}"}))
    produce(settings, messages)
    rng = random.Random(11)
    for _kill in range(4):
        before = stored_offsets(settings)
        process = ingest_process(settings)
        deadline = time.monotonic() + PATIENCE
        while stored_offsets(settings) == before:
            assert time.monotonic() < deadline, "the worker never stored a batch"
            assert process.poll() is None, "the worker exited"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.15))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert stored_offsets(settings) < len(messages), "killed too late to prove anything"
    process = ingest_process(settings)
    try:
        wait_consumed(settings, len(messages))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    counts = event_counts(settings)
    assert counts["InteractionRecorded"] == INTERACTIONS
    assert counts["ConsentGranted"] == GRANTS
