"""Polling a source that keeps no change log: resumable scans, per-item snapshots, events queued before
anything advances. Names no system: the system's ``PollSource`` reads pages and tells what changed.

A *scan* reads every item created in a fixed window ``[scan_from, scan_to]``, newest first, page by page.
``scan_to`` is fixed when the scan starts, so items created meanwhile do not shift its pages (they belong
to the next scan). ``scan_from`` is the older of the look-back limit (``now - lookback``: items whose
status may still change) and the *watermark* (the ``scan_to`` of the last finished scan: everything
created before it has been seen). The first scan starts at ``start`` (a backlog of years is read over as
many runs as it takes). A run reads at most ``max_pages`` pages and the cursor remembers where it stopped.

A source whose items say when they last changed (``window = "changed"``: a list of what changed since a
time, oldest first, paged by the source's own cursor) is read by that time instead: ``scan_from`` is the
watermark itself (nothing older can have changed unseen), and the look-back applies only to the first scan.

For each page: the source compares each item with its stored snapshot and returns the events of what
changed (deterministic ids: the item and the state it reached); they are queued, and only then are the
snapshots and the cursor written. A crash between the two re-reads the page and queues the same events
again, with the same ids: the worker's idempotency layer drops them, nothing is skipped.

``mode="both"`` (webhooks are the primary path, the poll is the sweep): an event whose id the webhook
path already delivered (``PushedLog``) is not queued; one it did not is held for ``sweep_grace`` (a
webhook may still be on its way, or in the sender's retries) and then queued and counted *recovered*.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from switchyard.errors import WebhookRejectedError
from switchyard.events import flow_message
from switchyard.ingest import OutgoingMessage, QueuePublisher
from switchyard.table_keys import PollKeys, pushed_key

PollMode = Literal["poll", "both"]


@dataclass(frozen=True)
class PolledEvent:
    """One event as the webhook path would have queued it: id, type, change time, envelope JSON."""

    event_id: str
    event_type: str
    timestamp: str  # RFC 3339
    body: str  # {"type", "timestamp", "data"}

    def to_json(self) -> dict[str, str]:
        return {"event_id": self.event_id, "event_type": self.event_type, "timestamp": self.timestamp,
                "body": self.body}

    @classmethod
    def from_json(cls, value: Mapping[str, str]) -> PolledEvent:
        return cls(value["event_id"], value["event_type"], value["timestamp"], value["body"])


@dataclass(frozen=True)
class Page:
    items: Sequence[Any]
    has_next: bool
    next_token: str | None = None  # a source paged by its own cursor: where the next page starts


WindowKind = Literal["created", "changed"]


class PollSource(Protocol):
    """What a system provides: pages of items created (or, ``window = "changed"``, last changed) in a window,
    and their changes. ``token`` is the previous page's ``next_token`` (None on a scan's first page)."""

    window: WindowKind

    def read_page(self, created_from: datetime, created_to: datetime, page_index: int, page_size: int,
                  token: str | None = None) -> Page: ...

    def key(self, item: Any) -> str:
        """The item's stable key ([a-zA-Z0-9-]: it goes into a table key)."""
        ...

    def snapshot(self, item: Any) -> dict[str, Any]:
        """The compact state compared next time (JSON-able)."""
        ...

    def events(self, item: Any, previous: Mapping[str, Any] | None, observed_at: datetime) -> list[PolledEvent]:
        """The events of what changed since ``previous`` (None: never seen), oldest change first."""
        ...

    def created_on(self, item: Any) -> datetime:
        """The item's time on the window's axis: its creation (``created``) or its last change (``changed``)."""
        ...


