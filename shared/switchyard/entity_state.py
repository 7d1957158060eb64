"""Per-entity state that keeps events in order: the newest change applied, and filtered entities.

An older event never overwrites the effect of a newer one. A worker *claims* an entity with the
event's change time before applying it; the claim fails (the event is stale and dropped) only when a
strictly newer change of the entity was applied. Equal change times are normal (an order placed and
captured in the same second): such a claim succeeds, so ties are applied in order of arrival, and a
retry of a half-applied event goes through. Where the changes have a lifecycle (an order's status), a
claim may carry its *rank* in it: of two changes with the same time, the one further along the
lifecycle wins whatever the order of arrival, and the other is *superseded*. Every drop is kept in a
``DropLog`` with its reason.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from switchyard.table_keys import TableKeys

RETENTION_SECONDS = 90 * 24 * 3600


SUPERSEDED = "superseded"  # a change with the same time and a later place in the lifecycle was applied
STALE = "stale"  # a strictly newer change was applied


class EntityState(Protocol):
    def claim(self, entity: str, change_time: datetime, event_id: str) -> bool: ...
    def claim_ranked(self, entity: str, change_time: datetime, event_id: str, rank: int) -> str | None:
        """None when claimed; else why not: STALE or SUPERSEDED."""
        ...
    def mark_filtered(self, entity: str) -> None: ...
    def is_filtered(self, entity: str) -> bool: ...
    # cross-references between systems' keys (e.g. a shop customer's CRM contact)
    def link(self, namespace: str, key: str, other: str) -> None: ...
    def linked(self, namespace: str, key: str) -> str | None: ...
    def link_is_current(self, namespace: str, key: str, other: str) -> bool:
        """Whether the link names ``other`` and keeps it for at least half its retention: a link that
        returns with every order of a customer is rewritten only when it changed or is getting old (a
        read costs a fifth of a write)."""
        ...


class InMemoryEntityState:
    """For unit tests and dry runs; same contract as the DynamoDB store (tests/contract)."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def claim(self, entity: str, change_time: datetime, event_id: str) -> bool:
        with self._lock:
            item = self._items.setdefault(entity, {})
            current = item.get("change_time")
            if current is not None and current > change_time:
                return False
            item.update(change_time=change_time, event_id=event_id)
            item.pop("rank", None)
            return True

    def claim_ranked(self, entity: str, change_time: datetime, event_id: str, rank: int) -> str | None:
        with self._lock:
            item = self._items.setdefault(entity, {})
            current = item.get("change_time")
            if current is not None and current > change_time:
                return STALE
            if current == change_time and item.get("rank") is not None and item["rank"] > rank:
                return SUPERSEDED
            item.update(change_time=change_time, event_id=event_id, rank=rank)
            return None

    def mark_filtered(self, entity: str) -> None:
        with self._lock:
            self._items.setdefault(entity, {})["filtered"] = True

    def is_filtered(self, entity: str) -> bool:
        return bool(self._items.get(entity, {}).get("filtered"))

    def link(self, namespace: str, key: str, other: str) -> None:
        with self._lock:
            self._items[f"xref#{namespace}#{key}"] = {"other": other}

    def linked(self, namespace: str, key: str) -> str | None:
        return self._items.get(f"xref#{namespace}#{key}", {}).get("other")

    def link_is_current(self, namespace: str, key: str, other: str) -> bool:
        return self.linked(namespace, key) == other  # nothing expires here


class DynamoEntityState:
    """Items in the shared table under the flow's pair scope (``switchyard.table_keys``), TTL ``expiration``."""

    def __init__(self, client: Any, table: str, *, keys: TableKeys, clock: Any = time.time) -> None:
        self._client = client
        self._table = table
        self._keys = keys
        self._clock = clock

    def _key(self, kind: str, *parts: str) -> dict[str, Any]:
        """The one place this store names its items (kinds: entity, xref), under the flow's pair scope."""
        return {"id": {"S": self._keys.state(kind, *parts)}}

    def _expiration(self) -> dict[str, str]:
        return {"N": str(int(self._clock()) + RETENTION_SECONDS)}

    def claim(self, entity: str, change_time: datetime, event_id: str) -> bool:
        stamp = _stamp(change_time)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key("entity", entity),
                UpdateExpression="SET change_time = :t, event_id = :e, expiration = :x REMOVE #rank",
                ExpressionAttributeNames={"#rank": "rank"},
                # fixed-width UTC stamps compare in time order; an equal time is no reason to drop
                ConditionExpression="attribute_not_exists(change_time) OR change_time <= :t",
                ExpressionAttributeValues={
                    ":t": {"S": stamp}, ":e": {"S": event_id}, ":x": self._expiration()
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_ranked(self, entity: str, change_time: datetime, event_id: str, rank: int) -> str | None:
        stamp = _stamp(change_time)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key("entity", entity),
                UpdateExpression="SET change_time = :t, event_id = :e, #rank = :r, expiration = :x",
                ConditionExpression=(
                    "attribute_not_exists(change_time) OR change_time < :t "
                    "OR (change_time = :t AND (attribute_not_exists(#rank) OR #rank <= :r))"
                ),
                ExpressionAttributeNames={"#rank": "rank"},
                ExpressionAttributeValues={
                    ":t": {"S": stamp}, ":e": {"S": event_id}, ":r": {"N": str(rank)}, ":x": self._expiration()
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            current = (getattr(exc, "response", None) or {}).get("Item", {}).get("change_time", {}).get("S")
            return SUPERSEDED if current == stamp else STALE
        return None

    def mark_filtered(self, entity: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=self._key("entity", entity),
            UpdateExpression="SET filtered = :f, expiration = :x",
            ExpressionAttributeValues={":f": {"BOOL": True}, ":x": self._expiration()},
        )

    def is_filtered(self, entity: str) -> bool:
        item = self._client.get_item(TableName=self._table, Key=self._key("entity", entity), ConsistentRead=True)
        return bool(item.get("Item", {}).get("filtered", {}).get("BOOL"))

    def link(self, namespace: str, key: str, other: str) -> None:
        self._client.put_item(TableName=self._table, Item={
            **self._key("xref", namespace, key), "other": {"S": other}, "expiration": self._expiration()})

    def linked(self, namespace: str, key: str) -> str | None:
        item = self._client.get_item(TableName=self._table, Key=self._key("xref", namespace, key),
                                     ConsistentRead=True)
        return item.get("Item", {}).get("other", {}).get("S")

    def link_is_current(self, namespace: str, key: str, other: str) -> bool:
        item = self._client.get_item(TableName=self._table, Key=self._key("xref", namespace, key),
                                     ConsistentRead=True).get("Item", {})
        expires = int(item.get("expiration", {}).get("N", "0"))
        return item.get("other", {}).get("S") == other and expires - self._clock() >= RETENTION_SECONDS / 2


def _stamp(change_time: datetime) -> str:
    """Fixed-width UTC stamps: they compare in time order as strings."""
    return change_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
