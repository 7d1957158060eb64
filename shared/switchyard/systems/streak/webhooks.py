"""Streak's webhook deliveries, split into events (no pydantic: on the ingest cold-start path).

Streak posts the bare affected object in a JSON array, unsigned, and without the event's name
(one registered URL per event type: ``/webhooks/streak?event=BOX_CHANGE_STAGE``). Ingest splits the
array into one event per object, ``{"type": <event>, "timestamp": <lastUpdatedTimestamp>, "data":
<object>}``, whose id is derived from the event, the object's key and its change time, so Streak's
retries of one delivery are recognised as duplicates.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from switchyard.envelopes import validate_envelope
from switchyard.errors import SchemaError

if TYPE_CHECKING:
    from switchyard.ingest import SplitEvent
    from switchyard.registry import Delivery

# the header (or ``?token=``) carrying the token registered with Streak (``signatures.SharedTokenAuthenticator``)
TOKEN_HEADER = "x-streak-webhook-token"


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


def split_object_array(delivery: Delivery) -> tuple[list[SplitEvent], None]:
    """Format ``object-array``: one event per object of the array, of the URL's event type."""
    from switchyard.ingest import SplitEvent, check_delivery_size

    document, event_type = delivery.document, delivery.event_type
    if not isinstance(document, list) or not document:
        raise SchemaError("the body must be a non-empty JSON array of objects",
                          fields=[{"field": "$", "message": "expected a non-empty array"}])
    check_delivery_size(len(document))
    events = []
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise SchemaError("the event does not match the source's schema",
                              fields=[{"field": f"[{index}]", "message": "expected an object"}])
        envelope: dict[str, Any] = {"type": event_type, "timestamp": change_time(item), "data": item}
        try:
            validate_envelope(delivery.source, envelope)
        except SchemaError as exc:
            for problem in exc.fields:  # name the field as the sender wrote it
                if problem["field"] == "timestamp":  # derived from the object's change time
                    problem.update(field=f"[{index}].lastUpdatedTimestamp",
                                   message="must be the change time in epoch milliseconds")
                else:
                    problem["field"] = ("event" if problem["field"] == "type" else
                                        problem["field"].replace("data", f"[{index}]", 1))
            raise
        events.append(SplitEvent(delivery_event_id(event_type, item), envelope["timestamp"],
                                 json.dumps(envelope, separators=(",", ":")), event_type))
    return events, None
