"""`profiles ingest` against a real broker and Postgres: replays, poison messages, outages."""

from __future__ import annotations

import time

import psycopg
from confluent_kafka import Consumer, TopicPartition

from adapters.kafka_ingest import IngestWorker
from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import utc_now
from domain.commands import EraseProfile, RecordInteraction
from tests.integration.kafka_support import (
    PATIENCE,
    event_counts,
    header,
    ingesting,
    interaction,
    kafka_settings,
    produce,
    read_topic,
    stored_offsets,
    wait_consumed,
)


def mixed_messages(count: int, tag: str) -> list[tuple[str, dict[str, object]]]:
    """Interactions, traits and consent grants over 10 customers; each grant has its own
    policy version, so a grant applied twice would show as a second event."""
    messages: list[tuple[str, dict[str, object]]] = []
    for n in range(count):
        customer = f"{tag}-c{n % 10}"
        if n % 10 == 3:
            traits = {"loyaltyTier": f"tier-{n}"}
            messages.append(
                (customer, {"kind": "traits", "customerId": customer, "traits": traits})
            )
        elif n % 10 == 7:
            grant = {"kind": "grantConsent", "customerId": customer, "purpose": "EMAIL"}
            messages.append((customer, {**grant, "source": "form", "policyVersion": f"p{n}"}))
        else:
            messages.append((customer, interaction(f"{tag}-e{n}", customer)))
    return messages


