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
from switchyard.events import FlowEvent, flow_message
from switchyard.systems.streak.client import StreakClient, StreakConnection
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, StreakSandbox

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "local" / "switchyard_local" / "samples"
FLOW = "nopcommerce-to-streak"
SANDBOX_API_KEY = "sandbox-key"
SANDBOX_TEAM = "team_1"


def streak_document_in_keys(file_name: str = "nopcommerce-to-streak.yaml") -> dict[str, Any]:
    """A shipped Streak mapping document with its names turned into the pipeline copy's keys, and no copy:
    a document as written in keys, whose values nothing checks before a worker meets the pipeline."""
    import yaml
    from switchyard.catalog import mapping_path
    from switchyard.systems.streak.deal_mapping import pipeline_copy
    from switchyard.systems.streak.pipeline_names import resolve_names

    named = yaml.safe_load(mapping_path(file_name).read_text())
    keyed, _names_used = resolve_names(named, pipeline_copy(named["pipeline"]))
    del keyed["pipeline"]
    return keyed


def xdist_group_of(item: pytest.Item) -> str | None:
    """The ``xdist_group`` names of a test, as pytest-xdist joins them (``a_b``), or None."""
    names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
             for mark in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) or None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group again under pytest 9. pytest-xdist 3.8 marks a grouped test by appending
    ``@<group>`` to ``item._nodeid``, but pytest 9 keeps a node's id in ``item._id``, so the suffix never
    reached the scheduler and every grouped test went to any worker: the end-to-end modules ran on both
    workers between unit tests, and each worker stopped and started its shared local stack over and over."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # an older pytest: xdist's own suffix works there
        return
    for item in items:
        group = xdist_group_of(item)
        if group and isinstance(getattr(item, "_id", None), NodeId) and not item.nodeid.endswith(f"@{group}"):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")


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


# --- Clarity ⇄ Streak two-way sync ------------------------------------------------------------------
# Fixtures for the Clarity sandbox and client, and for events of either side built through the real
# message path (Clarity: the envelope as Clarity sends it; Streak: ingest's object-array split).

CLARITY_BASE_URL = "http://clarity.test"
CLARITY_API_KEY = "clarity-key"
CLARITY_CLIENT_ID = "switchyard"
CLARITY_CLIENT_SECRET = "clarity-secret"
CLARITY_START = 1_795_000_000.0  # 2026-11-16T08:26:40Z
STREAK_WEBHOOK_TOKEN = "streak-hook-token"