@dataclass
class ScanCursor:
    watermark: datetime | None = None  # scan_to of the last finished scan
    scan_from: datetime | None = None  # the scan in progress (None: none)
    scan_to: datetime | None = None
    page_index: int = 0
    page_token: str | None = None  # the source's own cursor for page ``page_index``
    # sweep: the oldest window time of an item whose events are held for the grace period; the next scan starts
    # no later, so the item is read again and its events released (a "changed" source would not show it again)
    held_from: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"watermark": stamp(self.watermark), "scan_from": stamp(self.scan_from),
                "scan_to": stamp(self.scan_to), "page_index": self.page_index, "page_token": self.page_token,
                "held_from": stamp(self.held_from)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ScanCursor:
        def parse(name: str) -> datetime | None:
            raw = value.get(name)
            return datetime.fromisoformat(raw) if raw else None

        return cls(parse("watermark"), parse("scan_from"), parse("scan_to"), int(value.get("page_index") or 0),
                   value.get("page_token"), parse("held_from"))


@dataclass(frozen=True)
class StoredSnapshot:
    state: dict[str, Any]
    held: tuple[PolledEvent, ...] = ()  # sweep mode: events waiting for the grace period
    held_since: dict[str, str] = field(default_factory=dict)  # event id -> when first held (RFC 3339)


class PollStore(Protocol):
    def cursor(self) -> ScanCursor: ...
    def snapshots(self, keys: Sequence[str]) -> dict[str, StoredSnapshot]: ...
    def save(self, cursor: ScanCursor, snapshots: Mapping[str, StoredSnapshot], expires_at: Mapping[str, int]) -> None:
        """Snapshots first, the cursor last (a crash in between re-reads a page whose snapshots advanced:
        it finds no change, so nothing is queued twice)."""
        ...


