"""Shared fixtures: sample webhooks, a signing secret, and a fresh Streak sandbox with a client."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from switchyard.connectors.streak import StreakClient, StreakConnection
from switchyard.events import FlowEvent, flow_message
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, StreakSandbox

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "local" / "switchyard_local" / "samples"
FLOW = "nopcommerce-to-streak"
SANDBOX_API_KEY = "sandbox-key"
SANDBOX_TEAM = "team_1"


def sample_names() -> list[str]:
    """File stems of every sample webhook body (``nop_order_b2b``, ...)."""
    return sorted(path.stem for path in SAMPLES_DIR.glob("*.json"))


@pytest.fixture(scope="session")
def sample_text() -> Callable[[str], str]:
    """The raw text of one sample body, by stem."""

    def read(name: str) -> str:
        return (SAMPLES_DIR / f"{name}.json").read_text()

    return read


@pytest.fixture(scope="session")
def sample(sample_text: Callable[[str], str]) -> Callable[..., dict[str, Any]]:
    """A freshly decoded sample body (a new object each call, so tests may change it)."""

    def load(name: str, *, decimals: bool = False) -> dict[str, Any]:
        return json.loads(sample_text(name), parse_float=Decimal if decimals else float)

    return load


@pytest.fixture
def make_event(sample: Callable[..., dict[str, Any]]) -> Callable[..., FlowEvent]:
    """A FlowEvent as the worker sees it, built from a sample through the real queue message path."""

    def build(name: str, *, event_id: str | None = None, timestamp: str | None = None,
              data: dict[str, Any] | None = None) -> FlowEvent:
        document = sample(name)
        if data is not None:
            document["data"] = data
        message = flow_message(
            flow=FLOW,
            event_id=event_id or f"msg_{name}",
            source="nopcommerce",
            event_type=document["type"],
            timestamp=timestamp or document["timestamp"],
            received_at="2026-11-20T12:00:00+00:00",
            body=json.dumps(document, default=str),
        )
        return FlowEvent.from_message(message)

    return build


@pytest.fixture(scope="session")
def signing_secret() -> str:
    return "whsec_" + base64.b64encode(b"switchyard-test-signing-key-0001").decode()


@pytest.fixture
def sandbox() -> StreakSandbox:
    """A fresh, empty Streak sandbox with the demo pipeline (not serving on a socket)."""
    return StreakSandbox(api_key=SANDBOX_API_KEY, team_key=SANDBOX_TEAM, pipeline=DEMO_PIPELINE)


@pytest.fixture
def streak_connection() -> StreakConnection:
    return StreakConnection(base_url="http://streak.test", api_key=SANDBOX_API_KEY, team_key=SANDBOX_TEAM,
                            pipeline_key=DEMO_PIPELINE.key)


@pytest.fixture
def streak_client(sandbox: StreakSandbox, streak_connection: StreakConnection) -> Iterator[StreakClient]:
    """A StreakClient talking to ``sandbox`` in-process (no socket)."""
    client = StreakClient(streak_connection, transport=httpx.WSGITransport(app=sandbox.wsgi_app))
    yield client
    client.close()
