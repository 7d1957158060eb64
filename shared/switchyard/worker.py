"""Processing one queued event of one flow: deliver exactly once in effect, or dead-letter it
with its reason. Nothing is dropped silently.

    deliver ──ok──────────────────────────────> done (result recorded for duplicates)
       │ RetryableError (5xx, 429, timeout)     retried in-process with backoff + jitter,
       │                                        honouring Retry-After; then, like OutOfOrder:
       │ OutOfOrderError / still retryable ──>  message made visible again later (RetryLater),
       │                                        until the last receive: dead-lettered
       │ the target throttles (429, or our own  sent again as a new message, delayed by the wait it asked
       │ rate limiter has no permit soon) ───>  for: throttling never spends the receive budget (at most
       │                                        MAX_THROTTLE_REQUEUES times, then as above)
       │ PermanentError / bad config ───────>   dead-lettered at once, with the reason
       │ ConnectionDownError, or a connection   sent again as a new message every RECONNECT_POLL_SECONDS while
       │ of the flow marked needs_reconnect ─>  the connection waits for a reconnect (switchyard.connection_
       │                                        state): a budget in time, then dead-lettered
       │ the target's circuit breaker is open,  the same wait (a CircuitOpenError is a ConnectionDownError), sent
       │ or this failure opened it ─────────>   back for when the cool-down ends (switchyard.circuit_breaker)
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from switchyard.audit import AuditEntry, DeliveryAudit, order_refs
from switchyard.catalog import FlowConfig
from switchyard.circuit_breaker import CircuitBreaker, CircuitOpenError
from switchyard.concurrency import run_groups
from switchyard.connection_state import (
    RECONNECT_POLL_SECONDS,
    RECONNECT_WAIT_SECONDS,
    WAITING_SINCE,
    ConnectionGuard,
)
from switchyard.drops import Drop, DropLog
from switchyard.errors import (
    ConnectionConfigError,
    ConnectionDownError,
    DeliveryError,
    MappingError,
    OutOfOrderError,
    PermanentError,
    RetryableError,
)
from switchyard.events import FlowEvent
from switchyard.targets import DROPPED_OUTCOMES, DeliveryResult, Target

MAX_RETRY_DELAY_SECONDS = 900  # SQS visibility changes beyond this wait too long for a flow
RETRY_LATER_BASE_SECONDS = 30
MAX_THROTTLE_REQUEUES = 120  # 429s answered with 60 s waits: two hours of a target saying "slow down"
THROTTLED_REASONS = frozenset({"rate_limited", "rate_limited_locally"})


class RetryLater(Exception):
    """The record failed for now; SQS delivers it again after ``delay_seconds``."""

    def __init__(self, reason: str, delay_seconds: int) -> None:
        super().__init__(f"{reason}; retry in {delay_seconds}s")
        self.reason = reason
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class DeadLetter:
    flow: str
    event_id: str | None
    error_class: str
    reason: str
    message: str
    target_status: int | None
    target_response: Any
    attempts: int
    failed_at: str
    original: str  # the queue message, as received: redrive sends it back unchanged

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


@dataclass(frozen=True)
class QueuedRecord:
    """One record of a queue batch, as the event source mapping hands it over."""

    message_id: str
    body: str
    receive_count: int
    receipt_handle: str


class DeadLetters(Protocol):
    def send(self, letter: DeadLetter) -> None: ...


class Metrics(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> None: ...


Idempotent = Callable[..., dict[str, Any]]  # (key=..., event=...) -> recorded result


class FlowWorker:
    def __init__(
        self,
        *,
        flow: FlowConfig,
        target: Target,
        dead_letters: DeadLetters,
        delay: Callable[[str, int], None],
        max_receive_count: int,
        make_idempotent: Callable[[Callable[..., dict[str, Any]]], Idempotent] | None = None,
        metrics: Metrics | None = None,
        logger: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        requeue: Callable[[str, int], None] | None = None,
        guard: ConnectionGuard | None = None,
        reconnect_wait_seconds: float = RECONNECT_WAIT_SECONDS,
        reconnect_poll_seconds: int = RECONNECT_POLL_SECONDS,
        clock: Callable[[], float] = time.time,
        drops: DropLog | None = None,
        count_drop: Callable[[str, str], None] | None = None,
        breaker: CircuitBreaker | None = None,
        audit: DeliveryAudit | None = None,
        order_ref: tuple[str, ...] = (),
    ) -> None:
        self.flow = flow
        self._audit = audit  # what happened to each order, for `switchyard trace`
        self._order_ref = order_ref  # the source's paths naming an event's order: in every log line too
        self._guard = guard
        self._breaker = breaker  # of the target's connection: checked before, told after every delivery
        self._reconnect_wait = reconnect_wait_seconds
        self._reconnect_poll = reconnect_poll_seconds
        self._clock = clock
        self._target = target
        self._dead_letters = dead_letters
        self._delay = delay
        self._max_receive_count = max_receive_count
        self._requeue = requeue
        self._metrics = metrics
        self._logger = logger
        self._drops = drops
        self._metrics_lock = threading.Lock()  # a batch's entities run side by side
        self._count_drop = count_drop  # (flow, reason): a metric with the reason as a dimension
        retry = flow.retry
        self._retrying = Retrying(
            stop=stop_after_attempt(retry.attempts),
            wait=_wait_honouring_retry_after(retry.initial_backoff_seconds, retry.max_backoff_seconds),
            retry=retry_if_exception(lambda exc: _retry_inline(exc, retry.max_backoff_seconds)),
            sleep=sleep,
            reraise=True,
        )
        deliver = self._deliver
        self._deliver_once: Idempotent = make_idempotent(deliver) if make_idempotent else deliver

    def _deliver(self, key: dict[str, str], event: FlowEvent) -> dict[str, Any]:
        del key  # what the idempotency layer hashes
        result: DeliveryResult = self._retrying(self._target.deliver, event)
        return {"outcome": result.outcome, "detail": result.detail}

    def handle_batch(self, records: Sequence[QueuedRecord]) -> list[str]:
        """Finish a batch; the message ids to report as failed (SQS delivers them again).

        The records of one entity (sharing an order reference, see ``entity_groups``) run one after
        another in the batch's order; the entities run side by side, so the batch waits for its slowest
        entity instead of the sum of all. A record that fails fails the later records of its entity too,
        unrun (they wait at least as long as it does, so its retry comes first), and nothing of another;
        except a record that came too early (out of order: a status change before its order), which waits
        for what follows it, so the later records go on.
        """
        failed: list[str] = []
        lock = threading.Lock()

        def run(group: list[QueuedRecord]) -> None:
            for position, record in enumerate(group):
                try:
                    self.handle(record.body, receive_count=record.receive_count,
                                receipt_handle=record.receipt_handle)
                except Exception as exc:
                    if isinstance(exc, RetryLater) and isinstance(exc.__cause__, OutOfOrderError):
                        with lock:
                            failed.append(record.message_id)
                        continue  # holding back what it waits for would have it wait forever
                    later = group[position + 1:]
                    self._hold_back(later, exc)
                    with lock:
                        failed.extend(r.message_id for r in (record, *later))
                    return

        groups = entity_groups(records, self._entity_refs)
        for outcome in run_groups(*(lambda group=group: run(group) for group in groups)):
            outcome.get()  # run() reports every failure itself: only a bug of its own gets here
        order = {record.message_id: i for i, record in enumerate(records)}
        return sorted(failed, key=order.__getitem__)

    def _entity_refs(self, body: str) -> list[str]:
        """What names the record's entity: its source's order references (none: a malformed message)."""
        try:
            raw = json.loads(body)
            data = json.loads(raw["body"])["data"] if isinstance(raw["body"], str) else raw["body"]["data"]
        except (ValueError, KeyError, TypeError):
            return []
        # any of them may name it (number, id, guid): a collision of two orders' values only serialises them
        return [f"{raw.get('source')}|{ref}" for ref in order_refs(self._order_ref, data)] if self._order_ref else []

    def _hold_back(self, later: Sequence[QueuedRecord], exc: Exception) -> None:
        """Records after a failed one of the same entity: back on the queue no sooner than it."""
        if not isinstance(exc, RetryLater):
            return  # not delayed: they come back with the queue's visibility timeout, like it
        for record in later:
            try:
                self._delay(record.receipt_handle, exc.delay_seconds)
            except Exception as error:  # reported failed all the same; the visibility timeout brings it back
                self._log("warning", "could not delay a held-back record", None, error=str(error))

    def handle(self, body: str, *, receive_count: int, receipt_handle: str) -> dict[str, Any] | None:
        """Finish one record, or raise RetryLater so the batch reports it as failed."""
        event: FlowEvent | None = None
        try:
            event = FlowEvent.from_message(body)
            if self._guard is not None:
                self._guard.check()  # a connection waiting for a reconnect: nothing to try
            if self._breaker is not None:
                self._breaker.check()  # open: CircuitOpenError, waits below like a reconnect
            result = self._deliver_once(key=event.idempotency_key, event=event)
            if self._breaker is not None and not result.get("duplicate"):  # a duplicate never reached the target
                self._breaker.succeeded()
        except ConnectionDownError as exc:
            self._wait_for_reconnect(exc, event, body, receive_count, receipt_handle)
            return None
        except (PermanentError, ConnectionConfigError, MappingError) as exc:
            if self._breaker is not None:
                self._breaker.failed(exc)  # the target answered (a 4xx): it is up
            self._dead_letter(exc, event, body, receive_count)
            return None
        except Exception as exc:  # retryable, out of order, in progress elsewhere, or a bug
            opened = self._breaker_opened_by(exc)
            if opened is not None:  # the target is down: wait for it, do not spend this event's receives
                self._wait_for_reconnect(opened, event, body, receive_count, receipt_handle)
                return None
            if self._requeued_while_throttled(exc, event, body):
                return None
            if receive_count >= self._max_receive_count:
                self._dead_letter(exc, event, body, receive_count)
                return None
            delay = self._retry_delay(exc, receive_count)
            reason = exc.reason if isinstance(exc, DeliveryError) else type(exc).__name__
            self._log("warning", "retry later", event, reason=reason, attempt=receive_count, delay=delay)
            self._metric("DeliveryRetried")
            self._delay(receipt_handle, delay)
            raise RetryLater(reason, delay) from exc
        outcome = result.get("outcome", "delivered")
        if outcome in DROPPED_OUTCOMES and not result.get("duplicate"):
            self._record_drop(event, outcome, result.get("detail") or {})
            self._audit_entry(event, "dropped", reason=outcome, detail=result.get("detail") or {})
            return result
        self._log("info", "delivered", event, outcome=outcome, duplicate=bool(result.get("duplicate")))
        self._audit_entry(event, "duplicate" if result.get("duplicate") else outcome,
                          detail=result.get("detail") or {})
        self._metric("EventsDuplicate" if result.get("duplicate") else f"Events{outcome.capitalize()}")
        return result

    def _breaker_opened_by(self, exc: Exception) -> CircuitOpenError | None:
        """Count the failure on the breaker; the wait if the breaker is open now."""
        if self._breaker is None:
            return None
        state = self._breaker.failed(exc)
        return self._breaker.refusal(state) if state.status.value == "open" else None

    def _record_drop(self, event: FlowEvent, reason: str, detail: dict[str, Any]) -> None:
        """Accepted but deliberately not applied: logged, counted with its reason, kept for `switchyard drops`."""
        self._log("warning", "dropped", event, reason=reason, change_time=event.timestamp.isoformat(),
                  detail=detail)
        self._metric("EventsDropped")
        if self._count_drop is not None:
            try:
                self._count_drop(self.flow.name, reason)
            except Exception as exc:  # a metric must never fail a delivery that is done
                self._log("warning", "drop not counted", event, error=str(exc))
        if self._drops is not None:
            self._drops.record(Drop(flow=self.flow.name, event_id=event.event_id, event_type=event.type,
                                    reason=reason, dropped_at=time.time(), change_time=event.timestamp.isoformat(),
                                    detail=json.loads(json.dumps(detail, default=str))))

    def _requeued_while_throttled(self, exc: Exception, event: FlowEvent | None, body: str) -> bool:
        """A throttled delivery goes back as a new message (receive count 1) after the wait asked for."""
        if self._requeue is None or not isinstance(exc, RetryableError) or exc.reason not in THROTTLED_REASONS:
            return False
        try:
            raw = json.loads(body)
        except ValueError:
            return False
        count = int(raw.get("throttled", 0)) + 1 if isinstance(raw, dict) else MAX_THROTTLE_REQUEUES + 1
        if count > MAX_THROTTLE_REQUEUES:
            return False
        delay = math.ceil(min(MAX_RETRY_DELAY_SECONDS, max(1, exc.retry_after or RETRY_LATER_BASE_SECONDS)))
        self._requeue(json.dumps({**raw, "throttled": count}, separators=(",", ":")), delay)
        self._log("warning", "throttled: requeued", event, reason=exc.reason, delay=delay, requeues=count)
        self._metric("DeliveryThrottled")
        return True

    def _wait_for_reconnect(self, exc: ConnectionDownError, event: FlowEvent | None, body: str,
                            receive_count: int, receipt_handle: str) -> None:
        """The event waits for the reconnect as a new message (its receive budget untouched), stamped with
        when it started waiting; only past the time budget is it dead-lettered."""
        if self._guard is not None:
            self._guard.report(exc)
        try:
            raw = json.loads(body)
        except ValueError:
            raw = None
        now = self._clock()
        stamp = raw.get(WAITING_SINCE) if isinstance(raw, dict) else None
        outage = exc.down_since if exc.down_since is not None else now
        # a stamp from an earlier outage (a redriven message) does not count against this one
        since = float(stamp) if isinstance(stamp, int | float) and stamp >= outage else now
        if now - since >= self._reconnect_wait or not isinstance(raw, dict):
            self._dead_letter(exc, event, body, receive_count)
            return
        # an open breaker says when it will let a probe through; a reconnect is polled for
        retry_in = exc.retry_in if isinstance(exc, CircuitOpenError) else None
        poll = self._reconnect_poll if retry_in is None else max(1, min(self._reconnect_poll, math.ceil(retry_in)))
        self._log("warning", "waiting for reconnect", event, connection=exc.connection, reason=exc.reason,
                  waiting_seconds=round(now - since), delay=poll)
        if self._requeue is None:  # no way to send it again: wait on this receive (spends the budget)
            self._delay(receipt_handle, poll)
            raise RetryLater(exc.reason, poll) from exc
        self._requeue(json.dumps({**raw, WAITING_SINCE: since}, separators=(",", ":")), poll)

    def _retry_delay(self, exc: Exception, receive_count: int) -> int:
        if isinstance(exc, OutOfOrderError):
            base = self.flow.retry.out_of_order_delay_seconds
        elif isinstance(exc, RetryableError) and exc.retry_after is not None:
            # rounded up: coming back before Retry-After has passed would not honour it
            return math.ceil(min(MAX_RETRY_DELAY_SECONDS, max(1, exc.retry_after)))
        else:
            base = RETRY_LATER_BASE_SECONDS
        return int(min(MAX_RETRY_DELAY_SECONDS, base * 2 ** max(0, receive_count - 1)))

    def _dead_letter(self, exc: Exception, event: FlowEvent | None, body: str, attempts: int) -> None:
        delivery = exc if isinstance(exc, DeliveryError) else None
        letter = DeadLetter(
            flow=self.flow.name,
            event_id=event.event_id if event else None,
            error_class=delivery.error_class if delivery else ("permanent" if isinstance(
                exc, ConnectionConfigError | MappingError) else "unexpected"),
            reason=delivery.reason if delivery else _snake(type(exc).__name__),
            message=str(exc),
            target_status=delivery.target_status if delivery else None,
            target_response=delivery.target_response if delivery else None,
            attempts=attempts,
            failed_at=datetime.now(UTC).isoformat(),
            original=body,
        )
        self._dead_letters.send(letter)
        self._log("error", "dead-lettered", event, error_class=letter.error_class, reason=letter.reason,
                  target_status=letter.target_status, attempt=attempts)
        if event is not None:
            self._audit_entry(event, "dead_lettered", reason=letter.reason,
                              detail={"error_class": letter.error_class, "target_status": letter.target_status,
                                      "message": letter.message[:500], "attempts": attempts})
        self._metric("EventsDeadLettered")

    def _order(self, event: FlowEvent) -> str | None:
        refs = order_refs(self._order_ref, event.data) if self._order_ref else []
        return refs[0] if refs else None

    def _audit_entry(self, event: FlowEvent, outcome: str, *, reason: str | None = None,
                     detail: dict[str, Any] | None = None) -> None:
        """One line of the order's story; the delivery is done whatever the audit store says."""
        order = self._order(event)
        if self._audit is None or order is None:
            return
        try:
            self._audit.record(self.flow.name, order, AuditEntry(
                at=self._clock(), event_id=event.event_id, event_type=event.type, outcome=outcome, reason=reason,
                detail=json.loads(json.dumps(detail or {}, default=str))))
        except Exception as exc:
            self._log("warning", "audit not recorded", event, error=f"{type(exc).__name__}: {exc}")

    def _metric(self, name: str) -> None:
        if self._metrics is not None:
            with self._metrics_lock:
                self._metrics.add_metric(name=name, unit="Count", value=1)

    def _log(self, level: str, message: str, event: FlowEvent | None, **fields: Any) -> None:
        if self._logger is None:
            return
        context = {"flow": self.flow.name, **fields}
        if event is not None:
            context.update(event_id=event.event_id, event_type=event.type, order=self._order(event))
        getattr(self._logger, level)(message, extra=context)