class PushedLog(Protocol):
    """Event ids the webhook path queued (written by ingest for sources that are also swept)."""

    def pushed(self, event_ids: Sequence[str]) -> set[str]: ...
    def record(self, event_ids: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class PollSettings:
    page_size: int = 100
    max_pages: int = 10  # per run: a run always ends well inside the function's timeout
    lookback: timedelta = timedelta(days=30)
    start: datetime | None = None  # the first scan's oldest creation time (None: now - lookback)
    mode: PollMode = "poll"
    sweep_grace: timedelta = timedelta(minutes=10)
    retention: timedelta = timedelta(days=2)  # a snapshot lives until created + lookback + this

    def __post_init__(self) -> None:
        if self.page_size < 1 or self.max_pages < 1:
            raise ValueError("page_size and max_pages must be positive")
        if self.lookback <= timedelta(0):
            raise ValueError("lookback must be positive")


@dataclass
class PollReport:
    pages_read: int = 0
    items_seen: int = 0
    events_queued: int = 0
    recovered: int = 0  # sweep: events the webhooks had not delivered
    already_pushed: int = 0  # sweep: events the webhooks had delivered
    held: int = 0  # sweep: events waiting for the grace period
    scan_finished: bool = False
    stopped_for_time: bool = False  # the function's remaining time would not fit another page
    invalid: list[dict[str, str]] = field(default_factory=list)  # events that fail the source's schema
    lag_seconds: float = 0.0  # now - watermark: how old the newest fully seen creation time is
    queued_ids: list[str] = field(default_factory=list)


class Poller:
    """One run: ``run()`` reads at most ``max_pages`` pages and queues what changed (``publish``)."""

    def __init__(self, source: PollSource, store: PollStore, publish: Callable[[Sequence[PolledEvent]], None],
                 settings: PollSettings, *, pushed: PushedLog | None = None,
                 validate: Callable[[PolledEvent], None] | None = None,
                 time_left: Callable[[], float] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if settings.mode == "both" and pushed is None:
            raise ValueError("a sweep (mode both) needs the log of what the webhooks delivered")
        self._source = source
        self._store = store
        self._publish = publish
        self._settings = settings
        self._pushed = pushed
        self._validate = validate
        self._time_left = time_left  # seconds the function has left (Lambda's remaining time)
        self._clock = clock
        self._monotonic = monotonic

    def run(self) -> PollReport:
        now = self._clock()
        report = PollReport()
        cursor = self._store.cursor()
        if cursor.scan_to is None:
            cursor = self._start_scan(cursor, now)
        slowest = 0.0
        while report.pages_read < self._settings.max_pages:
            # a page of new orders costs several calls per order: stop while another slow page still fits
            if report.pages_read and self._time_left is not None and self._time_left() < 2 * slowest:
                report.stopped_for_time = True
                break
            assert cursor.scan_from is not None and cursor.scan_to is not None
            started = self._monotonic()
            page = self._source.read_page(cursor.scan_from, cursor.scan_to, cursor.page_index,
                                          self._settings.page_size, cursor.page_token)
            report.pages_read += 1
            cursor = self._page(page, now, cursor, report)
            slowest = max(slowest, self._monotonic() - started)
            if page.has_next and page.items:
                cursor = replace(cursor, page_index=cursor.page_index + 1, page_token=page.next_token)
                self._store.save(cursor, {}, {})
                continue
            cursor = ScanCursor(watermark=cursor.scan_to, held_from=cursor.held_from)
            self._store.save(cursor, {}, {})
            report.scan_finished = True
            break
        # how far behind the poll is: items created after the watermark may not have been seen yet (a first
        # backlog: after the start of the scan in progress)
        seen_until = cursor.watermark or cursor.scan_from or now
        report.lag_seconds = max(0.0, (now - seen_until).total_seconds())
        return report

    def _start_scan(self, cursor: ScanCursor, now: datetime) -> ScanCursor:
        limit = now - self._settings.lookback
        first = self._settings.start or limit
        if cursor.watermark is None:
            scan_from = first
        elif getattr(self._source, "window", "created") == "changed":
            scan_from = cursor.watermark  # an item that changed since shows its new change time
        else:
            scan_from = min(cursor.watermark, limit)  # statuses change without moving the creation time
        if cursor.held_from is not None:
            scan_from = min(scan_from, cursor.held_from)
        # whole seconds: the shop compares creation times with the bound as sent, and sends no fractions
        return replace(cursor, scan_from=scan_from.replace(microsecond=0), scan_to=now.replace(microsecond=0),
                       page_index=0, page_token=None, held_from=None)

    def _page(self, page: Page, now: datetime, cursor: ScanCursor, report: PollReport) -> ScanCursor:
        """Queue the page's events, then save its snapshots (the cursor moves on only in ``run``); returns the
        cursor with the oldest item whose events are still held."""
        items = {self._source.key(item): item for item in page.items}
        report.items_seen += len(items)
        stored = self._store.snapshots(list(items))
        found: dict[str, list[PolledEvent]] = {}
        for key, item in items.items():
            previous = stored.get(key)
            fresh = self._source.events(item, previous.state if previous else None, now)
            held = list(previous.held) if previous else []
            known = {event.event_id for event in held}
            found[key] = held + [event for event in fresh if event.event_id not in known and self._valid(event, report)]
        to_queue, to_hold = self._sweep(found, stored, now, report)
        queued = [event for key in items for event in to_queue.get(key, ())]
        if queued:
            self._publish(queued)
        report.events_queued += len(queued)
        report.queued_ids += [event.event_id for event in queued]
        snapshots: dict[str, StoredSnapshot] = {}
        expires: dict[str, int] = {}
        for key, item in items.items():
            state = self._source.snapshot(item)
            hold, since = to_hold.get(key, ((), {}))
            if hold:
                at = self._source.created_on(item)
                cursor = replace(cursor, held_from=at if cursor.held_from is None else min(cursor.held_from, at))
            previous = stored.get(key)
            if previous is not None and previous.state == state and previous.held == tuple(hold) \
                    and not found[key]:
                continue  # unchanged: no write
            snapshots[key] = StoredSnapshot(state, tuple(hold), since)
            created = self._source.created_on(item)
            expires[key] = int((max(created, now - self._settings.lookback) + self._settings.lookback
                                + self._settings.retention).timestamp())
        if snapshots:
            self._store.save(cursor, snapshots, expires)
        return cursor

    def _valid(self, event: PolledEvent, report: PollReport) -> bool:
        """Whether the event passes the webhook's own schema; one that does not (an order the shop holds
        without items) is reported and never queued: re-reading it would not change it."""
        if self._validate is None:
            return True
        try:
            self._validate(event)
        except WebhookRejectedError as exc:  # SchemaError: what ingest answers 422
            report.invalid.append({"event_id": event.event_id, "problem": json.dumps(exc.body())[:500]})
            return False
        return True

    def _sweep(self, found: Mapping[str, list[PolledEvent]], stored: Mapping[str, StoredSnapshot], now: datetime,
               report: PollReport) -> tuple[dict[str, list[PolledEvent]], dict[str, tuple[list[PolledEvent],
                                                                                          dict[str, str]]]]:
        """Poll mode: queue everything. Sweep: drop what the webhooks delivered, hold the rest for the grace
        period (counted from when the poll first saw it), then queue it as recovered."""
        if self._settings.mode == "poll":
            return dict(found), {}
        assert self._pushed is not None
        ids = [event.event_id for events in found.values() for event in events]
        delivered = self._pushed.pushed(ids) if ids else set()
        to_queue: dict[str, list[PolledEvent]] = {}
        to_hold: dict[str, tuple[list[PolledEvent], dict[str, str]]] = {}
        for key, events in found.items():
            previous = stored.get(key)
            since = dict(previous.held_since) if previous else {}
            hold: list[PolledEvent] = []
            for event in events:
                if event.event_id in delivered:
                    report.already_pushed += 1
                    continue
                first_seen = datetime.fromisoformat(since.setdefault(event.event_id, now.isoformat()))
                if now - first_seen >= self._settings.sweep_grace:
                    to_queue.setdefault(key, []).append(event)
                    report.recovered += 1
                else:
                    hold.append(event)
            report.held += len(hold)
            held_ids = {event.event_id for event in hold}
            to_hold[key] = (hold, {event_id: at for event_id, at in since.items() if event_id in held_ids})
        return to_queue, to_hold


class QueueingPublisher:
    """Queues polled events on every subscribed flow's queue, as ingest queues a webhook's: the same message,
    without a body digest, so the worker's idempotency key is the flow and the deterministic event id (a
    page queued again after a crash is recognised whatever the change time it carries)."""

    def __init__(self, *, source: str, routes: Mapping[str, Mapping[str, str]], publisher: QueuePublisher,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._source = source
        self._routes = routes
        self._publisher = publisher
        self._clock = clock

    def __call__(self, events: Sequence[PolledEvent]) -> None:
        received_at = self._clock().isoformat()
        batches: dict[str, list[OutgoingMessage]] = {}
        for event in events:
            attributes = {"event_id": event.event_id, "event_type": event.event_type, "source": self._source}
            for flow, queue_url in self._routes.get(event.event_type, {}).items():
                message = flow_message(flow=flow, event_id=event.event_id, source=self._source,
                                       event_type=event.event_type, timestamp=event.timestamp,
                                       received_at=received_at, body=event.body)
                batches.setdefault(queue_url, []).append(OutgoingMessage(message, attributes))
        for queue_url, messages in batches.items():
            self._publisher.publish_batch(queue_url, messages)


# --------------------------------------------------------------------------- stores


class InMemoryPollStore:
    """For tests and dry runs; same contract as ``DynamoPollStore``. ``fail_save`` simulates a crash."""

    def __init__(self) -> None:
        self.cursor_value = ScanCursor()
        self.items: dict[str, StoredSnapshot] = {}
        self.expires: dict[str, int] = {}
        self.fail_save = False

    def cursor(self) -> ScanCursor:
        return replace(self.cursor_value)

    def snapshots(self, keys: Sequence[str]) -> dict[str, StoredSnapshot]:
        return {key: self.items[key] for key in keys if key in self.items}

    def save(self, cursor: ScanCursor, snapshots: Mapping[str, StoredSnapshot], expires_at: Mapping[str, int]) -> None:
        if self.fail_save:
            raise RuntimeError("crash before the snapshots were saved")
        self.items.update(snapshots)
        self.expires.update(expires_at)
        self.cursor_value = replace(cursor)


class InMemoryPushedLog:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def pushed(self, event_ids: Sequence[str]) -> set[str]:
        return self.ids & set(event_ids)

    def record(self, event_ids: Sequence[str]) -> None:
        self.ids.update(event_ids)


def _snapshot_item(snapshot: StoredSnapshot) -> str:
    return json.dumps({"state": snapshot.state, "held": [event.to_json() for event in snapshot.held],
                       "held_since": snapshot.held_since}, separators=(",", ":"), sort_keys=True)


def _parse_snapshot(text: str) -> StoredSnapshot:
    value = json.loads(text)
    return StoredSnapshot(value["state"], tuple(PolledEvent.from_json(e) for e in value.get("held") or ()),
                          dict(value.get("held_since") or {}))


class DynamoPollStore:
    """The cursor and the snapshots of one polled connection (``table_keys.PollKeys``), TTL ``expiration``.

    Single-item reads and writes only: IAM's per-item condition (``dynamodb:LeadingKeys``) is what keeps a
    function to its own items, and the project grants no batch actions on the table. A page of 100 orders
    costs 100 strongly consistent reads and a write per changed order."""

    def __init__(self, client: Any, table: str, *, keys: PollKeys) -> None:
        self._client = client
        self._table = table
        self._keys = keys

    def cursor(self) -> ScanCursor:
        item = self._client.get_item(TableName=self._table, Key={"id": {"S": self._keys.cursor()}},
                                     ConsistentRead=True).get("Item")
        return ScanCursor.from_json(json.loads(item["cursor"]["S"])) if item else ScanCursor()

    def snapshots(self, keys: Sequence[str]) -> dict[str, StoredSnapshot]:
        found: dict[str, StoredSnapshot] = {}
        for key in keys:
            item = self._client.get_item(TableName=self._table, Key={"id": {"S": self._keys.snapshot(key)}},
                                         ConsistentRead=True).get("Item")
            if item:
                found[key] = _parse_snapshot(item["snapshot"]["S"])
        return found

    def save(self, cursor: ScanCursor, snapshots: Mapping[str, StoredSnapshot], expires_at: Mapping[str, int]) -> None:
        for key, snapshot in snapshots.items():
            self._client.put_item(TableName=self._table, Item={
                "id": {"S": self._keys.snapshot(key)}, "snapshot": {"S": _snapshot_item(snapshot)},
                "expiration": {"N": str(expires_at[key])}})
        self._client.put_item(TableName=self._table, Item={
            "id": {"S": self._keys.cursor()}, "cursor": {"S": json.dumps(cursor.to_json())}})


class DynamoPushedLog:
    """Event ids a source's webhooks queued, kept ``retention`` (longer than any sweep holds an event)."""

    def __init__(self, client: Any, table: str, *, source: str, retention: timedelta = timedelta(days=7),
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._source = source
        self._retention = retention
        self._clock = clock

    def pushed(self, event_ids: Sequence[str]) -> set[str]:
        return {event_id for event_id in dict.fromkeys(event_ids)
                if "Item" in self._client.get_item(TableName=self._table, ConsistentRead=True,
                                                   Key={"id": {"S": pushed_key(self._source, event_id)}},
                                                   ProjectionExpression="id")}

    def record(self, event_ids: Sequence[str]) -> None:
        expiration = str(int(self._clock() + self._retention.total_seconds()))
        for event_id in dict.fromkeys(event_ids):
            self._client.put_item(TableName=self._table, Item={
                "id": {"S": pushed_key(self._source, event_id)}, "expiration": {"N": expiration}})
