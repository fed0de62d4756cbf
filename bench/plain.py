"""A plain eventsourcing Application: the library's own cost, with none of our additions.

One minimal aggregate with one event, the library's defaults (no snapshots, no aggregate cache,
one command per save), tables created by the library itself in a database of its own.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from psycopg.conninfo import conninfo_to_dict

PAYLOAD: dict[str, Any] = {
    "type": "product_view",
    "session_id": "s12345",
    "channel": "web",
    "properties": {"sku": "SKU-12345", "price": 19.99, "currency": "EUR", "path": "/p/12345"},
}


class Counter(Aggregate):
    class Started(Aggregate.Created):
        name: str

    class Touched(Aggregate.Event):
        payload: dict[str, Any]

        def apply(self, aggregate: Counter) -> None:
            aggregate.touches += 1

    def __init__(self, name: str) -> None:
        self.name = name
        self.touches = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"bench:{name}")

    @classmethod
    def start(cls, name: str) -> Counter:
        return cls._create(cls.Started, name=name)

    def touch(self, payload: dict[str, Any]) -> None:
        self.trigger_event(self.Touched, payload=payload)


class PlainApplication(Application[UUID]):
    name = "plainbench"

    def touch(self, name: str) -> None:
        """Get (or start) the aggregate, add one event, save: one command, one transaction."""
        try:
            counter = cast(Counter, self.repository.get(Counter.create_id(name)))
        except AggregateNotFoundError:
            counter = Counter.start(name)
        counter.touch(PAYLOAD)
        self.save(counter)


def plain_env(database_url: str, *, pool_size: int = 5, max_overflow: int = 10) -> dict[str, str]:
    params = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        "CREATE_TABLE": "y",
    }
