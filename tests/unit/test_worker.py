"""FlowWorker: deliver once in effect, retry what is retryable, dead-letter the rest with a reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from switchyard.catalog import FlowConfig, RetryConfig
from switchyard.connection_state import (
    METRIC,
    RECONNECT_POLL_SECONDS,
    RECONNECT_WAIT_SECONDS,
    WAITING_SINCE,
    ConnectionGuard,
    InMemoryConnectionStates,
)
from switchyard.errors import (
    ConnectionConfigError,
    ConnectionDownError,
    OutOfOrderError,
    PermanentError,
    RetryableError,
)
from switchyard.events import FlowEvent, flow_message
from switchyard.targets import DeliveryResult
from switchyard.worker import MAX_THROTTLE_REQUEUES, DeadLetter, FlowWorker, RetryLater

FLOW = FlowConfig(name="nopcommerce-to-streak", source="nopcommerce", events=("order.placed",),
                  target="streak", connection="streak", mapping="nopcommerce-to-streak.yaml",
                  retry=RetryConfig(attempts=3, initial_backoff_seconds=0.5, max_backoff_seconds=8,
                                    out_of_order_delay_seconds=5))
MAX_RECEIVES = 5
CREATED = DeliveryResult("created", {"box_key": "box_1", "order_key": "1042"})


def message(event_id: str = "msg_1", **overrides: Any) -> str:
    fields = {"flow": FLOW.name, "event_id": event_id, "source": "nopcommerce", "event_type": "order.placed",
              "timestamp": "2026-11-20T09:15:02+00:00", "received_at": "2026-11-20T09:15:03+00:00"}
    data = overrides.pop("data", {"Order": {"CustomOrderNumber": "1042", "OrderTotal": 1299.0},
                                  "Customer": {"Email": "jane.doe@acme-corp.example"}})
    if "type" in overrides:
        overrides["event_type"] = overrides.pop("type")
    fields.update(overrides)
    body = json.dumps({"type": fields["event_type"], "timestamp": fields["timestamp"], "data": data})
    return flow_message(**fields, body=body)


class ScriptedTarget:
    """Answers each delivery with the next scripted step (an exception is raised)."""

    def __init__(self, *steps: DeliveryResult | Exception) -> None:
        self.steps = list(steps)
        self.events: list[FlowEvent] = []

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        self.events.append(event)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


class Recorder:
    def __init__(self) -> None:
        self.dead_letters: list[DeadLetter] = []
        self.delays: list[tuple[str, int]] = []
        self.sleeps: list[float] = []
        self.metrics: list[str] = []
        self.logs: list[tuple[str, str, dict[str, Any]]] = []

    # DeadLetters
    def send(self, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)

    # Metrics
    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.metrics.append(name)

    # logger
    def __getattr__(self, level: str) -> Callable[..., None]:
        if level not in ("info", "warning", "error"):
            raise AttributeError(level)
        return lambda msg, extra=None: self.logs.append((level, msg, extra or {}))


def fake_idempotency(func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Like Powertools' idempotent_function: stores results per key, failures are not stored."""
    stored: dict[str, dict[str, Any]] = {}

    def wrapper(*, key: dict[str, str], event: FlowEvent) -> dict[str, Any]:
        fingerprint = json.dumps(key, sort_keys=True)
        if fingerprint in stored:
            return {**stored[fingerprint], "duplicate": True}
        result = func(key=key, event=event)
        stored[fingerprint] = result
        return result

    return wrapper


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def worker_for(rec: Recorder) -> Callable[..., FlowWorker]:
    def build(target: ScriptedTarget, *, idempotent: bool = False, max_receive_count: int = MAX_RECEIVES,
              flow: FlowConfig = FLOW) -> FlowWorker:
        return FlowWorker(flow=flow, target=target, dead_letters=rec, delay=lambda r, s: rec.delays.append((r, s)),
                          max_receive_count=max_receive_count,
                          make_idempotent=fake_idempotency if idempotent else None,
                          metrics=rec, logger=rec, sleep=rec.sleeps.append)

    return build


