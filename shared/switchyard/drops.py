"""Events that were accepted and then deliberately not applied, each with its reason.

A drop is never silent: the worker logs it, counts it (``EventsDropped`` with a ``reason``
dimension) and keeps it here for the retention time, where ``switchyard drops FLOW`` lists it.

Reasons: ``stale`` (a strictly newer change of the entity was applied), ``not_master`` (the field
belongs to the other system: its value was written back instead), ``superseded`` (an equal-time
change lost the deterministic tie-break). A state machine's step that applies nothing on purpose names its
own reason in its result (``switchyard.state_machines.STEP_DROPPED``), recorded the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from switchyard.table_keys import drop_key

DROP_RETENTION_SECONDS = 14 * 24 * 3600  # as long as a dead letter is kept


@dataclass(frozen=True)
class Drop:
    flow: str
    event_id: str
    event_type: str
    reason: str
    dropped_at: float
    change_time: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DropLog(Protocol):
    def record(self, drop: Drop) -> None: ...
    def list(self, flow: str) -> list[Drop]: ...


class InMemoryDropLog:
    def __init__(self) -> None:
        self._drops: dict[tuple[str, str], Drop] = {}
        self._lock = threading.Lock()

    def record(self, drop: Drop) -> None:
        with self._lock:
            self._drops[(drop.flow, drop.event_id)] = drop

    def list(self, flow: str) -> list[Drop]:
        with self._lock:
            return sorted((d for (f, _), d in self._drops.items() if f == flow), key=lambda d: d.dropped_at)


class DynamoDropLog:
    """Items ``drop#<flow>#<event id>`` in the idempotency table (one per event: a retry overwrites it;
    ``switchyard.table_keys`` names them)."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    @staticmethod
    def _key(flow: str, event_id: str = "") -> str:
        return drop_key(flow, event_id)

    def record(self, drop: Drop) -> None:
        self._client.put_item(TableName=self._table, Item={
            "id": {"S": self._key(drop.flow, drop.event_id)},
            "drop": {"S": json.dumps(drop.to_dict(), default=str)},
            "expiration": {"N": str(int(self._clock()) + DROP_RETENTION_SECONDS)},
        })

    def list(self, flow: str) -> list[Drop]:
        """An operator's look (a Scan of the table, filtered): not on any worker's path."""
        drops: list[Drop] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table, "FilterExpression": "begins_with(id, :p)",
            "ExpressionAttributeValues": {":p": {"S": self._key(flow)}},
        }
        while True:
            page = self._client.scan(**kwargs)
            drops += [Drop(**json.loads(item["drop"]["S"])) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(drops, key=lambda d: d.dropped_at)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
