"""Right of access: everything held about one customer, as one JSON-ready document (pure).

Built from the customer's events and the segment definitions alone: the score and segment
membership are worked out from scratch at `now` with the same maths the read models use, so the
document does not depend on any read model being current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.audit import ConsentRecord, Positioned, consent_history, profile_as_of
from domain.consent import ConsentState
from domain.customer import Customer
from domain.evaluation import evaluate
from domain.facts import Facts, event_conditions, keep_per_key
from domain.normalise import format_utc
from domain.privacy import forgotten
from domain.rules import Rule
from domain.score import ScoreModel

FORMAT = "profiles-export/1"


def export_document(
    customer_id: str,
    events: Sequence[Positioned],
    *,
    segments: Mapping[str, Rule],
    model: ScoreModel,
    now: datetime,
) -> dict[str, Any] | None:
    """None for a customer never seen. An erased customer's document says so and holds no
    personal data: there is none left to give."""
    customer = profile_as_of(events)
    if customer is None:
        return None
    interactions = [
        (p, e)
        for p, e in events
        if isinstance(e, Customer.InteractionRecorded) and not forgotten(e)
    ]
    facts = _facts(customer, (e for _, e in interactions), segments.values(), model, now)
    return {
        "format": FORMAT,
        "exportedAt": format_utc(now),
        **profile_document(customer_id, customer),
        "consentHistory": [_record(r) for r in consent_history(events)],
        "interactions": [_interaction(p, e) for p, e in interactions],
        "engagementScore": 0.0 if customer.erased else facts.score.at(model, now),
        "segments": []
        if customer.erased
        else sorted(sid for sid, rule in segments.items() if evaluate(rule, facts, model, now)),
    }


def profile_document(customer_id: str, customer: Customer) -> dict[str, Any]:
    """The audit side's AuditProfile as plain JSON (what `profiles replay` prints)."""
    return {
        "customerId": customer_id,
        "version": customer.version,
        "traits": dict(customer.traits or {}),
        "consents": [_consent(s) for _, s in sorted((customer.consents or {}).items())],
        "interactionCount": customer.interaction_count,
        "erased": customer.erased,
    }


def _facts(
    customer: Customer,
    interactions: Iterable[Customer.InteractionRecorded],
    rules: Iterable[Rule],
    model: ScoreModel,
    now: datetime,
) -> Facts:
    rules = list(rules)
    conditions = [c for rule in rules for c in event_conditions(rule)]
    keep = keep_per_key(rules)
    consents = {p: s.granted for p, s in (customer.consents or {}).items()}
    facts = Facts(traits=dict(customer.traits or {}), consents=consents)
    for e in interactions:
        facts = facts.with_interaction(
            e.type,
            e.properties,
            e.occurred_at,
            conditions=conditions,
            keep=keep,
            model=model,
            now=now,
        )
    return facts


def _consent(state: ConsentState) -> dict[str, Any]:
    return {
        "purpose": state.purpose.value,
        "granted": state.granted,
        "source": state.source,
        "policyVersion": state.policy_version,
        "changedAt": format_utc(state.changed_at),
    }


def _record(record: ConsentRecord) -> dict[str, Any]:
    assert record.state is not None
    return {
        **_consent(record.state),
        "version": record.version,
        "position": record.position,
        "recordedAt": format_utc(record.recorded_at) if record.recorded_at else None,
    }


def _interaction(position: int, e: Customer.InteractionRecorded) -> dict[str, Any]:
    return {
        "eventId": e.event_id,
        "type": e.type,
        "occurredAt": format_utc(e.occurred_at),
        "recordedAt": format_utc(e.timestamp),
        "sessionId": e.session_id,
        "channel": e.channel,
        "properties": e.properties,
        # Also for events stored before the field existed: the mapper upcasts them on reading.
        "currency": e.currency,
        "position": position,
    }
