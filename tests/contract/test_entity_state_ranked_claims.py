"""Ranked claims (``claim_ranked``) share the entity's one item with its other claims and its filtered
mark, per entity, in both stores; and the DynamoDB store reads a refusal that carries no old item as stale.

Written for what mutation testing of entity_state.py found unpinned (docs/mutation-testing.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from switchyard.entity_state import STALE, DynamoEntityState, EntityState

from tests.contract.conftest import KEYS, TABLE

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ENTITY = "nopcommerce-to-streak#2042"
OTHER = "nopcommerce-to-streak#2043"


@pytest.fixture
def state(entity_state: EntityState) -> EntityState:
    return entity_state


def test_claim_ranked_entities_independent(state: EntityState) -> None:
    # Given an order's "Complete" applied
    assert state.claim_ranked(ENTITY, T0, "evt_complete", 5) is None

    # Then another order's older, earlier-in-the-lifecycle change is still applied
    assert state.claim_ranked(OTHER, T0 - timedelta(days=1), "evt_pending", 0) is None


def test_claim_ranked_orders_the_entity_with_its_unranked_claims_keeps_its_filtered_mark(state: EntityState) -> None:
    # Given a filtered entity, then a ranked change of it applied
    state.mark_filtered(ENTITY)
    assert state.claim_ranked(ENTITY, T0, "evt_complete", 2) is None

    # Then an unranked change older than it is stale (one item per entity, whichever claim wrote it),
    # and the entity is still filtered
    assert state.claim(ENTITY, T0 - timedelta(seconds=1), "evt_edit") is False
    assert state.is_filtered(ENTITY) is True


def test_dynamo_claim_ranked_writes_the_entity_item_under_the_pair_scope(dynamo_client: Any) -> None:
    state = DynamoEntityState(dynamo_client, TABLE, keys=KEYS, clock=lambda: 1_795_000_000)

    state.claim_ranked(ENTITY, T0, "evt_complete", 2)

    key = f"state#clarity+streak#entity#{ENTITY}"  # the pair's scope: what the flow's IAM grant names
    item = dynamo_client.get_item(TableName=TABLE, Key={"id": {"S": key}})["Item"]
    assert item["change_time"] == {"S": "2026-11-20T09:00:00.000000Z"}
    assert item["rank"] == {"N": "2"}
    assert item["event_id"] == {"S": "evt_complete"}


class RefusingWithoutTheOldItem:
    """Refuses every update as DynamoDB does when the condition fails, but without the old item: the API
    returns it only when ``ReturnValuesOnConditionCheckFailure`` is honoured (an emulator may not)."""

    def __init__(self, client: Any) -> None:
        self.exceptions = client.exceptions

    def update_item(self, **kwargs: Any) -> Any:
        raise self.exceptions.ConditionalCheckFailedException(
            {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}},
            "UpdateItem",
        )


def test_dynamo_claim_ranked_refused_without_the_old_item_is_stale(dynamo_client: Any) -> None:
    state = DynamoEntityState(RefusingWithoutTheOldItem(dynamo_client), TABLE, keys=KEYS)

    assert state.claim_ranked(ENTITY, T0, "evt_processing", 1) == STALE
