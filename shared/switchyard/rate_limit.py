"""A rate limiter shared by every worker that calls one API account, so Switchyard slows down before
the target answers 429.

An accounting API may allow, say, 500 requests per minute and 10 per second per company (QBO:
API-NOTES §3.4) and ask for a 60 s pause after a 429. Several Lambda workers call the same company at
once, so the count lives in DynamoDB (one item per key) and every call takes a permit first::

    limiter = DynamoRateLimiter(client, table, LIMITS, keys=ConnectionKeys(connection))
    with throttled(limiter, f"company#{company_id}", max_wait=5.0):
        response = send(...)

Algorithm: a sliding-window log, not token buckets. The limiter remembers when each recent permit
was granted and grants another only if, for every ``Limit(requests, per_seconds)``, fewer than
``requests`` were granted in the last ``per_seconds``. Hence no window of ``per_seconds`` — wherever
the vendor starts it — ever holds more than ``requests`` permits, and the first ``requests`` calls
still go out at once. Token buckets can't have both: a full bucket of capacity ``requests``
refilling at ``requests / per_seconds`` lets out its burst and then a window's worth of refill,
nearly ``2 * requests`` in one window (about 1,000 calls in the first minute against QBO's 500,
whether QBO counts fixed minutes or a sliding one), and making that safe means burst + refill <=
``requests`` per window, i.e. halving the sustained rate or giving up bursts. The price of the log
is its size: at most ``max(requests)`` timestamps (500 for QBO), stored as 4-byte offsets, so a
DynamoDB item of ~2 KB (3 WCU per permit, 1 RCU per attempt). Waiting costs reads only; nothing is
written until a permit is granted.

Limits of the guarantee: it counts when permits are *granted*, the vendor when requests *arrive*. If
an early request travels slower than a later one (a new connection, a TLS handshake), the vendor
still counts the early one when the limiter already forgot it, and the request after it meets a 429
at the window's edge (seen on the local stack: 16 ms of latency was enough). Lowering the count does
not help (nine permits may still go out at once); padding the window does: a window of ``W`` seconds
tolerates ``W - 1`` s of difference between two requests' latencies. So ``QBO_LIMITS`` uses 61 s for
the 500 (1.6 % of the minute's throughput) and 1.2 s for the 10: 200 ms of tolerance, and 10 per
1.2 s is 500/min, so the second's limit still never binds before the minute's. Workers' clocks are
NTP-synchronised, and a
permit stamped in the future by a clock that runs ahead is counted as inside the window (so skew
errs on the slow side). Every worker sharing a key must use the same limits.

    RetryableError (switchyard.errors)
    └── RateLimitedError            reason "rate_limited_locally"; retry_after = time until a permit frees
"""

from __future__ import annotations

import math
import struct
import threading
import time
import uuid
from bisect import bisect_right, insort
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from switchyard.errors import RetryableError
from switchyard.table_keys import ConnectionKeys

Clock = Callable[[], float]
Sleep = Callable[[float], None]

_US = 1_000_000  # timestamps are integer microseconds: exact arithmetic, no float drift between waits
_MAX_OFFSET_US = 0xFFFF_FFFF  # stored offsets are unsigned 32-bit: ~71 minutes
MAX_WINDOW_SECONDS = 3600.0  # longest (time-scaled) window the DynamoDB item can hold
MAX_REQUESTS = 10_000  # the log holds this many timestamps at most (40 KB)
TTL_MARGIN_SECONDS = 3600  # an idle key's item outlives its longest window by this much


@dataclass(frozen=True)
class Limit:
    """At most ``requests`` permits in any window of ``per_seconds`` seconds."""

    requests: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"a limit needs at least one request per window, got {self.requests}")
        if not self.per_seconds > 0:
            raise ValueError(f"a limit's window must be positive, got {self.per_seconds}")


