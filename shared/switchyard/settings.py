"""Typed settings of each Lambda, read once per cold start from its environment.

The CDK app writes exactly these variables (an infrastructure test checks it), and the handlers
build these models through a cached getter. The rest of the library receives them as arguments.
Aliases are the environment variable names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    stage: str = Field(alias="SWITCHYARD_STAGE")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> _Settings:
        return cls.model_validate(dict(environ))

    @classmethod
    def env_names(cls) -> set[str]:
        return {f.alias for f in cls.model_fields.values() if f.alias}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class SourceSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    secret_arn: str
    signature: str = "standard-webhooks"


class IngestSettings(_Settings):
    """``functions/ingest``: webhook verification and fan-out to flow queues."""

    # source -> where its signing secrets live
    sources: dict[str, SourceSettings] = Field(alias="SWITCHYARD_SOURCES")
    # source -> event type -> flow name -> queue URL
    routes: dict[str, dict[str, dict[str, str]]] = Field(alias="SWITCHYARD_ROUTES")
    max_body_bytes: int = Field(alias="SWITCHYARD_MAX_BODY_BYTES", ge=1024)

    _parse_json = field_validator("sources", "routes", mode="before")(_json)


class WorkerSettings(_Settings):
    """``functions/flow_worker``: one deployed instance per flow."""

    flow: str = Field(alias="SWITCHYARD_FLOW")
    idempotency_table: str = Field(alias="SWITCHYARD_IDEMPOTENCY_TABLE")
    connection_secret_arn: str = Field(alias="SWITCHYARD_CONNECTION_SECRET_ARN")
    queue_url: str = Field(alias="SWITCHYARD_QUEUE_URL")
    dlq_url: str = Field(alias="SWITCHYARD_DLQ_URL")
    max_receive_count: int = Field(alias="SWITCHYARD_MAX_RECEIVE_COUNT", ge=1)
