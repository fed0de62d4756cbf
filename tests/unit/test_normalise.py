from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.countries import ISO_3166_ALPHA2
from domain.errors import InvalidInput
from domain.normalise import (
    SNAKE_CASE,
    format_utc,
    normalise_traits,
    parse_utc,
    validate_name,
    validate_properties,
)


def refusal(call: Callable[..., object], *args: object, **kwargs: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    return caught.value


# parse_utc / format_utc ----------------------------------------------------------------------


def test_parse_utc_converts_an_offset_string_to_utc() -> None:
    parsed = parse_utc("2026-05-01T14:00:00+02:00", "occurredAt")
    assert parsed == datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parsed.tzinfo is UTC


def test_parse_utc_accepts_z_suffix() -> None:
    assert parse_utc("2026-05-01T12:00:00Z", "occurredAt") == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_parse_utc_accepts_lower_case_t_and_z() -> None:
    assert parse_utc("2026-05-01t12:00:00z", "occurredAt") == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_parse_utc_truncates_fraction_beyond_microseconds() -> None:
    parsed = parse_utc("2026-05-01T12:00:00.1234567Z", "occurredAt")
    assert parsed.microsecond == 123456


def test_parse_utc_converts_an_aware_datetime_to_utc() -> None:
    berlin_summer = timezone(timedelta(hours=2))
    parsed = parse_utc(datetime(2026, 5, 1, 14, tzinfo=berlin_summer), "occurredAt")
    assert parsed == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_parse_utc_refuses_string_without_offset_naming_the_fix() -> None:
    error = refusal(parse_utc, "2026-05-01T12:00:00", "occurredAt")
    assert error.field == "occurredAt"
    assert "has no UTC offset" in error.message
    assert "2026-05-01T12:00:00Z" in error.message


def test_parse_utc_refuses_naive_datetime() -> None:
    error = refusal(parse_utc, datetime(2026, 5, 1, 12), "occurredAt")
    assert error.field == "occurredAt"
    assert "has no UTC offset" in error.message


def test_parse_utc_refuses_text_that_is_no_date_time() -> None:
    error = refusal(parse_utc, "yesterday", "occurredAt")
    assert error.field == "occurredAt"
    assert "'yesterday' is not an RFC 3339 date-time" in error.message


def test_parse_utc_refuses_impossible_month() -> None:
    error = refusal(parse_utc, "2026-13-01T00:00:00Z", "occurredAt")
    assert "month must be in 1..12" in error.message


def test_parse_utc_refuses_an_instant_before_year_one_in_utc() -> None:
    error = refusal(parse_utc, "0001-01-01T00:00:00+01:00", "occurredAt")
    assert error.field == "occurredAt"
    assert "outside years 1-9999" in error.message


def test_format_utc_is_fixed_width_with_six_fraction_digits_and_z() -> None:
    assert format_utc(datetime(2026, 5, 1, 12, tzinfo=UTC)) == "2026-05-01T12:00:00.000000Z"


def test_format_utc_converts_other_offsets_to_utc() -> None:
    minus_three = timezone(timedelta(hours=-3))
    assert (
        format_utc(datetime(2026, 5, 1, 9, 0, 0, 5, minus_three)) == "2026-05-01T12:00:00.000005Z"
    )


def test_format_utc_zero_pads_early_years() -> None:
    assert format_utc(datetime(5, 1, 1, tzinfo=UTC)) == "0005-01-01T00:00:00.000000Z"


def test_format_utc_refuses_a_naive_datetime_as_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_utc(datetime(2026, 5, 1))


offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# A day's margin at either end keeps every offset's UTC instant inside datetime's range.
aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)


@given(aware_datetimes, aware_datetimes)
def test_format_utc_strings_sort_like_the_instants(a: datetime, b: datetime) -> None:
    assert (format_utc(a) < format_utc(b)) == (a < b)
    assert (format_utc(a) == format_utc(b)) == (a == b)


@given(aware_datetimes)
def test_parse_utc_round_trips_format_utc_at_microsecond_precision(moment: datetime) -> None:
    parsed = parse_utc(format_utc(moment), "occurredAt")
    assert parsed == moment
    assert parsed.tzinfo is UTC


# normalise_traits: shape ---------------------------------------------------------------------


def test_traits_must_be_an_object_with_an_example() -> None:
    error = refusal(normalise_traits, ["a@b.example"])
    assert error.field == "traits"
    assert '{"email": "a@b.example"}' in error.message
    assert "not a list" in error.message


def test_traits_field_path_follows_the_given_field() -> None:
    error = refusal(normalise_traits, {"country": "XX"}, field="input.traits")
    assert error.field == "input.traits.country"


