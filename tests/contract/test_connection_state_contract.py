"""One contract for ConnectionStates, run against the in-memory store and DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from switchyard.connection_state import (
    METRIC,
    ConnectionGuard,
    ConnectionStatus,
    DynamoConnectionStates,
    InMemoryConnectionStates,
)
from switchyard.errors import ConnectionDownError

from tests.contract.conftest import TABLE

T0 = 1_795_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "dynamodb"])
def make_states(request: pytest.FixtureRequest) -> Callable[[Clock], Any]:
    if request.param == "memory":
        return lambda clock: InMemoryConnectionStates(clock=clock)
    client = request.getfixturevalue("dynamo_client")
    return lambda clock: DynamoConnectionStates(client, TABLE, clock=clock)


class Metrics:
    def __init__(self) -> None:
        self.names: list[str] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.names.append(name)


def test_unknown_connection_is_usable(make_states: Callable[[Clock], Any]) -> None:
    state = make_states(Clock()).get("quickbooks")
    assert state.usable and state.status is ConnectionStatus.CONNECTED


def test_first_mark_wins_and_keeps_its_reason_and_time(make_states: Callable[[Clock], Any]) -> None:
    clock = Clock()
    states = make_states(clock)

    assert states.mark_needs_reconnect("quickbooks", reason="credentials_rejected", message="invalid_grant")
    clock.now += 60
    assert not states.mark_needs_reconnect("quickbooks", reason="client_rejected", message="later")

    state = states.get("quickbooks")
    assert (state.status, state.reason, state.message, state.since) == (
        ConnectionStatus.NEEDS_RECONNECT, "credentials_rejected", "invalid_grant", T0)
    assert states.get("nopcommerce").usable  # per connection


def test_reconnect_makes_it_usable_and_a_later_failure_marks_it_again(make_states: Callable[[Clock], Any]) -> None:
    clock = Clock()
    states = make_states(clock)
    states.mark_needs_reconnect("quickbooks", reason="credentials_rejected", message="invalid_grant")
    first = states.get("quickbooks").version

    clock.now += 600
    reconnected = states.mark_connected("quickbooks")

    assert reconnected.usable and reconnected.reason is None and reconnected.version > first
    assert states.mark_needs_reconnect("quickbooks", reason="credentials_rejected", message="again")
    assert states.get("quickbooks").since == clock.now


def test_guard_check_raises_waiting_error_and_counts_it(make_states: Callable[[Clock], Any]) -> None:
    states, metrics = make_states(Clock()), Metrics()
    guard = ConnectionGuard(states, ("quickbooks", "nopcommerce"), metrics=metrics)
    guard.check()
    states.mark_needs_reconnect("nopcommerce", reason="credentials_rejected", message="x")

    with pytest.raises(ConnectionDownError) as caught:
        guard.check()

    assert (caught.value.connection, caught.value.reason) == ("nopcommerce", "connection_needs_reconnect")
    assert metrics.names == [METRIC]


def test_guard_report_marks_the_error_connection_once(make_states: Callable[[Clock], Any]) -> None:
    states, metrics = make_states(Clock()), Metrics()
    guard = ConnectionGuard(states, ("quickbooks",), metrics=metrics)
    error = ConnectionDownError("refused", connection="quickbooks", reason="credentials_rejected")

    guard.report(error)
    guard.report(error)

    assert not states.get("quickbooks").usable
    assert metrics.names == [METRIC, METRIC]


def test_dynamo_item_key_and_attributes(dynamo_client: Any) -> None:
    DynamoConnectionStates(dynamo_client, TABLE, clock=Clock()).mark_needs_reconnect(
        "quickbooks", reason="credentials_rejected", message="invalid_grant")
    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": "connection#quickbooks#state"}})["Item"]
    assert item["id"]["S"] == "connection#quickbooks#state"
    assert (item["status"]["S"], item["version"]["N"]) == ("needs_reconnect", "1")


def test_dynamo_unreadable_state_is_retryable_and_a_failed_mark_still_counts(dynamo_client: Any) -> None:
    from switchyard.errors import RetryableError

    states = DynamoConnectionStates(dynamo_client, "no-such-table", clock=Clock())
    metrics = Metrics()
    guard = ConnectionGuard(states, ("quickbooks",), metrics=metrics)

    with pytest.raises(RetryableError) as caught:
        guard.check()
    assert caught.value.reason == "connection_state_unavailable"
    guard.report(ConnectionDownError("refused", connection="quickbooks"))  # marking fails, the wait goes on
    assert metrics.names == [METRIC]
