"""A flow's state machine as declared in ``flows.yaml`` (``state_machine:``): which events start an execution
(``routes``), the entity the execution is about (``key``), and its ``states``: steps, choices and waits.

    state_machine:
      key: Order.OrderGuid              # names executions; a wait is stored against it
      timeout_days: 45                  # or timeout_minutes
      routes:                           # event -> the execution it starts (others: filtered)
        placed: {event: order.placed, suffix: ""}
        cancel: {event: order.status_changed, where: {Order.OrderStatusId: 40}}
      states:                           # the first one is where an execution starts
        Route:    {choose: [{route: placed, next: Customer}, {route: cancel, next: Cancel}]}
        Customer: {run: [erp.customer, erp.order], next: Shipment, compensate: Undo}   # one task, two steps
        Shipment: {wait_for: shipment, timeout_days: 30, alarm_after_hours: 72, heartbeat_hours: 24, next: Ship}
        Ship:     {run: shop.shipment}                   # no next: the execution succeeds
        Cancel:   {run: erp.cancel, next: EndWait}
        EndWait:  {cancel_wait: shipment}                # ends the order's waiting execution
        Undo:     {run: erp.undo}                        # compensation: runs, then the DLQ

Every step is the flow's step Lambda running the handler named by ``run`` (``<system>.<step>``, looked up in
the step registry), with Retry per error class (the flow's policies, overridable per step) and a Catch that
runs the step's compensation, if any, then dead-letters the event with its reason.

Steps that always run together run in ONE task (one invocation, one transition): ``run`` takes a list, run in
order, each step's result stored under its name before the next runs (as separate states would), or a map
route -> list, where the execution's route picks the list (no Choice state: the machine can be one task)::

        Book: {run: {placed: [erp.customer, erp.order], cancel: [erp.cancel]}}

A failing inner step fails the task with its own error class (the Retry/Catch per class apply; the step log
and the error's cause name the inner step); a retry runs the list again from its first step, so the steps
of a list must be idempotent.

This module validates a declaration on its own (unknown or unreachable states, routes no choice takes); the
builder in ``infra/constructs/state_machine.py`` checks the handlers against the registry and the rendered
ASL (``check_definition``) at synth.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from switchyard.errors import PermanentError
from switchyard.events import FlowEvent

MAX_EXECUTION_NAME = 80
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
HANDLER_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
STATE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,60}$")
WAIT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
# what the execution's state holds besides step results: a result may not overwrite them
RESERVED_RESULTS = frozenset({"flow", "event_id", "type", "route", "message", "error", "failure", "compensation",
                              "waits"})
# states the builder adds to every machine: a declaration may not use their names
BUILT_IN_STATES = frozenset({"RecordFailure", "Failed", "Done", "Cancelled", "UnknownRoute"})
# the states the builder adds after a wait state's name: overdue, its second phase, its two failure reasons
WAIT_PARTS = ("Overdue", "Again", "TimedOut", "HeartbeatMissed")
ERROR_KINDS = ("retry", "throttled", "rate_limited", "out_of_order", "waiting_for_connection")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StateMachineRetry(_Strict):
    """Step Functions ``Retry`` of one error class: ``interval * backoff_rate**n``, full jitter."""

    interval_seconds: int = Field(ge=1, le=3600)
    max_attempts: int = Field(ge=0, le=99_999_999)  # Step Functions' own limit
    backoff_rate: float = Field(2.0, ge=1.0, le=10.0)
    max_delay_seconds: int = Field(300, ge=1, le=31_622_400)
    jitter: bool = True  # full jitter spreads retries; off where the wait itself is the point (a 429's 60 s)


class RetryOverrides(_Strict):
    """A step's own policy for some error classes; the others are the flow's."""

    retry: StateMachineRetry | None = None
    throttled: StateMachineRetry | None = None
    rate_limited: StateMachineRetry | None = None
    out_of_order: StateMachineRetry | None = None
    waiting_for_connection: StateMachineRetry | None = None


class RouteDecl(_Strict):
    """The execution an event starts: its type, optionally fields of its data (dotted paths, compared as text
    so ``40`` matches ``"40"``; a list: any of its values), and the suffix of the execution's name (default
    ``-<route>``). ``name_with`` adds a field's value to the name, for an entity that reaches the route more
    than once with different values (a refund's running total): each value is its own execution, a
    redelivery of one collides with it."""

    event: str  # the event type (not `on`: YAML 1.1 reads that as true)
    where: dict[str, str | int | bool | list[str | int | bool]] = {}
    suffix: str | None = None
    name_with: str | None = None

    def matches(self, event: FlowEvent) -> bool:
        if event.type != self.event:
            return False
        for path, wanted in self.where.items():
            found = field_at(event.data, path)
            allowed = {_text(value) for value in (wanted if isinstance(wanted, list) else [wanted])}
            if found is None or _text(found) not in allowed:
                return False
        return True

    def name_part(self, event: FlowEvent) -> str:
        if self.name_with is None:
            return ""
        found = field_at(event.data, self.name_with)
        if found is None or isinstance(found, Mapping | list) or _text(found) == "":
            raise PermanentError(f"the event has no {self.name_with}", reason="malformed_event")
        return "-" + _text(found).replace(".", "_")


class ChoiceDecl(_Strict):
    """One branch of a choice: on the execution's route, the event's type, or a value in the state (an earlier
    step's output, ``<result>.<field>``)."""

    route: str | None = None
    event: str | None = None
    output: str | None = None
    equals: str | int | bool | None = None
    next: str

    @model_validator(mode="after")
    def _one_test(self) -> ChoiceDecl:
        if sum(x is not None for x in (self.route, self.event, self.output)) != 1:
            raise ValueError("a choice tests exactly one of route, event or output")
        if self.output is not None and self.equals is None:
            raise ValueError(f"choice on output {self.output!r} needs equals")
        return self


class StateDecl(_Strict):
    """One state: a step (``run``: one handler, a list run in one task, or a list per route), a choice
    (``choose``), a wait for a callback (``wait_for``) or the end of an entity's wait (``cancel_wait``)."""

    run: str | tuple[str, ...] | dict[str, tuple[str, ...]] | None = None
    choose: tuple[ChoiceDecl, ...] | None = None
    otherwise: str | None = None  # a choice's default; none: the execution fails as UnknownRoute
    wait_for: str | None = None
    cancel_wait: str | None = None
    result: str | None = None  # where the step's result goes in the state; default: the handler's step name
    next: str | None = None  # none: the execution succeeds after this state
    compensate: str | None = None  # a state run when this one fails for good, before the DLQ
    retry: RetryOverrides = RetryOverrides()
    # a wait: how long, a heartbeat the party that completes it must send, and when it is overdue (alarm)
    timeout_seconds: int | None = Field(None, ge=1, le=31_536_000)
    timeout_minutes: int | None = Field(None, ge=1, le=525_600)
    timeout_days: int | None = Field(None, ge=1, le=365)
    heartbeat_hours: int | None = Field(None, ge=1, le=8760)
    heartbeat_seconds: int | None = Field(None, ge=1, le=31_536_000)
    alarm_after_hours: int | None = Field(None, ge=1, le=8760)
    alarm_after_seconds: int | None = Field(None, ge=1, le=31_536_000)
    on_cancel: str | None = None  # a cancelled wait goes here; none: the execution succeeds as Cancelled

    @model_validator(mode="after")
    def _one_kind(self) -> StateDecl:
        kinds = [k for k in ("run", "choose", "wait_for", "cancel_wait") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a state is exactly one of run, choose, wait_for or cancel_wait")
        kind = kinds[0]
        if isinstance(self.run, dict) and not self.run:
            raise ValueError("run by route needs at least one route")
        for sequence in self.sequences.values():
            if not sequence:
                raise ValueError("a list of steps needs at least one step")
            for handler in sequence:
                if not HANDLER_NAME.fullmatch(handler):
                    raise ValueError(f"step handler {handler!r} must be <system>.<step> (lowercase)")
            keys = [step_result_key(handler) for handler in sequence]
            if len(set(keys)) != len(keys):
                raise ValueError(f"steps {list(sequence)} store two results under one name: a step runs once "
                                 "per list")
            if isinstance(self.run, tuple | dict) and set(keys) & RESERVED_RESULTS:
                raise ValueError(f"steps {sorted(set(keys) & RESERVED_RESULTS)} would overwrite the execution's "
                                 "own fields: rename them")
        if isinstance(self.run, tuple | dict) and self.result is not None:
            raise ValueError("a list of steps stores each step's result under its own name: no result")
        for wait in (self.wait_for, self.cancel_wait):
            if wait is not None and not WAIT_NAME.fullmatch(wait):
                raise ValueError(f"wait name {wait!r}: lowercase letters, digits and '-'")
        if kind == "choose" and (self.next or self.compensate or self.result):
            raise ValueError("a choice has no next, compensate or result: its branches say where to go")
        if kind != "choose" and self.otherwise is not None:
            raise ValueError("otherwise belongs to a choice")
        wait_fields = ("timeout_seconds", "timeout_minutes", "timeout_days", "heartbeat_hours", "heartbeat_seconds",
                       "alarm_after_hours", "alarm_after_seconds", "on_cancel")
        if kind != "wait_for" and any(getattr(self, f) is not None for f in wait_fields):
            raise ValueError(f"{', '.join(f for f in wait_fields if getattr(self, f) is not None)} belong to a wait")
        if kind == "wait_for":
            timeouts = (self.timeout_seconds, self.timeout_minutes, self.timeout_days)
            if sum(t is not None for t in timeouts) != 1:
                raise ValueError(f"wait {self.wait_for!r} needs one of timeout_days, timeout_minutes, timeout_seconds")
            if self.heartbeat_hours is not None and self.heartbeat_seconds is not None:
                raise ValueError("heartbeat_hours or heartbeat_seconds, not both")
            if self.alarm_after_hours is not None and self.alarm_after_seconds is not None:
                raise ValueError("alarm_after_hours or alarm_after_seconds, not both")
            alarm = self.alarm_after
            if alarm is not None and alarm >= self.wait_timeout_seconds:
                raise ValueError(f"wait {self.wait_for!r}: alarm_after must be shorter than its timeout")
            heartbeat = self.heartbeat
            if heartbeat is not None and heartbeat >= (alarm or self.wait_timeout_seconds):
                raise ValueError(f"wait {self.wait_for!r}: the heartbeat must be shorter than the wait")
        if self.result is not None and (self.result in RESERVED_RESULTS or not re.fullmatch(r"[a-z][a-z0-9_]*",
                                                                                              self.result)):
            raise ValueError(f"result {self.result!r} is reserved or not a lowercase name")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("run", "choose", "wait_for", "cancel_wait") if getattr(self, k) is not None)

    @property
    def sequences(self) -> dict[str | None, tuple[str, ...]]:
        """The handlers the state runs in one task, per route (``None``: whatever the route)."""
        if self.run is None:
            return {}
        if isinstance(self.run, str):
            return {None: (self.run,)}
        if isinstance(self.run, dict):
            return {route: steps for route, steps in self.run.items()}
        return {None: self.run}

    @property
    def runs_several(self) -> bool:
        """A list (or a list per route): the task returns the whole state with each step's result in it."""
        return isinstance(self.run, tuple | dict)

    @property
    def state_handlers(self) -> tuple[str, ...]:
        """Every handler this state may run, in declaration order."""
        return tuple(dict.fromkeys(h for sequence in self.sequences.values() for h in sequence))

    @property
    def result_key(self) -> str:
        """Where the state's result is stored in the execution's state: ``$.<result_key>`` (a list of steps:
        each under its own name, ``step_result_key``)."""
        if self.result is not None:
            return self.result
        if isinstance(self.run, str):
            return step_result_key(self.run)
        return (self.wait_for or self.cancel_wait or "").replace("-", "_")

    def results(self) -> dict[str, str]:
        """Where this state stores results -> what stores them (a handler, or the wait)."""
        if self.runs_several:
            return {step_result_key(h): h for h in self.state_handlers}
        if self.run is not None:
            return {self.result_key: str(self.run)}
        if self.wait_for is not None:
            return {self.result_key: f"wait:{self.wait_for}"}
        return {}

    @property
    def wait_timeout_seconds(self) -> int:
        return (self.timeout_seconds or 0) + (self.timeout_minutes or 0) * 60 + (self.timeout_days or 0) * 86_400

    @property
    def heartbeat(self) -> int | None:
        return self.heartbeat_seconds or (self.heartbeat_hours * 3600 if self.heartbeat_hours else None)

    @property
    def alarm_after(self) -> int | None:
        return self.alarm_after_seconds or (self.alarm_after_hours * 3600 if self.alarm_after_hours else None)

    def targets(self) -> list[str]:
        """Every state this one can go to."""
        found = [c.next for c in self.choose or ()]
        found += [s for s in (self.next, self.otherwise, self.compensate, self.on_cancel) if s is not None]
        return found


class StateMachineConfig(_Strict):
    """A flow that runs as a Standard state machine: its declaration and the retry policies of its steps."""

    key: str = Field(min_length=1)
    routes: dict[str, RouteDecl] = Field(min_length=1)
    states: dict[str, StateDecl] = Field(min_length=1)
    timeout_minutes: int | None = Field(None, ge=1, le=525_600)
    timeout_days: int | None = Field(None, ge=1, le=365)
    step_timeout_seconds: int = Field(60, ge=3, le=900)
    step_memory_mb: int = Field(256, ge=128, le=10240)
    # 5xx, timeouts, a stale SyncToken
    retry: StateMachineRetry = StateMachineRetry(interval_seconds=2, max_attempts=5, backoff_rate=2.0)
    # the target said 429 (e.g. 60 s): wait, apart from the retry budget
    throttled: StateMachineRetry = StateMachineRetry(interval_seconds=60, max_attempts=99, backoff_rate=1.0,
                                                     max_delay_seconds=300, jitter=False)
    # our shared rate limiter had no permit within a few seconds: come back soon, apart from the retry budget
    rate_limited: StateMachineRetry = StateMachineRetry(interval_seconds=5, max_attempts=60, backoff_rate=1.2,
                                                        max_delay_seconds=30)
    # a predecessor is missing (order.paid before the invoice exists)
    out_of_order: StateMachineRetry = StateMachineRetry(interval_seconds=10, max_attempts=8, backoff_rate=2.0,
                                                        max_delay_seconds=600)
    # a connection waits for a reconnect (switchyard.connection_state): every 10 minutes for 14 days (about
    # 10,000 history events, well under an execution's 25,000); the execution's timeout grows by as much
    waiting_for_connection: StateMachineRetry = StateMachineRetry(
        interval_seconds=600, max_attempts=2016, backoff_rate=1.0, max_delay_seconds=600, jitter=False)

    @model_validator(mode="after")
    def _consistent(self) -> StateMachineConfig:
        if (self.timeout_minutes is None) == (self.timeout_days is None):
            raise ValueError("state_machine needs timeout_minutes or timeout_days (one of them)")
        for name in self.states:
            if not STATE_NAME.fullmatch(name) or name in BUILT_IN_STATES:
                raise ValueError(f"state name {name!r}: PascalCase, and not one of {sorted(BUILT_IN_STATES)}")
        for name, state in self.states.items():
            if state.wait_for is not None:  # the builder adds these states around a wait
                taken = [f"{name}{part}" for part in WAIT_PARTS if f"{name}{part}" in self.states]
                if taken:
                    raise ValueError(f"state names {taken} are the builder's for wait state {name!r}: rename them")
            for target in state.targets():
                if target not in self.states:
                    raise ValueError(f"state {name!r} goes to {target!r}, which is not a declared state")
            for choice in state.choose or ():
                if choice.route is not None and choice.route not in self.routes:
                    raise ValueError(f"state {name!r} chooses route {choice.route!r}, which is not declared")
            if isinstance(state.run, dict):
                undeclared = sorted(set(state.run) - set(self.routes))
                if undeclared:
                    raise ValueError(f"state {name!r} runs steps for routes {undeclared}, which are not declared")
        unreachable = [name for name in self.states if name not in self._reachable()]
        if unreachable:
            raise ValueError(f"unreachable states (nothing leads to them from {self.start!r}): "
                             + ", ".join(unreachable))
        chosen = {c.route for s in self.states.values() for c in s.choose or () if c.route is not None}
        chosen |= {route for s in self.states.values() if isinstance(s.run, dict) for route in s.run}
        routing = any(s.choose or isinstance(s.run, dict) for s in self.states.values())
        if routing and set(self.routes) - chosen:
            raise ValueError(f"routes no choice takes: {sorted(set(self.routes) - chosen)}")
        stored: dict[str, tuple[str, str]] = {}  # result key -> (state, what stores it)
        for name, state in self.states.items():
            for key, writer in state.results().items():
                other, other_writer = stored.setdefault(key, (name, writer))
                if other_writer != writer:
                    raise ValueError(f"states {other!r} and {name!r} both store their result as {key!r}")
        compensations = self._reachable(via={s.compensate for s in self.states.values() if s.compensate})
        mixed = compensations & self._reachable(compensate=False)
        if mixed:
            raise ValueError(f"states both on the way and a compensation (a compensation ends in the DLQ): "
                             f"{', '.join(sorted(mixed))}")
        waits = [s.wait_for for s in self.states.values() if s.wait_for]
        for name, state in self.states.items():
            if state.cancel_wait is not None and state.cancel_wait not in waits:
                raise ValueError(f"state {name!r} cancels wait {state.cancel_wait!r}, which no state waits for")
        for name, suffix in ((n, self.suffix(n)) for n in self.routes):
            if _NAME_UNSAFE.search(suffix.replace("-", "")):
                raise ValueError(f"route {name!r}: its execution name suffix {suffix!r} is not [A-Za-z0-9_-]")
        suffixes = [self.suffix(n) for n in self.routes]
        if len(set(suffixes)) != len(suffixes):
            raise ValueError("two routes name their executions alike: give them different suffixes")
        return self

    def _reachable(self, *, via: set[str | None] | None = None, compensate: bool = True) -> set[str]:
        """The states reachable from the start (or from ``via``), following compensations or not."""
        seen: set[str] = set()
        todo = [name for name in via if name is not None] if via is not None else [self.start]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            state = self.states[name]
            todo.extend(t for t in state.targets() if compensate or t != state.compensate)
        return seen

    @property
    def compensations(self) -> set[str]:
        """States that run only after a failure (reached through ``compensate``): they end in the DLQ."""
        return self._reachable(via={s.compensate for s in self.states.values() if s.compensate})

    @property
    def start(self) -> str:
        return next(iter(self.states))

    @property
    def execution_timeout_minutes(self) -> int:
        return self.timeout_minutes or (self.timeout_days or 0) * 1440

    @property
    def timeout_with_waiting_minutes(self) -> int:
        """The execution's timeout: its own budget plus the longest wait for a reconnect."""
        wait = self.waiting_for_connection
        return self.execution_timeout_minutes + -(-wait.interval_seconds * wait.max_attempts // 60)

    @property
    def handlers(self) -> tuple[str, ...]:
        """Every step handler the declaration runs, in declaration order."""
        return tuple(dict.fromkeys(h for s in self.states.values() for h in s.state_handlers))

    @property
    def waits(self) -> dict[str, StateDecl]:
        """The states that wait for a callback, by wait name."""
        return {s.wait_for: s for s in self.states.values() if s.wait_for is not None}

    def policy(self, state: StateDecl, kind: str) -> StateMachineRetry:
        """The Retry of one error class for a step: its own, else the flow's."""
        own = getattr(state.retry, kind)
        return own if own is not None else getattr(self, kind)

    # ----------------------------------------------------------------- executions: which, named how

    def route_for(self, event: FlowEvent) -> str | None:
        """The route an event starts an execution on (the first declared that matches); None = nothing to do."""
        return next((name for name, route in self.routes.items() if route.matches(event)), None)

    def suffix(self, route: str) -> str:
        declared = self.routes[route].suffix
        return f"-{route}" if declared is None else declared

    def entity_key(self, event: FlowEvent) -> str:
        """The entity an execution is about (``key``), as text; PermanentError if the event lacks it."""
        found = field_at(event.data, self.key)
        if found is None or isinstance(found, Mapping | list) or _text(found) == "":
            raise PermanentError(f"the event has no {self.key}", reason="malformed_event")
        return _text(found)

    def execution_name(self, flow: str, event: FlowEvent, route: str, attempt: int = 1) -> str:
        """``<flow>-<key>`` plus the route's suffix, ``-rN`` for the Nth start after failed ones. Step Functions
        allows 80 characters of ``[A-Za-z0-9_-]``: a longer name is cut and hashed (still deterministic)."""
        name = (f"{flow}-{self.entity_key(event)}{self.suffix(route)}{self.routes[route].name_part(event)}"
                + (f"-r{attempt}" if attempt > 1 else ""))
        name = _NAME_UNSAFE.sub("_", name)
        if len(name) > MAX_EXECUTION_NAME:
            name = name[:40] + "-" + hashlib.sha256(name.encode()).hexdigest()[:39]
        return name


def step_result_key(handler: str) -> str:
    """Where a handler's result goes in the execution's state by default: its step name (``erp.items``
    -> ``items``)."""
    return handler.split(".", 1)[1]


def field_at(data: Any, path: str) -> Any:
    """The value at a dotted path of an event's data, or None."""
    current = data
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class DefinitionError(ValueError):
    """A rendered state machine definition breaks a rule every Switchyard machine keeps."""


def check_definition(definition: Mapping[str, Any], *, failure_state: str = "RecordFailure") -> None:
    """The rules the builder's output must keep, checked on the ASL itself (at synth): every ``Next`` names a
    state, every state is reachable from ``StartAt``, and every Task (but the failure handler) catches
    ``States.ALL`` last, so no failure path ends anywhere but the flow's DLQ."""
    states: Mapping[str, Any] = definition.get("States") or {}
    problems: list[str] = []
    edges: dict[str, list[str]] = {}
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default"), *(c.get("Next") for c in state.get("Choices") or ()),
                   *(c.get("Next") for c in state.get("Catch") or ())]
        edges[name] = [t for t in targets if t is not None]
        problems += [f"state {name!r} goes to unknown state {t!r}" for t in edges[name] if t not in states]
        if state.get("Type") == "Task" and name != failure_state:
            catchers = state.get("Catch") or []
            if not catchers or catchers[-1].get("ErrorEquals") != ["States.ALL"]:
                problems.append(f"task {name!r} has no Catch of States.ALL (last): its failures would not reach "
                                "the DLQ")
        if state.get("Type") not in ("Choice", "Succeed", "Fail") and not state.get("End") and "Next" not in state:
            problems.append(f"state {name!r} has neither Next nor End")
    seen: set[str] = set()
    todo = [str(definition.get("StartAt"))]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        todo += edges.get(name, [])
    problems += [f"state {name!r} is unreachable from {definition.get('StartAt')!r}" for name in states
                 if name not in seen]
    if problems:
        raise DefinitionError("; ".join(problems))