def test_handle_delivered_returns_result_and_counts_outcome(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(CREATED)

    result = worker_for(target).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert result == {"outcome": "created", "detail": {"box_key": "box_1", "order_key": "1042"}}
    assert [e.event_id for e in target.events] == ["msg_1"]
    assert rec.metrics == ["EventsCreated"]
    assert rec.dead_letters == [] and rec.delays == [] and rec.sleeps == []


def test_handle_passes_event_with_exact_money(worker_for) -> None:
    target = ScriptedTarget(CREATED)

    worker_for(target).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert str(target.events[0].data["Order"]["OrderTotal"]) == "1299.0"  # a Decimal, not a float


def test_handle_retryable_twice_then_success_delivers_once_with_backoff(worker_for, rec: Recorder) -> None:
    # Given a target that is unavailable twice, then fine
    target = ScriptedTarget(RetryableError("503", reason="target_unavailable"),
                            RetryableError("503", reason="target_unavailable"), CREATED)

    # When the worker handles the record
    result = worker_for(target).handle(message(), receive_count=1, receipt_handle="rh-1")

    # Then it delivered after two jittered exponential backoffs, all in-process
    assert result["outcome"] == "created"
    assert len(target.events) == 3
    assert len(rec.sleeps) == 2
    assert 0 <= rec.sleeps[0] <= 0.5  # initial backoff, full jitter
    assert 0 <= rec.sleeps[1] <= 1.0  # doubled
    assert rec.metrics == ["EventsCreated"]
    assert rec.delays == [] and rec.dead_letters == []


def test_handle_retryable_with_retry_after_sleeps_exactly_that(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(RetryableError("429", reason="rate_limited", retry_after=2.0), CREATED)

    worker_for(target).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert rec.sleeps == [2.0]


def test_handle_retry_after_beyond_max_backoff_returns_to_queue_with_that_delay(worker_for, rec) -> None:
    # Given a 429 asking for two minutes (more than the 8 s inline maximum)
    target = ScriptedTarget(RetryableError("429", reason="rate_limited", retry_after=120.0), CREATED)

    with pytest.raises(RetryLater) as raised:
        worker_for(target).handle(message(), receive_count=1, receipt_handle="rh-1")

    # Then it is not retried inline: the message waits on the queue for exactly Retry-After
    assert len(target.events) == 1
    assert rec.sleeps == []
    assert raised.value.delay_seconds == 120
    assert raised.value.reason == "rate_limited"
    assert rec.delays == [("rh-1", 120)]
    assert rec.metrics == ["DeliveryRetried"]


def test_handle_fractional_retry_after_rounded_up(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(RetryableError("429", reason="rate_limited", retry_after=20.2))

    with pytest.raises(RetryLater) as raised:
        worker_for(target).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert raised.value.delay_seconds == 21  # never earlier than the target asked


def test_handle_retryable_exhausted_inline_retries_later_with_backoff(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(RetryableError("timeout", reason="target_timeout"))

    with pytest.raises(RetryLater) as raised:
        worker_for(target).handle(message(), receive_count=2, receipt_handle="rh-2")

    assert len(target.events) == 3  # flow.retry.attempts
    assert len(rec.sleeps) == 2
    assert raised.value.delay_seconds == 60  # 30 s * 2^(2-1)
    assert rec.delays == [("rh-2", 60)]


@pytest.mark.parametrize(("receive_count", "delay"), [(1, 5), (2, 10), (3, 20), (4, 40)])
def test_handle_out_of_order_retries_later_doubling(worker_for, rec: Recorder, receive_count, delay) -> None:
    target = ScriptedTarget(OutOfOrderError("no box yet", reason="box_not_found"))

    with pytest.raises(RetryLater) as raised:
        worker_for(target).handle(message(), receive_count=receive_count, receipt_handle="rh")

    assert len(target.events) == 1  # never retried inline
    assert raised.value.delay_seconds == delay
    assert raised.value.reason == "box_not_found"
    assert rec.delays == [("rh", delay)]
    assert rec.dead_letters == []


def test_handle_out_of_order_delay_capped_at_fifteen_minutes(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(OutOfOrderError("no box yet", reason="box_not_found"))

    with pytest.raises(RetryLater) as raised:
        worker_for(target, max_receive_count=100).handle(message(), receive_count=20, receipt_handle="rh")

    assert raised.value.delay_seconds == 900


def test_handle_out_of_order_on_last_receive_dead_letters_without_raising(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(OutOfOrderError("no box for order 1042 yet", reason="box_not_found"))

    result = worker_for(target).handle(message(), receive_count=MAX_RECEIVES, receipt_handle="rh")

    assert result is None
    assert rec.delays == []
    (letter,) = rec.dead_letters
    assert (letter.error_class, letter.reason, letter.attempts) == ("out_of_order", "box_not_found", MAX_RECEIVES)
    assert rec.metrics == ["EventsDeadLettered"]


def test_handle_permanent_error_dead_letters_at_once_with_everything(worker_for, rec: Recorder) -> None:
    # Given a target that rejects the request
    body = message("msg_bad")
    streak_says = {"success": False, "error": "Invalid value for field 1004"}
    target = ScriptedTarget(PermanentError("Streak answered 400", reason="target_rejected", target_status=400,
                                           target_response=streak_says))

    # When it is handled on the first receive
    result = worker_for(target).handle(body, receive_count=1, receipt_handle="rh")

    # Then it is dead-lettered immediately, and the letter says everything an operator needs
    assert result is None
    assert len(target.events) == 1 and rec.sleeps == [] and rec.delays == []
    (letter,) = rec.dead_letters
    assert letter.flow == "nopcommerce-to-streak"
    assert letter.event_id == "msg_bad"
    assert letter.error_class == "permanent"
    assert letter.reason == "target_rejected"
    assert letter.target_status == 400
    assert letter.target_response == streak_says
    assert letter.attempts == 1
    assert letter.original == body
    assert letter.message == "Streak answered 400"
    assert json.loads(letter.to_json())["target_response"] == streak_says


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", json.dumps({"flow": "f"}), message(timestamp="yesterday"), ""],
    ids=["not-json", "array", "missing-keys", "bad-timestamp", "empty"],
)
def test_handle_malformed_message_dead_letters_malformed_message(worker_for, rec: Recorder, body: str) -> None:
    target = ScriptedTarget(CREATED)

    assert worker_for(target).handle(body, receive_count=1, receipt_handle="rh") is None

    assert target.events == []
    (letter,) = rec.dead_letters
    assert (letter.reason, letter.error_class, letter.event_id) == ("malformed_message", "permanent", None)
    assert letter.flow == "nopcommerce-to-streak"
    assert letter.original == body


def test_handle_connection_config_error_dead_letters_as_permanent(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(ConnectionConfigError("Streak connection is incomplete: api_key"))

    worker_for(target).handle(message(), receive_count=1, receipt_handle="rh")

    (letter,) = rec.dead_letters
    assert (letter.error_class, letter.reason) == ("permanent", "connection_config_error")


def test_handle_unexpected_exception_retried_later_then_dead_lettered(worker_for, rec: Recorder) -> None:
    # Given a target with a bug
    target = ScriptedTarget(KeyError("key"))
    worker = worker_for(target)

    # When it is received before the last time, it goes back to the queue (not retried inline)
    with pytest.raises(RetryLater) as raised:
        worker.handle(message(), receive_count=1, receipt_handle="rh-1")
    assert raised.value.reason == "KeyError"
    assert raised.value.delay_seconds == 30
    assert len(target.events) == 1

    # And on the last receive it is dead-lettered as unexpected
    assert worker.handle(message(), receive_count=MAX_RECEIVES, receipt_handle="rh-5") is None
    (letter,) = rec.dead_letters
    assert (letter.error_class, letter.reason, letter.attempts) == ("unexpected", "key_error", MAX_RECEIVES)
    assert letter.target_status is None


def test_handle_duplicate_event_counts_duplicate_and_skips_target(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(CREATED)
    worker = worker_for(target, idempotent=True)

    first = worker.handle(message("msg_dup"), receive_count=1, receipt_handle="rh-1")
    second = worker.handle(message("msg_dup"), receive_count=1, receipt_handle="rh-2")

    assert first == {"outcome": "created", "detail": CREATED.detail}
    assert second == {**first, "duplicate": True}
    assert len(target.events) == 1
    assert rec.metrics == ["EventsCreated", "EventsDuplicate"]


def test_handle_idempotency_keyed_by_flow_and_event_id(worker_for) -> None:
    target = ScriptedTarget(CREATED)
    worker = worker_for(target, idempotent=True)

    worker.handle(message("msg_a"), receive_count=1, receipt_handle="rh")
    worker.handle(message("msg_b"), receive_count=1, receipt_handle="rh")
    worker.handle(message("msg_a", flow="other-flow"), receive_count=1, receipt_handle="rh")

    assert [e.idempotency_key for e in target.events] == [
        {"flow": FLOW.name, "event_id": "msg_a"},
        {"flow": FLOW.name, "event_id": "msg_b"},
        {"flow": "other-flow", "event_id": "msg_a"},
    ]


def test_handle_failed_attempt_not_recorded_as_done(worker_for, rec: Recorder) -> None:
    # Given a delivery that fails permanently once; a redrive of the same event must run again
    target = ScriptedTarget(PermanentError("400", reason="target_rejected"), CREATED)
    worker = worker_for(target, idempotent=True)

    worker.handle(message("msg_r"), receive_count=1, receipt_handle="rh")
    redriven = worker.handle(message("msg_r"), receive_count=1, receipt_handle="rh")

    assert redriven == {"outcome": "created", "detail": CREATED.detail}
    assert len(target.events) == 2


def test_handle_logs_carry_ids_but_no_event_data(worker_for, rec: Recorder) -> None:
    target = ScriptedTarget(PermanentError("rejected", reason="target_rejected", target_status=400,
                                           target_response={"error": "jane.doe@acme-corp.example"}))

    worker_for(target).handle(message("msg_log"), receive_count=1, receipt_handle="rh")

    (level, text, extra) = rec.logs[-1]
    assert (level, text) == ("error", "dead-lettered")
    assert extra["event_id"] == "msg_log" and extra["flow"] == FLOW.name and extra["reason"] == "target_rejected"
    assert "jane" not in repr(rec.logs).lower()


def throttling_worker(rec: Recorder, target: ScriptedTarget) -> tuple[FlowWorker, list[tuple[str, int]]]:
    requeued: list[tuple[str, int]] = []
    worker = FlowWorker(flow=FLOW, target=target, dead_letters=rec, delay=lambda r, s: rec.delays.append((r, s)),
                        max_receive_count=MAX_RECEIVES, metrics=rec, logger=rec, sleep=rec.sleeps.append,
                        requeue=lambda body, seconds: requeued.append((body, seconds)))
    return worker, requeued


def test_handle_429_on_the_last_receive_is_requeued_with_its_wait_not_dead_lettered(rec: Recorder) -> None:
    throttled = RetryableError("QuickBooks 429", reason="rate_limited", retry_after=60.0)
    worker, requeued = throttling_worker(rec, ScriptedTarget(throttled, throttled, throttled))

    result = worker.handle(message(), receive_count=MAX_RECEIVES, receipt_handle="rh-1")

    assert result is None and rec.dead_letters == [] and rec.delays == []  # the record is done: deleted
    (body, seconds), = requeued
    assert seconds == 60
    assert json.loads(body)["throttled"] == 1
    assert FlowEvent.from_message(body).event_id == "msg_1"  # the same event, a fresh receive count
    assert "DeliveryThrottled" in rec.metrics


def test_handle_throttled_requeues_count_up_then_fall_back_to_the_receive_budget(rec: Recorder) -> None:
    limited = RetryableError("no permit", reason="rate_limited_locally", retry_after=0.2)
    worker, requeued = throttling_worker(rec, ScriptedTarget(*[limited] * 9))
    body = json.dumps({**json.loads(message()), "throttled": MAX_THROTTLE_REQUEUES})

    with pytest.raises(RetryLater):
        worker.handle(body, receive_count=1, receipt_handle="rh-1")
    assert requeued == []


def test_handle_other_retryable_errors_are_not_requeued(rec: Recorder) -> None:
    unavailable = RetryableError("503", reason="target_unavailable")
    worker, requeued = throttling_worker(rec, ScriptedTarget(*[unavailable] * 3))

    worker.handle(message(), receive_count=MAX_RECEIVES, receipt_handle="rh-1")
    assert requeued == [] and rec.dead_letters[0].reason == "target_unavailable"


def test_handle_own_limiter_wait_on_the_last_receive_is_requeued_not_dead_lettered(rec: Recorder) -> None:
    # our own rate limiter found no permit soon: a wait, like a 429, must not use up the receive budget
    limited = RetryableError("no permit", reason="rate_limited_locally", retry_after=2.0)
    worker, requeued = throttling_worker(rec, ScriptedTarget(limited))

    result = worker.handle(message(), receive_count=MAX_RECEIVES, receipt_handle="rh-1")

    assert result is None and rec.dead_letters == [] and rec.delays == []
    (body, seconds), = requeued
    assert seconds == 2 and json.loads(body)["throttled"] == 1


def test_handle_throttled_the_120th_requeue_is_the_last(rec: Recorder) -> None:
    # two hours of a target answering 429 with 60 s waits: 120 requeues, then the receive budget decides
    throttled = RetryableError("QuickBooks 429", reason="rate_limited", retry_after=60.0)
    worker, requeued = throttling_worker(rec, ScriptedTarget(throttled))

    worker.handle(json.dumps({**json.loads(message()), "throttled": 119}), receive_count=1, receipt_handle="rh-1")
    worker.handle(json.dumps({**json.loads(message()), "throttled": 120}), receive_count=MAX_RECEIVES,
                  receipt_handle="rh-2")

    assert [json.loads(body)["throttled"] for body, _ in requeued] == [120]
    assert [letter.reason for letter in rec.dead_letters] == ["rate_limited"]
    assert MAX_THROTTLE_REQUEUES == 120  # the count the module's docs and the runbook give


@pytest.mark.parametrize("retry_after", [0.2, -5.0], ids=["fraction", "negative"])
def test_handle_throttled_requeue_waits_at_least_one_second(rec: Recorder, retry_after: float) -> None:
    throttled = RetryableError("429", reason="rate_limited", retry_after=retry_after)
    worker, requeued = throttling_worker(rec, ScriptedTarget(throttled))

    worker.handle(message(), receive_count=1, receipt_handle="rh-1")

    assert [seconds for _, seconds in requeued] == [1]


def test_handle_throttled_without_retry_after_requeued_after_the_base_wait(rec: Recorder) -> None:
    throttled = RetryableError("429", reason="rate_limited", retry_after=None)
    worker, requeued = throttling_worker(rec, ScriptedTarget(throttled))

    worker.handle(message(), receive_count=1, receipt_handle="rh-1")

    assert [seconds for _, seconds in requeued] == [30]


@pytest.mark.parametrize("retry_after", [0.0, -5.0], ids=["zero", "negative"])
def test_handle_retry_after_below_one_second_returns_to_queue_after_one_second(
        worker_for, rec: Recorder, retry_after: float) -> None:
    target = ScriptedTarget(RetryableError("503", reason="target_unavailable", retry_after=retry_after))

    with pytest.raises(RetryLater) as raised:
        worker_for(target).handle(message(), receive_count=1, receipt_handle="rh-1")

    assert raised.value.delay_seconds == 1 and rec.delays == [("rh-1", 1)]


# --------------------------------------------------------------------------- a connection waiting for a reconnect


class ReconnectHarness:
    def __init__(self, rec: Recorder, target: ScriptedTarget) -> None:
        self.now = 1_795_000_000.0
        self.requeued: list[tuple[str, int]] = []
        self.states = InMemoryConnectionStates(clock=lambda: self.now)
        self.target = target
        self.worker = FlowWorker(flow=FLOW, target=target, dead_letters=rec,
                                 delay=lambda r, s: rec.delays.append((r, s)), max_receive_count=MAX_RECEIVES,
                                 metrics=rec, logger=rec, sleep=rec.sleeps.append,
                                 requeue=lambda body, delay: self.requeued.append((body, delay)),
                                 guard=ConnectionGuard(self.states, FLOW.connections, metrics=rec, logger=rec),
                                 clock=lambda: self.now)


def dead_credentials() -> ConnectionDownError:
    return ConnectionDownError("QuickBooks refused to refresh (invalid_grant)", connection="streak",
                               reason="credentials_rejected", target_status=400,
                               target_response={"error": "invalid_grant"})


def test_handle_connection_down_marks_it_and_requeues_without_spending_receives(rec: Recorder) -> None:
    harness = ReconnectHarness(rec, ScriptedTarget(dead_credentials()))

    # the last receive: a retryable error would be dead-lettered here
    assert harness.worker.handle(message(), receive_count=MAX_RECEIVES, receipt_handle="r1") is None

    assert rec.dead_letters == [] and rec.delays == []
    state = harness.states.get("streak")
    assert (state.usable, state.reason) == (False, "credentials_rejected")
    [(body, delay)] = harness.requeued
    assert delay == RECONNECT_POLL_SECONDS
    assert json.loads(body)[WAITING_SINCE] == harness.now
    assert rec.metrics == [METRIC]


def test_handle_while_connection_down_waits_without_calling_the_target(rec: Recorder) -> None:
    harness = ReconnectHarness(rec, ScriptedTarget(CREATED))
    harness.states.mark_needs_reconnect("streak", reason="credentials_rejected", message="invalid_grant")

    harness.worker.handle(message(), receive_count=1, receipt_handle="r1")

    assert harness.target.events == []
    assert len(harness.requeued) == 1 and rec.dead_letters == []
    assert rec.metrics == [METRIC]  # every waiting event keeps the alarm's metric up


def test_handle_waiting_event_keeps_its_first_stamp_and_is_dead_lettered_after_the_time_budget(
    rec: Recorder,
) -> None:
    harness = ReconnectHarness(rec, ScriptedTarget(CREATED))
    harness.states.mark_needs_reconnect("streak", reason="credentials_rejected", message="invalid_grant")
    harness.worker.handle(message(), receive_count=1, receipt_handle="r1")
    body = harness.requeued[-1][0]
    for _ in range(3):  # many turns: the stamp stays the first one
        harness.now += RECONNECT_POLL_SECONDS
        harness.worker.handle(body, receive_count=1, receipt_handle="r")
        body = harness.requeued[-1][0]
    assert json.loads(body)[WAITING_SINCE] == 1_795_000_000.0
    assert rec.dead_letters == []

    harness.now = 1_795_000_000.0 + RECONNECT_WAIT_SECONDS
    harness.worker.handle(body, receive_count=1, receipt_handle="r")

    [letter] = rec.dead_letters
    assert (letter.error_class, letter.reason) == ("connection_down", "connection_needs_reconnect")


def test_handle_after_reconnect_delivers_the_waiting_event(rec: Recorder) -> None:
    harness = ReconnectHarness(rec, ScriptedTarget(CREATED))
    harness.states.mark_needs_reconnect("streak", reason="credentials_rejected", message="invalid_grant")
    harness.worker.handle(message(), receive_count=1, receipt_handle="r1")

    harness.states.mark_connected("streak")
    result = harness.worker.handle(harness.requeued[-1][0], receive_count=1, receipt_handle="r2")

    assert result is not None and result["outcome"] == "created"
    assert len(harness.target.events) == 1


def test_handle_stamp_of_an_earlier_outage_does_not_count_against_a_new_one(rec: Recorder) -> None:
    # Given a message that waited through an outage 20 days ago (a redrive carries its stamp)
    harness = ReconnectHarness(rec, ScriptedTarget(dead_credentials()))
    old = json.loads(message())
    old[WAITING_SINCE] = harness.now - 20 * 24 * 3600

    # When the connection dies again: first found by this delivery, then on the next turn by the check
    harness.worker.handle(json.dumps(old), receive_count=1, receipt_handle="r1")
    harness.now += RECONNECT_POLL_SECONDS
    harness.worker.handle(harness.requeued[-1][0], receive_count=1, receipt_handle="r2")

    assert rec.dead_letters == []
    assert json.loads(harness.requeued[-1][0])[WAITING_SINCE] == harness.now - RECONNECT_POLL_SECONDS


def test_handle_connection_down_without_a_requeue_waits_on_this_receive(rec: Recorder) -> None:
    # no way to send the event again as a new message: it waits by its visibility (spending a receive)
    worker = FlowWorker(flow=FLOW, target=ScriptedTarget(dead_credentials()), dead_letters=rec,
                        delay=lambda r, s: rec.delays.append((r, s)), max_receive_count=MAX_RECEIVES, logger=rec,
                        sleep=rec.sleeps.append, reconnect_poll_seconds=600, clock=lambda: 1_795_000_000.0)

    with pytest.raises(RetryLater) as raised:
        worker.handle(message(), receive_count=1, receipt_handle="r1")

    assert (raised.value.reason, raised.value.delay_seconds) == ("credentials_rejected", 600)
    assert rec.delays == [("r1", 600)] and rec.dead_letters == []


def test_handle_waiting_event_logs_how_long_it_has_waited(rec: Recorder) -> None:
    harness = ReconnectHarness(rec, ScriptedTarget(CREATED))
    harness.states.mark_needs_reconnect("streak", reason="credentials_rejected", message="invalid_grant")
    harness.worker.handle(message(), receive_count=1, receipt_handle="r1")
    harness.now += 3 * RECONNECT_POLL_SECONDS
    harness.worker.handle(harness.requeued[-1][0], receive_count=1, receipt_handle="r2")

    waits = [extra for _, text, extra in rec.logs if text == "waiting for reconnect"]
    assert [extra["waiting_seconds"] for extra in waits] == [0, 3 * RECONNECT_POLL_SECONDS]
    assert {(extra["delay"], extra["event_id"]) for extra in waits} == {(RECONNECT_POLL_SECONDS, "msg_1")}


def test_handle_waiting_event_dead_lettered_after_the_time_budget_counts_its_receives(rec: Recorder) -> None:
    harness = ReconnectHarness(rec, ScriptedTarget(CREATED))
    harness.states.mark_needs_reconnect("streak", reason="credentials_rejected", message="invalid_grant")
    harness.worker.handle(message(), receive_count=1, receipt_handle="r1")
    harness.now += RECONNECT_WAIT_SECONDS

    harness.worker.handle(harness.requeued[-1][0], receive_count=3, receipt_handle="r2")

    [letter] = rec.dead_letters
    assert letter.attempts == 3


# --- drops: accepted, then deliberately not applied -------------------------------------------------


@pytest.mark.parametrize("reason", ["stale", "not_master", "superseded"])
def test_handle_dropped_outcome_logged_counted_with_reason_and_listed(rec: Recorder, reason: str) -> None:
    from switchyard.drops import InMemoryDropLog

    drops, counted = InMemoryDropLog(), []
    worker = FlowWorker(flow=FLOW, target=ScriptedTarget(DeliveryResult(reason, {"order_key": "1042"})),
                        dead_letters=rec, delay=lambda r, s: None, max_receive_count=MAX_RECEIVES, metrics=rec,
                        logger=rec, drops=drops, count_drop=lambda flow, why: counted.append((flow, why)))

    worker.handle(message(), receive_count=1, receipt_handle="rh-1")

    assert rec.metrics == ["EventsDropped"]
    assert counted == [(FLOW.name, reason)]
    (level, text, extra) = rec.logs[-1]
    assert (level, text, extra["reason"], extra["event_id"]) == ("warning", "dropped", reason, "msg_1")
    (drop,) = drops.list(FLOW.name)
    assert (drop.event_id, drop.reason, drop.detail) == ("msg_1", reason, {"order_key": "1042"})
    assert drop.change_time == "2026-11-20T09:15:02+00:00"


def test_handle_duplicate_of_dropped_event_not_recorded_again(rec: Recorder) -> None:
    from switchyard.drops import InMemoryDropLog

    drops = InMemoryDropLog()
    worker = FlowWorker(flow=FLOW, target=ScriptedTarget(DeliveryResult("stale")), dead_letters=rec,
                        delay=lambda r, s: None, max_receive_count=MAX_RECEIVES, make_idempotent=fake_idempotency,
                        metrics=rec, logger=rec, drops=drops)

    worker.handle(message(), receive_count=1, receipt_handle="rh-1")
    worker.handle(message(), receive_count=1, receipt_handle="rh-2")

    assert rec.metrics == ["EventsDropped", "EventsDuplicate"]
    assert len(drops.list(FLOW.name)) == 1


def test_handle_dropped_metric_failing_does_not_fail_the_delivery(rec: Recorder) -> None:
    def broken(_flow: str, _reason: str) -> None:
        raise RuntimeError("no metrics namespace")

    worker = FlowWorker(flow=FLOW, target=ScriptedTarget(DeliveryResult("stale")), dead_letters=rec,
                        delay=lambda r, s: None, max_receive_count=MAX_RECEIVES, metrics=rec, logger=rec,
                        count_drop=broken)

    assert worker.handle(message(), receive_count=1, receipt_handle="rh-1") == {"outcome": "stale", "detail": {}}
    assert ("warning", "drop not counted") in [(level, text) for level, text, _ in rec.logs]
