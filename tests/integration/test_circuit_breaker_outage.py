"""A 24-hour target outage on a controllable clock: with the circuit breaker every event is delivered once, in
each order's change order, and nothing is dead-lettered; without it the dead target dead-letters events within
minutes. The queue is simulated (visibility delays, receive counts, requeued messages) around the real
FlowWorker; the target fails with 5xx while it is down and insists on each order's changes in sequence."""

from __future__ import annotations

import heapq
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from switchyard.catalog import FlowConfig, RetryConfig
from switchyard.circuit_breaker import BreakerPolicy, BreakerStatus, CircuitBreaker, InMemoryBreakerStore
from switchyard.errors import OutOfOrderError, RetryableError
from switchyard.events import FlowEvent, flow_message
from switchyard.targets import DeliveryResult
from switchyard.worker import DeadLetter, FlowWorker, RetryLater

T0 = 1_796_299_200.0
HOUR = 3600.0
FLOW = FlowConfig(name="shop-to-erp", source="nopcommerce", events=("order.placed", "order.status_changed"),
                  target="clarity", connection="erp", mapping=None,
                  retry=RetryConfig(attempts=3, initial_backoff_seconds=0.5, max_backoff_seconds=8,
                                    out_of_order_delay_seconds=5))
MAX_RECEIVES = 5
ORDERS = 30
CHANGES = 3  # per order: placed, then two status changes


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass(order=True)
class Message:
    visible_at: float
    number: int
    body: str = field(compare=False)
    receives: int = field(default=0, compare=False)


class Queue:
    """SQS as the worker sees it: delays, visibility changes, receive counts, new messages for requeues."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[Message] = []
        self._numbers = itertools.count()
        self.in_flight: Message | None = None

    def send(self, body: str, delay: float = 0) -> None:
        heapq.heappush(self._heap, Message(self.clock.now + delay, next(self._numbers), body))

    def change_visibility(self, _receipt: str, seconds: int) -> None:
        assert self.in_flight is not None
        self.in_flight.visible_at = self.clock.now + seconds

    def receive(self) -> Message | None:
        if not self._heap:
            return None
        message = heapq.heappop(self._heap)
        self.clock.now = max(self.clock.now, message.visible_at)
        message.receives += 1
        self.in_flight = message
        return message

    def back(self, message: Message) -> None:  # RetryLater: visible again when its visibility says
        heapq.heappush(self._heap, message)


class Target:
    """Down (503) from ``down_from`` to ``down_until``; otherwise each order's changes must come in sequence."""

    def __init__(self, clock: Clock, down_from: float, down_until: float) -> None:
        self.clock = clock
        self.down_from, self.down_until = down_from, down_until
        self.delivered: list[tuple[int, int]] = []
        self.last: dict[int, int] = {}
        self.calls_while_down = 0

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        if self.down_from <= self.clock.now < self.down_until:
            self.calls_while_down += 1
            raise RetryableError("BNG answered 503", reason="target_unavailable", target_status=503)
        order, change = int(event.data["order"]), int(event.data["change"])
        if change != self.last.get(order, 0) + 1:
            raise OutOfOrderError(f"order {order} change {change} before {self.last.get(order, 0) + 1}",
                                  reason="predecessor_missing")
        self.last[order] = change
        self.delivered.append((order, change))
        return DeliveryResult("created")


class Letters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


def message(order: int, change: int, at: float) -> str:
    body = json.dumps({"type": "order.status_changed", "timestamp": "2026-12-03T12:00:00Z",
                       "data": {"order": order, "change": change}})
    return flow_message(flow=FLOW.name, event_id=f"msg_{order}_{change}", source="nopcommerce",
                        event_type="order.status_changed", timestamp="2026-12-03T12:00:00+00:00",
                        received_at=str(at), body=body)


def idempotent(func: Any) -> Any:
    done: dict[str, dict[str, Any]] = {}

    def wrapper(*, key: dict[str, str], event: FlowEvent) -> dict[str, Any]:
        fingerprint = json.dumps(key, sort_keys=True)
        if fingerprint in done:
            return {**done[fingerprint], "duplicate": True}
        done[fingerprint] = func(key=key, event=event)
        return done[fingerprint]

    return wrapper


def run_outage(*, with_breaker: bool, outage_hours: float = 24) -> tuple[Target, Letters, Clock, Any]:
    clock = Clock()
    queue = Queue(clock)
    target = Target(clock, down_from=T0 + 0.5 * HOUR, down_until=T0 + (0.5 + outage_hours) * HOUR)
    letters = Letters()
    breaker = CircuitBreaker(InMemoryBreakerStore(), "erp", policy=BreakerPolicy(), clock=clock) \
        if with_breaker else None
    worker = FlowWorker(flow=FLOW, target=target, dead_letters=letters, delay=queue.change_visibility,
                        requeue=queue.send, max_receive_count=MAX_RECEIVES, make_idempotent=idempotent,
                        sleep=clock.sleep, clock=clock, breaker=breaker)
    # orders keep coming before, during and after the outage: each order's changes 10 minutes apart
    arrivals = sorted((T0 + n * (outage_hours + 1) * HOUR / ORDERS + change * 600, n, change)
                      for n in range(ORDERS) for change in range(1, CHANGES + 1))
    pending = iter(arrivals)
    upcoming = next(pending, None)
    while True:
        while upcoming is not None and (queue._heap == [] or upcoming[0] <= queue._heap[0].visible_at):
            clock.now = max(clock.now, upcoming[0])
            queue.send(message(upcoming[1], upcoming[2], upcoming[0]))
            upcoming = next(pending, None)
        received = queue.receive()
        if received is None:
            break
        try:
            worker.handle(received.body, receive_count=received.receives, receipt_handle=str(received.number))
        except RetryLater:
            queue.back(received)
    return target, letters, clock, breaker


def test_a_24_hour_outage_ends_with_everything_delivered_once_in_each_orders_change_order() -> None:
    target, letters, _, breaker = run_outage(with_breaker=True)
    assert letters.letters == []
    assert sorted(target.delivered) == [(o, c) for o in range(ORDERS) for c in range(1, CHANGES + 1)]
    assert len(target.delivered) == len(set(target.delivered))  # once each
    for order in range(ORDERS):  # in each order's change order
        assert [c for o, c in target.delivered if o == order] == list(range(1, CHANGES + 1))
    assert breaker.state().status is BreakerStatus.CLOSED
    # while open the target saw only the probes (one per cool-down of at most 10 minutes, each with the
    # worker's 3 in-process attempts) and the failures that opened it, not every event every few minutes
    assert target.calls_while_down <= 3 * (24 * 6 + 12)


def test_without_the_breaker_the_dead_target_dead_letters_events() -> None:
    _, letters, _, _ = run_outage(with_breaker=False, outage_hours=2)
    assert "target_unavailable" in {letter.reason for letter in letters.letters}
