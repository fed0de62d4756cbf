"""Consent purposes and what they allow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class ConsentPurpose(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    PERSONALIZATION = "PERSONALIZATION"
    ANALYTICS = "ANALYTICS"


class ConsentModel(StrEnum):
    """How ANALYTICS consent gates tracking (PROFILES_CONSENT_MODEL)."""

    OPT_OUT = "opt-out"  # tracked unless withdrawn
    OPT_IN = "opt-in"  # tracked only once granted


@dataclass(frozen=True)
class ConsentState:
    purpose: ConsentPurpose
    granted: bool
    source: str | None
    policy_version: str | None
    changed_at: datetime

    def supersedes(self, other: ConsentState | None) -> bool:
        """Judged by event time: a change recorded late counts from when it happened."""
        return other is None or self.changed_at >= other.changed_at


def tracking_allowed(model: ConsentModel, analytics: ConsentState | None) -> bool:
    if analytics is None:
        return model is _OPT_OUT
    return analytics.granted


# Asked once per interaction: a module global is a cheaper lookup than an Enum member.
_OPT_OUT = ConsentModel.OPT_OUT
