"""One contract for RateLimiter, run against the in-memory limiter and the DynamoDB one (on moto).

Time is a fake clock that only the limiter's sleep moves, so every wait is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from switchyard.errors import RetryableError
from switchyard.rate_limit import (
    DynamoRateLimiter,
    InMemoryRateLimiter,
    Limit,
    RateLimitedError,
    RateLimiter,
    throttled,
)
from switchyard.systems.quickbooks.client import QBO_LIMITS

from tests.contract.conftest import CONNECTION_KEYS, TABLE

T0 = 1_795_000_000.0
KEY = "qbo#9341453052372312"
PER_SECOND = [Limit(10, 1)]
PER_MINUTE = [Limit(500, 60)]


class FakeClock:
    """Wall-clock time that moves only when the limiter sleeps."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["in_memory", "dynamodb"])
def make_limiter(request: pytest.FixtureRequest, clock: FakeClock) -> MakeLimiter:
    def make(limits: Sequence[Limit], time_scale: float = 1.0) -> RateLimiter:
        if request.param == "in_memory":
            return InMemoryRateLimiter(limits, clock, clock.sleep, time_scale=time_scale)
        return DynamoRateLimiter(
            request.getfixturevalue("dynamo_client"), TABLE, limits, clock, clock.sleep, time_scale=time_scale,
            keys=CONNECTION_KEYS,
        )

    return make


def take(limiter: RateLimiter, count: int, *, key: str = KEY, max_wait: float = 0.0) -> list[float]:
    return [limiter.acquire(key, max_wait=max_wait) for _ in range(count)]


def most_in_any_window(stamps: list[float], per_seconds: float) -> int:
    """The largest number of stamps inside one half-open window of ``per_seconds``, wherever it starts."""
    stamps = sorted(stamps)
    start, most = 0, 0
    for end, stamp in enumerate(stamps):
        while stamps[start] <= stamp - per_seconds + 1e-9:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_acquire_fresh_key_available_without_waiting(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(QBO_LIMITS)

    assert limiter.time_until_available(KEY) == 0.0
    assert limiter.acquire(KEY, max_wait=0.0) == 0.0


def test_acquire_ten_per_second_admits_ten_then_waits_a_second(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(PER_SECOND)

    assert take(limiter, 10) == [0.0] * 10
    assert limiter.time_until_available(KEY) == pytest.approx(1.0)

    assert limiter.acquire(KEY, max_wait=5.0) == pytest.approx(1.0)
    assert clock.now == pytest.approx(T0 + 1.0)


def test_acquire_ten_per_second_spread_grants_free_one_at_a_time(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    # Given ten grants 0.1 s apart
    limiter = make_limiter(PER_SECOND)
    for tenth in range(1, 11):
        limiter.acquire(KEY, max_wait=0.0)
        clock.now = T0 + tenth / 10

    # Then the first grant has just left the window: one more now, the next when the second leaves
    assert limiter.acquire(KEY, max_wait=0.0) == 0.0
    assert limiter.time_until_available(KEY) == pytest.approx(0.1)


def test_acquire_five_hundred_per_minute_admits_500_then_waits_for_window(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    limiter = make_limiter(PER_MINUTE)

    assert take(limiter, 500) == [0.0] * 500
    with pytest.raises(RateLimitedError):
        limiter.acquire(KEY, max_wait=59.0)

    assert limiter.acquire(KEY, max_wait=60.0) == pytest.approx(60.0)
    assert clock.now == pytest.approx(T0 + 60.0)


def test_acquire_both_qbo_limits_ten_a_second_until_500_a_minute(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    # Given the QBO limits and a caller that always waits
    limiter = make_limiter(QBO_LIMITS)
    stamps = []
    waits = []
    for _ in range(620):
        waits.append(limiter.acquire(KEY, max_wait=120.0))
        stamps.append(clock.now)

    # Then 10 go out each (padded) 1.2 s for 58.8 s, then the (padded) minute is spent: the 501st waits 2.2 s
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(1.2)
    assert stamps[499] == pytest.approx(T0 + 49 * 1.2)
    assert waits[500] == pytest.approx(61.0 - 49 * 1.2)
    assert stamps[500] == pytest.approx(T0 + 61.0)
    # and no window QuickBooks could use ever sees more than its limit
    assert most_in_any_window(stamps, 1.0) == 10
    assert most_in_any_window(stamps, 60.0) == 500


def test_acquire_max_wait_exceeded_raises_retryable_without_taking(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(PER_SECOND)
    take(limiter, 10)

    with pytest.raises(RateLimitedError) as raised:
        limiter.acquire(KEY, max_wait=0.5)

    error = raised.value
    assert isinstance(error, RetryableError)
    assert error.reason == "rate_limited_locally"
    assert error.retry_after == pytest.approx(1.0)
    assert clock.sleeps == []
    # nothing was taken: the next permit still frees after one second
    assert limiter.time_until_available(KEY) == pytest.approx(1.0)


def test_acquire_keys_independent(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(PER_SECOND)
    take(limiter, 10, key="qbo#realm-a")

    assert take(limiter, 10, key="qbo#realm-b") == [0.0] * 10
    assert limiter.time_until_available("qbo#realm-c") == 0.0
    with pytest.raises(RateLimitedError):
        limiter.acquire("qbo#realm-a", max_wait=0.0)


def test_acquire_after_idle_window_refills(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(QBO_LIMITS)
    take(limiter, 10)

    clock.now += 1.2  # QBO's second, padded

    assert limiter.time_until_available(KEY) == 0.0
    assert take(limiter, 10) == [0.0] * 10


def test_acquire_time_scale_shortens_windows(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    # a minute lasts one second at time_scale 60
    limiter = make_limiter([Limit(50, 60)], time_scale=60.0)
    take(limiter, 50)

    assert limiter.time_until_available(KEY) == pytest.approx(1.0)
    assert limiter.acquire(KEY, max_wait=2.0) == pytest.approx(1.0)


def test_throttled_takes_permit_and_yields_wait(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(PER_SECOND)
    take(limiter, 10)

    with throttled(limiter, KEY, max_wait=2.0) as waited:
        assert waited == pytest.approx(1.0)


def test_throttled_decorator_takes_permit_per_call(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter([Limit(2, 1)])

    @throttled(limiter, KEY, max_wait=0.0)
    def call() -> str:
        return "ok"

    assert [call(), call()] == ["ok", "ok"]
    with pytest.raises(RateLimitedError):
        call()
