"""The rate limiters' edges: the limits they accept, a wait spent over several sleeps, the conflict budget's
default, and the reported allocation's thresholds and refusal.

Written for what mutation testing of rate_limit.py found unpinned (docs/mutation-testing.md).
"""

from __future__ import annotations

from typing import Any

import pytest
from switchyard.rate_limit import (
    MAX_REQUESTS,
    MAX_WINDOW_SECONDS,
    DynamoRateLimiter,
    InMemoryRateLimiter,
    Limit,
    RateLimitedError,
    ReportedAllocation,
)

from tests.contract.conftest import CONNECTION_KEYS, TABLE, aws_env, dynamo_client  # noqa: F401  (moto fixtures)
from tests.unit.test_rate_limit import KEY, FakeClock, RivalFirstClient


def test_in_memory_limiter_time_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="time_scale must be positive, got 0"):
        InMemoryRateLimiter([Limit(1, 1)], time_scale=0)


def test_in_memory_limiter_window_shorter_than_a_microsecond_still_spaces_permits_a_microsecond() -> None:
    # a window rounded to 0 µs would let every call through
    clock = FakeClock()
    limiter = InMemoryRateLimiter([Limit(1, 1)], clock, clock.sleep, time_scale=10_000_000)  # 0.1 µs

    limiter.acquire(KEY, max_wait=0.0)

    assert limiter.time_until_available(KEY) == pytest.approx(1e-6, abs=1e-9)


def test_in_memory_limiter_takes_limits_up_to_the_largest_log() -> None:
    InMemoryRateLimiter([Limit(MAX_REQUESTS, 60)])
    with pytest.raises(ValueError, match="too large for a log"):
        InMemoryRateLimiter([Limit(MAX_REQUESTS + 1, 60)])


def test_dynamo_limiter_takes_windows_up_to_the_longest_the_item_holds(dynamo_client: Any) -> None:  # noqa: F811
    DynamoRateLimiter(dynamo_client, TABLE, [Limit(1, MAX_WINDOW_SECONDS)], keys=CONNECTION_KEYS)
    with pytest.raises(ValueError, match="don't fit the stored log"):
        DynamoRateLimiter(dynamo_client, TABLE, [Limit(1, MAX_WINDOW_SECONDS + 1)], keys=CONNECTION_KEYS)


def test_in_memory_limiter_grant_outside_the_short_window_does_not_count_against_it() -> None:
    # Given 3 a second and 100 a minute, with one grant 2 s ago and one half a second ago
    clock = FakeClock()
    limiter = InMemoryRateLimiter([Limit(3, 1), Limit(100, 60)], clock, clock.sleep)
    limiter.acquire(KEY, max_wait=0.0)
    clock.now += 1.5
    limiter.acquire(KEY, max_wait=0.0)
    clock.now += 0.5

    # Then the second holds one grant of its three: the next is granted at once
    assert limiter.time_until_available(KEY) == 0.0
    assert limiter.acquire(KEY, max_wait=0.0) == 0.0


class RivalOnWake(FakeClock):
    """A clock whose first sleep ends with another thread taking the permit that just freed."""

    limiter: InMemoryRateLimiter
    sleeps = 0

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.sleeps += 1
        if self.sleeps == 1:
            self.limiter.acquire(KEY, max_wait=0.0)


def test_in_memory_limiter_returns_the_whole_wait_when_a_rival_took_the_first_freed_permit() -> None:
    clock = RivalOnWake()
    limiter = clock.limiter = InMemoryRateLimiter([Limit(1, 1)], clock, clock.sleep)
    limiter.acquire(KEY, max_wait=0.0)

    waited = limiter.acquire(KEY, max_wait=5.0)

    assert waited == pytest.approx(2.0)


def test_in_memory_limiter_refusal_names_its_key() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter([Limit(1, 1)], clock, clock.sleep)
    limiter.acquire(KEY, max_wait=0.0)

    with pytest.raises(RateLimitedError) as raised:
        limiter.acquire(KEY, max_wait=0.5)

    assert raised.value.key == KEY
    assert raised.value.retry_after == pytest.approx(1.0)


def test_dynamo_limiter_gives_up_after_eleven_lost_races_by_default(dynamo_client: Any) -> None:  # noqa: F811
    clock = FakeClock()
    rival = DynamoRateLimiter(dynamo_client, TABLE, [Limit(100, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)
    client = RivalFirstClient(dynamo_client, rival, times=1_000)
    limiter = DynamoRateLimiter(client, TABLE, [Limit(100, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)

    with pytest.raises(RateLimitedError) as raised:
        limiter.acquire(KEY, max_wait=5.0)

    assert client.put_attempts == 11
    assert raised.value.key == KEY
    assert str(raised.value) == f"rate limit for {KEY}: lost 11 races for a permit"


def allocation(used: int, limit: int = 100, **options: Any) -> tuple[ReportedAllocation, list[float]]:
    pauses: list[float] = []
    guard = ReportedAllocation("salesforce#sf", sleep=pauses.append, **options)
    guard.observe(used, limit)
    return guard, pauses


def test_reported_allocation_by_default_runs_free_above_a_fifth_left() -> None:
    guard, pauses = allocation(79)

    assert guard.check() == 0.0
    assert pauses == []


def test_reported_allocation_by_default_pauses_half_a_second_from_a_fifth_left() -> None:
    guard, pauses = allocation(80)

    assert guard.check() == 0.5
    assert pauses == [0.5]


def test_reported_allocation_by_default_refuses_from_a_tenth_left_for_fifteen_minutes() -> None:
    guard, pauses = allocation(90)

    with pytest.raises(RateLimitedError) as raised:
        guard.check()

    assert raised.value.key == "salesforce#sf"
    assert raised.value.retry_after == 900.0
    assert raised.value.reason == "rate_limited_locally"
    assert str(raised.value) == "salesforce#sf: 10.0% of the daily API allocation left, 10% is kept in reserve"
    assert pauses == []


def test_reported_allocation_limit_of_one_call_is_observed() -> None:
    guard, _ = allocation(0, limit=1)

    assert guard.remaining_fraction == 1.0


def test_reported_allocation_answer_without_a_limit_is_ignored() -> None:
    guard, _ = allocation(50)
    guard.observe(7, 0)

    assert guard.remaining_fraction == 0.5


@pytest.mark.parametrize(("reserve", "slow_at"), [(0.0, 0.2), (0.2, 0.2), (0.0, 0.0), (0.1, 0.99)])
def test_reported_allocation_accepts_thresholds_within_the_allocation(reserve: float, slow_at: float) -> None:
    ReportedAllocation("k", reserve=reserve, slow_at=slow_at)


@pytest.mark.parametrize(("reserve", "slow_at"), [(-0.1, 0.2), (0.3, 0.2), (0.1, 1.0), (0.1, 1.5)])
def test_reported_allocation_refuses_thresholds_outside_the_allocation(reserve: float, slow_at: float) -> None:
    with pytest.raises(ValueError, match=r"need 0 <= reserve <= slow_at < 1"):
        ReportedAllocation("k", reserve=reserve, slow_at=slow_at)
