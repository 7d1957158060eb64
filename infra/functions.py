"""The one Lambda function factory: every Switchyard function gets its defaults from here.

Defaults and why:

- **Runtime ``python3.14``** (``Runtime.PYTHON_3_14``): the newest Python runtime aws-cdk-lib 2.275
  offers, generally available in Lambda since 18 Nov 2025 (deprecation scheduled for 2029). cdk-nag's
  L1 rule compares against the newest runtime CDK knows, so 3.13 would be a finding. The code is
  kept 3.11-compatible for local runs; the layer's wheels are built for this version.
- **arm64**: cheaper per GB-second and every layer dependency ships aarch64 wheels.
- **JSON logs** (Lambda advanced logging) into an **explicit log group** with the stage's retention,
  Lambda's application log level kept equal to ``POWERTOOLS_LOG_LEVEL``.
- **Active X-Ray tracing**.
- **An explicit role per function** that may write only to its own log group, instead of the
  ``AWSLambdaBasicExecutionRole`` managed policy (``logs:*`` on every group): least privilege and
  no cdk-nag IAM4 finding. Everything else is granted by the constructs with ``grant_*``.
- **Reserved environment**: ``SWITCHYARD_STAGE`` and the Powertools variables are set here; callers
  pass only their function-specific variables and may not override these.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.metadata import annotate
from infra.nag import acknowledge
from infra.paths import REPO_ROOT
from infra.settings import StageSettings

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
HANDLER = "handler.lambda_handler"
METRICS_NAMESPACE = "Switchyard"
# Never part of a function asset (the function folders should not contain them anyway).
ASSET_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache", "tests", "local", "infra", "bench"]


class FunctionFactory:
    """Creates Switchyard Lambda functions with the project's defaults (see the module docstring)."""

    def __init__(self, *, stage: StageSettings, layer: lambda_.ILayerVersion) -> None:
        self._stage = stage
        self._layer = layer

    def reserved_environment(self, service: str) -> dict[str, str]:
        return {
            "SWITCHYARD_STAGE": self._stage.name,
            "POWERTOOLS_SERVICE_NAME": service,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": self._stage.log_level,
        }

    def create(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: str,
        service: str,
        description: str,
        environment: Mapping[str, str],
        timeout: Duration,
        memory_mb: int,
    ) -> lambda_.Function:
        """A function running ``handler.lambda_handler`` from ``code`` (a folder relative to the repo).

        Creates ``<id>`` (the function), ``<id>Logs`` (its log group) and ``<id>Role`` in ``scope``.
        """
        reserved = self.reserved_environment(service)
        clash = reserved.keys() & environment.keys()
        if clash:
            raise ValueError(f"{construct_id}: environment may not set reserved variables {sorted(clash)}")

        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self._stage.log_retention,
            removal_policy=self._stage.stateful_removal_policy,
        )
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Switchyard {self._stage.name} {service} function",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            scope,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(REPO_ROOT / code), exclude=ASSET_EXCLUDES),
            layers=[self._layer],
            environment={**reserved, **environment},
            timeout=timeout,
            memory_size=memory_mb,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=self._stage.lambda_log_level,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=self._stage.lambda_tracing,
        )
        annotate(function, code=code)
        acknowledge(
            role,
            "IAM5[Resource::*]",
            "Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which support no "
            "resource-level permissions; every other statement of this role names its resource.",
        )
        return function
