"""Each customer's data keys, in Postgres (`profiles_data_keys`, migration 0003), cached here.

A key is made the first time a customer's events are written, read back to decrypt them, and
nulled when the customer is erased (inside the erasure's own transaction, by the append
function). A process only ever caches keys; the table is the truth.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, Transcoder

from adapters import deadlines
from adapters.deadlines import DeadlinePassed
from domain.errors import CustomerErased

KEY_BYTES = 32  # AES-256
# Ciphers kept ready for the customers written to most recently (~2.4 KB each, ~20 MB). Setting
# up a cipher (AESGCM, and its key schedule on first use) cost about as much as the encryption;
# a customer active now is likely written to again soon, in the next batch or mutation.
WRITING = 8_192

_PREPARE = """
WITH wanted AS (
    SELECT * FROM unnest(%(ids)b::uuid[], %(keys)b::bytea[]) AS w(customer_id, key)
), created AS (
    INSERT INTO profiles_data_keys (customer_id, version, key)
    SELECT customer_id, 1, key FROM wanted
    ON CONFLICT DO NOTHING
    RETURNING customer_id, version, key
)
SELECT customer_id, version, key FROM created
UNION ALL
SELECT k.customer_id, k.version, k.key FROM profiles_data_keys k
WHERE k.customer_id = ANY(%(ids)b::uuid[])
"""
_LOAD = (
    "SELECT customer_id, version, key FROM profiles_data_keys WHERE customer_id = ANY(%b::uuid[])"
)
_ROTATE = """
INSERT INTO profiles_data_keys (customer_id, version, key)
SELECT k.customer_id, max(k.version) + 1, w.key
FROM profiles_data_keys k
JOIN unnest(%(ids)s::uuid[], %(keys)s::bytea[]) AS w(customer_id, key) USING (customer_id)
GROUP BY k.customer_id, w.key
HAVING bool_and(k.key IS NOT NULL)
RETURNING customer_id
"""
_PAGE = (
    "SELECT DISTINCT customer_id FROM profiles_data_keys WHERE customer_id > %s "
    "ORDER BY customer_id LIMIT %s"
)


@dataclass
class CustomerKeys:
    """One customer's keys by version; none left once the customer was erased.

    The raw keys are cached, not AESGCM objects: each of those holds ~2.4 KB of cipher state
    outside Python's heap, so a cache of 100,000 customers cost ~240 MB (a rebuild's memory
    grew with every customer it met). Making one takes ~1 us, less than the decryption. Writers
    keep a smaller cache of ready ciphers besides (PostgresDataKeys.for_writing).
    """

    secrets: dict[int, bytes] = field(default_factory=dict)
    shredded: bool = False

    @property
    def current(self) -> int:
        return max(self.secrets)

    def cipher(self, version: int) -> AESGCM | None:
        secret = self.secrets.get(version)
        return None if secret is None else AESGCM(secret)


class PostgresDataKeys:
    """The vault the application and the mapper use (domain.ports.PersonalDataVault)."""

    def __init__(
        self, database_url: str, *, cache_size: int = 100_000, writing_ciphers: int = WRITING
    ) -> None:
        self._url = database_url
        self._cache: OrderedDict[UUID, CustomerKeys] = OrderedDict()
        self._cache_size = cache_size
        self._writing: OrderedDict[UUID, tuple[int, AESGCM]] = OrderedDict()
        self._writing_size = writing_ciphers
        self._lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def mapper(self, transcoder: Transcoder) -> Mapper[UUID]:
        from adapters.personal_mapper import PersonalDataMapper  # the mapper needs this module

        return PersonalDataMapper(transcoder, self)

    # ---------------------------------------------------------------- the port

    def prepare(self, ids: Collection[UUID]) -> None:
        missing = self._missing(ids)
        if missing:
            fresh = [os.urandom(KEY_BYTES) for _ in missing]
            self._fetch(_PREPARE, {"ids": missing, "keys": fresh}, missing)
            # Another writer may have made the key after this statement's snapshot was taken:
            # its insert then did nothing and its read saw nothing. A new statement sees it.
            raced = [uid for uid in missing if self._get(uid) is None]
            if raced:
                self._fetch(_LOAD, (raced,), raced)

    def load(self, ids: Collection[UUID]) -> None:
        """Reads keys without making any (for readers: projectors, the audit side)."""
        missing = self._missing(ids)
        if missing:
            self._fetch(_LOAD, (missing,), missing)

    def forget(self, ids: Collection[UUID]) -> None:
        with self._lock:
            for uid in ids:
                self._cache.pop(uid, None)
                self._writing.pop(uid, None)

    # ---------------------------------------------------------------- for the mapper

    def for_writing(self, uid: UUID) -> tuple[int, AESGCM]:
        with self._lock:
            ready = self._writing.get(uid)
            if ready is not None:
                self._writing.move_to_end(uid)
                return ready
        keys = self._get(uid)
        if keys is None:
            self.prepare([uid])
            keys = self._get(uid)
        if keys is None or keys.shredded or not keys.secrets:
            raise CustomerErased(str(uid))
        version = keys.current
        ready = (version, AESGCM(keys.secrets[version]))
        with self._lock:
            self._writing[uid] = ready
            while len(self._writing) > self._writing_size:
                self._writing.popitem(last=False)
        return ready

    def for_reading(self, uid: UUID, version: int) -> AESGCM | None:
        keys = self._get(uid)
        if keys is None:
            self.load([uid])
            keys = self._get(uid)
        return None if keys is None else keys.cipher(version)

    # ---------------------------------------------------------------- administration

    def rotate(self, ids: Collection[UUID] | None = None, *, page: int = 5_000) -> int:
        """Gives each customer (all when `ids` is None) a new current key; older events keep
        naming the key that encrypted them. Erased customers get none."""
        rotated = 0
        for chunk in self._chunks(ids, page):
            fresh = [os.urandom(KEY_BYTES) for _ in chunk]
            rows = self._rows(_ROTATE, {"ids": chunk, "keys": fresh}, again=False)
            rotated += len(rows)
            self.forget(chunk)
        return rotated

    def _chunks(self, ids: Collection[UUID] | None, page: int) -> Iterator[list[UUID]]:
        if ids is not None:
            listed = list(ids)
            for start in range(0, len(listed), page):
                yield listed[start : start + page]
            return
        last = UUID(int=0)
        while True:
            chunk = [UUID(str(r[0])) for r in self._rows(_PAGE, (last, page))]
            if not chunk:
                return
            yield chunk
            last = chunk[-1]

    # ---------------------------------------------------------------- cache and store

    def _missing(self, ids: Collection[UUID]) -> list[UUID]:
        with self._lock:
            return [uid for uid in dict.fromkeys(ids) if uid not in self._cache]

    def _get(self, uid: UUID) -> CustomerKeys | None:
        with self._lock:
            keys = self._cache.get(uid)
            if keys is not None:
                self._cache.move_to_end(uid)
            return keys

    def _fetch(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any], wanted: list[UUID]
    ) -> None:
        found: dict[UUID, CustomerKeys] = {uid: CustomerKeys() for uid in wanted}
        for uid, version, key in self._rows(sql, params):
            keys = found[UUID(str(uid))]
            if key is None:
                keys.shredded = True
            else:
                keys.secrets[int(str(version))] = bytes(cast(bytes, key))
        with self._lock:
            for uid, keys in found.items():
                if keys.shredded:
                    keys.secrets.clear()
                elif not keys.secrets:
                    continue  # no row at all: not cached, so the next use asks again
                self._cache[uid] = keys
                self._writing.pop(uid, None)  # its current key may have changed
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _rows(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any], *, again: bool = True
    ) -> list[tuple[object, ...]]:
        """The statement's rows, on the vault's own autocommit connection (used under a lock:
        key reads are few, and must not wait on the event store's pool, which the same
        thread may be holding). With `again`, a statement that failed on a connection that
        died meanwhile is sent once more on a new one: reads, and inserts that do nothing on
        conflict, change nothing twice."""
        with self._conn_lock:
            while True:
                fresh = self._conn is None or self._conn.closed
                if fresh:
                    deadlines.check("connecting for data keys")
                    self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=2)
                conn = self._conn
                assert conn is not None
                try:
                    with deadlines.guarded(conn.fileno(), "reading data keys"):
                        return conn.execute(sql, params).fetchall()
                except (psycopg.OperationalError, DeadlinePassed) as error:
                    conn.close()  # a broken connection is reopened on next use
                    answered = getattr(error, "sqlstate", None) is not None
                    if fresh or not again or answered or isinstance(error, DeadlinePassed):
                        raise

    def close(self) -> None:
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