def test_snake_case_trait_name_suggests_camel_case() -> None:
    error = refusal(normalise_traits, {"first_name": "Ann"})
    assert error.field == "traits.first_name"
    assert "'first_name' is not camelCase; use 'firstName'" in error.message


def test_upper_case_trait_name_suggests_camel_case() -> None:
    error = refusal(normalise_traits, {"FirstName": "Ann"})
    assert "use 'firstName'" in error.message


def test_trait_name_starting_with_digit_explains_camel_case() -> None:
    error = refusal(normalise_traits, {"1st": "x"})
    assert error.field == "traits.1st"
    assert "a lower-case letter followed by letters and digits" in error.message


def test_empty_trait_name_is_refused() -> None:
    error = refusal(normalise_traits, {"": "x"})
    assert error.field == "traits"
    assert "camelCase" in error.message


def test_more_than_100_traits_are_refused() -> None:
    error = refusal(normalise_traits, {f"t{i}": i for i in range(101)})
    assert error.field == "traits"
    assert "has 101 traits; at most 100" in error.message


def test_exactly_100_traits_are_accepted() -> None:
    assert len(normalise_traits({f"t{i}": i for i in range(100)})) == 100


def test_null_trait_is_kept_as_none_meaning_remove() -> None:
    assert normalise_traits({"email": None, "favouriteColour": None}) == {
        "email": None,
        "favouriteColour": None,
    }


def test_scalar_values_pass_through_unchanged() -> None:
    traits = {"vip": True, "orders": 3, "score": 0.5, "nickname": "Ann"}
    assert normalise_traits(traits) == traits


def test_flat_list_of_scalars_is_accepted() -> None:
    assert normalise_traits({"tags": ["a", 1, 2.5, False]}) == {"tags": ["a", 1, 2.5, False]}


def test_nested_object_trait_is_refused() -> None:
    error = refusal(normalise_traits, {"address": {"city": "Berlin"}})
    assert error.field == "traits.address"
    assert "nested objects are not traits" in error.message
    assert "addressCity" in error.message


def test_nested_list_in_trait_list_is_refused_with_index() -> None:
    error = refusal(normalise_traits, {"tags": ["a", ["b"]]})
    assert error.field == "traits.tags[1]"
    assert "only strings, numbers and booleans" in error.message


def test_null_inside_trait_list_is_refused() -> None:
    error = refusal(normalise_traits, {"tags": [None]})
    assert error.field == "traits.tags[0]"


def test_non_finite_float_trait_is_refused() -> None:
    error = refusal(normalise_traits, {"score": float("nan")})
    assert error.field == "traits.score"
    assert "finite number" in error.message


def test_string_over_1000_characters_is_refused() -> None:
    error = refusal(normalise_traits, {"bio": "x" * 1001})
    assert error.field == "traits.bio"
    assert "is 1001 characters; at most 1000" in error.message


def test_string_of_1000_characters_is_accepted() -> None:
    assert normalise_traits({"bio": "x" * 1000}) == {"bio": "x" * 1000}


def test_lone_surrogate_is_refused_before_it_reaches_the_store() -> None:
    error = refusal(normalise_traits, {"nickname": json.loads('"\\ud800"')})
    assert error.field == "traits.nickname"
    assert "surrogate" in error.message


def test_encoded_size_over_limit_is_refused_with_both_numbers() -> None:
    traits = {"bio": "ä" * 1000}  # two UTF-8 bytes each
    size = len(json.dumps(traits, separators=(",", ":"), ensure_ascii=False).encode())
    error = refusal(normalise_traits, traits, max_bytes=size - 1)
    assert error.field == "traits"
    assert error.message == f"is {size} bytes; the limit is {size - 1}"


def test_encoded_size_at_limit_is_accepted() -> None:
    traits = {"bio": "ä" * 1000}
    size = len(json.dumps(traits, separators=(",", ":"), ensure_ascii=False).encode())
    assert normalise_traits(traits, max_bytes=size) == traits


def test_other_offset_timestamp_string_becomes_fixed_width_utc() -> None:
    traits = normalise_traits({"lastSeenAt": "2026-05-01T14:00:00+02:00"})
    assert traits == {"lastSeenAt": "2026-05-01T12:00:00.000000Z"}


def test_timestamp_strings_inside_lists_become_utc() -> None:
    traits = normalise_traits({"visits": ["2026-05-01T12:00:00Z"]})
    assert traits == {"visits": ["2026-05-01T12:00:00.000000Z"]}


