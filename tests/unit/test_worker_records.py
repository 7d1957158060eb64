"""What the worker writes down about each event: its log lines' fields, its metrics, dead letters, drops and
audit entries, and what it tells the circuit breaker. Pinned after the full mutation run of worker.py
(2026-12-03), where changing any of them survived."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from switchyard.audit import AuditEntry, InMemoryDeliveryAudit
from switchyard.catalog import FlowConfig, RetryConfig, load_catalog
from switchyard.circuit_breaker import CircuitOpenError
from switchyard.drops import InMemoryDropLog
from switchyard.errors import PermanentError, RetryableError
from switchyard.targets import DeliveryResult
from switchyard.worker import FlowWorker, RetryLater

from tests.unit.test_worker import CREATED, FLOW, Recorder, ScriptedTarget, fake_idempotency, message

ORDER_REF = load_catalog().sources["nopcommerce"].order_ref
CLOCK = 1_800_000_000.0
EVENT = {"event_id": "msg_1", "event_type": "order.placed", "order": "1042"}


class MetricRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.units: list[tuple[str, Any, float]] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        super().add_metric(name, unit, value)
        self.units.append((name, unit, value))


def worker(rec: Recorder, target: ScriptedTarget, **options: Any) -> FlowWorker:
    options.setdefault("max_receive_count", 5)
    return FlowWorker(flow=options.pop("flow", FLOW), target=target, dead_letters=rec,
                      delay=lambda r, s: rec.delays.append((r, s)), metrics=rec, logger=rec,
                      sleep=rec.sleeps.append, order_ref=ORDER_REF, clock=lambda: CLOCK, **options)


def logged(rec: Recorder, text: str) -> dict[str, Any]:
    (extra,) = [extra for _, line, extra in rec.logs if line == text]
    return extra


# --------------------------------------------------------------------------- delivered, duplicate


def test_delivered_log_line_and_metric() -> None:
    rec = MetricRecorder()

    worker(rec, ScriptedTarget(CREATED)).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert logged(rec, "delivered") == {"flow": FLOW.name, "outcome": "created", "duplicate": False, **EVENT}
    assert rec.units == [("EventsCreated", "Count", 1)]


def test_duplicate_log_line_says_duplicate() -> None:
    rec = Recorder()
    work = worker(rec, ScriptedTarget(CREATED), make_idempotent=fake_idempotency)

    work.handle(message(), receive_count=1, receipt_handle="rh-1")
    work.handle(message(), receive_count=1, receipt_handle="rh-2")

    assert rec.logs[-1] == ("info", "delivered", {"flow": FLOW.name, "outcome": "created", "duplicate": True,
                                                  **EVENT})


def test_stored_result_without_an_outcome_counts_as_delivered() -> None:
    # a result the idempotency store kept from a worker that wrote no outcome
    rec = Recorder()

    worker(rec, ScriptedTarget(CREATED), make_idempotent=lambda _deliver: lambda **_: {}).handle(
        message(), receive_count=1, receipt_handle="rh-1")

    assert logged(rec, "delivered")["outcome"] == "delivered"
    assert rec.metrics == ["EventsDelivered"]


# --------------------------------------------------------------------------- retry later, throttled


def test_retry_later_log_line_and_the_exception_s_text() -> None:
    rec = Recorder()
    target = ScriptedTarget(RetryableError("Streak answered 503", reason="target_unavailable", retry_after=60))

    with pytest.raises(RetryLater) as raised:
        worker(rec, target).handle(message(), receive_count=2, receipt_handle="rh-1")

    assert str(raised.value) == "target_unavailable; retry in 60s"
    assert logged(rec, "retry later") == {"flow": FLOW.name, "reason": "target_unavailable", "attempt": 2,
                                          "delay": 60, **EVENT}


def test_retry_after_equal_to_the_longest_backoff_is_waited_in_process() -> None:
    rec = Recorder()
    target = ScriptedTarget(RetryableError("429", reason="target_unavailable", retry_after=8), CREATED)

    result = worker(rec, target).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert result is not None and result["outcome"] == "created"
    assert rec.sleeps == [8]


def test_backoff_without_retry_after_doubles_from_the_initial_wait_up_to_the_longest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the jitter's upper bound
    flow = FlowConfig(**{**FLOW.model_dump(), "retry": RetryConfig(attempts=7, initial_backoff_seconds=0.5,
                                                                   max_backoff_seconds=8,
                                                                   out_of_order_delay_seconds=5)})
    rec = Recorder()
    target = ScriptedTarget(*[RetryableError("503", reason="target_unavailable")] * 6, CREATED)

    worker(rec, target, flow=flow).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert rec.sleeps == [0.5, 1, 2, 4, 8, 8]


def test_throttled_requeue_log_line_and_compact_body() -> None:
    rec, requeued = Recorder(), []
    target = ScriptedTarget(RetryableError("429", reason="rate_limited", retry_after=120))

    worker(rec, target, requeue=lambda body, delay: requeued.append((body, delay))).handle(
        message(), receive_count=1, receipt_handle="rh-1")

    assert logged(rec, "throttled: requeued") == {"flow": FLOW.name, "reason": "rate_limited", "delay": 120,
                                                  "requeues": 1, **EVENT}
    ((body, delay),) = requeued
    assert delay == 120
    assert body == json.dumps(json.loads(body), separators=(",", ":"))


# --------------------------------------------------------------------------- waiting for a reconnect


def down(*, down_since: float | None = None) -> CircuitOpenError:
    return CircuitOpenError("circuit open", connection="streak", opened_at=down_since, retry_in=0.4)


def test_waiting_for_reconnect_log_line_and_compact_body() -> None:
    rec, requeued = Recorder(), []

    worker(rec, ScriptedTarget(down()), requeue=lambda body, delay: requeued.append((body, delay))).handle(
        message(), receive_count=1, receipt_handle="rh-1")

    extra = logged(rec, "waiting for reconnect")
    assert (extra["connection"], extra["reason"]) == ("streak", down().reason)
    assert {key: extra[key] for key in EVENT} == EVENT
    ((body, delay),) = requeued
    assert delay == 1  # the breaker lets a probe through in 0.4 s: back after a second, the shortest delay
    assert body == json.dumps(json.loads(body), separators=(",", ":"))


def test_waiting_past_the_budget_dead_letters_the_event_as_received() -> None:
    rec = Recorder()
    body = message()

    worker(rec, ScriptedTarget(down(down_since=CLOCK - 10)), requeue=lambda b, d: None,
           reconnect_wait_seconds=0).handle(body, receive_count=3, receipt_handle="rh-1")

    (letter,) = rec.dead_letters
    assert (letter.event_id, letter.original, letter.attempts) == ("msg_1", body, 3)


# --------------------------------------------------------------------------- dead letters


def test_dead_letter_log_line_time_and_audit_entry() -> None:
    rec, audit = Recorder(), InMemoryDeliveryAudit()
    long_message = "Streak refused: " + "x" * 600
    target = ScriptedTarget(PermanentError(long_message, reason="target_rejected", target_status=400))
    body = message()

    worker(rec, target, audit=audit).handle(body, receive_count=2, receipt_handle="rh-1")

    (letter,) = rec.dead_letters
    assert (letter.event_id, letter.original) == ("msg_1", body)
    failed_at = datetime.fromisoformat(letter.failed_at)
    assert failed_at.utcoffset() is not None and failed_at.utcoffset().total_seconds() == 0
    assert abs(failed_at.timestamp() - time.time()) < 60
    assert logged(rec, "dead-lettered") == {"flow": FLOW.name, "error_class": "permanent",
                                            "reason": "target_rejected", "target_status": 400, "attempt": 2, **EVENT}
    (entry,) = audit.read(FLOW.name, "1042")
    assert entry.detail == {"error_class": "permanent", "target_status": 400, "message": long_message[:500],
                            "attempts": 2}


def test_dead_letter_on_the_last_receive_keeps_the_event_and_its_message() -> None:
    rec = Recorder()
    body = message()

    worker(rec, ScriptedTarget(RetryableError("503", reason="target_unavailable", retry_after=60)),
           max_receive_count=1).handle(body, receive_count=1, receipt_handle="rh-1")

    (letter,) = rec.dead_letters
    assert (letter.event_id, letter.original) == ("msg_1", body)


# --------------------------------------------------------------------------- drops


def test_drop_log_line_record_and_audit_entry() -> None:
    rec, drops, audit, counted = Recorder(), InMemoryDropLog(), InMemoryDeliveryAudit(), []
    detail = {"order_key": "1042", "total": Decimal("12.30"), "seen": datetime(2026, 11, 20, tzinfo=UTC)}
    before = time.time()

    worker(rec, ScriptedTarget(DeliveryResult("stale", detail)), drops=drops, audit=audit,
           count_drop=lambda flow, why: counted.append(why)).handle(message(), receive_count=1, receipt_handle="rh")

    written = {"order_key": "1042", "total": "12.30", "seen": "2026-11-20 00:00:00+00:00"}
    assert logged(rec, "dropped") == {"flow": FLOW.name, "reason": "stale",
                                      "change_time": "2026-11-20T09:15:02+00:00", "detail": detail, **EVENT}
    (drop,) = drops.list(FLOW.name)
    assert (drop.event_type, drop.detail) == ("order.placed", written)
    assert before <= drop.dropped_at <= time.time()
    (entry,) = audit.read(FLOW.name, "1042")
    assert (entry.outcome, entry.reason, entry.detail) == ("dropped", "stale", written)


def test_drop_not_counted_log_line_names_the_error() -> None:
    rec = Recorder()

    def broken(_flow: str, _reason: str) -> None:
        raise RuntimeError("no metrics namespace")

    worker(rec, ScriptedTarget(DeliveryResult("stale")), count_drop=broken).handle(
        message(), receive_count=1, receipt_handle="rh-1")

    assert logged(rec, "drop not counted") == {"flow": FLOW.name, "error": "no metrics namespace", **EVENT}


# --------------------------------------------------------------------------- audit


def test_audit_entry_is_stamped_by_the_clock_with_the_event_s_type() -> None:
    rec, audit = Recorder(), InMemoryDeliveryAudit()

    worker(rec, ScriptedTarget(CREATED), audit=audit).handle(message(), receive_count=1, receipt_handle="rh-1")

    (entry,) = audit.read(FLOW.name, "1042")
    assert (entry.at, entry.event_id, entry.event_type, entry.outcome) == (CLOCK, "msg_1", "order.placed", "created")


def test_worker_without_an_audit_store_records_nothing_and_warns_of_nothing() -> None:
    rec = Recorder()

    worker(rec, ScriptedTarget(CREATED)).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert [line for _, line, _ in rec.logs] == ["delivered"]


def test_audit_not_recorded_log_line_names_the_error() -> None:
    class Broken:
        def record(self, flow: str, order: str, entry: AuditEntry) -> None:
            raise RuntimeError("table throttled")

    rec = Recorder()

    worker(rec, ScriptedTarget(CREATED), audit=Broken()).handle(message(), receive_count=1, receipt_handle="rh")

    assert logged(rec, "audit not recorded") == {"flow": FLOW.name, "error": "RuntimeError: table throttled",
                                                 **EVENT}


# --------------------------------------------------------------------------- the circuit breaker


class RecordingBreaker:
    """Tells what the worker reports; opens on the failures listed in ``opens_on``."""

    def __init__(self, *, opens_on: tuple[type[Exception], ...] = ()) -> None:
        self.failures: list[BaseException | None] = []
        self._opens_on = opens_on

    def check(self) -> None:
        return None

    def succeeded(self) -> None:
        return None

    def failed(self, exc: BaseException | None = None) -> Any:
        self.failures.append(exc)
        status = "open" if isinstance(exc, self._opens_on) else "closed"
        return type("State", (), {"status": type("Status", (), {"value": status})})()

    def refusal(self, state: Any) -> CircuitOpenError:
        return CircuitOpenError("circuit open", connection="streak", opened_at=CLOCK, retry_in=30)


@pytest.mark.parametrize("error", [PermanentError("Streak refused", reason="target_rejected", target_status=400),
                                   RetryableError("Streak answered 503", reason="target_unavailable")],
                         ids=["answered-4xx", "unavailable"])
def test_breaker_is_told_the_failure_itself(error: Exception) -> None:
    rec, breaker = Recorder(), RecordingBreaker()

    with pytest.raises((RetryLater,)) if isinstance(error, RetryableError) else _no_raise():
        worker(rec, ScriptedTarget(error), breaker=breaker).handle(message(), receive_count=1, receipt_handle="rh")

    assert breaker.failures == [error]


def test_failure_that_opens_the_breaker_waits_on_this_receive_for_its_event() -> None:
    rec, breaker = Recorder(), RecordingBreaker(opens_on=(RetryableError,))

    with pytest.raises(RetryLater):
        worker(rec, ScriptedTarget(RetryableError("503", reason="target_unavailable")), breaker=breaker).handle(
            message(), receive_count=1, receipt_handle="rh-9")

    assert rec.delays == [("rh-9", 30)]
    assert logged(rec, "waiting for reconnect")["event_id"] == "msg_1"


def test_failure_that_opens_the_breaker_past_the_wait_budget_dead_letters_with_its_receives() -> None:
    rec, breaker = Recorder(), RecordingBreaker(opens_on=(RetryableError,))

    worker(rec, ScriptedTarget(RetryableError("503", reason="target_unavailable")), breaker=breaker,
           reconnect_wait_seconds=0).handle(message(), receive_count=4, receipt_handle="rh-9")

    (letter,) = rec.dead_letters
    assert (letter.event_id, letter.attempts, letter.reason) == ("msg_1", 4, "circuit_open")


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False
