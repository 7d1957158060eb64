"""EntityState.link_is_current, on the in-memory fake and the DynamoDB store (on moto): a link that comes
back with every order is read, and written again only when it changed or is getting old."""

from __future__ import annotations

import pytest
from switchyard.entity_state import RETENTION_SECONDS, DynamoEntityState, EntityState

from tests.contract.conftest import KEYS, TABLE

LINKS = "clarity:customer>streak:contact"


@pytest.fixture
def state(entity_state: EntityState) -> EntityState:
    return entity_state


def test_a_link_naming_the_same_key_is_current(state: EntityState) -> None:
    state.link(LINKS, "C-501", "contact_1")
    assert state.link_is_current(LINKS, "C-501", "contact_1") is True


def test_a_link_naming_another_key_or_none_is_not_current(state: EntityState) -> None:
    assert state.link_is_current(LINKS, "C-501", "contact_1") is False
    state.link(LINKS, "C-501", "contact_9")
    assert state.link_is_current(LINKS, "C-501", "contact_1") is False


def test_a_link_past_half_its_retention_is_not_current(dynamo_client) -> None:
    # Given a link written now
    now = [1_795_000_000.0]
    state = DynamoEntityState(dynamo_client, TABLE, keys=KEYS, clock=lambda: now[0])
    state.link(LINKS, "C-501", "contact_1")

    # Then it stays current up to half its retention, and past that it is written again (its expiry renewed)
    now[0] += RETENTION_SECONDS / 2
    assert state.link_is_current(LINKS, "C-501", "contact_1") is True
    now[0] += 1
    assert state.link_is_current(LINKS, "C-501", "contact_1") is False
    state.link(LINKS, "C-501", "contact_1")
    assert state.link_is_current(LINKS, "C-501", "contact_1") is True
