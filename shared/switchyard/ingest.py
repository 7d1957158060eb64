"""Accepting a webhook: size, signature, schema, routing, then durable enqueue on every flow.

The answer is ``Accepted`` only once the event sits on every subscribed flow's queue; anything
wrong with the input raises a ``WebhookRejectedError`` (4xx, nothing enqueued).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from switchyard.envelopes import validate_envelope
from switchyard.errors import (
    EnqueueError,
    MalformedBodyError,
    PayloadTooLargeError,
    UnknownSourceError,
)
from switchyard.events import flow_message


class Verifier(Protocol):
    def verify(self, body: bytes, headers: Mapping[str, str]) -> str: ...


class QueuePublisher(Protocol):
    def publish(self, queue_url: str, body: str, attributes: Mapping[str, str]) -> None: ...


@dataclass(frozen=True)
class WebhookRequest:
    source: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class Accepted:
    event_id: str
    event_type: str
    flows: tuple[str, ...]

    def body(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "type": self.event_type, "flows": list(self.flows)}


class IngestService:
    def __init__(
        self,
        *,
        routes: Mapping[str, Mapping[str, Mapping[str, str]]],
        verifier_for: Callable[[str], Verifier],
        publisher: QueuePublisher,
        max_body_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._routes = routes
        self._verifier_for = verifier_for
        self._publisher = publisher
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def accept(self, request: WebhookRequest) -> Accepted:
        source_routes = self._routes.get(request.source)
        if source_routes is None:
            raise UnknownSourceError(f"no webhook source named {request.source!r}")
        if len(request.body) > self._max_body_bytes:
            raise PayloadTooLargeError(f"body exceeds {self._max_body_bytes} bytes")
        event_id = self._verifier_for(request.source).verify(request.body, request.headers)
        document = _decode_json(request.body)
        event_type = validate_envelope(request.source, document)

        flows = source_routes.get(event_type, {})
        received_at = self._clock()
        attributes = {"event_id": event_id, "event_type": event_type, "source": request.source}
        for flow, queue_url in flows.items():
            body = flow_message(flow=flow, event_id=event_id, source=request.source, event_type=event_type,
                                timestamp=document["timestamp"], received_at=received_at.isoformat(),
                                body=request.body.decode("utf-8"))
            try:
                self._publisher.publish(queue_url, body, attributes)
            except Exception as exc:  # any failure to queue durably: the sender must retry
                raise EnqueueError(f"could not queue event {event_id} for flow {flow}") from exc
        return Accepted(event_id=event_id, event_type=event_type, flows=tuple(flows))


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from None
