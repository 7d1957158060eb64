"""Typed, validated settings of one deployment stage, built from CDK context (``cdk.json``).

``cdk.json`` holds ``switchyard:stages`` (one object per stage) and ``switchyard:bundle_dependencies``.
A typo or an out-of-range value fails synth with the stage and field named, not a deployment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from switchyard.catalog import Catalog, FlowConfig

STAGES_CONTEXT = "switchyard:stages"
BUNDLE_DEPENDENCIES_CONTEXT = "switchyard:bundle_dependencies"

# CloudWatch Logs accepts only these retention periods.
_RETENTION: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

# Powertools log level name -> Lambda advanced logging control (kept equal so neither filters the other).
_LAMBDA_LOG_LEVEL = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
}


class SettingsError(ValueError):
    """The CDK context does not describe valid stages."""


class AlarmThresholds(BaseModel):
    """When each alarm fires, per stage (``alarm_thresholds`` under a stage in ``cdk.json``). Counts are per
    5-minute period unless named otherwise; the defaults page on the first occurrence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dead_letters: int = Field(1, ge=1)  # messages waiting in a flow's DLQ (1-minute maximum)
    oldest_message_age_minutes: int = Field(15, ge=1, le=20_160)  # a flow queue's oldest message
    worker_errors: int = Field(1, ge=1)
    worker_throttles: int = Field(1, ge=1)
    executions_failed: int = Field(1, ge=1)  # failed, and timed out, each
    ingest_5xx: int = Field(1, ge=1)
    ingest_errors: int = Field(1, ge=1)
    signature_rejected: int = Field(20, ge=1)
    table_throttle_events: int = Field(1, ge=1)  # reads, and writes, each
    poll_failures: int = Field(3, ge=1)  # failed poller runs in 5 minutes (one a minute: three in a row)
    poll_lag_minutes: int = Field(15, ge=1, le=1440)  # newest creation time every order before it was seen
    poll_recovered: int = Field(1, ge=1)  # events the sweep queued that the webhooks had missed
    archive_failed: int = Field(1, ge=1)  # accepted deliveries ingest could not archive (queued all the same)


class StageSettings(BaseModel):
    """One stage (``dev``, ``qa``, ``prod``) as declared under ``switchyard:stages`` in ``cdk.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,15}$")
    # Alarm notifications by email (optional: the SNS topic is an output either way).
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    log_retention_days: int = 30
    # how long every accepted webhook is kept in the archive for replay (S3 lifecycle rule)
    archive_retention_days: int = Field(90, ge=1, le=3650)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # X-Ray: "active" traces every Lambda request at Switchyard's rates (Lambda's sampling, one request a
    # second plus 5 %, cannot be changed); "pass_through" traces only requests that arrive sampled.
    tracing: Literal["active", "pass_through"] = "active"
    # Step Functions execution logs: ALL logs every state transition, ERROR only failures.
    state_machine_log_level: Literal["ALL", "ERROR", "FATAL", "OFF"] = "ALL"
    # Flow names from the catalog, or "all".
    enabled_flows: Literal["all"] | tuple[str, ...] = "all"
    # What happens to stateful resources (table, queues, secrets, log groups, key) on stack deletion.
    removal_policy: Literal["destroy", "retain"] = "retain"
    ingest_memory_mb: int = Field(256, ge=128, le=10240)
    # HTTP API integrations time out after 30 s; the ingest function must answer before that.
    ingest_timeout_seconds: int = Field(10, ge=3, le=29)
    api_throttle_rate_limit: float = Field(50, gt=0)
    api_throttle_burst_limit: int = Field(100, ge=1)
    termination_protection: bool = False
    # how often each polled source (delivery poll or both, flows.yaml) is read: EventBridge Scheduler rate
    poll_rate_minutes: int = Field(1, ge=1, le=1440)
    alarm_thresholds: AlarmThresholds = AlarmThresholds()
    # catalog source delivered through EventBridge → the partner event source the SaaS created in this stage's
    # account (Salesforce Event Relay: aws.partner/salesforce.com/<org id>/<channel id>)
    partner_event_sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("partner_event_sources")
    @classmethod
    def _partner_names(cls, value: dict[str, str]) -> dict[str, str]:
        for source, name in value.items():
            if not re.fullmatch(r"aws\.partner/[A-Za-z0-9._\-/]{1,230}", name):
                raise ValueError(f"{source}: {name!r} is not a partner event source name (aws.partner/...)")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, value: int) -> int:
        if value not in _RETENTION:
            raise ValueError(f"CloudWatch Logs accepts only {sorted(_RETENTION)} days")
        return value

    @field_validator("enabled_flows", mode="before")
    @classmethod
    def _list_of_flows(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @property
    def stack_name(self) -> str:
        return f"Switchyard-{self.name}"

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    @property
    def lambda_tracing(self) -> lambda_.Tracing:
        return lambda_.Tracing.ACTIVE if self.tracing == "active" else lambda_.Tracing.PASS_THROUGH

    @property
    def lambda_log_level(self) -> lambda_.ApplicationLogLevel:
        return _LAMBDA_LOG_LEVEL[self.log_level]

    @property
    def stateful_removal_policy(self) -> RemovalPolicy:
        return RemovalPolicy.DESTROY if self.removal_policy == "destroy" else RemovalPolicy.RETAIN

    def flows(self, catalog: Catalog) -> list[FlowConfig]:
        """The catalog's flows enabled in this stage, in declaration order."""
        if self.enabled_flows == "all":
            return list(catalog.flows.values())
        unknown = set(self.enabled_flows) - set(catalog.flows)
        if unknown:
            raise SettingsError(
                f"stage {self.name!r}: enabled_flows names unknown flows {sorted(unknown)}; "
                f"the catalog has {sorted(catalog.flows)}"
            )
        return [flow for name, flow in catalog.flows.items() if name in self.enabled_flows]


def stages_from_context(raw: Any) -> dict[str, StageSettings]:
    """Parse the ``switchyard:stages`` context value (an object, or its JSON text from ``-c``)."""
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, Mapping) or not raw:
        raise SettingsError(f"context {STAGES_CONTEXT!r} must be an object of stage name -> settings")
    stages = {}
    for name, values in raw.items():
        try:
            stages[name] = StageSettings.model_validate({**values, "name": name})
        except ValidationError as exc:
            raise SettingsError(f"{STAGES_CONTEXT}.{name}: {exc}") from exc
    return stages


def flag_from_context(raw: Any, *, default: bool) -> bool:
    """A boolean context value; ``-c key=false`` arrives as the string ``"false"``."""
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise SettingsError(f"expected a boolean context value, got {raw!r}")
