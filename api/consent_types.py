"""Consent types shared by the query and audit schemas."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.scalars import Long, utc
from domain.consent import ConsentPurpose
from projections.profile_queries import ConsentView

# The domain's enum is the contract's: registering it keeps one definition of the purposes.
strawberry.enum(ConsentPurpose, name="ConsentPurpose")


@strawberry.type
class ConsentState:
    purpose: ConsentPurpose
    granted: bool
    source: str | None
    policy_version: str | None
    changed_at: datetime | None
    # Added fields (the contract allows additions): the audit side's proof of which event.
    event_version: int | None = strawberry.field(
        default=None, description="Audit side: the version of the event that set this state."
    )
    event_position: Long | None = strawberry.field(
        default=None, description="Audit side: that event's global position."
    )
    recorded_at: datetime | None = strawberry.field(
        default=None, description="Audit side: when that event was recorded."
    )

    @classmethod
    def of(cls, v: ConsentView) -> ConsentState:
        return cls(
            purpose=v.purpose,
            granted=v.granted,
            source=v.source,
            policy_version=v.policy_version,
            changed_at=utc(v.changed_at),
        )


__all__ = ["ConsentPurpose", "ConsentState"]
