"""Exactly once under fire: `profiles ingest` SIGKILLed mid-batch, again and again."""

from __future__ import annotations

import random
import signal
import time

import pytest

from adapters.settings import Settings
from tests.integration.kafka_support import (
    PATIENCE,
    alive,
    children_of,
    event_counts,
    ingest_process,
    interaction,
    kafka_settings,
    produce,
    stored_offsets,
    wait_consumed,
)

INTERACTIONS, GRANTS = 5_000, 1_000
BATCH = 61  # small, odd batches: many instants to die in


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-processes"])
def test_ingest_killed_mid_batch_stores_every_message_exactly_once(
    settings: Settings, kafka_bootstrap: str, processes: int
) -> None:
    """With two processes the kill hits the parent: its consumer children must die with it
    (mid-batch, as SIGKILLed), or a live orphan would go on consuming beside the restart."""
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
        process = ingest_process(settings, processes=processes, batch=BATCH)
        deadline = time.monotonic() + PATIENCE
        while stored_offsets(settings) == before:
            assert time.monotonic() < deadline, "the worker never stored a batch"
            assert process.poll() is None, "the worker exited"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.15))
        children = children_of(process.pid)
        assert len(children) >= (processes if processes > 1 else 0), children
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while any(alive(child) for child in children):
            assert time.monotonic() < deadline, "consumer processes outlived their parent"
            time.sleep(0.02)
        assert stored_offsets(settings) < len(messages), "killed too late to prove anything"
    process = ingest_process(settings, processes=processes, batch=BATCH)
    try:
        wait_consumed(settings, len(messages))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    counts = event_counts(settings)
    assert counts["InteractionRecorded"] == INTERACTIONS
    assert counts["ConsentGranted"] == GRANTS