class RateLimitedError(RetryableError):
    """A permit would not free within ``max_wait``; ``retry_after`` says when one will (seconds)."""

    def __init__(self, key: str, *, retry_after: float, message: str | None = None) -> None:
        super().__init__(
            message or f"rate limit for {key}: next permit in {retry_after:.3f} s",
            retry_after=retry_after,
            reason="rate_limited_locally",
        )
        self.key = key


class RateLimiter(Protocol):
    def acquire(self, key: str, *, max_wait: float) -> float:
        """Take one permit from every limit of ``key`` at once, waiting up to ``max_wait`` seconds.

        Returns the seconds waited; raises RateLimitedError (nothing taken) if it would wait longer.
        """
        ...

    def time_until_available(self, key: str) -> float:
        """Seconds until ``acquire`` would grant a permit without waiting (0.0 when it would now)."""
        ...


@contextmanager
def throttled(limiter: RateLimiter, key: str, max_wait: float) -> Iterator[float]:
    """Take a permit before the block (or each call of a decorated function); yields the seconds waited.

    RateLimitedError propagates, so the worker retries the event later instead of calling the target.
    """
    yield limiter.acquire(key, max_wait=max_wait)


class _SlidingWindowLog:
    """Limits in integer microseconds of real time, and what a log of grant times allows."""

    def __init__(self, limits: Sequence[Limit], time_scale: float) -> None:
        if not limits:
            raise ValueError("a rate limiter needs at least one limit")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        # time_scale speeds time up: a window of per_seconds lasts per_seconds / time_scale real seconds
        self.windows = [(limit.requests, max(1, round(limit.per_seconds / time_scale * _US))) for limit in limits]
        self.longest_us = max(per_us for _, per_us in self.windows)
        self.most_requests = max(requests for requests, _ in self.windows)
        if self.most_requests > MAX_REQUESTS:
            raise ValueError(f"a limit of more than {MAX_REQUESTS} requests per window is too large for a log")
        # the smallest average spacing between permits: a fair guess at when a contended key frees
        self.spacing_s = min(per_us / requests for requests, per_us in self.windows) / _US

    def wait_us(self, log: Sequence[int], now: int) -> int:
        """Microseconds until every limit has a free permit (0 if all have one now); ``log`` is sorted."""
        wait = 0
        for requests, per_us in self.windows:
            in_window = len(log) - bisect_right(log, now - per_us)  # grants after now - per_us (future ones too)
            if in_window >= requests:
                # the window frees a permit when the requests-th newest grant drops out of it
                wait = max(wait, log[len(log) - requests] + per_us - now)
        return wait

    def prune(self, log: list[int], now: int) -> list[int]:
        """Drop grants no limit can see any more: older than the longest window, or beyond the newest
        ``most_requests`` (each limit only looks at its newest ``requests`` grants)."""
        return log[bisect_right(log, now - self.longest_us) :][-self.most_requests :]


class _LimiterBase:
    def __init__(self, limits: Sequence[Limit], clock: Clock, sleep: Sleep, time_scale: float) -> None:
        self._log = _SlidingWindowLog(limits, time_scale)
        self._clock = clock
        self._sleep = sleep

    def _now_us(self) -> int:
        return round(self._clock() * _US)

    def _try_take(self, key: str) -> float:
        """Take a permit if every limit has one (returns 0.0), else return the seconds to wait."""
        raise NotImplementedError

    def acquire(self, key: str, *, max_wait: float) -> float:
        waited = 0.0
        while True:
            wait = self._try_take(key)
            if wait <= 0:
                return waited
            if waited + wait > max_wait:
                raise RateLimitedError(key, retry_after=wait)
            # another worker may take the freed permit first; then the loop waits again
            self._sleep(wait)
            waited += wait


