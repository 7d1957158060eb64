"""Fakes of Switchyard's own stores, shared by the integration tests (their contract tests in
tests/contract keep them honest against DynamoDB)."""

from __future__ import annotations

import pytest
from switchyard.echoes import InMemoryEchoLedger
from switchyard.entity_state import InMemoryEntityState


@pytest.fixture
def state() -> InMemoryEntityState:
    return InMemoryEntityState()


@pytest.fixture
def echoes() -> InMemoryEchoLedger:
    return InMemoryEchoLedger()


@pytest.fixture
def pair_store():
    from switchyard.sync import InMemoryPairStore

    return InMemoryPairStore()


@pytest.fixture
def pairs(clarity_client, streak_client, state: InMemoryEntityState, pair_store, echoes: InMemoryEchoLedger,
          fake_clock):
    """Clarity ⇄ Streak pairs as both flows' targets share them (one record per synced pair)."""
    from switchyard.pairs.clarity_streak import ClarityStreakPairs
    from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping
    from switchyard.systems.streak.deal_mapping import load_deal_mapping

    return ClarityStreakPairs(load_deal_mapping("clarity-to-streak.yaml"),
                              load_clarity_sync_mapping("streak-to-clarity.yaml"), clarity_client, streak_client,
                              state, pair_store, echoes, echo_window_seconds=600, clock=fake_clock)
