"""Kafka plumbing shared by the ingest worker and the relays: client settings, an idempotent
producer that reports failed deliveries, and the topics the service uses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from adapters.settings import Settings

logger = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """The broker did not acknowledge every record: nothing after them may be marked done."""


def client_config(settings: Settings) -> dict[str, Any]:
    if not settings.kafka_bootstrap_servers:
        raise ValueError(
            "KAFKA_BOOTSTRAP_SERVERS is not set: name the brokers (host:port,...), "
            "or use 'profiles dev --kafka', which starts an embedded one"
        )
    return {"bootstrap.servers": settings.kafka_bootstrap_servers}


class Publisher:
    """An idempotent producer (no duplicates or reordering from its own retries) whose flush
    raises unless every record since the last flush was acknowledged by all in-sync replicas."""

    def __init__(self, config: dict[str, Any], name: str) -> None:
        self.producer = Producer(
            {
                **config,
                "client.id": name,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )
        self._failures: list[KafkaError] = []
        self.sent = 0

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value, key, headers=list(headers or ()), on_delivery=self._delivered
                )
                self.sent += 1
                return
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain it

    def flush(self, timeout: float = 30.0) -> None:
        left = self.producer.flush(timeout)
        failures, self._failures = self._failures, []
        if left or failures:
            raise DeliveryFailed(
                f"{left} records unacknowledged after {timeout:.0f}s, {len(failures)} failed"
                + (f", e.g. {failures[0]}" if failures else "")
            )

    def close(self) -> None:
        self.producer.flush(5.0)


def ensure_topics(settings: Settings, partitions: int = 3) -> None:
    """Creates the service's topics if missing (dev and tests; production creates its own).

    profile-events and segment-changes are compacted: a tombstone makes the broker forget an
    erased customer's earlier records."""
    admin = AdminClient(client_config(settings))
    kafka = settings.kafka
    compacted = {"cleanup.policy": "compact"}
    wanted = [
        NewTopic(kafka.interactions_topic, partitions),
        NewTopic(kafka.dlq_topic, 1),
        NewTopic(kafka.events_topic, partitions, config=compacted),
        NewTopic(kafka.segment_changes_topic, partitions, config=compacted),
    ]
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return
    for topic, future in admin.create_topics(missing, request_timeout=10).items():
        try:
            future.result()
        except Exception as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
            logger.debug("topic %s was created meanwhile", topic)
