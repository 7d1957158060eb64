"""A circuit breaker per connection, shared by every function that calls it: while a target is down, events
wait instead of hammering it or being dead-lettered.

    closed ──N failures in a row, or an error rate over a window──> open ──cool-down over──> half-open
       ^                                                             ^                           │ one probe
       └────────────────────── the probe succeeds ───────────────────┴──── the probe fails ──────┘
                                                                   (and the cool-down doubles)

* **What counts** as a failure: the target's unavailability only (5xx, timeouts, no connection, an answer
  that is not the API's: ``FAILURE_REASONS``). A 4xx is the event's problem, a 429 the limiter's; neither
  says the target is down.
* **Closed**: calls pass. A failure counts (``consecutive_failures``, and within a fixed ``window_seconds``
  the calls and failures since that window's first failure); the breaker opens after
  ``consecutive_failures`` in a row, or when at least ``min_calls`` were counted and the share failing is
  ``error_rate`` or more. A success while nothing failed writes nothing, so a healthy connection costs one
  read per event.
* **Open**: ``check`` refuses with ``CircuitOpenError`` (a ``ConnectionDownError``): the worker sends the
  event back to its queue to look again when the cool-down ends (no receive spent), and a state-machine step
  retries on its waiting-for-connection budget. The waiting is budgeted in time (``RECONNECT_WAIT_SECONDS``,
  14 days, counted from when the breaker opened), so a 24-hour outage loses nothing.
* **Half-open**: the first ``check`` after the cool-down takes the probe (a lease of
  ``probe_timeout_seconds``, taken by a conditional write, so one function probes however many ask); its
  success closes the breaker, its failure opens it again with the cool-down doubled (up to
  ``max_open_seconds``). Everyone else waits for the probe.

Where it is checked: the flow worker, for the flow's target connection (``FlowWorker(breaker=...)``, built by
``compose.build_worker`` for flows whose worker calls the target). A failure is counted against that
connection whichever client raised it (errors do not say which connection they came from), so a flow whose
target reads another connection (``uses``) pauses while either is down. State-machine steps keep their own
retry budgets (not wired to the breaker yet).

One item per connection in the shared table: ``breaker#<connection>#state`` (``switchyard.table_keys``),
written by compare-and-set on ``version``. The metric ``CircuitOpen`` counts every refused call and every
opening; its alarm names docs/runbooks.md#circuit-open.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from switchyard.errors import ConnectionDownError, DeliveryError, RetryableError
from switchyard.table_keys import ConnectionKeys

METRIC = "CircuitOpen"
CIRCUIT_OPEN = "circuit_open"
FAILURE_REASONS = frozenset({"target_unavailable", "target_timeout", "target_unreachable", "target_bad_response",
                             "write_outcome_unknown"})
CAS_ATTEMPTS = 5


class BreakerStatus(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    error_rate: float = 0.5
    min_calls: int = 20
    window_seconds: float = 60.0
    open_seconds: float = 30.0
    max_open_seconds: float = 600.0  # SQS delays stop at 15 minutes: a waiting event looks again within this
    probe_timeout_seconds: float = 60.0
    # while another function probes: a probe takes seconds, so look again soon (not after the whole lease)
    half_open_retry_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.min_calls < 1:
            raise ValueError("consecutive_failures and min_calls must be at least 1")
        if not 0 < self.error_rate <= 1:
            raise ValueError("error_rate must be in (0, 1]")
        if min(self.window_seconds, self.open_seconds, self.probe_timeout_seconds) <= 0:
            raise ValueError("windows and cool-downs must be positive")
        if self.max_open_seconds < self.open_seconds:
            raise ValueError("max_open_seconds must be at least open_seconds")


@dataclass(frozen=True)
class BreakerState:
    connection: str
    status: BreakerStatus = BreakerStatus.CLOSED
    consecutive_failures: int = 0
    window_start: float = 0.0
    window_calls: int = 0
    window_failures: int = 0
    opened_at: float | None = None  # the start of this outage: a failed probe does not move it
    open_until: float = 0.0
    open_seconds: float = 0.0  # the current cool-down
    probe_until: float = 0.0
    version: int = 0


class CircuitOpenError(ConnectionDownError):
    """The connection's breaker is open (or another function probes it): wait ``retry_in`` seconds. Never a
    reason to mark the connection for a reconnect: it heals by itself."""

    marks_connection_down = False  # (switchyard.connection_state.ConnectionGuard.report)

    def __init__(self, message: str, *, connection: str, opened_at: float | None, retry_in: float) -> None:
        super().__init__(message, connection=connection, reason=CIRCUIT_OPEN, down_since=opened_at)
        self.retry_in = retry_in


class BreakerStore(Protocol):
    def get(self, connection: str) -> BreakerState: ...

    def put(self, state: BreakerState, expected_version: int) -> bool:
        """Write ``state`` if the stored version is still ``expected_version`` (0: none stored); False if not."""
        ...


class InMemoryBreakerStore:
    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}
        self._lock = threading.Lock()

    def get(self, connection: str) -> BreakerState:
        with self._lock:
            return self._states.get(connection, BreakerState(connection))

    def put(self, state: BreakerState, expected_version: int) -> bool:
        with self._lock:
            current = self._states.get(state.connection, BreakerState(state.connection))
            if current.version != expected_version:
                return False
            self._states[state.connection] = state
            return True


_NUMBERS = ("consecutive_failures", "window_start", "window_calls", "window_failures", "open_until", "open_seconds",
            "probe_until", "version")


class DynamoBreakerStore:
    """Items ``breaker#<connection>#state`` in the shared table (botocore DynamoDB client)."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @staticmethod
    def _key(connection: str) -> dict[str, Any]:
        return {"id": {"S": ConnectionKeys(connection).circuit_breaker()}}

    def get(self, connection: str) -> BreakerState:
        try:
            item = self._client.get_item(TableName=self._table, Key=self._key(connection),
                                         ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"the circuit breaker of connection {connection} could not be read",
                                 reason="circuit_state_unavailable") from exc
        if not item:
            return BreakerState(connection)
        try:
            status = BreakerStatus(item.get("status", {}).get("S", BreakerStatus.CLOSED))
        except ValueError:
            status = BreakerStatus.CLOSED
        numbers = {name: float(item[name]["N"]) for name in _NUMBERS if name in item}
        opened = item.get("opened_at", {}).get("N")
        return BreakerState(connection, status, int(numbers.get("consecutive_failures", 0)),
                            numbers.get("window_start", 0.0), int(numbers.get("window_calls", 0)),
                            int(numbers.get("window_failures", 0)), float(opened) if opened is not None else None,
                            numbers.get("open_until", 0.0), numbers.get("open_seconds", 0.0),
                            numbers.get("probe_until", 0.0), int(numbers.get("version", 0)))

    def put(self, state: BreakerState, expected_version: int) -> bool:
        values: dict[str, Any] = {":s": {"S": state.status.value}, ":expected": {"N": str(expected_version)}}
        sets = ["#s = :s"]
        for name in _NUMBERS:
            values[f":{name}"] = {"N": repr(getattr(state, name))}
            sets.append(f"{name} = :{name}")
        removes = []
        if state.opened_at is None:
            removes.append("opened_at")
        else:
            values[":opened_at"] = {"N": repr(state.opened_at)}
            sets.append("opened_at = :opened_at")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self._client.update_item(
                TableName=self._table, Key=self._key(state.connection), UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(version) OR version = :expected",
                ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues=values)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"the circuit breaker of connection {state.connection} could not be written",
                                 reason="circuit_state_unavailable") from exc
        return True


