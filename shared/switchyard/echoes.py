"""No echo loops in two-way sync.

When Switchyard writes into a system that also sends events back (a two-way pair), the write
comes back as an inbound event. Every write is recorded as an *echo*, just before it is made: the
written system, the entity, its key and a fingerprint of the synced attributes as that system will
hold them, kept for a short time. An inbound event whose entity and fingerprint match a recorded echo is Switchyard's
own change coming back: it is consumed (once) and not written anywhere. A person's later change to
the same entity has another fingerprint (or comes after the echo was consumed) and flows normally.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from switchyard.registry import echo_rules
from switchyard.table_keys import TableKeys
from switchyard.targets import DeliveryResult

ECHO_TTL_SECONDS = 10 * 60


def fingerprint(system: str, entity: str, state: Mapping[str, Any]) -> str:
    """Of the attributes a sync writes of a system's object (its ``registry.EchoRules``); of the whole
    ``state`` for entities not listed (e.g. one field of a synced pair, ``switchyard.sync``)."""
    rules = echo_rules(system)
    attributes = (rules.synced_attributes.get(entity) if rules is not None else None) or tuple(sorted(state))
    canonical = json.dumps({name: state.get(name) for name in attributes}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class EchoLedger(Protocol):
    def record(self, system: str, entity: str, key: str, state: Mapping[str, Any], *,
               ttl_seconds: int = ECHO_TTL_SECONDS) -> None: ...
    def consume(self, system: str, entity: str, key: str, state: Mapping[str, Any]) -> bool: ...


class InMemoryEchoLedger:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[tuple[str, str, str, str], float] = {}
        self._lock = threading.Lock()

    def record(self, system: str, entity: str, key: str, state: Mapping[str, Any], *,
               ttl_seconds: int = ECHO_TTL_SECONDS) -> None:
        with self._lock:
            self._items[(system, entity, key, fingerprint(system, entity, state))] = self._clock() + ttl_seconds

    def consume(self, system: str, entity: str, key: str, state: Mapping[str, Any]) -> bool:
        with self._lock:
            expires = self._items.pop((system, entity, key, fingerprint(system, entity, state)), None)
            return expires is not None and expires > self._clock()


class DynamoEchoLedger:
    """Items in the shared table under the flow's pair scope (``switchyard.table_keys``): both directions see them."""

    def __init__(self, client: Any, table: str, *, keys: TableKeys, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._keys = keys
        self._clock = clock

    def _key(self, system: str, entity: str, key: str, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": {"S": self._keys.echo(system, entity, key, fingerprint(system, entity, state))}}

    def record(self, system: str, entity: str, key: str, state: Mapping[str, Any], *,
               ttl_seconds: int = ECHO_TTL_SECONDS) -> None:
        self._client.put_item(TableName=self._table, Item={
            **self._key(system, entity, key, state),
            "expiration": {"N": str(int(self._clock()) + ttl_seconds)},
        })

    def consume(self, system: str, entity: str, key: str, state: Mapping[str, Any]) -> bool:
        try:  # one atomic delete: two deliveries of the echo cannot both consume it
            self._client.delete_item(
                TableName=self._table, Key=self._key(system, entity, key, state),
                ConditionExpression="attribute_exists(id) AND expiration > :now",  # TTL deletion lags
                ExpressionAttributeValues={":now": {"N": str(int(self._clock()))}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True


@contextmanager
def recorded_echo(ledger: EchoLedger, system: str, entity: str, key: str,
                  expected: Mapping[str, Any]) -> Iterator[None]:
    """Record the echo of a write about to be made, and discard it if the write fails: the other
    system's webhook may overtake the write's answer, but a failed write must not leave a record that
    would swallow a person's identical change later."""
    ledger.record(system, entity, key, expected)
    try:
        yield
    except BaseException:
        ledger.consume(system, entity, key, expected)
        raise


class EchoSuppressingTarget:
    """Wraps a flow's target: an inbound event that is Switchyard's own write coming back is
    consumed and reported as ``echo`` instead of being written anywhere."""

    def __init__(self, target: Any, ledger: EchoLedger) -> None:
        self._target = target
        self._ledger = ledger

    def deliver(self, event: Any) -> Any:
        rules = echo_rules(event.source)  # a source is named after its system
        subject = rules.subjects.get(event.type) if rules is not None else None
        if subject is not None:
            entity, key_attribute = subject
            key = str(event.data.get(key_attribute, ""))
            if key and self._ledger.consume(event.source, entity, key, event.data):
                return DeliveryResult("echo", {"entity": entity, "key": key})
        return self._target.deliver(event)
