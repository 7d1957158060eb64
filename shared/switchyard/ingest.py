"""Accepting a webhook: size, authenticity, schema, routing, then durable enqueue on every flow.

The answer is ``Accepted`` only once every event of the delivery sits on every subscribed flow's
queue; anything wrong with the input raises a ``WebhookRejectedError`` (4xx, nothing enqueued).
The body is strict JSON (``switchyard.webhook_json``), a delivery holds at most
``MAX_EVENTS_PER_DELIVERY`` events (413 above), and events are queued ten to a SendMessageBatch.

An event's identity is its id and the digest of its body: a sender that reuses a ``webhook-id`` for a
different (correctly signed) body gets a new event, never one dropped as a duplicate of the first.

Delivery formats (``catalog.SourceConfig.format``): ``envelope`` is one signed event ``{"type", "timestamp",
"data"}`` whose id is ``webhook-id``; any other format is split into events by the source's system
(``registry.WebhookSource.formats``): e.g. bare objects in an array with the event type in the URL, or one
notification of changes of mixed types, where changes no flow routes are acknowledged, not queued.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from switchyard.archive import ArchivedDelivery, ArchivedEvent, DeliveryArchive
from switchyard.envelopes import validate_envelope
from switchyard.errors import (
    EnqueueError,
    PayloadTooLargeError,
    UnknownSourceError,
)
from switchyard.events import flow_message
from switchyard.registry import Delivery, webhook
from switchyard.webhook_json import decode

# Above this many events in one delivery (objects in an array, changes in a notification) the delivery is refused
# with 413: its events must be queued well within the ingest function's 10 s, even on a slow SQS day.
MAX_EVENTS_PER_DELIVERY = 500


@dataclass(frozen=True)
class WebhookRequest:
    source: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)


class Authenticator(Protocol):
    def authenticate(self, request: WebhookRequest) -> str | None:
        """The delivery's event id when the scheme carries one; raises SignatureError otherwise."""


class OutgoingMessage(NamedTuple):
    body: str
    attributes: Mapping[str, str]


class QueuePublisher(Protocol):
    def publish_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> None:
        """Queue every message (in as few calls as the queue allows), or raise."""


@dataclass(frozen=True)
class Accepted:
    event_ids: tuple[str, ...]  # empty only when a notification held no routed change
    event_type: str  # of the first event ("" when there is none)
    flows: tuple[str, ...]  # every flow that got at least one event, in routing order
    status: int = 202  # the HTTP status the source expects for "queued"
    # the type of each of event_ids, when a delivery may mix types; empty: all are event_type
    event_types: tuple[str, ...] = ()
    # changes acknowledged but not queued, as no flow routes their type; None: not applicable
    ignored: int | None = None
    # why the queued events could not be archived (they are queued all the same); None: archived or no archive
    archive_error: str | None = None

    @property
    def event_id(self) -> str:
        return self.event_ids[0] if self.event_ids else ""

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"event_id": self.event_id, "type": self.event_type, "flows": list(self.flows)}
        if not self.event_ids:
            body = {"event_ids": [], "flows": list(self.flows)}
        if len(self.event_ids) > 1:
            body["event_ids"] = list(self.event_ids)
            if len(set(self.event_types)) > 1:
                body["event_types"] = list(self.event_types)
        if self.ignored is not None:
            body["ignored"] = self.ignored
        return body


@dataclass(frozen=True)
class SplitEvent:
    """One event of a delivery, as it is queued."""

    event_id: str
    timestamp: str
    body: str  # the queued event: as signed (envelope) or rebuilt from one object or change
    event_type: str


