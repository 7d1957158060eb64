"""The rate limiters under concurrency, and what only the DynamoDB one does: conflicts, storage, errors.

The behaviour both share is in tests/contract/test_rate_limiter_contract.py.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from switchyard.errors import RetryableError
from switchyard.rate_limit import (
    _MAX_OFFSET_US,
    TTL_MARGIN_SECONDS,
    DynamoRateLimiter,
    InMemoryRateLimiter,
    Limit,
    RateLimitedError,
    RateLimiter,
    _decode,
    _encode,
)
from switchyard.systems.quickbooks.client import QBO_LIMITS

from tests.contract.conftest import CONNECTION_KEYS, TABLE, aws_env, dynamo_client  # noqa: F401  (moto fixtures)

T0 = 1_795_000_000.0
KEY = "qbo#9341453052372312"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class RecordingClock:
    """A real clock that remembers, per thread, the last time it told: when ``acquire`` returns,
    that is the time the permit was stamped with (both limiters read the clock last just before
    granting)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._local = threading.local()

    def __call__(self) -> float:
        self._local.last = self._clock()
        return float(self._local.last)

    @property
    def last(self) -> float:
        return float(self._local.last)


def most_in_any_window(stamps: Sequence[float], per_seconds: float, tolerance: float = 2e-6) -> int:
    """The largest number of stamps inside one half-open window of ``per_seconds``, wherever it starts
    (``tolerance`` absorbs the limiter's rounding to microseconds)."""
    ordered = sorted(stamps)
    start, most = 0, 0
    for end, stamp in enumerate(ordered):
        while ordered[start] <= stamp - per_seconds + tolerance:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_workers(
    limiters: Sequence[RateLimiter], clock: RecordingClock, *, threads_each: int, acquires_each: int
) -> tuple[list[float], list[float]]:
    """Threads share each limiter and take permits as fast as they can; returns grant stamps and waits."""
    stamps: list[float] = []
    waits: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(limiter: RateLimiter) -> None:
        try:
            for _ in range(acquires_each):
                waited = limiter.acquire(KEY, max_wait=10.0)
                with lock:
                    stamps.append(clock.last)
                    waits.append(waited)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(limiter,)) for limiter in limiters for _ in range(threads_each)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert not errors, errors
    return stamps, waits


