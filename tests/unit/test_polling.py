"""switchyard.polling with a fake source: scans, bounded runs, look-back, and how polled events are queued."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from switchyard.events import FlowEvent
from switchyard.ingest import OutgoingMessage
from switchyard.polling import (
    InMemoryPollStore,
    InMemoryPushedLog,
    Page,
    PolledEvent,
    Poller,
    PollSettings,
    QueueingPublisher,
)

NOW = datetime(2026, 11, 20, 12, 0, 0, 250000, tzinfo=UTC)


class FakeSource:
    """Items {"id", "created", "state"}; newest first; the event of a change names the state reached."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.reads: list[tuple[datetime, datetime, int, int]] = []

    def read_page(self, created_from: datetime, created_to: datetime, page_index: int, page_size: int,
                  token: str | None = None) -> Page:
        self.reads.append((created_from, created_to, page_index, page_size))
        found = sorted((i for i in self.items if created_from <= i["created"] <= created_to),
                       key=lambda i: i["created"], reverse=True)
        page = found[page_index * page_size:(page_index + 1) * page_size]
        return Page(page, (page_index + 1) * page_size < len(found))

    def key(self, item: Mapping[str, Any]) -> str:
        return str(item["id"])

    def snapshot(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"state": item["state"]}

    def created_on(self, item: Mapping[str, Any]) -> datetime:
        return item["created"]

    def events(self, item: Mapping[str, Any], previous: Mapping[str, Any] | None,
               observed_at: datetime) -> list[PolledEvent]:
        if previous is not None and previous["state"] == item["state"]:
            return []
        return [PolledEvent(f"{item['id']}:{item['state']}", "thing.changed", observed_at.isoformat(), "{}")]


def run(source: FakeSource, store: InMemoryPollStore, settings: PollSettings, now: datetime = NOW) -> Any:
    queued: list[PolledEvent] = []
    report = Poller(source, store, queued.extend, settings, clock=lambda: now).run()
    return report, [event.event_id for event in queued]


def test_the_first_scan_reads_the_lookback_window_in_whole_seconds_up_to_now() -> None:
    source = FakeSource([{"id": 1, "created": NOW - timedelta(days=3), "state": "a"},
                         {"id": 2, "created": NOW - timedelta(days=40), "state": "a"}])
    report, ids = run(source, InMemoryPollStore(), PollSettings(lookback=timedelta(days=30)))
    assert ids == ["1:a"]
    assert source.reads == [(datetime(2026, 10, 21, 12, tzinfo=UTC), datetime(2026, 11, 20, 12, tzinfo=UTC), 0, 100)]
    assert report.scan_finished and report.lag_seconds == 0.25


def test_after_an_outage_longer_than_the_lookback_the_scan_starts_at_the_watermark() -> None:
    store = InMemoryPollStore()
    source = FakeSource([])
    run(source, store, PollSettings(lookback=timedelta(days=1)))
    later = NOW + timedelta(days=5)
    source.items.append({"id": 3, "created": NOW + timedelta(days=1), "state": "a"})  # during the outage
    _, ids = run(source, store, PollSettings(lookback=timedelta(days=1)), now=later)
    assert ids == ["3:a"]
    assert source.reads[-1][0] == NOW.replace(microsecond=0)


def test_a_run_reads_at_most_max_pages_and_the_next_one_goes_on_where_it_stopped() -> None:
    items = [{"id": n, "created": NOW - timedelta(minutes=n), "state": "a"} for n in range(1, 8)]
    store = InMemoryPollStore()
    source = FakeSource(items)
    settings = PollSettings(page_size=2, max_pages=2)
    first, first_ids = run(source, store, settings)
    second, second_ids = run(source, store, settings, now=NOW + timedelta(minutes=1))
    assert (first.pages_read, first.scan_finished, first_ids) == (2, False, ["1:a", "2:a", "3:a", "4:a"])
    assert (second.pages_read, second.scan_finished, second_ids) == (2, True, ["5:a", "6:a", "7:a"])
    assert {read[1] for read in source.reads} == {NOW.replace(microsecond=0)}  # one scan, one fixed upper bound
    assert first.lag_seconds > 0 and second.lag_seconds == 60.25


def test_an_empty_last_page_finishes_the_scan() -> None:
    items = [{"id": n, "created": NOW - timedelta(minutes=n), "state": "a"} for n in range(1, 3)]
    report, ids = run(FakeSource(items), InMemoryPollStore(), PollSettings(page_size=2))
    assert report.scan_finished and ids == ["1:a", "2:a"]


