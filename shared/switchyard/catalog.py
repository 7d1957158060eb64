"""The catalog: sources, connections and flows declared in ``config/flows.yaml``.

Read by the CDK app (to build one queue/DLQ/worker/alarm set per flow) and by the local stack, so a
new flow appears in both at once. Validated on load: a typo fails synth, not a deployment.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_PACKAGE = "switchyard.config"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    description: str = ""
    # standard-webhooks: HMAC over id.timestamp.body; shared-token: a token the sender echoes back;
    # intuit-signature: base64 HMAC-SHA256 of the raw body with the app's verifier token (QuickBooks)
    # how events arrive: a webhook (signed, to the HTTP API) or an EventBridge partner bus (Salesforce Event
    # Relay: a rule on the bus puts each event on the flow's queue, no HTTP route and no signing secret)
    delivery: Literal["webhook", "eventbridge"] = "webhook"
    signature: Literal["standard-webhooks", "shared-token", "intuit-signature"] | None = None
    # envelope: {"type", "timestamp", "data"}; object-array: bare objects, event type in the URL (Streak);
    # intuit: QuickBooks notifications (legacy eventNotifications or a CloudEvents array), one event per entity
    format: Literal["envelope", "object-array", "intuit"] = "envelope"
    # what a queued delivery is answered with: 202, unless the sender counts only 200 (Streak retries a 202)
    ack_status: Literal[200, 202] = 202
    events: tuple[str, ...]

    @model_validator(mode="after")
    def _signature_for_webhooks(self) -> SourceConfig:
        if (self.delivery == "webhook") != (self.signature is not None):
            raise ValueError("a webhook source names its signature scheme; an eventbridge source has none")
        return self


System = Literal["streak", "clarity", "quickbooks", "nopcommerce", "salesforce"]


class ConnectionConfig(_Strict):
    system: System
    description: str = ""


class WorkerConfig(_Strict):
    batch_size: int = Field(10, ge=1, le=10)
    timeout_seconds: int = Field(60, ge=3, le=900)
    memory_mb: int = Field(256, ge=128, le=10240)
    max_receive_count: int = Field(5, ge=1, le=1000)
    # the queue trigger gathers records this long before invoking (fewer invocations and traces per order)
    batching_window_seconds: int = Field(0, ge=0, le=300)


class RetryConfig(_Strict):
    attempts: int = Field(3, ge=1, le=10)
    initial_backoff_seconds: float = Field(0.5, ge=0)
    max_backoff_seconds: float = Field(8, ge=0)
    out_of_order_delay_seconds: int = Field(5, ge=0, le=43200)


class StateMachineRetry(_Strict):
    """Step Functions ``Retry`` of one error class: ``interval * backoff_rate**n``, full jitter."""

    interval_seconds: int = Field(ge=1, le=3600)
    max_attempts: int = Field(ge=0, le=99_999_999)  # Step Functions' own limit
    backoff_rate: float = Field(2.0, ge=1.0, le=10.0)
    max_delay_seconds: int = Field(300, ge=1, le=31_622_400)
    jitter: bool = True  # full jitter spreads retries; off where the wait itself is the point (a 429's 60 s)


class StateMachineConfig(_Strict):
    """A flow that runs as a Standard state machine (multi-step, e.g. order-to-cash)."""

    definition: Literal["order-to-cash"]
    timeout_minutes: int = Field(240, ge=1, le=525_600)
    step_timeout_seconds: int = Field(60, ge=3, le=900)
    step_memory_mb: int = Field(256, ge=128, le=10240)
    # 5xx, timeouts, a stale SyncToken
    retry: StateMachineRetry = StateMachineRetry(interval_seconds=2, max_attempts=5, backoff_rate=2.0)
    # the target said 429 (QuickBooks asks for 60 s): wait, apart from the retry budget
    throttled: StateMachineRetry = StateMachineRetry(interval_seconds=60, max_attempts=99, backoff_rate=1.0,
                                                     max_delay_seconds=300, jitter=False)
    # our shared rate limiter had no permit within a few seconds: come back soon, apart from the retry budget
    rate_limited: StateMachineRetry = StateMachineRetry(interval_seconds=5, max_attempts=60, backoff_rate=1.2,
                                                        max_delay_seconds=30)
    # a predecessor is missing (order.paid before the invoice exists)
    out_of_order: StateMachineRetry = StateMachineRetry(interval_seconds=10, max_attempts=8, backoff_rate=2.0,
                                                        max_delay_seconds=600)
    # a connection waits for a reconnect (switchyard.connection_state): every 10 minutes for 14 days (about
    # 10,000 history events, well under an execution's 25,000); the execution's timeout grows by as much
    waiting_for_connection: StateMachineRetry = StateMachineRetry(
        interval_seconds=600, max_attempts=2016, backoff_rate=1.0, max_delay_seconds=600, jitter=False)

    @property
    def timeout_with_waiting_minutes(self) -> int:
        """The execution's timeout: its own budget plus the longest wait for a reconnect."""
        wait = self.waiting_for_connection
        return self.timeout_minutes + -(-wait.interval_seconds * wait.max_attempts // 60)


class TwoWayConfig(_Strict):
    """One direction of a two-way pair of flows (both share one record per synced pair of objects)."""

    reverse: str  # the flow carrying changes the other way
    # a write of this flow whose answer was lost is still recognised by its value when it comes back this long
    echo_window_seconds: int = Field(600, ge=1, le=7 * 24 * 3600)


class FlowConfig(_Strict):
    name: str = ""
    description: str = ""
    source: str
    events: tuple[str, ...]
    target: System
    connection: str
    # connections the flow reads besides its target's (e.g. QuickBooks items for nopCommerce stock)
    uses: tuple[str, ...] = ()
    # the mapping document in config/mappings/; none for a flow whose semantics are fixed (stock levels)
    mapping: str | None = None
    # worker: the queue's Lambda delivers; state-machine: the queue's Lambda starts one execution per event
    runs_as: Literal["worker", "state-machine"] = "worker"
    worker: WorkerConfig = WorkerConfig()
    retry: RetryConfig = RetryConfig()
    state_machine: StateMachineConfig | None = None
    two_way: TwoWayConfig | None = None

    @model_validator(mode="after")
    def _state_machine_when_needed(self) -> FlowConfig:
        if (self.runs_as == "state-machine") != (self.state_machine is not None):
            raise ValueError(f"flow {self.name!r}: state_machine settings go with runs_as: state-machine, only")
        return self

    @property
    def connections(self) -> tuple[str, ...]:
        """Every connection the flow's functions read: its target's first."""
        return (self.connection, *self.uses)

    @property
    def mapping_document(self) -> str:
        if self.mapping is None:
            raise ValueError(f"flow {self.name!r} has no mapping document")
        return self.mapping


class Catalog(_Strict):
    sources: dict[str, SourceConfig]
    connections: dict[str, ConnectionConfig]
    flows: dict[str, FlowConfig]

    @model_validator(mode="before")
    @classmethod
    def _name_flows(cls, data: dict) -> dict:
        for name, flow in (data.get("flows") or {}).items():
            if isinstance(flow, dict):
                flow.setdefault("name", name)
        return data

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        for name, flow in self.flows.items():
            source = self.sources.get(flow.source)
            if source is None:
                raise ValueError(f"flow {name!r}: unknown source {flow.source!r}")
            unknown = set(flow.events) - set(source.events)
            if unknown:
                raise ValueError(f"flow {name!r}: source {flow.source!r} has no events {sorted(unknown)}")
            for connection in flow.connections:
                if connection not in self.connections:
                    raise ValueError(f"flow {name!r}: unknown connection {connection!r}")
            if self.connections[flow.connection].system != flow.target:
                raise ValueError(f"flow {name!r}: connection {flow.connection!r} is not a {flow.target}")
            if flow.mapping is not None and not mapping_path(flow.mapping).is_file():
                raise ValueError(f"flow {name!r}: mapping document {flow.mapping!r} not found")
            if flow.two_way is not None:
                reverse = self.flows.get(flow.two_way.reverse)
                if reverse is None or reverse.two_way is None or reverse.two_way.reverse != name:
                    raise ValueError(f"flow {name!r}: two_way.reverse must name a flow whose two_way.reverse is it")
        return self

    @property
    def webhook_sources(self) -> dict[str, SourceConfig]:
        """The sources that POST to the HTTP API (not those arriving through EventBridge)."""
        return {name: source for name, source in self.sources.items() if source.delivery == "webhook"}

    def flows_for(self, source: str, event_type: str) -> list[FlowConfig]:
        """Flows subscribed to one event type of one source, in declaration order."""
        return [f for f in self.flows.values() if f.source == source and event_type in f.events]


def config_dir() -> Path:
    return Path(str(resources.files(CONFIG_PACKAGE)))


def mapping_path(name: str) -> Path:
    return config_dir() / "mappings" / name


def parse_catalog(text: str) -> Catalog:
    return Catalog.model_validate(yaml.safe_load(text))


@cache
def load_catalog() -> Catalog:
    return parse_catalog((config_dir() / "flows.yaml").read_text())
