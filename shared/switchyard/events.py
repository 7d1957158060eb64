"""The event a flow worker receives from its queue (written by ``switchyard.ingest``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from switchyard.errors import PermanentError


def flow_message(*, flow: str, event_id: str, source: str, event_type: str, timestamp: str,
                 received_at: str, body: str, digest: str | None = None) -> str:
    """The queue message of one event for one flow (written by ingest, read by ``FlowEvent``).

    ``body`` is the webhook body exactly as signed, so nothing is lost to re-serialisation (money
    with 18 digits stays exact: the worker parses numbers as Decimal). ``digest`` (of ``body``) makes
    a reused event id with a different body a different event for the idempotency layer.
    """
    message = {"flow": flow, "event_id": event_id, "source": source, "type": event_type,
               "timestamp": timestamp, "received_at": received_at, "body": body}
    if digest:
        message["digest"] = digest
    return json.dumps(message, separators=(",", ":"))


def _timestamp(value: str) -> datetime:
    """RFC 3339; or epoch seconds, which moto's EventBridge puts where AWS puts ``time`` as RFC 3339."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return datetime.fromtimestamp(float(value), tz=UTC)


@dataclass(frozen=True, slots=True)
class FlowEvent:
    flow: str
    event_id: str
    source: str
    type: str
    timestamp: datetime  # the source's change time: orders events per entity
    data: dict[str, Any]
    message: str = field(default="", repr=False, compare=False)  # the queue message it was read from
    # a redrive of a failed state-machine execution: a new delivery, not a duplicate of the first
    retry_of: str | None = None
    # of the body as ingest queued it: the same id with another body is another event (None: older messages)
    digest: str | None = None

    @classmethod
    def from_message(cls, body: str) -> FlowEvent:
        try:
            raw = json.loads(body)
            if isinstance(raw["body"], str):
                event = json.loads(raw["body"], parse_float=Decimal)  # money stays exact
            else:  # an EventBridge rule's input transformer puts the event in as an object, not a string
                event = json.loads(body, parse_float=Decimal)["body"]
            return cls(
                flow=raw["flow"],
                event_id=raw["event_id"],
                source=raw["source"],
                type=raw["type"],
                timestamp=_timestamp(raw["timestamp"]),
                data=event["data"],
                message=body,
                retry_of=raw.get("retry_of"),
                digest=raw.get("digest"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(
                f"queue message is not a Switchyard event: {exc}", reason="malformed_message"
            ) from None

    @property
    def idempotency_key(self) -> dict[str, str]:
        key = {"flow": self.flow, "event_id": self.event_id}
        if self.digest:
            key["digest"] = self.digest
        if self.retry_of:
            key["retry_of"] = self.retry_of
        return key
