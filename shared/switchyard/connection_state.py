"""The health of a connection, shared by every function: may events use it now, or must they wait?

A connection (credentials + base URL of one account, e.g. an accounting company) can die as a whole: its OAuth refresh
token is refused (``invalid_grant``: rotated with the answer lost, revoked consent, past its lifetime). Then
no event can pass until a person reconnects it, and dead-lettering the order stream would only turn one
reconnect into hundreds of redrives. So the first function that meets such an error
(``ConnectionDownError``) marks the connection ``needs_reconnect`` here, and from then on:

* flow workers check the connections of their flow before delivering; an event of a down connection goes
  back to its queue as a new message, delayed ``RECONNECT_POLL_SECONDS`` (no receive budget spent), and is
  dead-lettered only once it has waited ``RECONNECT_WAIT_SECONDS`` (the retry budget is time, not attempts);
* state-machine steps check the same before calling anyone; a down connection fails the step with
  ``StepWaitingForConnection``, which the state machine retries for the same time budget;
* every event or step that waits emits the metric ``ConnectionNeedsReconnect``, whose alarm names the
  runbook (docs/runbooks.md#connection-needs-reconnect);
* the reconnect (``switchyard connection reconnect``) stores the new credentials and marks the connection
  ``connected`` again: the waiting events drain on their next turn.

One item per connection in the idempotency table: ``connection#<connection>#state`` with ``status``,
``reason``, ``message``, ``since`` (epoch seconds) and ``version`` (bumped by every change). The record is
deliberately generic: a circuit breaker per connection (open / half-open / closed) adds states to it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from switchyard.errors import ConnectionDownError, RetryableError
from switchyard.table_keys import ConnectionKeys

RECONNECT_WAIT_SECONDS = 14 * 24 * 3600  # as long as a DLQ keeps a message: then it is dead-lettered
RECONNECT_POLL_SECONDS = 600  # a waiting event looks again every 10 minutes (SQS delays stop at 15)
METRIC = "ConnectionNeedsReconnect"
WAITING_SINCE = "connection_wait_since"  # key added to a waiting event's queue message
WAITING_REASON = "connection_needs_reconnect"


class ConnectionStatus(StrEnum):
    CONNECTED = "connected"
    NEEDS_RECONNECT = "needs_reconnect"


@dataclass(frozen=True)
class ConnectionState:
    connection: str
    status: ConnectionStatus = ConnectionStatus.CONNECTED
    reason: str | None = None
    message: str | None = None
    since: float | None = None  # when it entered ``status`` (None for a connection never marked)
    version: int = 0

    @property
    def usable(self) -> bool:
        return self.status is ConnectionStatus.CONNECTED


class ConnectionStates(Protocol):
    def get(self, connection: str) -> ConnectionState: ...

    def mark_needs_reconnect(self, connection: str, *, reason: str, message: str) -> bool:
        """Mark the connection down; True if this call changed it (it was usable)."""
        ...

    def mark_connected(self, connection: str) -> ConnectionState:
        """The reconnect: the connection is usable again."""
        ...


class InMemoryConnectionStates:
    """For tests: the same contract as DynamoConnectionStates, in memory."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._states: dict[str, ConnectionState] = {}
        self._lock = threading.Lock()

    def get(self, connection: str) -> ConnectionState:
        with self._lock:
            return self._states.get(connection, ConnectionState(connection))

    def mark_needs_reconnect(self, connection: str, *, reason: str, message: str) -> bool:
        with self._lock:
            current = self._states.get(connection, ConnectionState(connection))
            if not current.usable:
                return False
            self._states[connection] = ConnectionState(connection, ConnectionStatus.NEEDS_RECONNECT, reason,
                                                       message, self._clock(), current.version + 1)
            return True

    def mark_connected(self, connection: str) -> ConnectionState:
        with self._lock:
            current = self._states.get(connection, ConnectionState(connection))
            state = replace(ConnectionState(connection), since=self._clock(), version=current.version + 1)
            self._states[connection] = state
            return state


