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
    # standard-webhooks: HMAC over id.timestamp.body; shared-token: a token the sender echoes back
    signature: Literal["standard-webhooks", "shared-token"]
    # envelope: {"type", "timestamp", "data"}; object-array: bare objects, event type in the URL (Streak)
    format: Literal["envelope", "object-array"] = "envelope"
    # what a queued delivery is answered with: 202, unless the sender counts only 200 (Streak retries a 202)
    ack_status: Literal[200, 202] = 202
    events: tuple[str, ...]


class ConnectionConfig(_Strict):
    system: Literal["streak", "clarity"]
    description: str = ""


class WorkerConfig(_Strict):
    batch_size: int = Field(10, ge=1, le=10)
    timeout_seconds: int = Field(60, ge=3, le=900)
    memory_mb: int = Field(256, ge=128, le=10240)
    max_receive_count: int = Field(5, ge=1, le=1000)


class RetryConfig(_Strict):
    attempts: int = Field(3, ge=1, le=10)
    initial_backoff_seconds: float = Field(0.5, ge=0)
    max_backoff_seconds: float = Field(8, ge=0)
    out_of_order_delay_seconds: int = Field(5, ge=0, le=43200)


class FlowConfig(_Strict):
    name: str = ""
    description: str = ""
    source: str
    events: tuple[str, ...]
    target: Literal["streak", "clarity"]
    connection: str
    mapping: str
    runs_as: Literal["worker"] = "worker"
    worker: WorkerConfig = WorkerConfig()
    retry: RetryConfig = RetryConfig()


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
            if flow.connection not in self.connections:
                raise ValueError(f"flow {name!r}: unknown connection {flow.connection!r}")
            if self.connections[flow.connection].system != flow.target:
                raise ValueError(f"flow {name!r}: connection {flow.connection!r} is not a {flow.target}")
            if not mapping_path(flow.mapping).is_file():
                raise ValueError(f"flow {name!r}: mapping document {flow.mapping!r} not found")
        return self

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