class IngestService:
    def __init__(
        self,
        *,
        routes: Mapping[str, Mapping[str, Mapping[str, str]]],
        authenticator_for: Callable[[str], Authenticator],
        publisher: QueuePublisher,
        max_body_bytes: int,
        formats: Mapping[str, str] | None = None,
        ack_statuses: Mapping[str, int] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_queued: Callable[[str, Sequence[SplitEvent]], None] | None = None,
        archive: DeliveryArchive | None = None,
        config_digest: str = "",
    ) -> None:
        self._routes = routes
        self._authenticator_for = authenticator_for
        self._publisher = publisher
        self._max_body_bytes = max_body_bytes
        self._formats = formats or {}
        self._ack_statuses = ack_statuses or {}
        self._clock = clock
        # told the events of every delivery once queued (a swept source's pushed-event log, switchyard.polling)
        self._on_queued = on_queued
        self._archive = archive  # every queued delivery, for replay (switchyard.archive)
        self._config_digest = config_digest

    def accept(self, request: WebhookRequest) -> Accepted:
        source_routes = self._routes.get(request.source)
        if source_routes is None:
            raise UnknownSourceError(f"no webhook source named {request.source!r}")
        if len(request.body) > self._max_body_bytes:
            raise PayloadTooLargeError(f"body exceeds {self._max_body_bytes} bytes")
        delivery_id = self._authenticator_for(request.source).authenticate(request)
        document = decode(request.body)
        delivery_format = self._formats.get(request.source, "envelope")
        events, ignored = split_delivery(request.source, delivery_format, document, routes=source_routes,
                                         event_type=request.query.get("event", ""), event_id=delivery_id or "",
                                         body=request.body.decode("utf-8"))
        event_type = events[0].event_type if events else ""

        # every event is valid before the first is queued: a 4xx never leaves part of a delivery queued
        received_at = self._clock().isoformat()
        batches: dict[str, list[OutgoingMessage]] = {}
        queue_flows: dict[str, set[str]] = {}
        archived: list[ArchivedEvent] = []
        for event in events:
            attributes = {"event_id": event.event_id, "event_type": event.event_type, "source": request.source}
            digest = hashlib.sha256(event.body.encode()).hexdigest()[:32]
            event_flows = source_routes.get(event.event_type, {})
            if event_flows:
                archived.append(ArchivedEvent(event.event_id, event.event_type, event.timestamp, event.body, digest,
                                              tuple(event_flows)))
            for flow, queue_url in event_flows.items():
                message = flow_message(flow=flow, event_id=event.event_id, source=request.source,
                                       event_type=event.event_type, timestamp=event.timestamp,
                                       received_at=received_at, body=event.body, digest=digest)
                batches.setdefault(queue_url, []).append(OutgoingMessage(message, attributes))
                queue_flows.setdefault(queue_url, set()).add(flow)
        for queue_url, messages in batches.items():
            try:
                self._publisher.publish_batch(queue_url, messages)
            except Exception as exc:  # any failure to queue durably: the sender must retry
                ids = list(dict.fromkeys(m.attributes["event_id"] for m in messages))  # an event per flow
                more = f" (and {len(ids) - 1} more)" if len(ids) > 1 else ""
                raise EnqueueError(f"could not queue event {ids[0]}{more} "
                                   f"for flow {', '.join(sorted(queue_flows[queue_url]))}") from exc
        if self._on_queued is not None and events:
            self._on_queued(request.source, events)
        archive_error = self._archive_queued(request.source, received_at, archived)
        mixed = ignored is not None  # a notification of changes: one delivery, several event types
        types = tuple(e.event_type for e in events) if mixed else (event_type,)
        flows = dict.fromkeys(flow for t in types for flow in source_routes.get(t, {}))  # ordered, no repeats
        return Accepted(event_ids=tuple(e.event_id for e in events), event_type=event_type, flows=tuple(flows),
                        status=self._ack_statuses.get(request.source, 202), event_types=types if mixed else (),
                        ignored=ignored, archive_error=archive_error)

    def _archive_queued(self, source: str, received_at: str, events: list[ArchivedEvent]) -> str | None:
        """Archive what was queued, after the queueing: a failure here loses the replay, never an event."""
        if self._archive is None or not events:
            return None
        try:
            self._archive.write(ArchivedDelivery(source=source, received_at=received_at, events=tuple(events),
                                                 config_digest=self._config_digest))
        except Exception as exc:  # the sender's 2xx stands: its events are queued
            return f"{type(exc).__name__}: {exc}"
        return None


def split_delivery(source: str, delivery_format: str, document: Any, *, routes: Mapping[str, Any],
                   event_type: str = "", event_id: str = "", body: str = "") -> tuple[list[SplitEvent], int | None]:
    """The events of one decoded delivery, each validated as ingest validates it (dry-run uses this too),
    and how many changes were acknowledged without being queued (None for formats without such changes).

    ``routes``: the source's event type -> flows; ``event_type``: the URL's ``?event=``;
    ``event_id`` and ``body`` (envelopes): the delivery's id and the body as signed.
    Raises WebhookRejectedError with the answer ingest gives.
    """
    if delivery_format != "envelope":  # the source's system knows its own format (registry); source = system
        split = webhook(source).formats[delivery_format]
        return split(Delivery(source=source, document=document, routes=routes, event_type=event_type))
    envelope_type = validate_envelope(source, document)
    return [SplitEvent(event_id, document["timestamp"], body or json.dumps(document, separators=(",", ":")),
                       envelope_type)], None


def check_delivery_size(count: int) -> None:
    """413 for a delivery of more than ``MAX_EVENTS_PER_DELIVERY`` events."""
    if count > MAX_EVENTS_PER_DELIVERY:
        raise PayloadTooLargeError(f"a delivery holds at most {MAX_EVENTS_PER_DELIVERY} events; this one holds "
                                   f"{count}: send them in smaller deliveries")