def entity_groups(records: Sequence[QueuedRecord],
                  refs_of: Callable[[str], list[str]]) -> list[list[QueuedRecord]]:
    """The batch's records in groups that may run side by side, each in the batch's order: records sharing
    any reference are one group (an order named by number in one event and by id in the next stays one);
    records naming none (malformed, or a source without order references) share one group, as before."""
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[str, int] = {}
    unnamed: int | None = None
    for i, record in enumerate(records):
        root(i)
        refs = refs_of(record.body)
        if not refs:
            unnamed = i if unnamed is None else unnamed
            parent[root(i)] = root(unnamed)
        for ref in refs:
            parent[root(i)] = root(first_with.setdefault(ref, i))
    groups: dict[int, list[QueuedRecord]] = {}
    for i, record in enumerate(records):
        groups.setdefault(root(i), []).append(record)
    return list(groups.values())


def _retry_inline(exc: BaseException, max_wait: float) -> bool:
    # a long Retry-After is better spent with the message back on the queue than in a Lambda
    return isinstance(exc, RetryableError) and (exc.retry_after is None or exc.retry_after <= max_wait)


def _wait_honouring_retry_after(initial: float, maximum: float) -> Callable[[Any], float]:
    jittered = wait_random_exponential(multiplier=initial, max=maximum)

    def wait(state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, maximum)
        return jittered(state)

    return wait


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