class Metrics(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> None: ...


def counts_as_failure(exc: BaseException) -> bool:
    """Whether an error says the target is unavailable (not that the event or the rate was wrong)."""
    return isinstance(exc, RetryableError) and exc.reason in FAILURE_REASONS


class CircuitBreaker:
    """The breaker of one connection: ``check`` before calling it, then ``succeeded`` or ``failed``."""

    def __init__(self, store: BreakerStore, connection: str, *, policy: BreakerPolicy | None = None,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None, logger: Any = None) -> None:
        self._store = store
        self.connection = connection
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._metrics = metrics
        self._logger = logger

    def state(self) -> BreakerState:
        return self._store.get(self.connection)

    def check(self) -> None:
        """Return if a call may go (closed, or this caller takes the half-open probe); else CircuitOpenError."""
        for _ in range(CAS_ATTEMPTS):
            state = self._store.get(self.connection)
            now = self._clock()
            if state.status is BreakerStatus.CLOSED:
                return
            if state.status is BreakerStatus.OPEN and now < state.open_until:
                self._refuse(state)
            if state.status is BreakerStatus.HALF_OPEN and now < state.probe_until:
                self._refuse(state)
            probing = replace(state, status=BreakerStatus.HALF_OPEN,
                              probe_until=now + self.policy.probe_timeout_seconds, version=state.version + 1)
            if self._store.put(probing, state.version):
                self._log("info", "circuit half-open: probing")
                return
        raise RetryableError(f"the circuit breaker of {self.connection} kept changing", reason="circuit_contended")

    def succeeded(self) -> None:
        for _ in range(CAS_ATTEMPTS):
            state = self._store.get(self.connection)
            if state.status is BreakerStatus.CLOSED:
                if state.consecutive_failures == 0 and state.window_failures == 0:
                    return  # healthy: nothing to write
                window = self._window(state, self._clock())
                new = replace(window, consecutive_failures=0, window_calls=window.window_calls + 1,
                              version=state.version + 1)
            elif state.status is BreakerStatus.HALF_OPEN:
                new = BreakerState(self.connection, version=state.version + 1)
            else:
                return  # a call that started before the breaker opened: the probe decides
            if self._store.put(new, state.version):
                if state.status is BreakerStatus.HALF_OPEN:
                    self._log("info", "circuit closed", outage_seconds=round(self._clock() - (state.opened_at or 0)))
                return

    def failed(self, exc: BaseException | None = None) -> BreakerState:
        """Count a failure; the state afterwards. An ``exc`` that does not count as one is a success for the
        breaker when the target answered it (a 4xx, a 429), and ignored otherwise (our own limiter, a bug)."""
        for _ in range(CAS_ATTEMPTS):
            if exc is not None and not counts_as_failure(exc):
                if isinstance(exc, DeliveryError) and exc.target_status is not None:  # it answered: a 4xx, a 429
                    self.succeeded()
                return self._store.get(self.connection)
            state = self._store.get(self.connection)
            now = self._clock()
            policy = self.policy
            if state.status is BreakerStatus.OPEN:
                return state
            if state.status is BreakerStatus.HALF_OPEN:
                cool_down = min(policy.max_open_seconds, max(policy.open_seconds, state.open_seconds * 2))
                new = replace(state, status=BreakerStatus.OPEN, open_until=now + cool_down, open_seconds=cool_down,
                              probe_until=0.0, version=state.version + 1)
            else:
                window = self._window(state, now)
                calls, failures = window.window_calls + 1, window.window_failures + 1
                consecutive = state.consecutive_failures + 1
                trips = (consecutive >= policy.consecutive_failures
                         or (calls >= policy.min_calls and failures / calls >= policy.error_rate))
                new = replace(window, consecutive_failures=consecutive, window_calls=calls, window_failures=failures,
                              version=state.version + 1)
                if trips:
                    new = replace(new, status=BreakerStatus.OPEN, opened_at=now, open_until=now + policy.open_seconds,
                                  open_seconds=policy.open_seconds)
            if self._store.put(new, state.version):
                if new.status is BreakerStatus.OPEN:
                    self._metric()
                    self._log("error", "circuit open", consecutive_failures=new.consecutive_failures,
                              window_calls=new.window_calls, window_failures=new.window_failures,
                              cool_down_seconds=new.open_seconds)
                return new
        return self._store.get(self.connection)

    def refusal(self, state: BreakerState) -> CircuitOpenError:
        """The error an event waits with while ``state`` is open."""
        if state.status is BreakerStatus.OPEN:
            wait = max(1.0, state.open_until - self._clock())
        else:
            wait = max(1.0, min(self.policy.half_open_retry_seconds, state.probe_until - self._clock()))
        return CircuitOpenError(f"connection {self.connection}: circuit {state.status.value} (the target failed "
                                f"{state.consecutive_failures} times in a row); look again in {math.ceil(wait)} s",
                                connection=self.connection, opened_at=state.opened_at, retry_in=wait)

    def _refuse(self, state: BreakerState) -> None:
        self._metric()
        raise self.refusal(state)

    def _window(self, state: BreakerState, now: float) -> BreakerState:
        if now - state.window_start >= self.policy.window_seconds:
            return replace(state, window_start=now, window_calls=0, window_failures=0)
        return state

    def _metric(self) -> None:
        if self._metrics is not None:
            self._metrics.add_metric(name=METRIC, unit="Count", value=1)

    def _log(self, level: str, message: str, **fields: Any) -> None:
        if self._logger is not None:
            getattr(self._logger, level)(message, extra={"connection": self.connection, **fields})
