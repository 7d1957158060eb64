"""Streak's webhook deliveries, split into events (no pydantic: on the ingest cold-start path).

Streak posts the bare affected object in a JSON array, unsigned, and without the event's name
(one registered URL per event type: ``/webhooks/streak?event=BOX_CHANGE_STAGE``). Ingest splits the
array into one event per object, ``{"type": <event>, "timestamp": <lastUpdatedTimestamp>, "data":
<object>}``, whose id is derived from the event, the object's key and its change time, so Streak's
retries of one delivery are recognised as duplicates.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any


def delivery_event_id(event_type: str, item: dict[str, Any]) -> str:
    """Stable across Streak's retries of one delivery; different for every change."""
    seed = f"{event_type}|{item.get('key')}|{item.get('lastUpdatedTimestamp')}"
    return "streak_" + hashlib.sha256(seed.encode()).hexdigest()[:32]


# epoch milliseconds a datetime can hold (before the year 10000); the schema says the same
MAX_EPOCH_MILLIS = 253_402_300_799_999


def change_time(item: dict[str, Any]) -> str:
    """The object's change time as ISO 8601, or "" when it has none a datetime can hold (the schema
    check then names ``lastUpdatedTimestamp``)."""
    millis = item.get("lastUpdatedTimestamp")
    if isinstance(millis, float) and millis.is_integer():  # JSON Schema's integer includes 5.0
        millis = int(millis)
    if not isinstance(millis, int) or isinstance(millis, bool) or not 0 <= millis <= MAX_EPOCH_MILLIS:
        return ""
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
