"""FlowWorker.handle_batch: a batch's entities run side by side, each entity's records in order, and a
failure is reported for itself and the later records of its entity only."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from switchyard.catalog import FlowConfig, RetryConfig
from switchyard.errors import OutOfOrderError, RetryableError
from switchyard.events import FlowEvent, flow_message
from switchyard.targets import DeliveryResult
from switchyard.worker import FlowWorker, QueuedRecord, entity_groups

FLOW = FlowConfig(name="nopcommerce-to-streak", source="nopcommerce", events=("order.placed", "order.status_changed"),
                  target="streak", connection="streak", mapping="nopcommerce-to-streak.yaml",
                  retry=RetryConfig(attempts=1, initial_backoff_seconds=0.01, max_backoff_seconds=0.01,
                                    out_of_order_delay_seconds=5))
ORDER_REF = ("Order.CustomOrderNumber", "Order.Id")


def record(event_id: str, order: str | None, *, order_id: int | None = None,
           event_type: str = "order.placed") -> QueuedRecord:
    data: dict[str, Any] = {"Order": {}} if order is None else {"Order": {"CustomOrderNumber": order}}
    if order_id is not None:
        data["Order"]["Id"] = order_id
    body = json.dumps({"type": event_type, "timestamp": "2026-11-20T09:15:02+00:00", "data": data})
    message = flow_message(flow=FLOW.name, event_id=event_id, source="nopcommerce", event_type=event_type,
                           timestamp="2026-11-20T09:15:02+00:00", received_at="2026-11-20T09:15:03+00:00",
                           body=body)
    return QueuedRecord(message_id=f"m-{event_id}", body=message, receive_count=1, receipt_handle=f"r-{event_id}")


class SlowTarget:
    """Each delivery takes ``seconds``; records what ran, in what order, and how many at once."""

    def __init__(self, seconds: float = 0.0, fail: dict[str, Exception] | None = None) -> None:
        self.seconds = seconds
        self.fail = fail or {}
        self.delivered: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.seconds)
            if event.event_id in self.fail:
                raise self.fail[event.event_id]
            with self._lock:
                self.delivered.append(event.event_id)
            return DeliveryResult("created", {})
        finally:
            with self._lock:
                self.running -= 1


class Letters:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.delays: list[tuple[str, int]] = []

    def send(self, letter: Any) -> None:
        self.sent.append(letter)

    def delay(self, receipt: str, seconds: int) -> None:
        self.delays.append((receipt, seconds))


def worker(target: SlowTarget, letters: Letters, *, order_ref: tuple[str, ...] = ORDER_REF) -> FlowWorker:
    return FlowWorker(flow=FLOW, target=target, dead_letters=letters, delay=letters.delay, max_receive_count=5,
                      sleep=lambda _s: None, order_ref=order_ref)


def test_entities_of_a_batch_run_side_by_side() -> None:
    # Given ten records of ten orders, each delivery taking 0.2 s
    target, letters = SlowTarget(0.2), Letters()
    batch = [record(f"e{i}", str(1000 + i)) for i in range(10)]

    # When the batch is handled
    started = time.monotonic()
    failed = worker(target, letters).handle_batch(batch)
    elapsed = time.monotonic() - started

    # Then all are delivered at once: the batch waits about one delivery, not ten
    assert failed == []
    assert sorted(target.delivered) == sorted(f"e{i}" for i in range(10))
    assert target.most_at_once == 10
    assert elapsed < 1.0


def test_records_of_one_entity_run_one_after_another_in_batch_order() -> None:
    # Given a batch in which order 1042 has three records between other orders' records
    target, letters = SlowTarget(0.05), Letters()
    batch = [record("a1", "1042"), record("b1", "2000"), record("a2", "1042", event_type="order.status_changed"),
             record("c1", "3000"), record("a3", "1042", event_type="order.status_changed")]

    failed = worker(target, letters).handle_batch(batch)

    # Then 1042's records were delivered in the batch's order, never two of them at once
    assert failed == []
    assert [e for e in target.delivered if e.startswith("a")] == ["a1", "a2", "a3"]
    assert target.most_at_once == 3  # 1042, 2000 and 3000 side by side


def test_an_order_named_by_number_in_one_record_and_by_id_in_another_is_one_entity() -> None:
    target, letters = SlowTarget(), Letters()
    groups = entity_groups([record("a", "1042", order_id=42), record("b", None, order_id=42),
                            record("c", "1043", order_id=43)], worker(target, letters)._entity_refs)
    assert [[r.message_id for r in group] for group in groups] == [["m-a", "m-b"], ["m-c"]]


def test_records_naming_no_entity_share_one_group() -> None:
    target, letters = SlowTarget(), Letters()
    malformed = QueuedRecord(message_id="m-x", body="not json", receive_count=1, receipt_handle="r-x")
    groups = entity_groups([record("a", None), record("b", "1042"), malformed],
                           worker(target, letters)._entity_refs)
    assert [[r.message_id for r in group] for group in groups] == [["m-a", "m-x"], ["m-b"]]


def test_a_failed_record_fails_itself_and_the_later_records_of_its_entity_only() -> None:
    # Given order 1042's second record fails (Streak down through every retry) and the third follows it
    target = SlowTarget(0.02, fail={"a2": RetryableError("Streak answered 503", reason="target_unavailable",
                                                         retry_after=5)})
    letters = Letters()
    batch = [record("a1", "1042"), record("b1", "2000"), record("a2", "1042", event_type="order.status_changed"),
             record("b2", "2000", event_type="order.status_changed"),
             record("a3", "1042", event_type="order.status_changed"), record("c1", "3000")]

    failed = worker(target, letters).handle_batch(batch)

    # Then a2 and a3 are reported failed (in the batch's order), a3 never ran, other orders went through
    assert failed == ["m-a2", "m-a3"]
    assert sorted(target.delivered) == ["a1", "b1", "b2", "c1"]
    # and a3 waits at least as long as a2 does, so a2's retry comes first
    assert dict(letters.delays) == {"r-a2": 5, "r-a3": 5}
    assert letters.sent == []


def test_a_failure_in_one_entity_leaves_a_later_record_of_another_entity_delivered() -> None:
    target = SlowTarget(fail={"a1": RetryableError("Streak answered 503", reason="target_unavailable")})
    letters = Letters()
    failed = worker(target, letters).handle_batch([record("a1", "1042"), record("b1", "2000")])
    assert failed == ["m-a1"]
    assert target.delivered == ["b1"]


def test_a_source_without_order_references_keeps_the_whole_batch_in_order() -> None:
    target, letters = SlowTarget(0.01), Letters()
    batch = [record(f"e{i}", str(1000 + i)) for i in range(5)]
    assert worker(target, letters, order_ref=()).handle_batch(batch) == []
    assert target.delivered == [f"e{i}" for i in range(5)]
    assert target.most_at_once == 1


def test_a_record_that_came_too_early_lets_the_later_records_of_its_entity_through() -> None:
    # Given order 1042's status change ahead of the order itself in the batch (the box is not there yet)
    target = SlowTarget(fail={"s1": OutOfOrderError("no box for order 1042 yet", reason="box_not_found")})
    letters = Letters()
    batch = [record("s1", "1042", event_type="order.status_changed"), record("p1", "1042")]

    failed = worker(target, letters).handle_batch(batch)

    # Then the order is delivered now and only the status change waits (held back, it would wait forever)
    assert failed == ["m-s1"]
    assert target.delivered == ["p1"]
    assert dict(letters.delays) == {"r-s1": 5}
