"""Flows that run as Step Functions state machines (``runs_as: state-machine``): what the queue's worker,
the step Lambda and the failure handler share. The machine itself is declared per flow in ``flows.yaml``
(``switchyard.machine_declaration``) and built by ``infra/constructs/state_machine.py``.

    flow queue ──> worker: ExecutionStarter ──StartExecution(name = flow + entity key [+ route suffix])──> machine
                                                       every step: the step Lambda (run_step), by handler name
                   Retry  StepRetryable    5xx, timeouts, a stale version: backoff with jitter
                          StepThrottled    the target said 429: waits as it asked, a budget of its own
                          StepRateLimited  no permit from our shared limiter soon: back shortly, a budget of its own
                          StepOutOfOrder   a predecessor is missing (a payment before its invoice)
                          StepWaitingForConnection  a connection needs a reconnect (switchyard.connection_
                                           state): every 10 minutes for 14 days, the waiting budget in time
                   Catch  anything else ──> [compensation] ──> RecordFailure: the reason to the flow's DLQ ──> Failed
                   an execution ending otherwise (timed out, aborted) ──EventBridge──> execution_ended ──> DLQ

Lambda reports a function error's exception class name as ``errorType``; the state machine's Retry and
Catch match on it, so the step errors are plain classes whose names are the contract (``STEP_ERRORS``), and
their message is JSON the failure handler reads back.

Execution names are deterministic, so a duplicate start is a no-op. What Step Functions (Standard) does
with a name it has seen, for 90 days, and what the starter makes of it:

* same name, same input, the execution still running: the call succeeds and answers the original response
  (its ``startDate`` is the first start's): reported ``duplicate``, nothing new runs;
* same name, other input (a repeated event with a new webhook id) or the execution closed:
  ``ExecutionAlreadyExists``: ``duplicate`` if it is running or succeeded, and if it failed (a DLQ redrive)
  the next name ``-r2``, ``-r3``...

moto's engine does the same (``StateMachine._handle_name_input_idempotency``); a test pins it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from switchyard.connection_state import ConnectionGuard
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
from switchyard.machine_declaration import MAX_EXECUTION_NAME as MAX_EXECUTION_NAME
from switchyard.machine_declaration import StateMachineConfig
from switchyard.targets import DeliveryResult
from switchyard.worker import DeadLetter, DeadLetters

# Step Functions caps an execution's input (and every state) at 256 KiB; the steps add their results to
# the input, so an event must leave room for them
MAX_EXECUTION_INPUT_BYTES = 200 * 1024
MAX_REDRIVES = 20
# a start answered with a startDate older than this was answered from an execution already running: the
# clocks of Lambda and Step Functions agree far better, and SQS redelivers a message only after its
# visibility timeout (minutes)
SAME_START_TOLERANCE = timedelta(seconds=2)
# the key of a step's result that says the event was deliberately not applied, and why
STEP_DROPPED = "dropped"
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

def execution_name(declaration: StateMachineConfig, flow: str, event: FlowEvent, route: str,
                   attempt: int = 1) -> str:
    """``<flow>-<key>`` plus the route's suffix (``-paid``), ``-rN`` for the Nth start after failed ones."""
    return declaration.execution_name(flow, event, route, attempt)


