"""The circuit breaker per connection: trips, holds, probes, recovers; one contract for the in-memory store and
DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from switchyard.circuit_breaker import (
    METRIC,
    BreakerPolicy,
    BreakerStatus,
    CircuitBreaker,
    CircuitOpenError,
    DynamoBreakerStore,
    InMemoryBreakerStore,
)
from switchyard.connection_state import ConnectionGuard, InMemoryConnectionStates
from switchyard.errors import OutOfOrderError, PermanentError, RetryableError

from tests.contract.conftest import TABLE

T0 = 1_796_299_200.0
DOWN = RetryableError("BNG answered 503", reason="target_unavailable", target_status=503)
POLICY = BreakerPolicy(consecutive_failures=3, error_rate=0.5, min_calls=6, window_seconds=60, open_seconds=30,
                       max_open_seconds=120, probe_timeout_seconds=20)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Metrics:
    def __init__(self) -> None:
        self.names: list[str] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.names.append(name)


@pytest.fixture(params=["memory", "dynamodb"])
def make_store(request: pytest.FixtureRequest) -> Callable[[], Any]:
    if request.param == "memory":
        store = InMemoryBreakerStore()
        return lambda: store
    client = request.getfixturevalue("dynamo_client")
    return lambda: DynamoBreakerStore(client, TABLE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def breaker(make_store: Callable[[], Any], clock: Clock, metrics: Metrics) -> CircuitBreaker:
    return CircuitBreaker(make_store(), "bng", policy=POLICY, clock=clock, metrics=metrics)


def test_trips_after_consecutive_failures_and_holds_while_open(breaker: CircuitBreaker, clock: Clock,
                                                               metrics: Metrics) -> None:
    for _ in range(2):
        breaker.check()
        assert breaker.failed(DOWN).status is BreakerStatus.CLOSED
    breaker.check()
    opened = breaker.failed(DOWN)
    assert opened.status is BreakerStatus.OPEN and opened.opened_at == T0 and opened.open_until == T0 + 30
    clock.now += 29
    with pytest.raises(CircuitOpenError) as raised:
        breaker.check()
    assert raised.value.retry_in == 1 and raised.value.connection == "bng"
    assert raised.value.down_since == T0 and raised.value.reason == "circuit_open"
    assert metrics.names == [METRIC, METRIC]  # the opening and the refused call


def test_a_success_between_failures_resets_the_streak(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(5):
        breaker.failed(DOWN)
        breaker.failed(DOWN)
        breaker.succeeded()
        assert breaker.state().consecutive_failures == 0
        clock.now += 60  # a new window each time: the rate rule has too few calls to decide
    assert breaker.state().status is BreakerStatus.CLOSED


def test_trips_on_the_error_rate_within_a_window(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(2):  # failures interleaved with successes: never 3 in a row
        breaker.failed(DOWN)
        breaker.succeeded()
        clock.now += 1
    breaker.failed(DOWN)
    assert breaker.state().status is BreakerStatus.CLOSED  # 3 of 5 counted: below min_calls
    breaker.succeeded()
    assert breaker.failed(DOWN).status is BreakerStatus.OPEN  # 4 of 7


def test_a_new_window_forgets_the_old_rate(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.failed(DOWN)
        breaker.succeeded()
    clock.now += 61
    breaker.failed(DOWN)
    breaker.succeeded()
    assert breaker.state().window_calls == 2 and breaker.state().status is BreakerStatus.CLOSED


def test_errors_that_do_not_say_the_target_is_down_do_not_count(breaker: CircuitBreaker) -> None:
    for exc in (PermanentError("422", reason="target_rejected"), OutOfOrderError("x", reason="not_shipped_yet"),
                RetryableError("429", reason="rate_limited"), ValueError("a bug")):
        for _ in range(4):
            breaker.failed(exc)
    assert breaker.state().status is BreakerStatus.CLOSED and breaker.state().consecutive_failures == 0


def test_half_open_lets_one_probe_through_and_recovers_on_its_success(make_store: Callable[[], Any],
                                                                      clock: Clock) -> None:
    first = CircuitBreaker(make_store(), "bng", policy=POLICY, clock=clock)
    other = CircuitBreaker(make_store(), "bng", policy=POLICY, clock=clock)  # another function, same item
    for _ in range(3):
        first.failed(DOWN)
    clock.now += 30
    first.check()  # takes the probe
    assert first.state().status is BreakerStatus.HALF_OPEN
    with pytest.raises(CircuitOpenError) as raised:
        other.check()
    assert raised.value.retry_in == 5  # a probe takes seconds: look again soon
    first.succeeded()
    assert other.state().status is BreakerStatus.CLOSED
    other.check()
    assert other.state().consecutive_failures == 0 and other.state().opened_at is None


def test_a_failed_probe_opens_again_with_a_doubled_cool_down_but_keeps_the_outage_start(
        breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.failed(DOWN)
    cool_downs = []
    for _ in range(4):
        clock.now = breaker.state().open_until
        breaker.check()
        state = breaker.failed(DOWN)
        cool_downs.append(state.open_seconds)
        assert state.status is BreakerStatus.OPEN and state.opened_at == T0
    assert cool_downs == [60, 120, 120, 120]


def test_a_probe_that_never_reports_is_taken_over_after_its_lease(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.failed(DOWN)
    clock.now += 30
    breaker.check()  # this probe's function died
    clock.now += 20
    breaker.check()  # the next caller takes the probe over
    assert breaker.state().probe_until == clock.now + 20


def test_a_4xx_answer_to_the_probe_closes_the_breaker(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.failed(DOWN)
    clock.now += 30
    breaker.check()
    breaker.failed(PermanentError("BNG refused the customer", reason="target_rejected", target_status=422))
    assert breaker.state().status is BreakerStatus.CLOSED


def test_an_open_breaker_never_marks_the_connection_for_a_reconnect(breaker: CircuitBreaker) -> None:
    states = InMemoryConnectionStates()
    guard = ConnectionGuard(states, ["bng"])
    for _ in range(3):
        breaker.failed(DOWN)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.check()
    guard.report(raised.value)
    assert states.get("bng").usable


def test_an_error_of_our_own_neither_counts_nor_closes_a_half_open_breaker(breaker: CircuitBreaker,
                                                                          clock: Clock) -> None:
    for _ in range(3):
        breaker.failed(DOWN)
    clock.now += 30
    breaker.check()
    breaker.failed(RetryableError("no permit from our limiter", reason="rate_limited_locally"))
    breaker.failed(RetryableError("the breaker item kept changing", reason="circuit_contended"))
    assert breaker.state().status is BreakerStatus.HALF_OPEN