class FakeClock:
    """A settable clock: ``clock()`` is the time, ``advance(s)`` moves it on."""

    def __init__(self, now: float = CLARITY_START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingTransport(httpx.BaseTransport):
    """Wraps a transport; keeps every request sent (method, path, headers, body) in ``sent``.
    ``before`` (optional) runs ahead of each request, e.g. to simulate a concurrent edit."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []
        self.before: Callable[[httpx.Request], None] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        if self.before is not None:
            self.before(request)
        return self.inner.handle_request(request)

    def calls(self, method: str | None = None) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self.sent if method is None or r.method == method]


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clarity_sandbox(fake_clock: FakeClock) -> Any:
    """A fresh Clarity sandbox on ``fake_clock``; no webhook URL, so emitted events are kept in
    ``outbox_undelivered`` (read them with ``clarity_emitted``)."""
    from switchyard_local.sandboxes.clarity import ClaritySandbox

    return ClaritySandbox(api_key=CLARITY_API_KEY, client_id=CLARITY_CLIENT_ID,
                          client_secret=CLARITY_CLIENT_SECRET, clock=fake_clock)


@pytest.fixture
def clarity_transport(clarity_sandbox: Any) -> RecordingTransport:
    """In-process transport to ``clarity_sandbox`` that records what was sent."""
    return RecordingTransport(httpx.WSGITransport(app=clarity_sandbox.wsgi_app))


@pytest.fixture
def clarity_client_for(clarity_transport: RecordingTransport) -> Iterator[Callable[..., Any]]:
    """``build(**secret)`` -> a ClarityClient on ``clarity_transport`` (base_url filled in). The
    process-wide OAuth2 token cache is cleared around the test, so no token leaks between tests."""
    import httpx_auth
    from switchyard.systems.clarity.client import ClarityClient, ClarityConnection

    clients: list[Any] = []

    def build(**secret: Any) -> Any:
        client = ClarityClient(ClarityConnection.from_secret({"base_url": CLARITY_BASE_URL, **secret}),
                               transport=clarity_transport)
        clients.append(client)
        return client

    httpx_auth.OAuth2.token_cache.clear()
    yield build
    for client in clients:
        client.close()
    httpx_auth.OAuth2.token_cache.clear()


@pytest.fixture
def clarity_client(clarity_client_for: Callable[..., Any]) -> Any:
    """A ClarityClient with the sandbox's API key."""
    return clarity_client_for(api_key=CLARITY_API_KEY)


@pytest.fixture
def flow_event() -> Callable[..., FlowEvent]:
    """``build(flow, source, document, *, event_id, timestamp)``: a FlowEvent from a webhook
    envelope ``{"type", "timestamp", "data"}`` through the real queue message path."""
    counter = iter(range(1, 1_000_000))

    def build(flow: str, source: str, document: dict[str, Any], *, event_id: str | None = None,
              timestamp: str | None = None) -> FlowEvent:
        message = flow_message(flow=flow, event_id=event_id or f"msg_{source}_{next(counter)}", source=source,
                               event_type=document["type"], timestamp=timestamp or document["timestamp"],
                               received_at="2026-11-20T12:00:00+00:00", body=json.dumps(document, default=str))
        return FlowEvent.from_message(message)

    return build


@pytest.fixture
def clarity_event(sample: Callable[..., dict[str, Any]],
                  flow_event: Callable[..., FlowEvent]) -> Callable[..., FlowEvent]:
    """``build(sample_name_or_document, *, flow, event_id, timestamp, data)``: a Clarity event."""

    def build(name: str | dict[str, Any], *, flow: str = "clarity-to-streak", event_id: str | None = None,
              timestamp: str | None = None, data: dict[str, Any] | None = None) -> FlowEvent:
        document = sample(name) if isinstance(name, str) else json.loads(json.dumps(name))
        if data is not None:
            document["data"] = data
        if timestamp is not None:
            document["timestamp"] = timestamp
        return flow_event(flow, "clarity", document, event_id=event_id or (
            f"msg_{name}" if isinstance(name, str) else None))

    return build


@pytest.fixture
def clarity_emitted(clarity_sandbox: Any, flow_event: Callable[..., FlowEvent]) -> Callable[..., list[FlowEvent]]:
    """``emitted(flow=...)``: every webhook the Clarity sandbox has emitted so far, as FlowEvents
    (event id = ``webhook-id``, body = the envelope exactly as Clarity sends it)."""

    def emitted(flow: str = "clarity-to-streak") -> list[FlowEvent]:
        return [flow_event(flow, "clarity", json.loads(event.body), event_id=event.event_id)
                for event in clarity_sandbox.outbox_undelivered]

    return emitted


class _CapturingPublisher:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        self.messages += [m.body for m in messages]


@pytest.fixture
def streak_events() -> Callable[..., list[FlowEvent]]:
    """``build(event_type, objects, *, flow)``: Streak's delivery of ``objects`` (bare boxes or contacts)
    accepted by the real IngestService (object-array format, shared token) and read back by the flow."""
    from switchyard.ingest import IngestService, WebhookRequest
    from switchyard.signatures import SharedTokenAuthenticator
    from switchyard.systems.streak.webhooks import TOKEN_HEADER

    authenticator = SharedTokenAuthenticator([STREAK_WEBHOOK_TOKEN], header=TOKEN_HEADER)

    def build(event_type: str, objects: list[dict[str, Any]], *, flow: str = "streak-to-clarity") -> list[FlowEvent]:
        publisher = _CapturingPublisher()
        service = IngestService(
            routes={"streak": {event_type: {flow: f"https://sqs.test/q/{flow}"}}},
            authenticator_for=lambda _source: authenticator, publisher=publisher, max_body_bytes=256 * 1024,
            formats={"streak": "object-array"}, ack_statuses={"streak": 200},
        )
        service.accept(WebhookRequest(source="streak", headers={"x-streak-webhook-token": STREAK_WEBHOOK_TOKEN},
                                      body=json.dumps(objects).encode(), query={"event": event_type}))
        return [FlowEvent.from_message(message) for message in publisher.messages]

    return build
