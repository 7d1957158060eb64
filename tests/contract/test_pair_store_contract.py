"""One contract for PairStore (the two-way sync's record per pair), in memory and on DynamoDB (moto).

Both flows' workers write one pair's record: a save succeeds only on the version it was read at."""

from __future__ import annotations

import pytest
from switchyard.sync import RETENTION_SECONDS, DynamoPairStore, InMemoryPairStore, PairStore

from tests.contract.conftest import KEYS, TABLE

PAIR = "clarity+streak:customer"
RECORD = {"keys": {"streak": "contact_1"},
          "fields": {"first_name": {"value": "Jane", "time": "2026-11-20T09:00:00.000000Z", "side": "clarity",
                                    "seen": {"clarity": ["Jane", "2026-11-20T09:00:00.000000Z"]},
                                    "writes": {"streak": [["Jane", None, 1795000600.0]]}}}}


@pytest.fixture(params=["in_memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> PairStore:
    if request.param == "in_memory":
        return InMemoryPairStore()
    return DynamoPairStore(request.getfixturevalue("dynamo_client"), TABLE, keys=KEYS, clock=lambda: 1_795_000_000)


def test_load_unknown_pair_empty_at_version_zero(store: PairStore) -> None:
    assert store.load(PAIR, "C-501") == ({}, 0)


def test_save_then_load_exactly_what_was_saved_at_next_version(store: PairStore) -> None:
    assert store.save(PAIR, "C-501", RECORD, 0) is True

    assert store.load(PAIR, "C-501") == (RECORD, 1)
    assert store.load(PAIR, "C-502") == ({}, 0)  # per key
    assert store.load("clarity+streak:order", "C-501") == ({}, 0)  # per pair


def test_save_at_stale_version_refused_and_leaves_record(store: PairStore) -> None:
    store.save(PAIR, "C-501", RECORD, 0)
    store.save(PAIR, "C-501", {**RECORD, "keys": {"streak": "contact_2"}}, 1)

    # a worker that read version 1 (or nothing) loses: it must read again and decide again
    assert store.save(PAIR, "C-501", {"keys": {}}, 1) is False
    assert store.save(PAIR, "C-501", {"keys": {}}, 0) is False
    assert store.load(PAIR, "C-501") == ({**RECORD, "keys": {"streak": "contact_2"}}, 2)


def test_dynamo_pair_items_keyed_and_expiring(dynamo_client) -> None:
    DynamoPairStore(dynamo_client, TABLE, keys=KEYS, clock=lambda: 1_795_000_000).save(PAIR, "C-501", RECORD, 0)

    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": f"state#clarity+streak#pair#{PAIR}#C-501"}})["Item"]
    assert item["expiration"] == {"N": str(1_795_000_000 + RETENTION_SECONDS)}
    assert item["version"] == {"N": "1"}
