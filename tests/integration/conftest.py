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
