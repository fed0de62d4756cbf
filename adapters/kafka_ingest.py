"""`profiles ingest`: the interactions topic into the event store, each message exactly once.

One Postgres transaction per batch stores the batch's events, its eventId claims and the
consumed offsets (`ProfileApplication.execute(..., offsets=...)`). Offsets are read back from
Postgres when partitions are assigned, so Kafka's own committed offsets (also written, after
the fact, for lag tools) are never what decides where to resume. A worker that lost its
partitions without noticing cannot commit an overlapping batch: the append function refuses
a batch that starts below the stored offset (SourceMoved), and the worker re-seeks.

Messages that can never succeed go to the dead-letter topic before the batch commits; store
outages are retried with backoff and never dead-lettered.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from adapters import deadlines
from adapters.event_store import ProfileRecorder
from adapters.ingest_messages import (
    MessageReader,
    Rejection,
    batch_offsets,
    dead_letter_headers,
    where,
)
from adapters.kafka_io import DeliveryFailed, Publisher, client_config
from adapters.settings import Settings
from adapters.telemetry import Telemetry
from domain.application import ProfileApplication
from domain.commands import Command
from domain.errors import Conflict, DomainError, SourceMoved, StoreUnavailable
from domain.ports import SourceOffsets

logger = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
Partition = tuple[str, int]
Decoded = list[Command | Rejection]  # per message of a batch, in order
Fetched = tuple[list[Message], Future[Decoded]]


@dataclass
class BatchResult:
    messages: int
    stored: int  # commands applied (duplicates and unchanged included)
    dead_lettered: int


class IngestWorker:
    def __init__(
        self, app: ProfileApplication, settings: Settings, telemetry: Telemetry | None = None
    ) -> None:
        if not isinstance(app.recorder, ProfileRecorder):
            raise TypeError("the ingest worker needs the Postgres ProfileRecorder for offsets")
        self.app = app
        self.recorder: ProfileRecorder = app.recorder
        self.kafka = settings.kafka
        self.deadline_seconds = settings.deadline_seconds
        self.telemetry = telemetry
        self.reader = MessageReader(self.kafka.max_message_bytes)
        config = client_config(settings)
        self.consumer = Consumer(
            {
                **config,
                "group.id": self.kafka.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": self.kafka.session_timeout_ms,
            }
        )
        self.dead_letters = Publisher(config, "ingest-dlq")
        # partition -> next offset to consume, as stored in Postgres (None: not ours now)
        self.positions: dict[Partition, int] = {}
        self.high_watermarks: dict[Partition, int] = {}
        self.lag: dict[Partition, int] = {}  # messages behind each partition's end
        self._sent_to_dlq: set[tuple[str, int, int]] = set()
        self.transient_failures = 0  # batches not stored for a store or broker outage
        self.reseeks = 0  # times the positions were taken back from Postgres
        if telemetry is not None:
            telemetry.watch_lag("consumer", self._lags)

    # ---------------------------------------------------------------- the loop

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(
            [self.kafka.interactions_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        # Decoding (JSON, schema, normalisation) is pure Python: on a helper thread it runs
        # while this one waits for Postgres to store the batch before, instead of after it.
        decoder = ThreadPoolExecutor(1, thread_name_prefix="ingest-decode")
        try:
            ahead: Fetched | None = None
            while not stop.is_set():
                current = ahead or self._fetch(decoder, timeout=0.5)
                ahead = None
                if current is not None:
                    # The next batch is taken now (from what the client has already fetched)
                    # so that it decodes during this one's commit.
                    ahead = self._fetch(decoder, timeout=0)
                    reseeks = self.reseeks
                    batch, decoding = current
                    self.process(batch, stop, decoding.result())
                    if self.reseeks != reseeks:
                        ahead = None  # read before the re-seek: it may skip what is re-read
                self._measure_lag()
        finally:
            decoder.shutdown(wait=True, cancel_futures=True)
            self.close()

    def _fetch(self, decoder: ThreadPoolExecutor, timeout: float) -> Fetched | None:
        messages = self.consumer.consume(self.kafka.ingest_batch, timeout=timeout)
        batch = [m for m in messages if self._usable(m)]
        return (batch, decoder.submit(self._decode, batch)) if batch else None

    def _decode(self, batch: Sequence[Message]) -> Decoded:
        now = self.app.clock()
        return [self.reader.read(message.value(), now) for message in batch]

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self.consumer.close()
        self.dead_letters.close()

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is not None:
            if not error.retriable() and error.fatal():
                raise KafkaException(error)
            logger.warning("consumer: %s", error)
            return False
        place = where(message)
        topic, partition, offset = place
        key = (topic, partition)
        self.high_watermarks[key] = max(self.high_watermarks.get(key, 0), offset)
        return self._ours(place)

    def _ours(self, place: tuple[str, int, int]) -> bool:
        topic, partition, offset = place
        stored = self.positions.get((topic, partition))
        # Not ours any more, or already stored (a replay, a seek that raced a fetch): skip.
        return stored is not None and offset >= stored

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self.recorder.consumer_offsets(self.kafka.group_id, self.kafka.interactions_topic)
        for tp in partitions:
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
            self.positions[(tp.topic, tp.partition)] = max(tp.offset, 0)
        logger.info("assigned %s", {tp.partition: tp.offset for tp in partitions})
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.positions.pop((tp.topic, tp.partition), None)
            self.high_watermarks.pop((tp.topic, tp.partition), None)

    def _reseek(self) -> None:
        """Another consumer stored offsets past ours: take Postgres's word and seek there."""
        stored = self.recorder.consumer_offsets(self.kafka.group_id, self.kafka.interactions_topic)
        self.reseeks += 1
        for topic, partition in list(self.positions):
            offset = stored.get(partition, 0)
            self.positions[(topic, partition)] = offset
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as error:
                # Not fetching it right now (being revoked): positions still filter what
                # arrives below the stored offset.
                logger.warning("seek of %s[%d] failed: %s", topic, partition, error)

    # ---------------------------------------------------------------- one batch

    def process(
        self,
        batch: Sequence[Message],
        stop: threading.Event | None = None,
        decoded: Decoded | None = None,
    ) -> None:
        """Stores one batch, retrying store outages until it is stored (or `stop` is set)."""
        delay = 0.1
        if decoded is None:
            decoded = self._decode(batch)
        while True:
            try:
                result = self.apply(batch, decoded)
            except SourceMoved:
                logger.warning("offsets moved under this worker (a rebalance); re-seeking")
                self._reseek()
                return
            except (StoreUnavailable, Conflict, DeliveryFailed) as error:
                self.transient_failures += 1
                logger.warning("batch not stored, retrying in %.1fs: %s", delay, error)
                if (stop or threading.Event()).wait(delay):
                    return
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if self.telemetry is not None and result.messages:
                self.telemetry.ingest_batch.record(result.messages)
            return

    def apply(self, batch: Sequence[Message], decoded: Decoded) -> BatchResult:
        """One transaction: the batch's commands and offsets; rejects dead-lettered first."""
        # Checked again: a batch read ahead was read before the one in front of it committed
        # (a rebalance meanwhile may have re-read offsets from Postgres behind it).
        kept = [(m, d) for m, d in zip(batch, decoded, strict=True) if self._ours(where(m))]
        batch = [m for m, _ in kept]
        if not batch:
            return BatchResult(0, 0, 0)
        units: list[list[Command]] = []
        owners: list[Message] = []
        rejected: list[tuple[Message, Rejection]] = []
        for message, outcome in kept:
            if isinstance(outcome, Rejection):
                rejected.append((message, outcome))
            else:
                units.append([outcome])
                owners.append(message)
        offsets = batch_offsets(self.kafka.group_id, batch)

        def dead_letter_failures(failed: Mapping[int, DomainError]) -> None:
            late = [(owners[u], Rejection.of(error)) for u, error in failed.items()]
            self._dead_letter([*rejected, *late])

        # A frozen store must not hold the batch forever: past the deadline it is retried,
        # and the offsets fence makes a retry of a batch that did commit a no-op.
        with deadlines.within(self.deadline_seconds):
            outcomes = self.app.execute(
                units, offsets=offsets, before_commit=dead_letter_failures, positions=False
            )
        for topic, partition, _first, next_offset in offsets.entries:
            if (topic, partition) in self.positions:
                self.positions[(topic, partition)] = next_offset
        self._commit_to_kafka(offsets)
        failed = sum(isinstance(o, DomainError) for o in outcomes)
        self._sent_to_dlq.clear()
        return BatchResult(len(batch), len(units) - failed, len(rejected) + failed)

    def _dead_letter(self, rejected: Sequence[tuple[Message, Rejection]]) -> None:
        """Publishes and waits for the broker: only then may the batch's offsets commit."""
        sent = 0
        for message, rejection in sorted(rejected, key=lambda r: where(r[0])):
            origin = where(message)
            if origin in self._sent_to_dlq:
                continue  # a retried transaction: already on the topic
            original = message.headers() or []
            pairs = original.items() if isinstance(original, dict) else original
            headers = [(k, _bytes(v)) for k, v in pairs]
            headers += dead_letter_headers(rejection, *origin)
            self.dead_letters.produce(
                self.kafka.dlq_topic, message.key(), message.value(), headers=headers
            )
            self._sent_to_dlq.add(origin)
            sent += 1
            if self.telemetry is not None:
                self.telemetry.dead_letters.add(1, {"code": rejection.code})
        if sent:
            try:
                self.dead_letters.flush()
            except DeliveryFailed:
                self._sent_to_dlq.clear()
                raise
            logger.info("dead-lettered %d messages", sent)

    def _commit_to_kafka(self, offsets: SourceOffsets) -> None:
        # For lag tools only (kafka-consumer-groups); where to resume comes from Postgres.
        tps = [TopicPartition(t, p, n) for t, p, _f, n in offsets.entries]
        try:
            self.consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as error:
            logger.debug("informational offset commit failed: %s", error)

    def _measure_lag(self) -> None:
        """On the consuming thread: the client is not to be called from the metrics thread
        while it consumes (that call blocks until the consume returns, or forever)."""
        lag: dict[Partition, int] = {}
        for (topic, partition), position in list(self.positions.items()):
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high < 0:  # nothing fetched yet: the last offset seen is the best estimate
                high = self.high_watermarks.get((topic, partition), position - 1) + 1
            lag[(topic, partition)] = max(high - position, 0)
        self.lag = lag

    def _lags(self) -> list[tuple[float, Mapping[str, str | int]]]:
        return [(n, {"topic": t, "partition": p}) for (t, p), n in self.lag.items()]


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""