class DynamoConnectionStates:
    """Items ``connection#<connection>#state`` in the idempotency table (botocore DynamoDB client)."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    def _key(self, connection: str) -> dict[str, Any]:
        return {"id": {"S": ConnectionKeys(connection).connection_state()}}

    def get(self, connection: str) -> ConnectionState:
        try:
            item = self._client.get_item(TableName=self._table, Key=self._key(connection),
                                         ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:  # not knowing is no reason to dead-letter: try again later
            raise RetryableError(f"the state of connection {connection} could not be read",
                                 reason="connection_state_unavailable") from exc
        if not item:
            return ConnectionState(connection)
        try:
            status = ConnectionStatus(item.get("status", {}).get("S", ConnectionStatus.CONNECTED))
        except ValueError:  # a state a newer version wrote: treat what it cannot read as usable
            status = ConnectionStatus.CONNECTED
        since = item.get("since", {}).get("N")
        return ConnectionState(connection, status, item.get("reason", {}).get("S"), item.get("message", {}).get("S"),
                               float(since) if since is not None else None, int(item.get("version", {}).get("N", 0)))

    def mark_needs_reconnect(self, connection: str, *, reason: str, message: str) -> bool:
        try:
            self._client.update_item(
                TableName=self._table, Key=self._key(connection),
                UpdateExpression="SET #s = :down, reason = :r, message = :m, since = :now ADD version :one",
                ConditionExpression="attribute_not_exists(#s) OR #s <> :down",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":down": {"S": ConnectionStatus.NEEDS_RECONNECT.value},
                                           ":r": {"S": reason}, ":m": {"S": message[:1000]},
                                           ":now": {"N": repr(self._clock())}, ":one": {"N": "1"}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False  # already down: the first marker's reason and time stay
        return True

    def mark_connected(self, connection: str) -> ConnectionState:
        self._client.update_item(
            TableName=self._table, Key=self._key(connection),
            UpdateExpression="SET #s = :up, since = :now REMOVE reason, message ADD version :one",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":up": {"S": ConnectionStatus.CONNECTED.value},
                                       ":now": {"N": repr(self._clock())}, ":one": {"N": "1"}},
        )
        return self.get(connection)


class Metrics(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> None: ...


class ConnectionGuard:
    """The connections one function uses: ``check`` before touching them, ``report`` a ConnectionDownError."""

    def __init__(self, states: ConnectionStates, connections: Iterable[str], *, metrics: Metrics | None = None,
                 logger: Any = None) -> None:
        self._states = states
        self.connections = tuple(connections)
        self._metrics = metrics
        self._logger = logger

    def check(self) -> None:
        """Raise ConnectionDownError if a connection of this function waits for a reconnect."""
        for connection in self.connections:
            state = self._states.get(connection)
            if not state.usable:
                self._metric()
                raise ConnectionDownError(
                    f"connection {connection} needs a reconnect ({state.reason}: {state.message})",
                    connection=connection, reason=WAITING_REASON, down_since=state.since)

    def report(self, error: ConnectionDownError) -> None:
        """Mark the error's connection down for every function (the first report wins) and count it."""
        if error.reason == WAITING_REASON:  # raised by ``check``: already marked and counted
            return
        if not error.marks_connection_down:  # an open circuit breaker: it closes by itself
            return
        connection = error.connection or (self.connections[0] if self.connections else None)
        if connection is None:
            return
        try:
            changed = self._states.mark_needs_reconnect(connection, reason=error.reason, message=error.message)
        except Exception:  # the error still makes this event wait; the next one to meet it marks it
            changed = False
        if changed and self._logger is not None:
            self._logger.error("connection needs reconnect", extra={"connection": connection, "reason": error.reason})
        self._metric()

    def _metric(self) -> None:
        if self._metrics is not None:
            self._metrics.add_metric(name=METRIC, unit="Count", value=1)
