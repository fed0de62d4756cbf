"""The token bucket of an API key, on a clock the test moves, and the syntax of its limits."""

from __future__ import annotations

import pytest

from adapters.settings import ConfigurationError, RateLimit, Settings
from api.token_bucket import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_lets_a_burst_through_then_says_how_long_to_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # one token every half second
    clock.now += 0.2
    assert bucket.take() == pytest.approx(0.3)  # a refusal takes nothing
    clock.now += 0.3
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)


def test_an_idle_bucket_refills_to_its_burst_and_no_further() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10.0, burst=2, clock=clock)
    bucket.take()
    bucket.take()
    clock.now += 3_600
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_a_slow_rate_waits_seconds_between_requests() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=0.1, burst=1, clock=clock)
    assert bucket.take() == 0.0
    clock.now += 4
    assert bucket.take() == pytest.approx(6.0)


def keys(raw: str) -> Settings:
    return Settings.from_env({"PROFILES_API_KEYS": raw})


def test_an_entry_may_carry_a_rate_and_a_burst() -> None:
    settings = keys("w:commands;rate=50;burst=200, r:query|audit;rate=0.5 ,open:all")
    assert settings.api_keys == {
        "w": frozenset({"commands"}),
        "r": frozenset({"query", "audit"}),
        "open": frozenset({"commands", "query", "audit", "all"}),
    }
    # Without a burst, one second's worth (at least one request).
    assert settings.rate_limits == {"w": RateLimit(50.0, 200), "r": RateLimit(0.5, 1)}


@pytest.mark.parametrize(
    "raw",
    [
        "w:commands;rate=fast",
        "w:commands;rate=0",
        "w:commands;rate=-1",
        "w:commands;rate=inf",
        "w:commands;rate=5;burst=0",
        "w:commands;rate=5;burst=2.5",
        "w:commands;burst=10",
        "w:commands;limit=10",
        "w:commands;rate=5;rate=6",
        "w:commands;rate",
    ],
)
def test_a_malformed_rate_limit_is_refused_at_start_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="PROFILES_API_KEYS") as refused:
        keys(raw)
    assert "rate" in str(refused.value) or "burst" in str(refused.value)
