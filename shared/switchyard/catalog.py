"""The catalog: sources, connections and flows declared in ``config/flows.yaml``.

Read by the CDK app (to build one queue/DLQ/worker/alarm set per flow) and by the local stack, so a
new flow appears in both at once. Validated on load: a typo fails synth, not a deployment.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

# a flow's state machine is declared in its own module (the declaration language); re-exported here
from switchyard.machine_declaration import StateMachineConfig
from switchyard.machine_declaration import StateMachineRetry as StateMachineRetry

CONFIG_PACKAGE = "switchyard.config"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PollConfig(_Strict):
    """How a source is polled (``switchyard.polling``): through which connection, how much per run."""

    connection: str  # whose client reads the source (a shop's API connection)
    page_size: int = Field(100, ge=1, le=500)
    max_pages: int = Field(10, ge=1, le=100)  # per run: a run ends well inside the function's timeout
    lookback_days: int = Field(30, ge=1, le=365)  # how long an order's status is still watched
    start: date | None = None  # the first scan reads orders created since (a backlog catches up over runs)
    sweep_grace_minutes: int = Field(10, ge=0, le=24 * 60)  # delivery both: how long a webhook may still come
    timeout_seconds: int = Field(120, ge=10, le=900)
    memory_mb: int = Field(256, ge=128, le=10240)


class SourceConfig(_Strict):
    """A system sending webhooks; the source is named after its system (``switchyard.registry``)."""

    description: str = ""
    # push: signed webhooks only; poll: the poller is the source; both: webhooks, and the poll sweeps for
    # what they missed (the same event ids on both paths); eventbridge: an EventBridge partner bus (a CRM's
    # Event Relay: a rule on the bus puts each event on the flow's queue, no HTTP route, no signing secret)
    delivery: Literal["push", "poll", "both", "eventbridge"] = "push"
    poll: PollConfig | None = None
    # standard-webhooks (HMAC over id.timestamp.body), or a scheme the system registers; none for eventbridge
    signature: str | None = None
    # envelope: one {"type", "timestamp", "data"}; another: a format the system registers, split by it
    format: str = "envelope"
    # what a queued delivery is answered with: 202, unless the sender counts only 200 (some retry a 202)
    ack_status: Literal[200, 202] = 202
    events: tuple[str, ...]
    # dotted paths in an event's data that name the order (or other entity) it is about, as operators know it:
    # the first present is shown, any matches (`switchyard dlq list --order 1042`)
    order_ref: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _poll_when_polled(self) -> SourceConfig:
        if (self.delivery in ("poll", "both")) != (self.poll is not None):
            raise ValueError("poll settings go with delivery: poll or both, only")
        return self

    @model_validator(mode="after")
    def _signature_for_webhooks(self) -> SourceConfig:
        if (self.delivery != "eventbridge") != (self.signature is not None):
            raise ValueError("a webhook source names its signature scheme; an eventbridge source has none")
        return self


class ConnectionConfig(_Strict):
    system: str  # a registered system (switchyard.registry)
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
    target: str  # a registered system
    connection: str
    # connections the flow reads besides its target's (e.g. its source system's, to read or write back)
    uses: tuple[str, ...] = ()
    # the mapping document in config/mappings/ (every shipped flow has one)
    mapping: str | None = None
    # worker: the queue's Lambda delivers; state-machine: the queue's Lambda starts one execution per event
    runs_as: Literal["worker", "state-machine"] = "worker"
    worker: WorkerConfig = WorkerConfig()
    retry: RetryConfig = RetryConfig()
    state_machine: StateMachineConfig | None = None
    two_way: TwoWayConfig | None = None
    # state-machine flows whose waits this flow's events complete, fail or cancel (a shipment webhook ending
    # another flow's wait for the shipment): its delivering function may reach their waits (switchyard.waits)
    completes_waits_of: tuple[str, ...] = ()

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
    def _check_systems(self) -> Catalog:
        from switchyard.registry import RegistryError, signature_schemes, system, webhook
        from switchyard.signatures import CORE_SCHEMES

        schemes = signature_schemes(CORE_SCHEMES)
        try:
            for name, source in self.webhook_sources.items():
                if source.signature not in schemes:
                    raise ValueError(f"source {name!r}: unknown signature {source.signature!r} "
                                     f"(known: {', '.join(sorted(schemes))})")
                # a format of its own is split by the source's system (the source is named after it)
                if source.format != "envelope" and source.format not in webhook(name).formats:
                    raise ValueError(f"source {name!r}: its system splits no format {source.format!r}")
            for connection in self.connections.values():
                system(connection.system)
        except RegistryError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        for name, polled in self.polled_sources().items():
            assert polled.poll is not None
            if polled.poll.connection not in self.connections:
                raise ValueError(f"source {name!r}: unknown poll connection {polled.poll.connection!r}")
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
            for waiting in flow.completes_waits_of:
                other = self.flows.get(waiting)
                if other is None or other.state_machine is None or not other.state_machine.waits:
                    raise ValueError(f"flow {name!r}: completes_waits_of {waiting!r}, which is no flow that waits")
            if flow.two_way is not None:
                reverse = self.flows.get(flow.two_way.reverse)
                if reverse is None or reverse.two_way is None or reverse.two_way.reverse != name:
                    raise ValueError(f"flow {name!r}: two_way.reverse must name a flow whose two_way.reverse is it")
        return self

    def polled_sources(self) -> dict[str, SourceConfig]:
        """Sources read by a poller (delivery poll or both)."""
        return {name: source for name, source in self.sources.items() if source.poll is not None}

    @property
    def webhook_sources(self) -> dict[str, SourceConfig]:
        """The sources that POST to the HTTP API (not those arriving through EventBridge)."""
        return {name: source for name, source in self.sources.items() if source.delivery != "eventbridge"}

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
