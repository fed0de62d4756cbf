"""Consent types shared by the query and audit schemas."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.scalars import utc
from domain.consent import ConsentPurpose
from projections.profile import ConsentView

# The domain's enum is the contract's: registering it keeps one definition of the purposes.
strawberry.enum(ConsentPurpose, name="ConsentPurpose")


@strawberry.type
class ConsentState:
    purpose: ConsentPurpose
    granted: bool
    source: str | None
    policy_version: str | None
    changed_at: datetime | None

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
