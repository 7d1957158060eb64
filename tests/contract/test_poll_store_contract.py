"""One contract for the poll store and the pushed-event log, against the in-memory fakes and DynamoDB (moto)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from switchyard.polling import (
    DynamoPollStore,
    DynamoPushedLog,
    InMemoryPollStore,
    InMemoryPushedLog,
    PolledEvent,
    PollStore,
    PushedLog,
    ScanCursor,
    StoredSnapshot,
)
from switchyard.table_keys import PollKeys

from tests.contract.conftest import TABLE

KEYS = PollKeys(connection="nopcommerce", source="nopcommerce")
NOW = 1_795_000_000


@pytest.fixture(params=["in_memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> PollStore:
    if request.param == "in_memory":
        return InMemoryPollStore()
    return DynamoPollStore(request.getfixturevalue("dynamo_client"), TABLE, keys=KEYS)


@pytest.fixture(params=["in_memory", "dynamodb"])
def pushed(request: pytest.FixtureRequest) -> PushedLog:
    if request.param == "in_memory":
        return InMemoryPushedLog()
    return DynamoPushedLog(request.getfixturevalue("dynamo_client"), TABLE, source="nopcommerce",
                           clock=lambda: NOW)


def test_a_fresh_store_has_no_scan_and_no_snapshots(store: PollStore) -> None:
    assert store.cursor() == ScanCursor()
    assert store.snapshots(["1", "2"]) == {}


def test_cursor_and_snapshots_with_held_events_read_back_as_saved(store: PollStore) -> None:
    held = PolledEvent("nopcommerce:order:g:placed", "order.placed", "2026-11-20T09:15:00Z", '{"type":"x"}')
    cursor = ScanCursor(watermark=datetime(2026, 11, 1, tzinfo=UTC), scan_from=datetime(2026, 10, 1, tzinfo=UTC),
                        scan_to=datetime(2026, 11, 20, tzinfo=UTC), page_index=3)
    snapshots = {str(n): StoredSnapshot({"o": 10, "p": 30, "s": 20, "r": "0"}) for n in range(130)}
    snapshots["7"] = StoredSnapshot({"o": 20}, (held,), {held.event_id: "2026-11-20T09:20:00+00:00"})

    store.save(cursor, snapshots, {key: NOW for key in snapshots})

    assert store.cursor() == cursor
    found = store.snapshots([str(n) for n in range(135)])  # some missing
    assert found == snapshots


def test_pushed_ids_are_found_and_others_are_not(pushed: PushedLog) -> None:
    pushed.record(["nopcommerce:order:a:placed", "nopcommerce:order:a:paid"])
    ids = [f"nopcommerce:order:x{n}:placed" for n in range(120)] + ["nopcommerce:order:a:paid"]
    assert pushed.pushed(ids) == {"nopcommerce:order:a:paid"}
    assert pushed.pushed([]) == set()


def test_dynamo_snapshots_expire_and_live_under_the_connections_poll_prefix(dynamo_client: object) -> None:
    store = DynamoPollStore(dynamo_client, TABLE, keys=KEYS)
    store.save(ScanCursor(), {"42": StoredSnapshot({"o": 40})}, {"42": NOW})
    items = dynamo_client.scan(TableName=TABLE)["Items"]  # type: ignore[attr-defined]
    assert sorted(item["id"]["S"] for item in items) == ["poll#nopcommerce#cursor", "poll#nopcommerce#item#42"]
    assert next(i for i in items if i["id"]["S"].endswith("#42"))["expiration"] == {"N": str(NOW)}
