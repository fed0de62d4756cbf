"""The command side (/commands/graphql): mutations that become events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import strawberry
from strawberry.types import Info

from adapters.settings import RequestLimits
from api.consent_types import ConsentPurpose
from api.context import Context, EventStore
from api.scalars import JSON, Long
from api.schema_options import ProfileSchema
from domain import commands as c
from domain.normalise import check_count
from domain.segment import DefineSegment


@strawberry.input
class InteractionInput:
    event_id: strawberry.ID = strawberry.field(
        description="Chosen by the sender, unique per interaction; sending it again is a no-op "
        "(duplicate: true)."
    )
    customer_id: strawberry.ID
    type: str = strawberry.field(
        description="snake_case; known: page_view product_view add_to_cart checkout_started "
        "purchase email_open email_click; others allowed"
    )
    occurred_at: datetime
    session_id: str | None = None
    channel: str | None = strawberry.field(default=None, description="web, app, email, store, ...")
    properties: JSON | None = None


EVENT_ID = (
    "Optional idempotency key, as for interactions: a repeat with the same eventId writes "
    "nothing (duplicate: true)."
)


@strawberry.input
class TraitsInput:
    event_id: strawberry.ID | None = strawberry.field(default=None, description=EVENT_ID)
    customer_id: strawberry.ID
    traits: JSON = strawberry.field(
        description="Keys are camelCase; a null value removes the trait. Known: firstName "
        "lastName email phone gender birthDate country locale loyaltyTier."
    )
    source: str | None = None


@strawberry.input
class ConsentInput:
    event_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Optional idempotency key: a retry after UNAVAILABLE or a lost answer "
        "records the statement once.",
    )
    customer_id: strawberry.ID
    purpose: ConsentPurpose
    source: str = strawberry.field(
        description="Where it was captured: signup-form, preference-center, cookie-banner, ..."
    )
    policy_version: str | None = None
    occurred_at: datetime | None = None


@strawberry.input
class SegmentInput:
    id: strawberry.ID = strawberry.field(
        description="A slug such as high-intent; defining an existing id again replaces its "
        "rule (a new segment version)."
    )
    name: str
    description: str | None = None
    rule: JSON = strawberry.field(
        description="A condition tree, see SEGMENT RULES in the contract."
    )


@strawberry.input
class EraseInput:
    customer_id: strawberry.ID
    reason: str = strawberry.field(
        description="Why, for the record (e.g. 'GDPR art. 17 request #123'); kept in clear, "
        "so it must not contain the customer's personal data."
    )
    requested_by: str = strawberry.field(description="Who asked or approved (a staff id).")


@strawberry.type
class CommandResult:
    id: strawberry.ID = strawberry.field(description="The customer id, or the segment id.")
    version: int = strawberry.field(description="Version of the aggregate after the command.")
    position: Long = strawberry.field(
        description="Global position of the last event written (or of the original, for a "
        "duplicate). Pass it as minPosition to read your own write."
    )
    duplicate: bool
    suppressed: bool

    @classmethod
    def of(cls, r: c.CommandResult) -> CommandResult:
        return cls(
            id=strawberry.ID(r.id),
            version=r.version,
            position=Long(r.position),
            duplicate=r.duplicate,
            suppressed=r.suppressed,
        )


def _interaction(i: InteractionInput) -> Mapping[str, object]:
    return {
        "eventId": i.event_id,
        "customerId": i.customer_id,
        "type": i.type,
        "occurredAt": i.occurred_at,
        "sessionId": i.session_id,
        "channel": i.channel,
        "properties": i.properties,
    }


def _consent(i: ConsentInput) -> Mapping[str, object]:
    return {
        "eventId": i.event_id,
        "customerId": i.customer_id,
        "purpose": i.purpose.value,
        "source": i.source,
        "policyVersion": i.policy_version,
        "occurredAt": i.occurred_at,
    }


def _store(info: Info[Context, None]) -> EventStore:
    commands = info.context.services.commands
    assert commands is not None, "command side not wired"
    return commands.store


async def _run(info: Info[Context, None], unit: list[c.Command], op: str) -> list[CommandResult]:
    services = info.context.services
    assert services.commands is not None, "command side not wired"
    # The write itself runs on the group-commit thread, shared with other operations.
    with services.telemetry.span("event_store.write", operation=op, commands=len(unit)):
        results = await services.commands.run(unit)
    return [CommandResult.of(r) for r in results]


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def record_interaction(
        self, info: Info[Context, None], input: InteractionInput
    ) -> CommandResult:
        now = info.context.services.clock()
        command = c.RecordInteraction.parse(_interaction(input), now=now, field="input")
        return (await _run(info, [command], "recordInteraction"))[0]

    @strawberry.mutation(
        description="All in one transaction; each input is deduplicated on its own eventId."
    )
    async def record_interactions(
        self, info: Info[Context, None], inputs: list[InteractionInput]
    ) -> list[CommandResult]:
        check_count(len(inputs), "inputs", c.MAX_BATCH, "entries")
        now = info.context.services.clock()
        unit: list[c.Command] = [
            c.RecordInteraction.parse(_interaction(i), now=now, field=f"inputs[{n}]")
            for n, i in enumerate(inputs)
        ]
        return await _run(info, unit, "recordInteractions") if unit else []

    @strawberry.mutation
    async def update_traits(self, info: Info[Context, None], input: TraitsInput) -> CommandResult:
        raw = {
            "eventId": input.event_id,
            "customerId": input.customer_id,
            "traits": input.traits,
            "source": input.source,
        }
        command = c.UpdateTraits.parse(raw, field="input")
        return (await _run(info, [command], "updateTraits"))[0]

    @strawberry.mutation
    async def grant_consent(self, info: Info[Context, None], input: ConsentInput) -> CommandResult:
        now = info.context.services.clock()
        command = c.ChangeConsent.parse(_consent(input), granted=True, now=now, field="input")
        return (await _run(info, [command], "grantConsent"))[0]

    @strawberry.mutation
    async def withdraw_consent(
        self, info: Info[Context, None], input: ConsentInput
    ) -> CommandResult:
        now = info.context.services.clock()
        command = c.ChangeConsent.parse(_consent(input), granted=False, now=now, field="input")
        return (await _run(info, [command], "withdrawConsent"))[0]

    @strawberry.mutation(
        description="Right to erasure: personal data becomes unreadable everywhere, the fact "
        "of erasure stays on record."
    )
    async def erase_profile(self, info: Info[Context, None], input: EraseInput) -> CommandResult:
        raw = {
            "customerId": input.customer_id,
            "reason": input.reason,
            "requestedBy": input.requested_by,
        }
        command = c.EraseProfile.parse(raw, field="input")
        return (await _run(info, [command], "eraseProfile"))[0]

    @strawberry.mutation
    async def define_segment(self, info: Info[Context, None], input: SegmentInput) -> CommandResult:
        raw = {
            "id": input.id,
            "name": input.name,
            "description": input.description,
            "rule": input.rule,
        }
        command = DefineSegment.parse(raw, field="input")
        with info.context.services.telemetry.span("event_store.write", operation="defineSegment"):
            return CommandResult.of(await _store(info).call(lambda a: a.define_segment(command)))

    @strawberry.mutation
    async def retire_segment(self, info: Info[Context, None], id: strawberry.ID) -> CommandResult:
        with info.context.services.telemetry.span("event_store.write", operation="retireSegment"):
            return CommandResult.of(await _store(info).call(lambda a: a.retire_segment(str(id))))


@strawberry.type
class CommandQuery:
    @strawberry.field(description="The command side answers no reads; use /graphql.")
    def service(self) -> str:
        return "commands"


def build_command_schema(limits: RequestLimits | None = None) -> strawberry.Schema:
    return ProfileSchema(limits, query=CommandQuery, mutation=Mutation)
