"""Flows that run as Step Functions state machines (``runs_as: state-machine``): what the queue's worker,
the step Lambda and the failure handler share.

    flow queue ──> worker: ExecutionStarter ──StartExecution(name = flow + OrderGuid [+ kind])──> state machine
                                                       every step: the step Lambda (run_step)
                   Retry  StepRetryable    5xx, timeouts, stale SyncToken: backoff with jitter
                          StepThrottled    the target said 429: waits (60 s for QuickBooks), a budget of its own
                          StepRateLimited  no permit from our shared limiter soon: back shortly, a budget of its own
                          StepOutOfOrder   a predecessor is missing (the invoice of order.paid)
                          StepWaitingForConnection  a connection needs a reconnect (switchyard.connection_
                                           state): every 10 minutes for 14 days, the waiting budget in time
                   Catch  anything else ──> RecordFailure: the reason to the flow's DLQ ──> Fail (alarm)

Lambda reports a function error's exception class name as ``errorType``; the state machine's Retry and
Catch match on it, so the step errors are plain classes whose names are the contract (``STEP_ERRORS``), and
their message is JSON the failure handler reads back.

Execution names are deterministic, so a duplicate start is a no-op. What Step Functions (Standard) does
with a name it has seen, for 90 days, and what the starter makes of it:

* same name, same input, the execution still running: the call succeeds and answers the original response
  (its ``startDate`` is the first start's): reported ``duplicate``, nothing new runs;
* same name, other input (a repeated ``order.paid`` with a new webhook id) or the execution closed:
  ``ExecutionAlreadyExists``: ``duplicate`` if it is running or succeeded, and if it failed (a DLQ redrive)
  the next name ``-r2``, ``-r3``...

moto's engine does the same (``StateMachine._handle_name_input_idempotency``); a test pins it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from switchyard.connection_state import ConnectionGuard
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
from switchyard.targets import DeliveryResult
from switchyard.worker import DeadLetter, DeadLetters

MAX_EXECUTION_NAME = 80
# Step Functions caps an execution's input (and every state) at 256 KiB; the steps add their results to
# the input, so an event must leave room for them
MAX_EXECUTION_INPUT_BYTES = 200 * 1024
MAX_REDRIVES = 20
# a start answered with a startDate older than this was answered from an execution already running: the
# clocks of Lambda and Step Functions agree far better, and SQS redelivers a message only after its
# visibility timeout (minutes)
SAME_START_TOLERANCE = timedelta(seconds=2)
CANCELLED = 40  # nopCommerce OrderStatus.Cancelled
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_TARGET_RESPONSE = 2000  # characters of a target's answer kept in a step error (Cause is capped at 32 KB)
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)')


class StepError(Exception):
    """Base of the errors a step Lambda raises for the state machine; the message is JSON."""


class StepRetryable(StepError):
    pass


class StepThrottled(StepError):
    pass


class StepRateLimited(StepError):
    pass


class StepOutOfOrder(StepError):
    pass


class StepWaitingForConnection(StepError):
    """A connection of the step waits for a reconnect: retried on a clock, apart from every other budget."""


class StepFailed(StepError):
    """Permanent: retrying cannot help. Caught, dead-lettered with its reason."""


_ERROR_CLASSES = {"StepRetryable": "retryable", "StepThrottled": "retryable", "StepRateLimited": "retryable",
                  "StepOutOfOrder": "out_of_order", "StepWaitingForConnection": "connection_down",
                  "StepFailed": "permanent"}
STEP_ERRORS = {cls.__name__: cls for cls in (StepRetryable, StepThrottled, StepRateLimited, StepOutOfOrder,
                                             StepWaitingForConnection, StepFailed)}


# --------------------------------------------------------------------------- which executions, named how

def order_to_cash_route(event: FlowEvent) -> str | None:
    """The state machine's branch for an event: ``placed``, ``paid``, ``cancel``; None = nothing to do."""
    if event.type == "order.placed":
        return "placed"
    if event.type == "order.paid":
        return "paid"
    if event.type == "order.status_changed":
        status = (event.data.get("Order") or {}).get("OrderStatusId")
        return "cancel" if status is not None and int(status) == CANCELLED else None
    return None


def execution_name(flow: str, event: FlowEvent, route: str, attempt: int = 1) -> str:
    """``<flow>-<OrderGuid>`` for the order itself, ``-paid`` / ``-cancel`` for its later events, ``-rN`` for
    the Nth start after failed ones. Step Functions allows 80 characters of ``[A-Za-z0-9_-]``."""
    try:
        key = str(event.data["Order"]["OrderGuid"])
    except (KeyError, TypeError):
        raise PermanentError("the event has no Order.OrderGuid", reason="malformed_event") from None
    name = f"{flow}-{key}" + ("" if route == "placed" else f"-{route}") + (f"-r{attempt}" if attempt > 1 else "")
    name = _NAME_UNSAFE.sub("_", name)
    if len(name) > MAX_EXECUTION_NAME:  # still deterministic, just not readable
        name = name[:40] + "-" + hashlib.sha256(name.encode()).hexdigest()[:39]
    return name


