"""How domain values the JSON transcoder does not know are stored (in events and snapshots)."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Transcoding

from domain.consent import ConsentPurpose, ConsentState


class ConsentStateAsDict(Transcoding):
    type = ConsentState
    name = "consent_state"

    def encode(self, obj: ConsentState) -> dict[str, Any]:
        return {
            "purpose": obj.purpose.value,
            "granted": obj.granted,
            "source": obj.source,
            "policy_version": obj.policy_version,
            "changed_at": obj.changed_at,
        }

    def decode(self, data: dict[str, Any]) -> ConsentState:
        return ConsentState(
            purpose=ConsentPurpose(data["purpose"]),
            granted=data["granted"],
            source=data["source"],
            policy_version=data["policy_version"],
            changed_at=data["changed_at"],
        )