def test_unchanged_items_are_not_written_again() -> None:
    writes: list[list[str]] = []

    class CountingStore(InMemoryPollStore):
        def save(self, cursor: Any, snapshots: Any, expires_at: Any) -> None:
            writes.append(list(snapshots))
            super().save(cursor, snapshots, expires_at)

    store = CountingStore()
    source = FakeSource([{"id": 1, "created": NOW - timedelta(days=1), "state": "a"}])
    run(source, store, PollSettings())
    assert ["1"] in writes
    writes.clear()
    run(source, store, PollSettings(), now=NOW + timedelta(minutes=1))
    assert writes == [[]]  # only the cursor moved


def test_snapshots_expire_after_the_lookback_plus_retention() -> None:
    store = InMemoryPollStore()
    created = NOW - timedelta(days=2)
    run(FakeSource([{"id": 1, "created": created, "state": "a"}]), store,
        PollSettings(lookback=timedelta(days=30), retention=timedelta(days=2)))
    assert store.expires["1"] == int((created + timedelta(days=32)).timestamp())


def test_a_sweep_without_the_pushed_log_is_refused() -> None:
    with pytest.raises(ValueError, match="webhooks delivered"):
        Poller(FakeSource([]), InMemoryPollStore(), lambda events: None, PollSettings(mode="both"))


class Publisher:
    def __init__(self) -> None:
        self.batches: list[tuple[str, Sequence[OutgoingMessage]]] = []

    def publish_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> None:
        self.batches.append((queue_url, messages))


def test_polled_events_are_queued_like_webhooks_on_every_subscribed_flow_without_a_digest() -> None:
    publisher = Publisher()
    routes = {"order.placed": {"to-streak": "q-streak", "to-books": "q-books"}, "order.refunded": {}}
    queue = QueueingPublisher(source="shop", routes=routes, publisher=publisher, clock=lambda: NOW)
    body = json.dumps({"type": "order.placed", "timestamp": "2026-11-20T09:15:00Z", "data": {"Order": {"Id": 1}}})
    queue([PolledEvent("shop:order:g:placed", "order.placed", "2026-11-20T09:15:00Z", body),
           PolledEvent("shop:order:g:refunded:5", "order.refunded", "2026-11-20T09:15:00Z", body)])

    assert [url for url, _ in publisher.batches] == ["q-streak", "q-books"]
    event = FlowEvent.from_message(publisher.batches[0][1][0].body)
    assert (event.flow, event.event_id, event.source, event.type, event.data) == (
        "to-streak", "shop:order:g:placed", "shop", "order.placed", {"Order": {"Id": 1}})
    assert event.idempotency_key == {"flow": "to-streak", "event_id": "shop:order:g:placed"}


def test_a_run_stops_before_a_page_that_would_not_fit_in_the_time_left() -> None:
    items = [{"id": n, "created": NOW - timedelta(minutes=n), "state": "a"} for n in range(1, 11)]
    ticks = iter([0.0, 30.0, 30.0, 40.0, 40.0, 50.0])  # pages take 30 s, then 10 s
    left = iter([100.0, 55.0])  # after page 1: 100 s (fits 2 x 30); after page 2: 55 s (does not)
    store = InMemoryPollStore()
    poller = Poller(FakeSource(items), store, lambda events: None, PollSettings(page_size=2, max_pages=10),
                    clock=lambda: NOW, time_left=lambda: next(left), monotonic=lambda: next(ticks))
    report = poller.run()
    assert (report.pages_read, report.stopped_for_time, report.scan_finished) == (2, True, False)
    assert store.cursor().page_index == 2  # the next run goes on with the third page


# --------------------------------------------------------------------------- sources read by change time


class ChangedSource:
    """Items {"id", "changed", "version"} listed by change time, oldest first, ties by id, paged by an opaque
    cursor (the last item's position), as a list of changes since a time is."""

    window = "changed"

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.reads: list[tuple[datetime, str | None]] = []

    def read_page(self, created_from: datetime, created_to: datetime, page_index: int, page_size: int,
                  token: str | None = None) -> Page:
        self.reads.append((created_from, token))
        after = tuple(json.loads(token)) if token else None
        found = sorted((i for i in self.items if i["changed"] >= created_from), key=lambda i: (i["changed"], i["id"]))
        found = [i for i in found if after is None or (i["changed"].isoformat(), i["id"]) > after]
        page, more = found[:page_size], len(found) > page_size
        inside = [i for i in page if i["changed"] <= created_to]
        more = more and len(inside) == len(page)
        last = json.dumps([page[-1]["changed"].isoformat(), page[-1]["id"]]) if more else None
        return Page(inside, more, last)

    def key(self, item: Mapping[str, Any]) -> str:
        return str(item["id"])

    def snapshot(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"v": item["version"]}

    def created_on(self, item: Mapping[str, Any]) -> datetime:
        return item["changed"]

    def events(self, item: Mapping[str, Any], previous: Mapping[str, Any] | None,
               observed_at: datetime) -> list[PolledEvent]:
        seen = previous["v"] if previous else 0
        return [PolledEvent(f"{item['id']}:v{v}", "thing.changed", item["changed"].isoformat(), "{}")
                for v in range(seen + 1, item["version"] + 1)]