class ExecutionStarter:
    """The worker's target for a state-machine flow: one execution per event that needs one."""

    def __init__(self, stepfunctions: Any, state_machine_arn: str, declaration: StateMachineConfig, *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sfn = stepfunctions
        self._arn = state_machine_arn
        self._declaration = declaration
        self._now = now

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        route = self._declaration.route_for(event)
        if route is None:
            return DeliveryResult("filtered", {"reason": f"{event.type} needs no execution"})
        payload = json.dumps({"flow": event.flow, "event_id": event.event_id, "type": event.type,
                              "route": route, "message": event.message}, separators=(",", ":"))
        if len(payload.encode()) > MAX_EXECUTION_INPUT_BYTES:
            raise PermanentError(f"event {event.event_id} is {len(payload.encode())} bytes as an execution input; "
                                 f"Step Functions states hold 256 KiB and the steps need room for their results",
                                 reason="execution_input_too_large")
        for attempt in range(1, MAX_REDRIVES + 1):
            name = self._declaration.execution_name(event.flow, event, route, attempt)
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


def run_step(step: Callable[[], dict[str, Any]], *, guard: ConnectionGuard | None = None,
             check: bool = True) -> dict[str, Any]:
    """Run one step; Switchyard errors leave as the step errors the state machine retries or catches.

    With a ``guard``, a connection waiting for a reconnect stops the step before it calls anyone (unless
    ``check`` is off: an earlier step of the same task checked), and a connection found dead by the step is
    marked for every function."""
    try:
        if guard is not None and check:
            guard.check()
        return step()
    except Exception as exc:
        if isinstance(exc, ConnectionDownError) and guard is not None:
            guard.report(exc)
        translated = step_error(exc)
        if translated is None or translated is exc:
            raise
        raise translated from exc


def requested_steps(request: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The handlers a task runs in order (a declared list, or the list of the execution's route), or None for
    a task of one step (``{"step"}``). A route the declaration gives no list fails for good."""
    if "steps" in request:
        return tuple(str(step) for step in request["steps"])
    by_route = request.get("steps_by_route")
    if by_route is None:
        return None
    route = (request.get("state") or {}).get("route")
    steps = by_route.get(route) if isinstance(route, str) else None
    if steps is None:
        raise StepFailed(json.dumps({"reason": "unknown_route", "error_class": "permanent",
                                     "message": f"no steps for route {route!r}; the task runs "
                                                f"{', '.join(sorted(by_route))}"}))
    return tuple(str(step) for step in steps)


def step_label(request: Mapping[str, Any]) -> str | None:
    """What a task request runs, for its log lines: ``erp.customer``, or ``a.x+a.y`` for a list."""
    if "step" in request:
        return str(request["step"])
    try:
        steps = requested_steps(request)
    except StepFailed:
        return None
    return "+".join(steps) if steps else None


def naming_step(error: StepError, step: str) -> StepError:
    """The same step error (class and details) with the step that raised it in its details: the Cause in
    the execution's history names the inner step of a task that runs several."""
    try:
        details = json.loads(str(error))
    except ValueError:
        return error
    if not isinstance(details, dict):
        return error
    named = type(error)(json.dumps({**details, "step": step}, default=str))
    named.__cause__ = error.__cause__
    return named


def record_step_drop(flow: str, step: str, state: Mapping[str, Any], result: Mapping[str, Any], *,
                     drops: DropLog | None, count_drop: Callable[[str, str], None] | None = None,
                     logger: Any = None, now: Callable[[], float] = time.time) -> Drop | None:
    """A step that deliberately applied nothing says why in its result (``STEP_DROPPED``: a reason, e.g.
    a cancellation with nothing booked to cancel): the event is a drop like a worker's, logged, counted
    with its reason and kept for ``switchyard drops``. A step retried after it was recorded overwrites
    the record (one per flow and event)."""
    reason = result.get(STEP_DROPPED)
    if not reason:
        return None
    drop = Drop(flow=flow, event_id=str(state.get("event_id") or ""), event_type=str(state.get("type") or ""),
                reason=str(reason), dropped_at=now(),
                detail=json.loads(json.dumps({"step": step, **result}, default=str)))
    if logger is not None:
        logger.warning("dropped", extra={"flow": flow, "step": step, "event_id": drop.event_id,
                                         "event_type": drop.event_type, "reason": drop.reason})
    for action in (lambda: count_drop(flow, drop.reason) if count_drop is not None else None,
                   lambda: drops.record(drop) if drops is not None else None):
        try:
            action()
        except Exception as exc:  # the step is done: a failed record must not run it again
            if logger is not None:
                logger.warning("drop not recorded", extra={"flow": flow, "event_id": drop.event_id,
                                                           "error": f"{type(exc).__name__}: {exc}"})
    return drop


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
    if isinstance(cause, Mapping) and "reason" in cause and "errorMessage" not in cause:
        details = dict(cause)  # a wait's failure, or a timed-out wait: the builder and switchyard.waits write it
    elif isinstance(cause, Mapping):
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
    """``KeyError: 'Order' (at steps.py:412 in document)``: the type, its message and where it was
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


# --------------------------------------------------------------------------- declared steps, waits, endings

StepHandler = Callable[[Mapping[str, Any]], dict[str, Any]]
# the Fail state after RecordFailure: an execution that failed with it has its dead letter already
DEAD_LETTERED = "EventDeadLettered"
_ENDED_REASONS = {"TIMED_OUT": ("execution_timed_out", "timed_out"), "ABORTED": ("execution_aborted", "aborted"),
                  "FAILED": ("execution_failed", "unexpected")}


class StepHandlers:
    """The step handlers a flow's declaration runs, by name (``<system>.customer``): what the step Lambda's
    ``run(step, state)`` dispatches to, built from the systems' step factories."""

    def __init__(self, handlers: Mapping[str, StepHandler]) -> None:
        self._handlers = dict(handlers)

    def run(self, step: str, state: Mapping[str, Any]) -> dict[str, Any]:
        handler = self._handlers.get(step)
        if handler is None:
            raise ValueError(f"unknown step {step!r}; this flow's steps are {', '.join(sorted(self._handlers))}")
        return handler(state)


class WaitSteps:
    """The machinery's own steps of a wait (``wait.register``, ``wait.overdue``, ``wait.cancel``): the entity
    comes from the execution's queue message and the declaration's ``key``."""

    def __init__(self, declaration: StateMachineConfig, waits: Any, *, metrics: Any = None, logger: Any = None,
                 now: Callable[[], float] | None = None) -> None:
        import time

        self._declaration = declaration
        self._waits = waits  # switchyard.waits.Waits
        self._metrics = metrics
        self._logger = logger
        self._now = now or time.time

    def handles(self, step: str) -> bool:
        return step in ("wait.register", "wait.overdue", "wait.cancel")

    def run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        step, wait, state = request["step"], str(request["wait"]), request.get("state") or {}
        event = FlowEvent.from_message(str(state.get("message", "")))
        entity = self._declaration.entity_key(event)
        if step == "wait.register":
            declared = self._declaration.waits[wait]
            status = self._waits.register(wait, entity, str(request["token"]), execution=str(request["execution"]),
                                          timeout_seconds=declared.wait_timeout_seconds)
            return {"wait": wait, "entity": entity, "status": status}
        if step == "wait.overdue":
            if self._metrics is not None:
                self._metrics.add_metric(name="WaitsOverdue", unit="Count", value=1)
            if self._logger is not None:
                self._logger.warning("wait overdue", extra={"wait": wait, "entity": entity,
                                                            "execution": request.get("execution")})
            return {"wait": wait, "entity": entity, "overdue_at": self._now()}
        if step == "wait.cancel":
            status = self._waits.cancel(wait, entity, reason="cancelled",
                                        message=f"{event.type} {event.event_id} cancelled the wait for {wait}")
            return {"wait": wait, "entity": entity, "action": status}
        raise ValueError(f"unknown wait step {step!r}")


def execution_ended(flow: str, detail: Mapping[str, Any], dead_letters: DeadLetters, *,
                    describe: Callable[[str], Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """An execution that ended without its own dead letter (EventBridge ``Step Functions Execution Status
    Change``: timed out, aborted, or failed outside a Catch) dead-letters its event with the reason.

    An execution that failed through RecordFailure (error ``EventDeadLettered``) is in the DLQ already. An input
    EventBridge left out (events are capped at 256 KB) is read with DescribeExecution."""
    status = str(detail.get("status", ""))
    if status not in _ENDED_REASONS:
        return {"dead_lettered": False, "reason": "not_a_failure"}
    if status == "FAILED" and detail.get("error") == DEAD_LETTERED:
        return {"dead_lettered": False, "reason": "dead_lettered_already"}
    raw = detail.get("input")
    if not raw and describe is not None and detail.get("executionArn"):
        raw = describe(str(detail["executionArn"])).get("input")
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:
        state = {}
    state = state if isinstance(state, dict) else {}
    reason, error_class = _ENDED_REASONS[status]
    name = str(detail.get("name") or "")
    said = ": ".join(str(part) for part in (detail.get("error"), detail.get("cause")) if part)
    message = f"execution {name} {status.lower().replace('_', ' ')}" + (f" ({said})" if said else "")
    cause = json.dumps({"reason": reason, "error_class": error_class, "message": message})
    return record_failure(flow, {**state, "error": {"Error": status, "Cause": cause}}, dead_letters,
                          execution=name or None)


class StepContext:
    """What a step factory builds its handler from: the flow, a client per system of the flow's connections
    (built by the composition root from the current secrets), the entity state, and objects the steps of one
    system share (``once``: one system's steps sharing one object)."""

    def __init__(self, flow: Any, client: Callable[[str], Any], entity_state: Any = None) -> None:
        self.flow = flow  # switchyard.catalog.FlowConfig
        self.client = client  # system name -> its client over the flow's connection to it
        self.entity_state = entity_state
        self._shared: dict[str, Any] = {}

    def once(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]


StepFactory = Callable[[StepContext], StepHandler]


def build_handlers(factories: Mapping[str, StepFactory], names: Iterable[str], context: StepContext) -> StepHandlers:
    """The handlers a declaration runs, from the step factories; ValueError naming an unknown one."""
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise ValueError(f"flow {getattr(context.flow, 'name', '?')}: no step handler {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(factories))}")
    return StepHandlers({name: factories[name](context) for name in names})
