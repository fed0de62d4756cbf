"""The use cases against an in-memory store: decisions, not I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.commands import ChangeConsent, Command, EraseProfile, RecordInteraction, UpdateTraits
from domain.consent import ConsentModel
from domain.customer import Customer
from domain.errors import InvalidInput, NotFound
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
