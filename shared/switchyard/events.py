"""The event a flow worker receives from its queue (written by ``switchyard.ingest``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from switchyard.errors import PermanentError


@dataclass(frozen=True, slots=True)
class FlowEvent:
    flow: str
    event_id: str
    source: str
    type: str
    timestamp: datetime  # the source's change time: orders events per entity
    data: dict[str, Any]

    @classmethod
    def from_message(cls, body: str) -> FlowEvent:
        try:
            raw = json.loads(body, parse_float=Decimal)  # money stays exact
            return cls(
                flow=raw["flow"],
                event_id=raw["event_id"],
                source=raw["source"],
                type=raw["type"],
                timestamp=datetime.fromisoformat(raw["timestamp"]),
                data=raw["data"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(
                f"queue message is not a Switchyard event: {exc}", reason="malformed_message"
            ) from None

    @property
    def idempotency_key(self) -> dict[str, str]:
        return {"flow": self.flow, "event_id": self.event_id}
