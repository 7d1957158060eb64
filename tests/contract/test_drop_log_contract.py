"""One contract for DropLog, run against the in-memory fake and the DynamoDB store (on moto)."""

from __future__ import annotations

import pytest
from switchyard.drops import DROP_RETENTION_SECONDS, Drop, DropLog, DynamoDropLog, InMemoryDropLog

from tests.contract.conftest import TABLE

NOW = 1_795_000_000


@pytest.fixture(params=["in_memory", "dynamodb"])
def drops(request: pytest.FixtureRequest) -> DropLog:
    if request.param == "in_memory":
        return InMemoryDropLog()
    return DynamoDropLog(request.getfixturevalue("dynamo_client"), TABLE, clock=lambda: NOW)


def drop(flow: str, event_id: str, reason: str = "stale", at: float = NOW) -> Drop:
    return Drop(flow=flow, event_id=event_id, event_type="order.status_changed", reason=reason, dropped_at=at,
                change_time="2026-11-20T09:00:00+00:00", detail={"order_key": "1042"})


def test_drops_listed_per_flow_oldest_first_with_reason_and_detail(drops: DropLog) -> None:
    drops.record(drop("clarity-to-streak", "evt_2", "not_master", at=NOW + 5))
    drops.record(drop("clarity-to-streak", "evt_1", at=NOW))
    drops.record(drop("streak-to-clarity", "evt_3"))

    listed = drops.list("clarity-to-streak")

    assert [(d.event_id, d.reason) for d in listed] == [("evt_1", "stale"), ("evt_2", "not_master")]
    assert listed[0] == drop("clarity-to-streak", "evt_1")
    assert drops.list("nopcommerce-to-streak") == []


def test_drop_recorded_twice_for_one_event_listed_once(drops: DropLog) -> None:
    drops.record(drop("clarity-to-streak", "evt_1"))
    drops.record(drop("clarity-to-streak", "evt_1"))  # a redelivery dropped again

    assert len(drops.list("clarity-to-streak")) == 1


def test_dynamo_drop_log_items_expire(dynamo_client) -> None:
    DynamoDropLog(dynamo_client, TABLE, clock=lambda: NOW).record(drop("f", "evt_1"))

    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": "drop#f#evt_1"}})["Item"]
    assert item["expiration"] == {"N": str(NOW + DROP_RETENTION_SECONDS)}
