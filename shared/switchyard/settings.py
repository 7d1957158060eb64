"""Typed settings of each Lambda, read once per cold start from its environment.

The CDK app writes exactly these variables (an infrastructure test checks it), and the handlers
build these objects through a cached getter. The rest of the library receives them as arguments.
Plain dataclasses rather than pydantic models: importing pydantic alone costs the ingest Lambda
~60 ms of cold start (bench/), and these few fields are simple to check by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar


class SettingsError(ValueError):
    """A function's environment is missing or has a malformed variable."""


def _env(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise SettingsError(f"environment variable {name} is not set")
    return value


def _json_object(environ: Mapping[str, str], name: str) -> dict[str, Any]:
    try:
        value = json.loads(_env(environ, name))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{name} must be a JSON object")
    return value


def _positive_int(environ: Mapping[str, str], name: str) -> int:
    try:
        value = int(_env(environ, name))
    except ValueError:
        raise SettingsError(f"{name} must be an integer") from None
    if value < 1:
        raise SettingsError(f"{name} must be positive")
    return value


class _Settings:
    ENV: ClassVar[dict[str, str]]  # field -> environment variable

    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def env_names(cls) -> set[str]:
        """Every variable the settings read (``OPTIONAL`` ones only when the function needs them)."""
        return set(cls.ENV.values())

    @classmethod
    def required_env_names(cls) -> set[str]:
        return cls.env_names() - cls.OPTIONAL


@dataclass(frozen=True)
class SourceSettings:
    secret_arn: str
    signature: str = "standard-webhooks"  # or shared-token, intuit-signature
    format: str = "envelope"  # or object-array, intuit
    ack_status: int = 202


@dataclass(frozen=True)
class IngestSettings(_Settings):
    """``functions/ingest``: webhook verification and fan-out to flow queues."""

    stage: str
    sources: dict[str, SourceSettings]  # source -> where its signing secrets live
    routes: dict[str, dict[str, dict[str, str]]]  # source -> event type -> flow -> queue URL
    max_body_bytes: int
    # sources also swept by a poller (delivery both): the ids their webhooks queued are recorded in the table
    swept_sources: tuple[str, ...] = ()
    table: str | None = None
    # where every queued delivery is archived for replay (switchyard.archive), and the configuration's digest
    archive_bucket: str | None = None
    config_digest: str = ""

    ENV: ClassVar[dict[str, str]] = {
        "stage": "SWITCHYARD_STAGE",
        "sources": "SWITCHYARD_SOURCES",
        "routes": "SWITCHYARD_ROUTES",
        "max_body_bytes": "SWITCHYARD_MAX_BODY_BYTES",
        "swept_sources": "SWITCHYARD_SWEPT_SOURCES",
        "table": "SWITCHYARD_IDEMPOTENCY_TABLE",
        "archive_bucket": "SWITCHYARD_ARCHIVE_BUCKET",
        "config_digest": "SWITCHYARD_CONFIG_DIGEST",
    }
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"SWITCHYARD_SWEPT_SOURCES", "SWITCHYARD_IDEMPOTENCY_TABLE",
                                                    "SWITCHYARD_ARCHIVE_BUCKET", "SWITCHYARD_CONFIG_DIGEST"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> IngestSettings:
        raw_sources = _json_object(environ, "SWITCHYARD_SOURCES")
        try:
            sources = {name: SourceSettings(**value) for name, value in raw_sources.items()}
        except TypeError as exc:
            raise SettingsError(f"SWITCHYARD_SOURCES: {exc}") from None
        return cls(
            stage=_env(environ, "SWITCHYARD_STAGE"),
            sources=sources,
            routes=_json_object(environ, "SWITCHYARD_ROUTES"),
            max_body_bytes=_positive_int(environ, "SWITCHYARD_MAX_BODY_BYTES"),
            swept_sources=tuple(s for s in (environ.get("SWITCHYARD_SWEPT_SOURCES") or "").split(",") if s),
            table=environ.get("SWITCHYARD_IDEMPOTENCY_TABLE") or None,
            archive_bucket=environ.get("SWITCHYARD_ARCHIVE_BUCKET") or None,
            config_digest=environ.get("SWITCHYARD_CONFIG_DIGEST") or "",
        )


@dataclass(frozen=True)
class WorkerSettings(_Settings):
    """``functions/flow_worker``: one deployed instance per flow. A flow that runs as a state machine
    has ``state_machine_arn``: its worker starts one execution per event instead of delivering."""

    stage: str
    flow: str
    idempotency_table: str
    connection_secret_arn: str  # the target's connection
    connection_secret_arns: dict[str, str]  # every connection the flow uses: name -> secret ARN
    queue_url: str
    dlq_url: str
    max_receive_count: int
    state_machine_arn: str | None = None
    rate_limit_time_scale: float = 1.0  # shrinks a target's shared rate-limit windows (time-scaled local runs)
    audit_retention_days: int = 30  # how long what happened to an order is kept: the stage's log retention

    ENV: ClassVar[dict[str, str]] = {
        "stage": "SWITCHYARD_STAGE",
        "flow": "SWITCHYARD_FLOW",
        "idempotency_table": "SWITCHYARD_IDEMPOTENCY_TABLE",
        "connection_secret_arn": "SWITCHYARD_CONNECTION_SECRET_ARN",
        "connection_secret_arns": "SWITCHYARD_CONNECTION_SECRET_ARNS",
        "queue_url": "SWITCHYARD_QUEUE_URL",
        "dlq_url": "SWITCHYARD_DLQ_URL",
        "max_receive_count": "SWITCHYARD_MAX_RECEIVE_COUNT",
        "state_machine_arn": "SWITCHYARD_STATE_MACHINE_ARN",
        "rate_limit_time_scale": "SWITCHYARD_RATE_LIMIT_TIME_SCALE",
        "audit_retention_days": "SWITCHYARD_AUDIT_RETENTION_DAYS",
    }
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"SWITCHYARD_STATE_MACHINE_ARN", "SWITCHYARD_RATE_LIMIT_TIME_SCALE"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        values: dict[str, Any] = {f.name: _env(environ, cls.ENV[f.name]) for f in fields(cls)
                                  if cls.ENV[f.name] not in cls.OPTIONAL}
        values["max_receive_count"] = _positive_int(environ, "SWITCHYARD_MAX_RECEIVE_COUNT")
        values["connection_secret_arns"] = _string_map(environ, "SWITCHYARD_CONNECTION_SECRET_ARNS")
        values["state_machine_arn"] = environ.get("SWITCHYARD_STATE_MACHINE_ARN") or None
        values["rate_limit_time_scale"] = _time_scale(environ)
        values["audit_retention_days"] = _positive_int(environ, "SWITCHYARD_AUDIT_RETENTION_DAYS")
        return cls(**values)


@dataclass(frozen=True)
class StepSettings(_Settings):
    """``functions/flow_steps``: the task Lambda of a flow's state machine (every step, and its failure
    handler). ``rate_limit_time_scale`` shrinks the target's rate-limit windows (time-scaled local runs)."""

    stage: str
    flow: str
    idempotency_table: str
    connection_secret_arns: dict[str, str]
    dlq_url: str
    rate_limit_time_scale: float = 1.0

    ENV: ClassVar[dict[str, str]] = {
        "stage": "SWITCHYARD_STAGE",
        "flow": "SWITCHYARD_FLOW",
        "idempotency_table": "SWITCHYARD_IDEMPOTENCY_TABLE",
        "connection_secret_arns": "SWITCHYARD_CONNECTION_SECRET_ARNS",
        "dlq_url": "SWITCHYARD_DLQ_URL",
        "rate_limit_time_scale": "SWITCHYARD_RATE_LIMIT_TIME_SCALE",
    }
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"SWITCHYARD_RATE_LIMIT_TIME_SCALE"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StepSettings:
        return cls(
            stage=_env(environ, "SWITCHYARD_STAGE"),
            flow=_env(environ, "SWITCHYARD_FLOW"),
            idempotency_table=_env(environ, "SWITCHYARD_IDEMPOTENCY_TABLE"),
            connection_secret_arns=_string_map(environ, "SWITCHYARD_CONNECTION_SECRET_ARNS"),
            dlq_url=_env(environ, "SWITCHYARD_DLQ_URL"),
            rate_limit_time_scale=_time_scale(environ),
        )


def _time_scale(environ: Mapping[str, str]) -> float:
    try:
        scale = float(environ.get("SWITCHYARD_RATE_LIMIT_TIME_SCALE") or "1")
    except ValueError:
        raise SettingsError("SWITCHYARD_RATE_LIMIT_TIME_SCALE must be a number") from None
    if not scale > 0:
        raise SettingsError("SWITCHYARD_RATE_LIMIT_TIME_SCALE must be positive")
    return scale


def _string_map(environ: Mapping[str, str], name: str) -> dict[str, str]:
    value = _json_object(environ, name)
    if not all(isinstance(v, str) and v for v in value.values()):
        raise SettingsError(f"{name} must map names to non-empty strings")
    return value


@dataclass(frozen=True)
class PollerSettings(_Settings):
    """``functions/poller``: one deployed instance per polled source (``delivery: poll`` or ``both``).

    ``poll`` holds the catalog's ``PollConfig`` fields as JSON (``switchyard.catalog.PollConfig``);
    ``routes`` the source's event type -> flow -> queue URL, as ingest has them."""

    stage: str
    source: str
    delivery: str  # poll or both
    system: str  # of the poll connection: which system's poll source reads it
    connection: str
    connection_secret_arn: str
    table: str
    routes: dict[str, dict[str, str]]
    poll: dict[str, Any]

    ENV: ClassVar[dict[str, str]] = {
        "stage": "SWITCHYARD_STAGE",
        "source": "SWITCHYARD_SOURCE",
        "delivery": "SWITCHYARD_DELIVERY",
        "system": "SWITCHYARD_POLL_SYSTEM",
        "connection": "SWITCHYARD_POLL_CONNECTION",
        "connection_secret_arn": "SWITCHYARD_CONNECTION_SECRET_ARN",
        "table": "SWITCHYARD_IDEMPOTENCY_TABLE",
        "routes": "SWITCHYARD_ROUTES",
        "poll": "SWITCHYARD_POLL",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PollerSettings:
        delivery = _env(environ, "SWITCHYARD_DELIVERY")
        if delivery not in ("poll", "both"):
            raise SettingsError("SWITCHYARD_DELIVERY must be poll or both")
        return cls(
            stage=_env(environ, "SWITCHYARD_STAGE"),
            source=_env(environ, "SWITCHYARD_SOURCE"),
            delivery=delivery,
            system=_env(environ, "SWITCHYARD_POLL_SYSTEM"),
            connection=_env(environ, "SWITCHYARD_POLL_CONNECTION"),
            connection_secret_arn=_env(environ, "SWITCHYARD_CONNECTION_SECRET_ARN"),
            table=_env(environ, "SWITCHYARD_IDEMPOTENCY_TABLE"),
            routes=_json_object(environ, "SWITCHYARD_ROUTES"),
            poll=_json_object(environ, "SWITCHYARD_POLL"),
        )
