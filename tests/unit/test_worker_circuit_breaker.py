"""FlowWorker with a circuit breaker: an open breaker makes events wait (requeued, no receive spent, never
dead-lettered for it), the failure that opens it too, and only real deliveries tell the breaker anything."""

from __future__ import annotations

import json
from typing import Any

import pytest
from switchyard.catalog import FlowConfig, RetryConfig
from switchyard.circuit_breaker import BreakerPolicy, BreakerStatus, CircuitBreaker, InMemoryBreakerStore
from switchyard.connection_state import WAITING_SINCE
from switchyard.errors import RetryableError
from switchyard.events import FlowEvent, flow_message
from switchyard.targets import DeliveryResult
from switchyard.worker import DeadLetter, FlowWorker, RetryLater

FLOW = FlowConfig(name="shop-to-erp", source="nopcommerce", events=("order.placed",), target="clarity",
                  connection="erp", retry=RetryConfig(attempts=1, initial_backoff_seconds=0.1, max_backoff_seconds=1,
                                                      out_of_order_delay_seconds=5))
T0 = 1_796_299_200.0
DOWN = RetryableError("503", reason="target_unavailable", target_status=503)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Target:
    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else DeliveryResult("created")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class Rig:
    def __init__(self, target: Target, *, duplicate: bool = False) -> None:
        self.clock = Clock()
        self.letters: list[DeadLetter] = []
        self.requeued: list[tuple[str, int]] = []
        self.delays: list[int] = []
        self.breaker = CircuitBreaker(InMemoryBreakerStore(), "erp", clock=self.clock,
                                      policy=BreakerPolicy(consecutive_failures=2, open_seconds=30))

        def idempotent(func: Any) -> Any:
            def wrapper(*, key: dict[str, str], event: FlowEvent) -> dict[str, Any]:
                return {"outcome": "created", "duplicate": True} if duplicate else func(key=key, event=event)
            return wrapper

        self.worker = FlowWorker(flow=FLOW, target=target, dead_letters=self, max_receive_count=2,
                                 delay=lambda _r, seconds: self.delays.append(seconds),
                                 requeue=lambda body, seconds: self.requeued.append((body, seconds)),
                                 make_idempotent=idempotent, sleep=lambda _s: None, clock=self.clock,
                                 breaker=self.breaker)

    def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


def body(n: int = 1) -> str:
    return flow_message(flow=FLOW.name, event_id=f"msg_{n}", source="nopcommerce", event_type="order.placed",
                        timestamp="2026-12-03T12:00:00+00:00", received_at="2026-12-03T12:00:00+00:00",
                        body=json.dumps({"type": "order.placed", "timestamp": "2026-12-03T12:00:00Z", "data": {}}))


def test_the_failure_that_opens_the_breaker_waits_even_on_the_last_receive() -> None:
    rig = Rig(Target(DOWN, DOWN))
    with pytest.raises(RetryLater):  # the first failure spends a receive, as without a breaker
        rig.worker.handle(body(1), receive_count=1, receipt_handle="r1")
    rig.worker.handle(body(2), receive_count=2, receipt_handle="r2")  # the last receive, and it opens the breaker
    assert rig.letters == []
    [(requeued, delay)] = rig.requeued
    assert delay == 30 and json.loads(requeued)[WAITING_SINCE] == T0
    assert rig.breaker.state().status is BreakerStatus.OPEN


def test_an_open_breaker_sends_events_back_without_calling_the_target() -> None:
    target = Target(DOWN, DOWN)
    rig = Rig(target)
    for _ in range(2):
        rig.breaker.failed(DOWN)
    rig.clock.now += 12
    rig.worker.handle(body(3), receive_count=1, receipt_handle="r3")
    assert target.calls == 0 and rig.requeued[-1][1] == 18 and rig.letters == []


def test_a_duplicate_does_not_close_a_half_open_breaker() -> None:
    rig = Rig(Target(), duplicate=True)
    for _ in range(2):
        rig.breaker.failed(DOWN)
    rig.clock.now += 30
    rig.worker.handle(body(4), receive_count=1, receipt_handle="r4")  # takes the probe, but never calls the target
    assert rig.breaker.state().status is BreakerStatus.HALF_OPEN


def test_a_delivery_through_the_probe_closes_the_breaker() -> None:
    rig = Rig(Target())
    for _ in range(2):
        rig.breaker.failed(DOWN)
    rig.clock.now += 30
    assert rig.worker.handle(body(5), receive_count=1, receipt_handle="r5")["outcome"] == "created"
    assert rig.breaker.state().status is BreakerStatus.CLOSED