class InMemoryRateLimiter(_LimiterBase):
    """One process's limiter (thread-safe); the fake for tests, same contract as DynamoRateLimiter.

    Defaults to the monotonic clock: within one process nothing needs wall-clock time.
    """

    def __init__(
        self, limits: Sequence[Limit], clock: Clock = time.monotonic, sleep: Sleep = time.sleep, time_scale: float = 1.0
    ) -> None:
        super().__init__(limits, clock, sleep, time_scale)
        self._logs: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def _try_take(self, key: str) -> float:
        with self._lock:  # the clock is read under the lock, so grants are stamped in the order they happen
            now = self._now_us()
            log = self._logs[key] = self._log.prune(self._logs.get(key, []), now)
            wait = self._log.wait_us(log, now)
            if wait <= 0:
                insort(log, now)
            return wait / _US

    def time_until_available(self, key: str) -> float:
        with self._lock:
            return self._log.wait_us(self._logs.get(key, []), self._now_us()) / _US


class DynamoRateLimiter(_LimiterBase):
    """Limiter shared by every worker: one item per key in the connection's scope of the shared table
    (``ConnectionKeys.rate_limit``: ``ratelimit#<connection>#<key>``).

    Each attempt reads the item (strongly consistent), decides with this worker's clock, and, if a
    permit is free, writes the log back on condition that ``version`` is still the one it read (a
    random token per write, not a counter: a counter restarts at 1 once TTL deletes an idle item,
    and a worker holding the old item's version 1 would then overwrite the new one). A lost race
    (ConditionalCheckFailed) means another worker took a permit meanwhile, so the attempt starts
    over at once, at most ``max_conflicts`` times per ``acquire``; after that it gives up with
    RateLimitedError. ``expiration`` (TTL, epoch seconds) lets DynamoDB delete keys left idle; an
    expired item that TTL has not yet deleted only holds grants older than every window, which are
    ignored, so it needs no filter (API-NOTES §7.5). ``clock`` must be wall-clock time (epoch
    seconds), shared by every worker. DynamoDB failures become RetryableError.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        limits: Sequence[Limit],
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        time_scale: float = 1.0,
        *,
        keys: ConnectionKeys,
        max_conflicts: int = 10,
    ) -> None:
        super().__init__(limits, clock, sleep, time_scale)
        if self._log.longest_us > MAX_WINDOW_SECONDS * _US:
            raise ValueError(f"windows longer than {MAX_WINDOW_SECONDS} s don't fit the stored log")
        self._client = client
        self._table = table
        self._max_conflicts = max_conflicts
        self._keys = keys

    def _key(self, key: str) -> dict[str, Any]:
        return {"id": {"S": self._keys.rate_limit(key)}}

    def _read(self, key: str) -> tuple[list[int], str | None]:
        try:
            item = self._client.get_item(TableName=self._table, Key=self._key(key), ConsistentRead=True).get("Item")
        except self._client.exceptions.ClientError as exc:
            raise RetryableError(f"rate limiter for {key} unreadable", reason="rate_limiter_unavailable") from exc
        return _parsed(item)

    def _try_take(self, key: str) -> float:
        rivals: tuple[list[int], str | None] | None = None  # the item a lost race returned: no read needed
        for _ in range(self._max_conflicts + 1):
            log, version = rivals if rivals is not None else self._read(key)
            now = self._now_us()
            log = self._log.prune(log, now)
            wait = self._log.wait_us(log, now)
            if wait > 0:
                return wait / _US
            insort(log, now)
            expiration = math.ceil(now / _US + self._log.longest_us / _US) + TTL_MARGIN_SECONDS
            condition: dict[str, Any] = (
                {"ConditionExpression": "attribute_not_exists(#v)"}
                if version is None
                else {"ConditionExpression": "#v = :v", "ExpressionAttributeValues": {":v": {"S": version}}}
            )
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        **self._key(key),
                        "log": {"B": _encode(log)},
                        "version": {"S": uuid.uuid4().hex},
                        "expiration": {"N": str(expiration)},
                    },
                    ExpressionAttributeNames={"#v": "version"},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **condition,
                )
            except self._client.exceptions.ConditionalCheckFailedException as exc:
                # another worker wrote first: decide again on its log, which the refusal carries
                rivals = _parsed(exc.response.get("Item"))
                continue
            except self._client.exceptions.ClientError as exc:
                raise RetryableError(f"rate limiter for {key} unwritable", reason="rate_limiter_unavailable") from exc
            return 0.0
        raise RateLimitedError(
            key,
            retry_after=self._log.spacing_s,
            message=f"rate limit for {key}: lost {self._max_conflicts + 1} races for a permit",
        )

    def time_until_available(self, key: str) -> float:
        log, _ = self._read(key)
        return self._log.wait_us(log, self._now_us()) / _US


def _parsed(item: dict[str, Any] | None) -> tuple[list[int], str | None]:
    if not item:
        return [], None
    return _decode(item["log"]["B"]), item["version"]["S"]


def _encode(log: Sequence[int]) -> bytes:
    """The oldest grant (signed 64-bit µs), then each grant's offset from it (unsigned 32-bit µs)."""
    if not log:
        return b""
    # pruning keeps one window (<= MAX_WINDOW_SECONDS) plus clock skew; never let a bad clock overflow
    log = log[bisect_right(log, log[-1] - _MAX_OFFSET_US - 1) :]
    base = log[0]
    return struct.pack(f">q{len(log)}I", base, *(stamp - base for stamp in log))


