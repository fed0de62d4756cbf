"""The query side (/graphql): profiles for send and render time, read from Redis only."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from adapters.settings import RequestLimits
from api.consent_types import ConsentState
from api.context import Context
from api.scalars import JSON, Long, utc
from api.schema_options import ProfileSchema
from domain.errors import InvalidInput
from domain.normalise import check_count, check_id, check_page, check_text
from projections.profile import RECENT_KEPT
from projections.profile_queries import ProfileView
from projections.segment_state import Definition

PRELOADED_RECENT = 10  # the default page; a larger `first` costs one more read
MAX_BATCH = 500
MAX_MEMBERS = 1_000


@strawberry.type
class Interaction:
    event_id: strawberry.ID
    type: str
    occurred_at: datetime
    channel: str | None
    session_id: str | None
    properties: JSON

    @classmethod
    def of(cls, item: dict[str, object]) -> Interaction:
        return cls(
            event_id=strawberry.ID(str(item["eventId"])),
            type=str(item["type"]),
            occurred_at=datetime.fromisoformat(str(item["occurredAt"])),
            channel=item.get("channel"),  # type: ignore[arg-type]
            session_id=item.get("sessionId"),  # type: ignore[arg-type]
            properties=JSON(item.get("properties") or {}),
        )


@strawberry.type
class Profile:
    view: strawberry.Private[ProfileView]

    @strawberry.field
    def customer_id(self) -> strawberry.ID:
        return strawberry.ID(self.view.customer_id)

    @strawberry.field(description="The customer aggregate version reflected in this read model.")
    def version(self) -> int:
        return self.view.version

    @strawberry.field(description="Contact and identity traits are always returned.")
    def traits(self) -> JSON:
        return JSON(self.view.traits)

    @strawberry.field
    def consents(self) -> list[ConsentState]:
        return [ConsentState.of(c) for c in self.view.consents]

    @strawberry.field
    def can_email(self) -> bool:
        return self.view.can_email

    @strawberry.field
    def can_personalize(self) -> bool:
        return self.view.can_personalize

    @strawberry.field(
        description="At query time, per the contract's formula; 0 unless canPersonalize."
    )
    def engagement_score(self) -> float:
        return self.view.engagement_score

    @strawberry.field(
        description="Ids of the segments the profile is in; [] unless canPersonalize."
    )
    def segments(self) -> list[strawberry.ID]:
        return [strawberry.ID(s) for s in self.view.segments]

    @strawberry.field(description="Blank unless canPersonalize.")
    def interaction_counts(self) -> JSON:
        return JSON(self.view.interaction_counts)

    @strawberry.field
    def first_seen_at(self) -> datetime | None:
        return utc(self.view.first_seen_at)

    @strawberry.field
    def last_seen_at(self) -> datetime | None:
        return utc(self.view.last_seen_at)

    @strawberry.field(description=f"Newest first; at most {RECENT_KEPT} are kept.")
    async def recent_interactions(
        self, info: Info[Context, None], first: int | None = 10
    ) -> list[Interaction]:
        first = 10 if first is None else first  # the contract's Int = 10: null is the default
        if first < 0:
            raise InvalidInput("first", f"is {first}; send 0 to {RECENT_KEPT}")
        items = self.view.recent
        if first > PRELOADED_RECENT and self.view.can_personalize:
            fresh = await info.context.read(
                info.context.profiles().get(self.view.customer_id, recent=first)
            )
            items = fresh.recent if fresh is not None else ()
        return [Interaction.of(i) for i in items[:first]]


@strawberry.type
class MemberPage:
    customer_ids: list[strawberry.ID]
    end_cursor: str | None
    has_next_page: bool


@strawberry.type
class Segment:
    definition: strawberry.Private[Definition]
    size: int

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.definition.segment_id)

    @strawberry.field
    def name(self) -> str:
        return self.definition.name

    @strawberry.field
    def description(self) -> str | None:
        return self.definition.description

    @strawberry.field
    def rule(self) -> JSON:
        return JSON(self.definition.rule_json)

    @strawberry.field
    def version(self) -> int:
        return self.definition.version

    @strawberry.field(description="filling while existing profiles are being evaluated; then live")
    def state(self) -> str:
        return self.definition.state

    @strawberry.field
    async def members(
        self, info: Info[Context, None], first: int | None = 100, after: str | None = None
    ) -> MemberPage:
        first = 100 if first is None else first  # the contract's Int = 100: null is the default
        check_page(first, MAX_MEMBERS)
        if after is not None:
            check_text(after, "after")
        segments = info.context.services.segments
        assert segments is not None
        page = await info.context.read(segments.members(self.definition.segment_id, first, after))
        return MemberPage(
            customer_ids=[strawberry.ID(c) for c in page.customer_ids],
            end_cursor=page.end_cursor,
            has_next_page=page.has_next_page,
        )


@strawberry.type
class ProjectionStatus:
    name: str
    version: int = strawberry.field(description="Read-model schema version being served.")
    position: Long
    head_position: Long
    lag: Long
    state: str = strawberry.field(
        description="live; rebuilding (a new version is being built while this one serves); "
        "stalled (no word from its projector for longer than the configured bound: position "
        "and lag are then the last known, and the read model may be behind)"
    )
    updated_at: datetime | None = strawberry.field(
        default=None,
        description="When the projector last reported, whether or not there was anything to "
        "project.",
    )
    rebuild_version: int | None = strawberry.field(
        default=None, description="While rebuilding: the version being built."
    )
    rebuild_position: Long | None = strawberry.field(
        default=None,
        description="While rebuilding: the position the new version has reached (in its first "
        "pass, stream by stream, the events applied so far).",
    )


def _loader(context: Context) -> DataLoader[str, ProfileView | None]:
    if context.profile_loader is None:
        queries = context.profiles()

        async def load(ids: list[str]) -> list[ProfileView | None]:
            return await context.read(queries.get_many(ids, recent=PRELOADED_RECENT))

        context.profile_loader = DataLoader(load_fn=load, max_batch_size=MAX_BATCH)
    return context.profile_loader


async def _wait_for(context: Context, position: int) -> None:
    """Read-your-writes: poll the projector's position until it passes `position`, bounded.

    A timeout still answers (a send must not fail for a slow projector) but says so in the
    response's `extensions.readYourWrites`, so the caller can tell the data may be older.
    """
    status = context.services.status
    assert status is not None
    deadline = time.monotonic() + context.services.settings.min_position_timeout
    pause = 0.001
    while (reached := await context.read(status.lowest_position())) < position:
        if time.monotonic() >= deadline:
            context.request.state.read_your_writes = {
                "minPosition": position,
                "reached": False,
                "position": reached,
            }
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.02)


def _visible(view: ProfileView | None) -> Profile | None:
    return None if view is None else Profile(view=view.blanked())


@strawberry.type
class Query:
    @strawberry.field(
        description="Null for an unknown or erased customer. With minPosition, waits (bounded, "
        "default at most 2 s) until the read models have reached that position."
    )
    async def profile(
        self,
        info: Info[Context, None],
        customer_id: strawberry.ID,
        min_position: Long | None = None,
    ) -> Profile | None:
        check_id(customer_id, "customerId")
        if min_position is not None and min_position < 0:
            raise InvalidInput("minPosition", f"is {min_position}; send a position from 0 on")
        if min_position:
            await _wait_for(info.context, int(min_position))
        return _visible(await _loader(info.context).load(str(customer_id)))

    @strawberry.field(description="Batch lookup; one entry per id, in order, null where unknown.")
    async def profiles(
        self, info: Info[Context, None], customer_ids: list[strawberry.ID]
    ) -> list[Profile | None]:
        check_count(len(customer_ids), "customerIds", MAX_BATCH, "ids")
        for n, customer_id in enumerate(customer_ids):
            check_id(customer_id, f"customerIds[{n}]")
        views = await _loader(info.context).load_many([str(c) for c in customer_ids])
        return [_visible(v) for v in views]

    @strawberry.field
    async def segment(self, info: Info[Context, None], id: strawberry.ID) -> Segment | None:
        check_id(id, "id")
        segments = info.context.services.segments
        assert segments is not None
        found = await info.context.read(segments.get(str(id)))
        return None if found is None else Segment(definition=found[0], size=found[1])

    @strawberry.field
    async def segments(self, info: Info[Context, None]) -> list[Segment]:
        segments = info.context.services.segments
        assert segments is not None
        return [Segment(definition=d, size=n) for d, n in await info.context.read(segments.all())]

    @strawberry.field
    async def projections(self, info: Info[Context, None]) -> list[ProjectionStatus]:
        status = info.context.services.status
        assert status is not None
        return [
            ProjectionStatus(
                name=s.name,
                version=s.version,
                position=Long(s.position),
                head_position=Long(s.head),
                lag=Long(max(s.head - s.position, 0)),
                state=s.state,
                updated_at=s.updated_at,
                rebuild_version=s.rebuild_version,
                rebuild_position=None if s.rebuild_position is None else Long(s.rebuild_position),
            )
            for s in await info.context.read(status.all())
        ]


def build_query_schema(limits: RequestLimits | None = None) -> strawberry.Schema:
    return ProfileSchema(limits, query=Query)
