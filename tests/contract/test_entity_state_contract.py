"""One contract for EntityState, run against the in-memory fake and the DynamoDB store (on moto).

Keeps the fake honest: every worker/target test that uses InMemoryEntityState relies on it behaving
like DynamoEntityState does in AWS.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from switchyard.entity_state import RETENTION_SECONDS, DynamoEntityState, EntityState

from tests.contract.conftest import KEYS, TABLE

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ENTITY = "nopcommerce-to-streak#1042"


@pytest.fixture
def state(entity_state: EntityState) -> EntityState:
    return entity_state


def test_claim_first_event_accepted(state: EntityState) -> None:
    assert state.claim(ENTITY, T0, "evt_1") is True


def test_claim_newer_event_accepted(state: EntityState) -> None:
    state.claim(ENTITY, T0, "evt_1")

    assert state.claim(ENTITY, T0 + timedelta(microseconds=1), "evt_2") is True
    assert state.claim(ENTITY, T0 + timedelta(hours=1), "evt_3") is True


def test_claim_older_event_rejected(state: EntityState) -> None:
    state.claim(ENTITY, T0, "evt_new")

    assert state.claim(ENTITY, T0 - timedelta(seconds=1), "evt_old") is False


def test_claim_rejected_older_event_leaves_newer_in_place(state: EntityState) -> None:
    # Given a newer event applied and an older one rejected
    state.claim(ENTITY, T0, "evt_new")
    state.claim(ENTITY, T0 - timedelta(hours=1), "evt_old")

    # Then an event between the two is still older than what was applied
    assert state.claim(ENTITY, T0 - timedelta(minutes=30), "evt_mid") is False
    assert state.claim(ENTITY, T0, "evt_new") is True


def test_claim_same_event_again_accepted(state: EntityState) -> None:
    # a retry of a half-applied event must go through
    state.claim(ENTITY, T0, "evt_1")

    assert state.claim(ENTITY, T0, "evt_1") is True


def test_claim_same_time_different_event_accepted(state: EntityState) -> None:
    # an order placed and captured in the same second: the second change is applied, not dropped
    state.claim(ENTITY, T0, "evt_1")

    assert state.claim(ENTITY, T0, "evt_2") is True
    assert state.claim(ENTITY, T0, "evt_1") is True  # and a retry of either still goes through


def test_claim_ranked_same_time_later_in_the_lifecycle_wins_whatever_the_arrival(state: EntityState) -> None:
    # "Complete" (rank 2) and "Processing" (rank 1) in one second, Complete delivered first
    assert state.claim_ranked(ENTITY, T0, "evt_complete", 2) is None

    assert state.claim_ranked(ENTITY, T0, "evt_processing", 1) == "superseded"
    assert state.claim_ranked(ENTITY, T0, "evt_complete", 2) is None  # its retry still goes through
    assert state.claim_ranked(ENTITY, T0, "evt_cancelled", 3) is None  # further along: applied
    assert state.claim_ranked(ENTITY, T0 - timedelta(milliseconds=1), "evt_old", 9) == "stale"
    assert state.claim_ranked(ENTITY, T0 + timedelta(milliseconds=1), "evt_new", 0) is None  # newer wins


def test_claim_ranked_after_an_unranked_claim_of_the_same_time_is_applied(state: EntityState) -> None:
    state.claim(ENTITY, T0, "evt_1")

    assert state.claim_ranked(ENTITY, T0, "evt_2", 0) is None


def test_claim_unranked_clears_the_rank_an_older_claim_left(state: EntityState) -> None:
    # a rank compares changes of one time only: a newer unranked claim must not leave the old rank behind
    later = T0 + timedelta(seconds=1)
    assert state.claim_ranked(ENTITY, T0, "evt_complete", 5) is None
    assert state.claim(ENTITY, later, "evt_edit") is True

    assert state.claim_ranked(ENTITY, later, "evt_processing", 1) is None


def test_claim_same_time_then_older_rejected(state: EntityState) -> None:
    state.claim(ENTITY, T0, "evt_1")
    state.claim(ENTITY, T0, "evt_2")

    assert state.claim(ENTITY, T0 - timedelta(milliseconds=1), "evt_0") is False


def test_claim_same_event_older_time_rejected(state: EntityState) -> None:
    state.claim(ENTITY, T0, "evt_1")
    state.claim(ENTITY, T0 + timedelta(minutes=1), "evt_2")

    assert state.claim(ENTITY, T0, "evt_1") is False


def test_claim_entities_independent(state: EntityState) -> None:
    state.claim(ENTITY, T0, "evt_1")

    assert state.claim("nopcommerce-to-streak#1043", T0 - timedelta(days=1), "evt_2") is True


def test_claim_timezones_normalised(state: EntityState) -> None:
    # Given an event at 09:00Z applied
    state.claim(ENTITY, datetime(2026, 11, 20, 9, 0, tzinfo=UTC), "evt_utc")

    # Then 10:00+02:00 (08:00Z) is older, though its wall-clock reading is later
    plus_two = timezone(timedelta(hours=2))
    assert state.claim(ENTITY, datetime(2026, 11, 20, 10, 0, tzinfo=plus_two), "evt_plus2") is False
    # and 11:30+02:00 (09:30Z) is newer
    assert state.claim(ENTITY, datetime(2026, 11, 20, 11, 30, tzinfo=plus_two), "evt_later") is True


def test_claim_same_instant_in_other_zone_is_same_time(state: EntityState) -> None:
    state.claim(ENTITY, datetime(2026, 11, 20, 9, 0, tzinfo=UTC), "evt_1")
    minus_five = timezone(timedelta(hours=-5))

    assert state.claim(ENTITY, datetime(2026, 11, 20, 4, 0, tzinfo=minus_five), "evt_1") is True
    assert state.claim(ENTITY, datetime(2026, 11, 20, 3, 59, 59, tzinfo=minus_five), "evt_2") is False


def test_is_filtered_unknown_entity_false(state: EntityState) -> None:
    assert state.is_filtered(ENTITY) is False


def test_mark_filtered_then_is_filtered(state: EntityState) -> None:
    state.mark_filtered(ENTITY)

    assert state.is_filtered(ENTITY) is True
    assert state.is_filtered("nopcommerce-to-streak#1043") is False


def test_mark_filtered_keeps_claims_working(state: EntityState) -> None:
    state.claim(ENTITY, T0, "evt_1")
    state.mark_filtered(ENTITY)

    assert state.is_filtered(ENTITY) is True
    assert state.claim(ENTITY, T0 - timedelta(seconds=1), "evt_0") is False
    assert state.claim(ENTITY, T0 + timedelta(seconds=1), "evt_2") is True
    assert state.is_filtered(ENTITY) is True


def test_dynamo_entity_state_items_share_idempotency_table_with_ttl(dynamo_client) -> None:
    state = DynamoEntityState(dynamo_client, TABLE, keys=KEYS, clock=lambda: 1_795_000_000)

    state.claim(ENTITY, T0, "evt_1")

    key = f"state#clarity+streak#entity#{ENTITY}"  # the pair's scope: what the flow's IAM grant names
    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": key}})["Item"]
    assert item["expiration"] == {"N": str(1_795_000_000 + RETENTION_SECONDS)}
    assert item["change_time"] == {"S": "2026-11-20T09:00:00.000000Z"}


def test_links_are_per_namespace_and_overwritten(state: EntityState) -> None:
    state.link("clarity:customer>streak:contact", "C-1", "contact_1")
    state.link("clarity:customer>streak:contact", "C-1", "contact_9")
    assert state.linked("clarity:customer>streak:contact", "C-1") == "contact_9"
    assert state.linked("streak:contact>clarity:customer", "C-1") is None


def test_dynamo_entity_state_every_item_expires_90_days_after_its_write(dynamo_client) -> None:
    # "expiration" is the shared table's TTL attribute (infra/stack.py): without it an item never goes away
    now = 1_795_000_000
    state = DynamoEntityState(dynamo_client, TABLE, keys=KEYS, clock=lambda: now)

    state.claim(ENTITY, T0, "evt_1")
    state.mark_filtered("nopcommerce-to-streak#1043")
    state.link("clarity:customer>streak:contact", "C-1", "contact_1")

    items = dynamo_client.scan(TableName=TABLE)["Items"]
    assert len(items) == 3
    assert [item["expiration"] for item in items] == [{"N": str(now + 90 * 24 * 3600)}] * 3


class RecordingClient:
    """The moto client, with the arguments of every read kept (moto itself is always consistent)."""

    def __init__(self, client) -> None:
        self._client = client
        self.reads: list[dict] = []
        self.exceptions = client.exceptions

    def get_item(self, **kwargs):
        self.reads.append(kwargs)
        return self._client.get_item(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def test_dynamo_entity_state_reads_right_after_a_write_are_strongly_consistent(dynamo_client) -> None:
    # the filtered mark and a link are read by the next event of the pair, often within the same second
    client = RecordingClient(dynamo_client)
    state = DynamoEntityState(client, TABLE, keys=KEYS, clock=lambda: 1_795_000_000)

    state.is_filtered(ENTITY)
    state.linked("clarity:customer>streak:contact", "C-1")

    assert [read.get("ConsistentRead") for read in client.reads] == [True, True]


def test_dynamo_entity_state_change_time_stored_in_utc_whatever_the_machine_zone(dynamo_client, monkeypatch) -> None:
    import time as time_module

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time_module.tzset()
    try:
        state = DynamoEntityState(dynamo_client, TABLE, keys=KEYS, clock=lambda: 1_795_000_000)
        state.claim(ENTITY, datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=1))), "evt_1")
    finally:
        monkeypatch.undo()
        time_module.tzset()

    key = f"state#clarity+streak#entity#{ENTITY}"
    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": key}})["Item"]
    assert item["change_time"] == {"S": "2026-11-20T09:00:00.000000Z"}