def test_timestamp_without_offset_stays_a_plain_string() -> None:
    assert normalise_traits({"note": "2026-05-01T12:00:00"}) == {"note": "2026-05-01T12:00:00"}


def test_ordinary_text_is_not_parsed_as_a_time() -> None:
    assert normalise_traits({"note": "see you at 12:00Z"}) == {"note": "see you at 12:00Z"}


def test_impossible_timestamp_string_is_refused() -> None:
    error = refusal(normalise_traits, {"lastSeenAt": "2026-02-30T12:00:00Z"})
    assert error.field == "traits.lastSeenAt"


def test_known_trait_must_be_a_string() -> None:
    error = refusal(normalise_traits, {"phone": 4930123456})
    assert error.field == "traits.phone"
    assert "must be a string" in error.message
    assert "not a number" in error.message


# normalise_traits: known traits --------------------------------------------------------------


def test_email_is_stripped_and_lower_cased() -> None:
    assert normalise_traits({"email": "  Ann@Example.COM "}) == {"email": "ann@example.com"}


@pytest.mark.parametrize(
    "email", ["ann", "ann@example", "@example.com", "a@b@c.example", "a b@c.de"]
)
def test_malformed_email_is_refused_with_example(email: str) -> None:
    error = refusal(normalise_traits, {"email": email})
    assert error.field == "traits.email"
    assert "is not an email address" in error.message
    assert "a@b.example" in error.message


@pytest.mark.parametrize("sent", ["m", "M", "male", "Man", " MALE "])
def test_gender_variants_normalise_to_male(sent: str) -> None:
    assert normalise_traits({"gender": sent}) == {"gender": "male"}


@pytest.mark.parametrize("sent", ["f", "Female", "WOMAN"])
def test_gender_variants_normalise_to_female(sent: str) -> None:
    assert normalise_traits({"gender": sent}) == {"gender": "female"}


@pytest.mark.parametrize("sent", ["o", "other", "X", "diverse", "non-binary", "NonBinary"])
def test_gender_variants_normalise_to_other(sent: str) -> None:
    assert normalise_traits({"gender": sent}) == {"gender": "other"}


def test_unknown_gender_lists_accepted_values() -> None:
    error = refusal(normalise_traits, {"gender": "unknown"})
    assert error.field == "traits.gender"
    for accepted in ("male", "female", "other"):
        assert accepted in error.message


def test_country_is_stripped_and_upper_cased() -> None:
    assert normalise_traits({"country": " de "}) == {"country": "DE"}


def test_country_uk_becomes_gb() -> None:
    assert normalise_traits({"country": "uk"}) == {"country": "GB"}


def test_unknown_country_names_field_and_example() -> None:
    error = refusal(normalise_traits, {"country": "xx"})
    assert error.field == "traits.country"
    assert error.message == "'xx' is not an ISO 3166-1 alpha-2 country code (e.g. DE, US, GB)"


def test_country_name_instead_of_code_is_refused() -> None:
    assert refusal(normalise_traits, {"country": "Germany"}).field == "traits.country"


def test_country_list_holds_every_assigned_code() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert {"DE", "US", "GB", "AX", "SS", "BQ"} <= ISO_3166_ALPHA2
    assert not {"UK", "EU", "XK"} & ISO_3166_ALPHA2


def test_first_and_last_name_are_stripped() -> None:
    traits = normalise_traits({"firstName": "  Ann ", "lastName": "\tLee\n"})
    assert traits == {"firstName": "Ann", "lastName": "Lee"}


def test_blank_first_name_is_refused_pointing_at_null() -> None:
    error = refusal(normalise_traits, {"firstName": "   "})
    assert error.field == "traits.firstName"
    assert "null to remove" in error.message


def test_phone_loses_spaces_dashes_dots_and_parentheses() -> None:
    assert normalise_traits({"phone": "+49 (30) 123-45.67"}) == {"phone": "+49301234567"}


@pytest.mark.parametrize("phone", ["12345", "+1234567890123456", "call me", "49+301234567"])
def test_malformed_phone_is_refused_with_example(phone: str) -> None:
    error = refusal(normalise_traits, {"phone": phone})
    assert error.field == "traits.phone"
    assert "6-15 digits" in error.message


def test_birth_date_is_kept_as_iso_date() -> None:
    assert normalise_traits({"birthDate": "1990-04-23"}) == {"birthDate": "1990-04-23"}


@pytest.mark.parametrize("sent", ["1990-02-30", "23.04.1990", "1990-04-23T00:00:00Z", "19900423"])
def test_birth_date_that_is_no_calendar_date_is_refused(sent: str) -> None:
    error = refusal(normalise_traits, {"birthDate": sent})
    assert error.field == "traits.birthDate"
    assert "YYYY-MM-DD" in error.message


