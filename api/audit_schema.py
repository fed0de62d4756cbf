"""The audit side (/audit/graphql): the immutable history, read from the event store only."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from api.context import Context
from api.scalars import JSON, Long, utc
from api.schema_options import ProfileSchema
from domain.errors import InvalidInput
from domain.ids import customer_uuid
from domain.normalise import format_utc

MAX_PAGE = 1_000
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@strawberry.type
class RecordedEvent:
    version: int
    position: Long | None
    type: str
    recorded_at: datetime
    occurred_at: datetime | None
    data: JSON

    @classmethod
    def of(cls, position: int, event: Any) -> RecordedEvent:
        fields = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
        occurred = fields.get("occurred_at")
        return cls(
            version=event.originator_version,
            position=Long(position),
            type=type(event).__name__,
            recorded_at=utc(event.timestamp),  # type: ignore[arg-type]
            occurred_at=utc(occurred) if isinstance(occurred, datetime) else None,
            data=JSON({_camel(k): _plain(v) for k, v in fields.items()}),
        )


@strawberry.type
class HistoryPage:
    events: list[RecordedEvent]
    has_next_page: bool


@strawberry.type
class AuditQuery:
    @strawberry.field(description="Every stored event of the customer, oldest first.")
    async def history(
        self,
        info: Info[Context, None],
        customer_id: strawberry.ID,
        after: int = 0,
        first: int = 100,
    ) -> HistoryPage:
        if not 0 < first <= MAX_PAGE:
            raise InvalidInput("first", f"is {first}; send 1 to {MAX_PAGE}")
        if after < 0:
            raise InvalidInput("after", f"is {after}; send a version, 0 for the start")
        app = info.context.services.audit_app
        assert app is not None, "audit side not wired"
        uid = customer_uuid(str(customer_id))
        # The store is synchronous; keep the event loop free while it answers.
        rows = await asyncio.to_thread(
            app.recorder.select_stream,  # type: ignore[attr-defined]
            uid,
            after=after,
            limit=first + 1,
        )
        events = [RecordedEvent.of(pos, app.mapper.to_domain_event(s)) for pos, s in rows[:first]]
        return HistoryPage(events=events, has_next_page=len(rows) > first)


def build_audit_schema() -> strawberry.Schema:
    return ProfileSchema(query=AuditQuery)
