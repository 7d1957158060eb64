"""The audit trail: what each flow did with each order, one record per (flow, order) kept for the stage's
retention, so ``switchyard trace ORDER`` reads an order's whole story with one GetItem per flow (no Scan).

An order is named by its source's ``order_ref`` paths (flows.yaml): the first present is the record's key
(a shop's order number). Each delivery appends one entry: when, event id and type, outcome
(created, updated, duplicate, stale, dead_lettered ...), its reason, and what the target answered (record
ids, where the target named them). The newest ``MAX_ENTRIES`` are kept (an item stays far below 400 KB).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from switchyard.table_keys import audit_key

MAX_ENTRIES = 200
DEFAULT_RETENTION_DAYS = 30


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def order_refs(paths: Sequence[str], data: Any) -> list[str]:
    """Every order reference an event's data carries, in the order of ``paths`` (a source's ``order_ref``)."""
    found = (_at(data, path) for path in paths)
    return [str(value) for value in found if isinstance(value, str | int) and not isinstance(value, bool)]


@dataclass(frozen=True)
class AuditEntry:
    at: float
    event_id: str
    event_type: str
    outcome: str
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


class DeliveryAudit(Protocol):
    def record(self, flow: str, order: str, entry: AuditEntry) -> None: ...
    def read(self, flow: str, order: str) -> list[AuditEntry]: ...


class InMemoryDeliveryAudit:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], list[AuditEntry]] = {}

    def record(self, flow: str, order: str, entry: AuditEntry) -> None:
        self.entries.setdefault((flow, order), []).append(entry)
        del self.entries[(flow, order)][:-MAX_ENTRIES]

    def read(self, flow: str, order: str) -> list[AuditEntry]:
        return list(self.entries.get((flow, order), []))


class DynamoDeliveryAudit:
    """One item per (flow, order) in the shared table (``audit#<flow>#<order>``), its entries appended by
    UpdateItem (concurrent deliveries of one order both land) and expiring ``retention_days`` after the last."""

    def __init__(self, client: Any, table: str, *, retention_days: int = DEFAULT_RETENTION_DAYS,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._retention_seconds = retention_days * 24 * 3600
        self._clock = clock

    def record(self, flow: str, order: str, entry: AuditEntry) -> None:
        now = self._clock()
        self._client.update_item(
            TableName=self._table, Key={"id": {"S": audit_key(flow, order)}},
            UpdateExpression="SET entries = list_append(if_not_exists(entries, :none), :entry), expiration = :expires",
            ExpressionAttributeValues={":none": {"L": []}, ":entry": {"L": [{"S": json.dumps(entry.to_dict())}]},
                                       ":expires": {"N": str(int(now + self._retention_seconds))}})

    def read(self, flow: str, order: str) -> list[AuditEntry]:
        item = self._client.get_item(TableName=self._table, Key={"id": {"S": audit_key(flow, order)}},
                                     ConsistentRead=True).get("Item")
        if not item:
            return []
        entries = [AuditEntry(**json.loads(value["S"])) for value in item.get("entries", {}).get("L", [])]
        return entries[-MAX_ENTRIES:]