class SerializedClient:
    """moto checks a write's condition and applies it in separate Python steps, so threads could
    slip between them; DynamoDB doesn't let them. The lock restores that per-request atomicity (the
    limiter's read-decide-write still interleaves freely across threads)."""

    def __init__(self, client: Any, lock: threading.Lock, race: threading.Barrier | None = None) -> None:
        self._client = client
        self._lock = lock
        self._race = race
        self.conflicts = 0

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def get_item(self, **kwargs: Any) -> Any:
        with self._lock:
            item = self._client.get_item(**kwargs)
        if self._race is not None and not self._race.broken:
            # the first two reads (any threads) both happen before either writes: one write must lose
            try:
                self._race.wait()
            except threading.BrokenBarrierError:
                pass
            finally:
                self._race.abort()  # once is enough; later reads run free
        return item

    def put_item(self, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return self._client.put_item(**kwargs)
            except self._client.exceptions.ConditionalCheckFailedException:
                self.conflicts += 1
                raise


class RivalFirstClient:
    """Lets a rival worker take a permit between this worker's read and its write, ``times`` times."""

    def __init__(self, client: Any, rival: RateLimiter, times: int) -> None:
        self._client = client
        self._rival = rival
        self._times = times
        self.put_attempts = 0

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def get_item(self, **kwargs: Any) -> Any:
        return self._client.get_item(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        self.put_attempts += 1
        if self.put_attempts <= self._times:
            self._rival.acquire(KEY, max_wait=0.0)
        return self._client.put_item(**kwargs)


def test_in_memory_limiter_threads_never_exceed_limits() -> None:
    # Given eight threads on one limiter, a real clock and limits small enough to hit within a second
    limits = [Limit(4, 0.05), Limit(12, 0.3)]
    clock = RecordingClock(time.monotonic)
    limiter = InMemoryRateLimiter(limits, clock, time.sleep)

    # When they take 40 permits as fast as they can
    stamps, waits = run_workers([limiter], clock, threads_each=8, acquires_each=5)

    # Then every permit was granted, some threads had to wait, and no window held more than its limit
    assert len(stamps) == 40
    assert any(wait > 0 for wait in waits)
    assert most_in_any_window(stamps, 0.05) <= 4
    assert most_in_any_window(stamps, 0.3) <= 12


def test_dynamo_limiter_two_workers_never_exceed_limits(dynamo_client: Any) -> None:  # noqa: F811
    # Given two workers (two clients, two limiters, one table), three threads each, at time_scale 5:
    # 10 per (1 s / 5) and 30 per (3 s / 5) of real time
    lock = threading.Lock()
    race = threading.Barrier(2, timeout=10)  # makes the first two reads race (deterministically, not by luck)
    clients = [SerializedClient(boto3.client("dynamodb", region_name="us-east-1"), lock, race) for _ in range(2)]
    clock = RecordingClock(time.time)
    limits = [Limit(10, 1), Limit(30, 3)]
    limiters = [
        DynamoRateLimiter(client, TABLE, limits, clock, time.sleep, time_scale=5.0, max_conflicts=100,
                          keys=CONNECTION_KEYS)
        for client in clients
    ]

    # When they take 72 permits together (about 2.4 limiter-seconds' worth, ~0.5 s real)
    stamps, _ = run_workers(limiters, clock, threads_each=3, acquires_each=12)

    # Then together they never exceeded either limit in any window
    assert len(stamps) == 72
    assert most_in_any_window(stamps, 1 / 5) <= 10
    assert most_in_any_window(stamps, 3 / 5) <= 30
    assert sum(client.conflicts for client in clients) > 0  # the forced race happened and was retried


def test_dynamo_limiter_conflict_retried_with_rivals_permit_counted(dynamo_client: Any) -> None:  # noqa: F811
    # Given a rival worker that takes a permit between our read and our write
    clock = FakeClock()
    rival = DynamoRateLimiter(dynamo_client, TABLE, [Limit(2, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)
    client = RivalFirstClient(dynamo_client, rival, times=1)
    limiter = DynamoRateLimiter(client, TABLE, [Limit(2, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)

    # When we acquire
    waited = limiter.acquire(KEY, max_wait=0.0)

    # Then our first write lost, the retry re-read and wrote: both permits are taken, none lost
    assert waited == 0.0
    assert client.put_attempts == 2
    assert limiter.time_until_available(KEY) == pytest.approx(1.0)


def test_dynamo_limiter_conflict_rival_took_last_permit_waits(dynamo_client: Any) -> None:  # noqa: F811
    # Given a rival that takes the only permit between our read and our write
    clock = FakeClock()
    rival = DynamoRateLimiter(dynamo_client, TABLE, [Limit(1, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)
    limiter = DynamoRateLimiter(
        RivalFirstClient(dynamo_client, rival, times=1), TABLE, [Limit(1, 1)], clock, clock.sleep,
        keys=CONNECTION_KEYS,
    )

    # Then the retry decides again on the rival's write: it waits for the window instead of overwriting
    assert limiter.acquire(KEY, max_wait=5.0) == pytest.approx(1.0)


def test_dynamo_limiter_conflicts_exhausted_raise_rate_limited(dynamo_client: Any) -> None:  # noqa: F811
    clock = FakeClock()
    rival = DynamoRateLimiter(dynamo_client, TABLE, [Limit(100, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)
    client = RivalFirstClient(dynamo_client, rival, times=1_000)
    limiter = DynamoRateLimiter(client, TABLE, [Limit(100, 1)], clock, clock.sleep, max_conflicts=3,
                                keys=CONNECTION_KEYS)

    with pytest.raises(RateLimitedError) as raised:
        limiter.acquire(KEY, max_wait=5.0)

    assert client.put_attempts == 4
    assert raised.value.retry_after == pytest.approx(0.01)


def test_dynamo_limiter_item_holds_compact_log_and_ttl(dynamo_client: Any) -> None:  # noqa: F811
    clock = FakeClock()
    limiter = DynamoRateLimiter(dynamo_client, TABLE, QBO_LIMITS, clock, clock.sleep, keys=CONNECTION_KEYS)
    for _ in range(500):
        limiter.acquire(KEY, max_wait=60.0)

    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": f"ratelimit#quickbooks#{KEY}"}})["Item"]

    # 8 bytes for the oldest grant, 4 per grant: ~2 KB for QBO's 500 per minute
    assert len(item["log"]["B"]) == 8 + 4 * 500
    longest = max(limit.per_seconds for limit in QBO_LIMITS)
    assert int(item["expiration"]["N"]) == math.ceil(clock.now + longest) + TTL_MARGIN_SECONDS
    assert item["version"]["S"]


def test_dynamo_limiter_expired_item_still_present_ignored(dynamo_client: Any) -> None:  # noqa: F811
    # Given a full window long ago, whose item TTL has not deleted yet
    clock = FakeClock()
    limiter = DynamoRateLimiter(dynamo_client, TABLE, [Limit(10, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)
    for _ in range(10):
        limiter.acquire(KEY, max_wait=0.0)
    clock.now += 2 * TTL_MARGIN_SECONDS

    # Then its grants are outside every window
    assert limiter.time_until_available(KEY) == 0.0
    assert limiter.acquire(KEY, max_wait=0.0) == 0.0


def test_dynamo_limiter_table_missing_raises_retryable(dynamo_client: Any) -> None:  # noqa: F811
    limiter = DynamoRateLimiter(dynamo_client, "no-such-table", QBO_LIMITS, FakeClock(), keys=CONNECTION_KEYS)

    with pytest.raises(RetryableError) as raised:
        limiter.acquire(KEY, max_wait=1.0)

    assert raised.value.reason == "rate_limiter_unavailable"
    assert not isinstance(raised.value, RateLimitedError)


@pytest.mark.parametrize(("requests", "per_seconds"), [(0, 1.0), (10, 0.0), (10, -1.0)])
def test_limit_invalid_raises(requests: int, per_seconds: float) -> None:
    with pytest.raises(ValueError):
        Limit(requests, per_seconds)


def test_in_memory_limiter_no_limits_raises() -> None:
    with pytest.raises(ValueError):
        InMemoryRateLimiter([])


def test_dynamo_limiter_window_too_long_for_item_raises() -> None:
    with pytest.raises(ValueError):
        DynamoRateLimiter(object(), TABLE, [Limit(100_000, 86_400)], keys=CONNECTION_KEYS)


class CountingReads:
    """Counts the limiter's reads (each a strongly consistent read unit in production)."""

    def __init__(self, client: Any) -> None:
        self._client, self.reads = client, 0

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def get_item(self, **kwargs: Any) -> Any:
        self.reads += 1
        return self._client.get_item(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        return self._client.put_item(**kwargs)


def test_dynamo_limiter_lost_race_decides_on_the_refused_writes_item_without_reading_again(
    dynamo_client: Any,  # noqa: F811
) -> None:
    # Given a rival worker that takes a permit between our read and our write, three times
    clock = FakeClock()
    rival = DynamoRateLimiter(dynamo_client, TABLE, [Limit(10, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)
    counting = CountingReads(RivalFirstClient(dynamo_client, rival, times=3))
    limiter = DynamoRateLimiter(counting, TABLE, [Limit(10, 1)], clock, clock.sleep, keys=CONNECTION_KEYS)
    # When we acquire
    assert limiter.acquire(KEY, max_wait=0.0) == 0.0
    # Then the three lost races cost no read: each refusal carried the rival's item (was 4 reads)
    assert counting.reads == 1
    assert limiter.time_until_available(KEY) == 0.0
    assert len(rival._read(KEY)[0]) == 4  # the rival's three permits and ours, none overwritten


def test_rate_limited_error_names_its_key_and_when_a_permit_frees() -> None:
    error = RateLimitedError(KEY, retry_after=0.25)
    assert (error.key, error.retry_after, error.reason) == (KEY, 0.25, "rate_limited_locally")
    assert str(error) == f"rate limit for {KEY}: next permit in 0.250 s"
    assert str(RateLimitedError(KEY, retry_after=1.0, message="lost 11 races")) == "lost 11 races"


def test_in_memory_limiter_permit_freeing_in_one_microsecond_is_taken_then_and_once() -> None:
    clock = FakeClock(0.0)
    limiter = InMemoryRateLimiter([Limit(1, 1.0)], clock=clock, sleep=clock.sleep)
    assert limiter.acquire(KEY, max_wait=0) == 0.0
    clock.now = 0.999999  # the first grant leaves the window in 1 µs

    assert limiter.acquire(KEY, max_wait=0.5) == pytest.approx(1e-6)
    assert limiter.time_until_available(KEY) == pytest.approx(1.0)  # one grant in the window: the one just taken


def test_stored_log_round_trips_empty_and_before_the_epoch() -> None:
    assert _encode([]) == b"" and _decode(b"") == []
    assert _decode(_encode([-5_000_000, -1, 3])) == [-5_000_000, -1, 3]  # the base is signed


def test_stored_log_keeps_the_oldest_grant_that_fits_an_offset_and_drops_only_older_ones() -> None:
    last = 10**13
    log = [last - _MAX_OFFSET_US - 1, last - _MAX_OFFSET_US, last]
    assert _decode(_encode(log)) == [last - _MAX_OFFSET_US, last]


class RecordingClient:
    """The moto client, remembering every read's arguments; ``refuse_writes`` fails each write as DynamoDB
    does when it throttles the table."""

    def __init__(self, client: Any, *, refuse_writes: bool = False) -> None:
        self._client = client
        self._refuse_writes = refuse_writes
        self.reads: list[dict[str, Any]] = []

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def get_item(self, **kwargs: Any) -> Any:
        self.reads.append(kwargs)
        return self._client.get_item(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        if self._refuse_writes:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "PutItem")
        return self._client.put_item(**kwargs)


def test_dynamo_limiter_reads_the_log_strongly_consistent(dynamo_client: Any) -> None:  # noqa: F811
    # an eventually consistent read may miss the permit another worker just took
    recording = RecordingClient(dynamo_client)
    limiter = DynamoRateLimiter(recording, TABLE, [Limit(10, 1)], FakeClock(), keys=CONNECTION_KEYS)
    limiter.acquire(KEY, max_wait=0)
    limiter.time_until_available(KEY)
    assert [read["ConsistentRead"] for read in recording.reads] == [True, True]


def test_dynamo_limiter_write_refused_by_dynamodb_is_retryable(dynamo_client: Any) -> None:  # noqa: F811
    refusing = RecordingClient(dynamo_client, refuse_writes=True)
    limiter = DynamoRateLimiter(refusing, TABLE, [Limit(10, 1)], FakeClock(), keys=CONNECTION_KEYS)
    with pytest.raises(RetryableError) as raised:
        limiter.acquire(KEY, max_wait=0)
    assert raised.value.reason == "rate_limiter_unavailable"
    assert not isinstance(raised.value, RateLimitedError)


def test_dynamo_limiter_permit_freeing_in_one_microsecond_is_taken_then_and_once(
    dynamo_client: Any,  # noqa: F811
) -> None:
    clock = FakeClock(T0)
    limiter = DynamoRateLimiter(dynamo_client, TABLE, [Limit(1, 1.0)], clock, clock.sleep, keys=CONNECTION_KEYS)
    assert limiter.acquire(KEY, max_wait=0) == 0.0
    clock.now = T0 + 0.999999  # the first grant leaves the window in 1 µs

    assert limiter.acquire(KEY, max_wait=0.5) == pytest.approx(1e-6)
    assert limiter.time_until_available(KEY) == pytest.approx(1.0, abs=2e-6)