@pytest.mark.parametrize(
    ("sent", "canonical"),
    [("de-DE", "de-DE"), ("de_de", "de-DE"), ("EN", "en"), ("zh_hant_tw", "zh-Hant-TW")],
)
def test_locale_gets_bcp47_casing_and_hyphens(sent: str, canonical: str) -> None:
    assert normalise_traits({"locale": sent}) == {"locale": canonical}


def test_malformed_locale_is_refused_with_example() -> None:
    error = refusal(normalise_traits, {"locale": "german"})
    assert error.field == "traits.locale"
    assert "de-DE" in error.message


def test_loyalty_tier_is_stripped() -> None:
    assert normalise_traits({"loyaltyTier": " gold "}) == {"loyaltyTier": "gold"}


# validate_properties -------------------------------------------------------------------------


def test_properties_none_becomes_empty_object() -> None:
    assert validate_properties(None) == {}


def test_properties_must_be_an_object_with_an_example() -> None:
    error = refusal(validate_properties, "sku-1")
    assert error.field == "properties"
    assert '{"productId": "sku-1"}' in error.message


def test_properties_allow_any_json_nesting_and_return_an_equal_copy() -> None:
    raw: dict[str, object] = {"cart": {"items": [{"sku": "a", "qty": 2}], "total": 9.5}, "x": None}
    validated = validate_properties(raw)
    assert validated == raw
    assert validated is not raw


def test_reserved_type_key_is_refused_at_any_depth() -> None:
    error = refusal(validate_properties, {"cart": {"items": [{"_type_": "sku"}]}})
    assert error.field == "properties.cart.items[0]._type_"
    assert "reserved by the event store's JSON transcoder" in error.message


def test_reserved_data_key_is_refused_at_top_level() -> None:
    error = refusal(validate_properties, {"_data_": 1})
    assert error.field == "properties._data_"


def test_non_finite_float_property_is_refused() -> None:
    error = refusal(validate_properties, {"price": [1.0, float("inf")]})
    assert error.field == "properties.price[1]"


def test_non_string_property_key_is_refused() -> None:
    error = refusal(validate_properties, {"a": {1: "x"}})
    assert error.field == "properties.a"
    assert "keys must be strings" in error.message


def test_non_json_property_value_is_refused() -> None:
    error = refusal(validate_properties, {"when": datetime(2026, 5, 1, tzinfo=UTC)})
    assert error.field == "properties.when"
    assert "not a datetime" in error.message


def test_property_nesting_beyond_limit_is_refused_not_a_recursion_error() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(1000):
        node["a"] = node = {}
    assert "nests deeper than" in refusal(validate_properties, deep).message


def test_properties_over_size_limit_are_refused() -> None:
    error = refusal(validate_properties, {"blob": "x" * 100}, max_bytes=50)
    assert error.field == "properties"
    assert error.message == "is 111 bytes; the limit is 50"


# validate_name -------------------------------------------------------------------------------


def test_name_is_stripped() -> None:
    assert validate_name("  c-42 ", "customerId") == "c-42"


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_name_must_not_be_empty(blank: str) -> None:
    error = refusal(validate_name, blank, "customerId")
    assert (error.field, error.message) == ("customerId", "must not be empty")


def test_non_string_name_is_refused() -> None:
    error = refusal(validate_name, 42, "customerId")
    assert error.message == "must be a string, not a number"


def test_name_longer_than_max_len_is_refused() -> None:
    error = refusal(validate_name, "x" * 11, "eventId", max_len=10)
    assert error.field == "eventId"
    assert "is 11 characters; at most 10" in error.message


def test_snake_case_name_matches_pattern() -> None:
    assert validate_name("page_view", "type", pattern=SNAKE_CASE) == "page_view"


def test_non_snake_case_type_suggests_snake_case() -> None:
    error = refusal(validate_name, "Page View", "type", pattern=SNAKE_CASE)
    assert error.field == "type"
    assert error.message == "'Page View' is not snake_case (like page_view)"


def test_camel_case_type_suggests_its_snake_case_form() -> None:
    error = refusal(validate_name, "addToCart", "type", pattern=SNAKE_CASE)
    assert error.message == "'addToCart' is not snake_case (like add_to_cart)"


def test_other_patterns_are_named_in_the_refusal() -> None:
    error = refusal(validate_name, "web shop", "source", pattern=r"[a-z-]+")
    assert error.message == "'web shop' does not match the pattern [a-z-]+"