def test_a_changed_window_source_is_read_from_the_watermark_not_the_lookback() -> None:
    source = ChangedSource([{"id": 1, "changed": NOW - timedelta(hours=1), "version": 1}])
    store = InMemoryPollStore()
    settings = PollSettings(lookback=timedelta(days=1))
    assert run(source, store, settings)[1] == ["1:v1"]
    assert source.reads[0][0] == (NOW - timedelta(days=1)).replace(microsecond=0)  # the first scan: the look-back

    later = NOW + timedelta(minutes=1)
    source.items[0].update(changed=later - timedelta(seconds=5), version=2)
    _, ids = run(source, store, settings, now=later)
    assert ids == ["1:v2"]
    assert source.reads[-1][0] == NOW.replace(microsecond=0)  # the watermark: nothing older changed unseen


def test_a_changed_window_scan_pages_by_the_sources_cursor_across_runs() -> None:
    items = [{"id": n, "changed": NOW - timedelta(minutes=10 - n), "version": 1} for n in range(5)]
    source = ChangedSource(items)
    store = InMemoryPollStore()
    settings = PollSettings(page_size=2, max_pages=1)
    ids = [event_id for _ in range(3) for event_id in run(source, store, settings)[1]]
    assert ids == ["0:v1", "1:v1", "2:v1", "3:v1", "4:v1"]
    assert [token is None for _, token in source.reads] == [True, False, False]
    assert store.cursor().watermark == NOW.replace(microsecond=0)


def test_a_change_after_the_scans_end_is_left_to_the_next_scan() -> None:
    source = ChangedSource([{"id": 1, "changed": NOW - timedelta(minutes=1), "version": 1},
                            {"id": 2, "changed": NOW + timedelta(seconds=30), "version": 3}])
    store = InMemoryPollStore()
    report, ids = run(source, store, PollSettings())
    assert (ids, report.scan_finished) == (["1:v1"], True)
    assert run(source, store, PollSettings(), now=NOW + timedelta(minutes=1))[1] == ["2:v1", "2:v2", "2:v3"]


def test_a_sweep_releases_held_events_of_an_item_that_did_not_change_again() -> None:
    # Given a sweep (grace 10 minutes) of a source read by change time, and an item whose change no webhook
    # delivered: the first run holds it
    source = ChangedSource([{"id": 7, "changed": NOW - timedelta(minutes=2), "version": 1}])
    store, pushed = InMemoryPollStore(), InMemoryPushedLog()
    settings = PollSettings(mode="both", sweep_grace=timedelta(minutes=10))

    def sweep(at: datetime) -> tuple[Any, list[str]]:
        queued: list[PolledEvent] = []
        report = Poller(source, store, queued.extend, settings, pushed=pushed, clock=lambda: at).run()
        return report, [event.event_id for event in queued]

    report, ids = sweep(NOW)
    assert (ids, report.held) == ([], 1)
    # When later runs come after the watermark passed the item's change time (it does not change again)
    assert sweep(NOW + timedelta(minutes=5))[1] == []
    report, ids = sweep(NOW + timedelta(minutes=11))
    # Then the grace ends and it is queued, once, as recovered
    assert (ids, report.recovered) == (["7:v1"], 1)
    assert sweep(NOW + timedelta(minutes=12))[1] == []
    assert store.cursor().held_from is None
    assert source.reads[-1][0] == (NOW + timedelta(minutes=11)).replace(microsecond=0)  # back to the watermark


def test_a_sweep_queues_nothing_the_webhooks_delivered() -> None:
    source = ChangedSource([{"id": 1, "changed": NOW - timedelta(minutes=1), "version": 2}])
    pushed = InMemoryPushedLog()
    pushed.record(["1:v1"])
    store = InMemoryPollStore()
    settings = PollSettings(mode="both", sweep_grace=timedelta(0))
    queued: list[PolledEvent] = []
    report = Poller(source, store, queued.extend, settings, pushed=pushed, clock=lambda: NOW).run()
    assert ([e.event_id for e in queued], report.already_pushed, report.recovered) == (["1:v2"], 1, 1)