def test_replaying_a_partition_from_offset_zero_stores_nothing_twice(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    produce(settings, mixed_messages(300, "r"))
    with ingesting(settings):
        wait_consumed(settings, 300)
    once = event_counts(settings)
    assert once["InteractionRecorded"] == 240 and once["ConsentGranted"] == 30
    assert once["TraitsUpdated"] == 30

    # Kafka's committed offsets rewound to 0 (as `kafka-consumer-groups --reset-offsets
    # --to-earliest` would): the worker resumes from Postgres, not from Kafka.
    rewind = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": settings.kafka.group_id})
    topic = settings.kafka.interactions_topic
    rewind.commit(offsets=[TopicPartition(topic, p, 0) for p in range(3)], asynchronous=False)
    rewind.close()
    produce(settings, [("r-c0", interaction("r-marker", "r-c0"))])
    with ingesting(settings):
        wait_consumed(settings, 301)
    assert event_counts(settings) == {**once, "InteractionRecorded": 241}

    # Every message of every partition handed again to a worker that believes it is at 0
    # (a stale or zombie consumer): Postgres refuses the batch, and the worker re-seeks.
    app = build_application(settings, utc_now)
    worker = IngestWorker(app, settings)
    try:
        worker.positions = {(topic, p): 0 for p in range(3)}
        replay = read_topic(settings, topic)
        for p in range(3):
            worker.process([m for m in replay if m.partition() == p])
        stored = worker.recorder.consumer_offsets(settings.kafka.group_id, topic)
        assert worker.positions == {(topic, p): n for p, n in stored.items()}
    finally:
        worker.close()
        app.close()
    assert event_counts(settings) == {**once, "InteractionRecorded": 241}
    assert stored_offsets(settings) == 301


def test_poison_messages_go_to_the_dead_letter_topic_and_their_neighbours_are_stored(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    app = build_application(settings, utc_now)
    now = utc_now()
    app.record_interaction(RecordInteraction.parse(interaction("p-0", "gone"), now=now, field="i"))
    app.erase_profile(EraseProfile("gone", "asked", "dpo"))
    app.close()
    future = interaction("p-future", "kept", occurredAt="2999-01-01T00:00:00Z")
    messages: list[tuple[str, bytes | dict[str, object]]] = [
        ("kept", interaction("p-1", "kept")),
        ("kept", b"{not json"),
        ("kept", {"customerId": "kept", "type": "page_view", "occurredAt": now.isoformat()}),
        ("kept", interaction("p-big", "kept", properties={"blob": "x" * 70_000})),
        ("gone", interaction("p-2", "gone")),
        ("kept", future),
        ("kept", {"kind": "merge", "customerId": "kept"}),
        ("kept", interaction("p-3", "kept")),
    ]
    produce(settings, messages, partition=0)
    with ingesting(settings):
        wait_consumed(settings, len(messages))
    dead = read_topic(settings, settings.kafka.dlq_topic)
    assert [header(m, "dlq.error.code") for m in dead] == [
        "NOT_JSON",
        "SCHEMA_VIOLATION",
        "TOO_LARGE",
        "ERASED",
        "BAD_USER_INPUT",
        "SCHEMA_VIOLATION",
    ]
    assert [int(header(m, "dlq.original.offset") or -1) for m in dead] == [1, 2, 3, 4, 5, 6]
    produced = read_topic(settings, settings.kafka.interactions_topic)
    for m in dead:
        original = produced[int(header(m, "dlq.original.offset") or -1)]
        assert m.value() == original.value() and m.key() == original.key()
        assert header(m, "dlq.original.topic") == settings.kafka.interactions_topic
        assert header(m, "dlq.original.partition") == "0"
        assert header(m, "dlq.error.message")
    assert header(dead[1], "dlq.error.field") == "message"
    assert "eventId" in (header(dead[1], "dlq.error.message") or "")
    assert header(dead[4], "dlq.error.field") == "message.occurredAt"
    assert "gone" not in (header(dead[3], "dlq.error.message") or "")
    with psycopg.connect(str(settings.database_url)) as conn:
        ids = {r[0] for r in conn.execute("SELECT event_id FROM profiles_interaction_ids")}
    assert ids == {"p-0", "p-1", "p-3"}


def test_a_store_outage_is_retried_and_never_dead_lettered(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)
    produce(settings, [(f"o{n % 5}", interaction(f"o-{n}", f"o{n % 5}")) for n in range(50)])
    # Another session holds the events table's write lock: every append times out
    # (UNAVAILABLE) until it lets go.
    holder = psycopg.connect(str(settings.database_url))
    holder.execute("LOCK TABLE profiles_events IN EXCLUSIVE MODE")
    try:
        with ingesting(settings) as worker:
            deadline = time.monotonic() + PATIENCE
            while worker.transient_failures < 2:
                assert time.monotonic() < deadline, "the worker never hit the outage"
                time.sleep(0.05)
            assert stored_offsets(settings) == 0
            holder.rollback()
            wait_consumed(settings, 50)
    finally:
        holder.close()
    assert event_counts(settings)["InteractionRecorded"] == 50
    assert read_topic(settings, settings.kafka.dlq_topic) == []


def test_traits_and_consents_sent_again_with_their_event_ids_are_stored_once(
    settings: Settings, kafka_bootstrap: str
) -> None:
    """A producer that resends after a timeout (new messages, same eventIds) stores nothing
    twice: not a consent statement, not a traits update over a later one."""
    settings = kafka_settings(settings, kafka_bootstrap)
    grant = {"kind": "grantConsent", "customerId": "k-1", "purpose": "EMAIL", "source": "form"}
    gold = {"kind": "traits", "customerId": "k-1", "traits": {"loyaltyTier": "gold"}}
    silver = {"kind": "traits", "customerId": "k-1", "traits": {"loyaltyTier": "silver"}}
    first = [{**grant, "eventId": "k-grant"}, {**gold, "eventId": "k-gold"}, silver]
    resent = [{**grant, "eventId": "k-grant"}, {**gold, "eventId": "k-gold"}]
    produce(settings, [("k-1", m) for m in [*first, *resent]])
    with ingesting(settings):
        wait_consumed(settings, 5)
    counts = event_counts(settings)
    assert counts["ConsentGranted"] == 1 and counts["TraitsUpdated"] == 2, counts
    app = build_application(settings, utc_now, cache=False)
    try:
        customer = app.customer_at("k-1")
        assert customer is not None and customer.traits["loyaltyTier"] == "silver"
    finally:
        app.close()
