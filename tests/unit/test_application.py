"""The use cases against an in-memory store: decisions, not I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.commands import ChangeConsent, Command, EraseProfile, RecordInteraction, UpdateTraits
from domain.consent import ConsentModel
from domain.customer import Customer
from domain.errors import CustomerErased, InvalidInput, NotFound
from tests.fakes import FakeClock, memory_app


def interaction(
    event_id: str, customer: str = "c-1", clock: FakeClock | None = None, **extra: object
) -> RecordInteraction:
    now = (clock or FakeClock())()
    raw = {
        "eventId": event_id,
        "customerId": customer,
        "type": "page_view",
        "occurredAt": now.isoformat(),
    }
    return RecordInteraction.parse({**raw, **extra}, now=now, field="input")


def consent(
    granted: bool, purpose: str = "ANALYTICS", customer: str = "c-1", **extra: object
) -> ChangeConsent:
    raw = {"customerId": customer, "purpose": purpose, "source": "signup-form", **extra}
    return ChangeConsent.parse(raw, granted=granted, now=FakeClock()(), field="input")


def test_first_interaction_registers_the_customer_and_returns_its_position() -> None:
    app = memory_app()
    result = app.record_interaction(interaction("e-1"))
    assert (result.id, result.version, result.position) == ("c-1", 2, 2)
    assert not result.duplicate and not result.suppressed
    customer = app.customer_at("c-1")
    assert customer is not None and customer.interaction_count == 1


def test_repeated_event_id_is_a_duplicate_pointing_at_the_original() -> None:
    app = memory_app()
    first = app.record_interaction(interaction("e-1"))
    again = app.record_interaction(interaction("e-1"))
    assert again.duplicate and (again.position, again.version) == (first.position, first.version)
    assert app.recorder.max_notification_id() == 2


def test_duplicate_inside_one_batch_is_stored_once() -> None:
    app = memory_app()
    results = app.record_interactions([interaction("e-1"), interaction("e-1")])
    assert [r.duplicate for r in results] == [False, True]
    assert results[1].position == results[0].position


def test_without_positions_results_still_tell_what_failed_and_everything_is_stored() -> None:
    app = memory_app()
    nobody = EraseProfile(customer_id="nobody", reason="asked", requested_by="dpo")
    units: list[list[Command]] = [
        [interaction("e-1")],
        [nobody],
        [interaction("e-2", customer="c-2")],
        [interaction("e-1")],
    ]
    outcomes = app.execute(units, positions=False)
    assert isinstance(outcomes[1], NotFound)
    results = [o[0] for o in outcomes if isinstance(o, list)]
    assert [(r.position, r.duplicate) for r in results] == [(0, False), (0, False), (0, True)]
    assert app.recorder.max_notification_id() == 4  # two registrations, two interactions


def test_withdrawn_analytics_suppresses_interactions_under_opt_out() -> None:
    app = memory_app()
    withdrawn = app.withdraw_consent(consent(False))
    result = app.record_interaction(interaction("e-1"))
    # Nothing written: the position is the latest event's, so minPosition shows the withdrawal.
    assert result.suppressed and result.position == withdrawn.position
    customer = app.customer_at("c-1")
    assert customer is not None and customer.interaction_count == 0


def test_opt_in_stores_nothing_until_analytics_is_granted() -> None:
    app = memory_app(consent_model=ConsentModel.OPT_IN)
    assert app.record_interaction(interaction("e-1")).suppressed
    assert app.customer_at("c-1") is None
    app.grant_consent(consent(True))
    assert not app.record_interaction(interaction("e-2")).suppressed


def test_late_recorded_older_consent_change_does_not_override_a_newer_one() -> None:
    app = memory_app()
    clock = FakeClock()
    app.withdraw_consent(consent(False, occurredAt=clock().isoformat()))
    earlier = (clock() - timedelta(days=1)).isoformat()
    app.grant_consent(consent(True, occurredAt=earlier))
    customer = app.customer_at("c-1")
    assert customer is not None
    assert customer.consents["ANALYTICS"].granted is False
    assert app.record_interaction(interaction("e-1")).suppressed


def test_unchanged_traits_record_no_event() -> None:
    app = memory_app()
    update = UpdateTraits.parse(
        {"customerId": "c-1", "traits": {"email": " A@B.example "}}, field="input"
    )
    first = app.update_traits(update)
    second = app.update_traits(update)
    assert first.version == second.version == 2
    assert first.position == second.position == 2
    customer = app.customer_at("c-1")
    assert customer is not None and customer.traits == {"email": "a@b.example"}


def test_null_trait_removes_it() -> None:
    app = memory_app()
    app.update_traits(
        UpdateTraits.parse({"customerId": "c-1", "traits": {"phone": "+49 170 1234567"}}, field="i")
    )
    app.update_traits(
        UpdateTraits.parse({"customerId": "c-1", "traits": {"phone": None}}, field="i")
    )
    customer = app.customer_at("c-1")
    assert customer is not None and customer.traits == {}


def test_interaction_more_than_five_minutes_ahead_is_refused_with_its_field() -> None:
    clock = FakeClock()
    ahead = (clock() + timedelta(minutes=6)).isoformat()
    with pytest.raises(InvalidInput) as error:
        interaction("e-1", occurredAt=ahead)
    assert error.value.field == "input.occurredAt"


def test_unknown_purpose_is_refused_listing_the_purposes() -> None:
    with pytest.raises(InvalidInput, match="EMAIL, SMS, PERSONALIZATION, ANALYTICS"):
        consent(True, purpose="COOKIES")


def test_snapshot_is_taken_when_a_batch_crosses_the_interval() -> None:
    app = memory_app(snapshot_interval=10)
    app.record_interactions([interaction(f"e-{i}") for i in range(12)])
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(Customer.create_id("c-1")))
    assert [s.originator_version for s in snapshots] == [13]


def test_customer_rebuilt_from_a_snapshot_equals_the_live_one() -> None:
    app = memory_app(snapshot_interval=5)
    app.grant_consent(consent(True, purpose="EMAIL"))
    app.record_interactions([interaction(f"e-{i}") for i in range(7)])
    live = app.customer_at("c-1")
    assert live is not None
    # A version-pinned get bypasses the cache: snapshot at 5, then events 6..9 from the store.
    rebuilt = app.customer_at("c-1", version=live.version)
    assert rebuilt is not None and rebuilt is not live
    assert (rebuilt.version, rebuilt.consents, rebuilt.interaction_count) == (
        live.version,
        live.consents,
        live.interaction_count,
    )


def traits(event_id: str | None = None, **values: object) -> UpdateTraits:
    raw: dict[str, object] = {"customerId": "c-1", "traits": values or {"firstName": "Ada"}}
    if event_id is not None:
        raw["eventId"] = event_id
    return UpdateTraits.parse(raw, field="input")


def test_a_consent_sent_again_with_its_event_id_is_recorded_once() -> None:
    app = memory_app()
    first = app.grant_consent(consent(True, eventId="k-1"))
    again = app.grant_consent(consent(True, eventId="k-1"))
    assert again.duplicate and (again.version, again.position) == (first.version, first.position)
    stored = app.recorder.select_notifications(start=1, limit=10)
    assert [n.topic.rsplit(".", 1)[-1] for n in stored] == ["Registered", "ConsentGranted"]


def test_a_traits_update_sent_again_with_its_event_id_is_not_applied_again() -> None:
    app = memory_app()
    first = app.update_traits(traits("t-1", loyaltyTier="gold"))
    app.update_traits(traits(loyaltyTier="silver"))
    # A late retry of the first update must not turn the tier back to gold.
    again = app.update_traits(traits("t-1", loyaltyTier="gold"))
    assert again.duplicate and again.position == first.position
    customer = app.customer_at("c-1")
    assert customer is not None and customer.traits["loyaltyTier"] == "silver"


def test_an_update_that_changed_nothing_still_claims_its_event_id() -> None:
    app = memory_app()
    app.update_traits(traits(loyaltyTier="gold"))
    unchanged = app.update_traits(traits("t-2", loyaltyTier="gold"))
    assert not unchanged.duplicate
    app.update_traits(traits(loyaltyTier="silver"))
    again = app.update_traits(traits("t-2", loyaltyTier="gold"))
    assert again.duplicate and again.position == unchanged.position > 0
    customer = app.customer_at("c-1")
    assert customer is not None and customer.traits["loyaltyTier"] == "silver"


def test_interactions_traits_and_consents_share_one_namespace_of_event_ids() -> None:
    app = memory_app()
    app.record_interaction(interaction("same"))
    assert app.grant_consent(consent(True, eventId="same")).duplicate


def test_a_repeated_event_id_of_an_erased_customer_answers_erased() -> None:
    app = memory_app()
    app.record_interaction(interaction("e-1"))
    app.erase_profile(EraseProfile.parse(_erasure(), field="input"))
    with pytest.raises(CustomerErased):
        app.record_interaction(interaction("e-1"))
    with pytest.raises(CustomerErased):
        app.grant_consent(consent(True, eventId="e-1"))


def _erasure() -> dict[str, object]:
    return {"customerId": "c-1", "reason": "GDPR art. 17 request", "requestedBy": "staff-1"}