class ExecutionStarter:
    """The worker's target for a state-machine flow: one execution per event that needs one."""

    def __init__(self, stepfunctions: Any, state_machine_arn: str, *,
                 route: Callable[[FlowEvent], str | None] = order_to_cash_route,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sfn = stepfunctions
        self._arn = state_machine_arn
        self._route = route
        self._now = now

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        route = self._route(event)
        if route is None:
            return DeliveryResult("filtered", {"reason": f"{event.type} needs no execution"})
        payload = json.dumps({"flow": event.flow, "event_id": event.event_id, "type": event.type,
                              "route": route, "message": event.message}, separators=(",", ":"))
        if len(payload.encode()) > MAX_EXECUTION_INPUT_BYTES:
            raise PermanentError(f"event {event.event_id} is {len(payload.encode())} bytes as an execution input; "
                                 f"Step Functions states hold 256 KiB and the steps need room for their results",
                                 reason="execution_input_too_large")
        for attempt in range(1, MAX_REDRIVES + 1):
            name = execution_name(event.flow, event, route, attempt)
            asked_at = self._now()
            try:
                started = self._sfn.start_execution(stateMachineArn=self._arn, name=name, input=payload)
            except Exception as exc:  # botocore ClientError, without importing botocore here
                code = _error_code(exc)
                if code == "ExecutionAlreadyExists":
                    status = self._status(name)
                    if status in ("RUNNING", "SUCCEEDED", "PENDING_REDRIVE"):
                        return DeliveryResult("duplicate", {"execution": name, "status": status})
                    continue  # that one failed: this is a redrive, start the next name
                if code in ("StateMachineDoesNotExist", "InvalidArn", "InvalidName", "InvalidExecutionInput",
                            "AccessDeniedException", "StateMachineDeleting"):
                    raise PermanentError(f"cannot start {name}: {code}", reason="start_execution_refused") from exc
                raise RetryableError(f"cannot start {name}: {code or exc}", reason="start_execution_failed") from exc
            start_date = started.get("startDate")
            if isinstance(start_date, datetime) and start_date < asked_at - SAME_START_TOLERANCE:
                # the same event again while its execution runs: Step Functions answered the original start
                return DeliveryResult("duplicate", {"execution": name, "status": "RUNNING",
                                                    "execution_arn": started["executionArn"]})
            return DeliveryResult("started", {"execution": name, "execution_arn": started["executionArn"]})
        raise PermanentError(f"{MAX_REDRIVES} executions for event {event.event_id} failed already",
                             reason="too_many_redrives")

    def _status(self, name: str) -> str:
        execution_arn = self._arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
        try:
            return str(self._sfn.describe_execution(executionArn=execution_arn)["status"])
        except Exception as exc:
            raise RetryableError(f"cannot describe execution {name}", reason="start_execution_failed") from exc


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str((response.get("Error") or {}).get("Code", ""))
    return ""


# --------------------------------------------------------------------------- inside the step Lambda

def step_error(exc: Exception) -> StepError | None:
    """The state machine's error for a Switchyard error; None for anything else (a bug: caught as is)."""
    if isinstance(exc, StepError):
        return exc
    if isinstance(exc, DeliveryError):
        details = {"reason": exc.reason, "error_class": exc.error_class, "message": exc.message,
                   "target_status": exc.target_status, "target_response": _clipped(exc.target_response)}
        if isinstance(exc, RetryableError):
            details["retry_after"] = exc.retry_after
            kind: type[StepError] = (StepRateLimited if exc.reason == "rate_limited_locally" else
                                     StepThrottled if exc.reason == "rate_limited" else StepRetryable)
        elif isinstance(exc, OutOfOrderError):
            kind = StepOutOfOrder
        elif isinstance(exc, ConnectionDownError):
            details["connection"] = exc.connection
            kind = StepWaitingForConnection
        else:
            kind = StepFailed
        return kind(json.dumps(details, default=str))
    if isinstance(exc, ConnectionConfigError | MappingError):
        return StepFailed(json.dumps({"reason": _snake(type(exc).__name__), "error_class": "permanent",
                                      "message": str(exc)}))
    return None


def run_step(step: Callable[[], dict[str, Any]], *, guard: ConnectionGuard | None = None) -> dict[str, Any]:
    """Run one step; Switchyard errors leave as the step errors the state machine retries or catches.

    With a ``guard``, a connection waiting for a reconnect stops the step before it calls anyone, and a
    connection found dead by the step is marked for every function."""
    try:
        if guard is not None:
            guard.check()
        return step()
    except Exception as exc:
        if isinstance(exc, ConnectionDownError) and guard is not None:
            guard.report(exc)
        translated = step_error(exc)
        if translated is None or translated is exc:
            raise
        raise translated from exc


def failure_letter(flow: str, state: Mapping[str, Any], *, execution: str | None = None,
                   now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> DeadLetter:
    """The dead letter of a failed execution, from what Catch put under ``error`` (``Error``, ``Cause``).

    Its ``original`` is the queue message marked ``retry_of: <execution>``: the worker's idempotency record
    for the event says "started", so a redrive must count as a new delivery (one per failed execution;
    redriving the same letter twice still starts one execution)."""
    error = state.get("error") or {}
    name = str(error.get("Error", "States.Runtime"))
    cause_text = str(error.get("Cause", ""))
    details: dict[str, Any] = {}
    try:
        cause = json.loads(cause_text)  # a Lambda function error: {"errorMessage", "errorType", ...}
    except ValueError:
        cause = None
    if isinstance(cause, Mapping):
        try:
            parsed = json.loads(str(cause.get("errorMessage", "")))
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):  # a step error's details
            details = dict(parsed)
        else:  # an exception the steps did not expect (a bug), even one whose message reads as JSON (KeyError(7))
            error_type = str(cause.get("errorType") or name)
            details = {"message": unexpected_message(error_type, str(cause.get("errorMessage") or ""),
                                                     cause.get("stackTrace")),
                       "reason": _snake(error_type)}
    if not details:  # a States.* error (timeout, task failed, ...) or one the engine raised: name and cause
        details = {"message": f"{name}: {cause_text}" if cause_text else name,
                   "reason": _snake(name.replace("States.", "").replace(".", ""))}
    event_id = state.get("event_id")
    attempts = int(error.get("attempts") or 1)
    return DeadLetter(
        flow=flow,
        event_id=str(event_id) if event_id else None,
        error_class=str(details.get("error_class") or _ERROR_CLASSES.get(name, "unexpected")),
        reason=str(details.get("reason") or _snake(name)),
        message=str(details.get("message") or name),
        target_status=details.get("target_status"),
        target_response=details.get("target_response"),
        attempts=attempts,
        failed_at=now().isoformat(),
        original=_retry_message(str(state.get("message", "")), execution),
    )


def unexpected_message(error_type: str, message: str, trace: Any = None) -> str:
    """``KeyError: 'Order' (at order_to_cash.py:412 in document)``: the type, its message and where it was
    raised (the last frame of a Lambda error's ``stackTrace``), so a dead letter says what went wrong."""
    text = f"{error_type}: {message}" if message else error_type
    frames = [str(frame) for frame in trace] if isinstance(trace, list) else []
    where = _FRAME.search(frames[-1]) if frames else None
    if where is not None:
        text += f" (at {where.group('file').rsplit('/', 1)[-1]}:{where.group('line')} in {where.group('function')})"
    return text


def step_failure(exc: BaseException) -> dict[str, Any]:
    """What a step's failure log line says (keys that do not clash with a log record's own): the error's type,
    reason, class and message (a step error's JSON read back; any other exception as its type and message)."""
    if isinstance(exc, StepError):
        try:
            details = json.loads(str(exc))
        except ValueError:
            details = {}
        details = details if isinstance(details, dict) else {}
        cause = exc.__cause__
        return {"error_type": type(exc).__name__, "cause_type": type(cause).__name__ if cause else None,
                "reason": details.get("reason"), "error_class": details.get("error_class"),
                "error_message": details.get("message") or str(exc)}
    return {"error_type": type(exc).__name__, "reason": _snake(type(exc).__name__), "error_class": "unexpected",
            "error_message": unexpected_message(type(exc).__name__, str(exc))}


def _retry_message(message: str, execution: str | None) -> str:
    if not execution:
        return message
    try:
        raw = json.loads(message)
    except ValueError:
        return message
    if not isinstance(raw, dict):
        return message
    return json.dumps({**raw, "retry_of": execution}, separators=(",", ":"))


def record_failure(flow: str, state: Mapping[str, Any], dead_letters: DeadLetters, *,
                   execution: str | None = None) -> dict[str, Any]:
    """The failure handler: dead-letter the event with its reason (the flow's DLQ alarm fires)."""
    letter = failure_letter(flow, state, execution=execution)
    dead_letters.send(letter)
    return {"dead_lettered": True, "reason": letter.reason, "message": letter.message}


def _clipped(value: Any) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= _MAX_TARGET_RESPONSE else text[:_MAX_TARGET_RESPONSE] + "..."


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_") or "unexpected"