def _decode(data: bytes) -> list[int]:
    if not data:
        return []
    (base,) = struct.unpack_from(">q", data)
    return [base + offset for offset in struct.unpack_from(f">{(len(data) - 8) // 4}I", data, 8)]


class ReportedAllocation:
    """A long allocation the target counts itself and reports on every answer (a daily API budget shared with
    other integrations): ``observe(used, limit)`` after each answer, ``check()`` before each call.

    The sliding-window log above cannot hold a day (``MAX_WINDOW_SECONDS``), and it would count only our own
    calls while the target counts every integration's. The target's own figure is the truth and arrives with
    every answer, so this guard keeps the latest one per process and refuses calls (RateLimitedError, so the
    worker requeues the event without spending its receive budget) once fewer than ``reserve`` of the
    allocation remain: the rest is left to the other integrations and to people. A cold process knows nothing
    and lets its first call through; that call's answer tells it the state. Between ``slow_at`` and the
    reserve, ``check`` waits a little before each call (``pause_seconds``), so the flow slows down before it
    stops rather than running into the wall at full speed.
    """

    def __init__(self, key: str, *, reserve: float = 0.1, slow_at: float = 0.2, pause_seconds: float = 0.5,
                 retry_after_seconds: float = 900.0, sleep: Sleep = time.sleep) -> None:
        if not 0 <= reserve <= slow_at < 1:
            raise ValueError("need 0 <= reserve <= slow_at < 1 (fractions of the allocation left)")
        self.key = key
        self._reserve = reserve
        self._slow_at = slow_at
        self._pause = pause_seconds
        self._retry_after = retry_after_seconds
        self._sleep = sleep
        self._lock = threading.Lock()
        self._latest: tuple[int, int] | None = None

    def observe(self, used: int, limit: int) -> None:
        if limit > 0:
            with self._lock:
                self._latest = (used, limit)

    @property
    def remaining_fraction(self) -> float | None:
        with self._lock:
            latest = self._latest
        if latest is None:
            return None
        used, limit = latest
        return max(0.0, (limit - used) / limit)

    def check(self) -> float:
        """Raise RateLimitedError inside the reserve; else the seconds paused (0.0 with room to spare)."""
        left = self.remaining_fraction
        if left is None or left > self._slow_at:
            return 0.0
        if left <= self._reserve:
            raise RateLimitedError(self.key, retry_after=self._retry_after,
                                   message=f"{self.key}: {left:.1%} of the daily API allocation left, "
                                           f"{self._reserve:.0%} is kept in reserve")
        self._sleep(self._pause)
        return self._pause
