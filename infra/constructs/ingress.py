"""The webhook front door: HTTP API ``POST /webhooks/{source}`` -> ingest function -> flow queues."""

from __future__ import annotations

import json
from collections.abc import Mapping

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from switchyard.catalog import Catalog

from infra.constructs.archive import EventArchive
from infra.functions import FunctionFactory
from infra.metadata import annotate
from infra.nag import acknowledge
from infra.paths import INGEST_CODE
from infra.settings import StageSettings

WEBHOOK_PATH = "/webhooks/{source}"
MAX_BODY_BYTES = 262_144
INGEST_SERVICE = "ingest"

# HTTP API access log: one JSON object per request, no headers or bodies (they carry signatures).
_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "sourceIp": "$context.identity.sourceIp",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return apigateway.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS))


def routes_for(catalog: Catalog, flow_queues: Mapping[str, str]) -> dict[str, dict[str, dict[str, str]]]:
    """``SWITCHYARD_ROUTES``: source -> event type -> flow name -> queue URL, for the deployed flows.

    Every event a source declares is listed, with no flows when none of its subscribers is deployed
    in this stage, so the ingest can tell "nobody listens here" from "unknown event type".
    """
    return {
        source: {
            event: {
                flow.name: flow_queues[flow.name]
                for flow in catalog.flows_for(source, event)
                if flow.name in flow_queues
            }
            for event in config.events
        }
        for source, config in catalog.webhook_sources.items()
    }


class WebhookIngress(Construct):
    """HTTP API with access logs and stage throttling in front of the ingest function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageSettings,
        catalog: Catalog,
        functions: FunctionFactory,
        source_secrets: Mapping[str, secretsmanager.ISecret],
        flow_queues: Mapping[str, sqs.IQueue],
        table: dynamodb.ITable | None = None,
        archive: EventArchive | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # sources a poller also sweeps: ingest records the ids their webhooks queued (switchyard.polling)
        swept = sorted(name for name, config in catalog.sources.items() if config.delivery == "both")
        if swept and table is None:
            raise ValueError("sources swept by a poller need the table for their pushed-event log")
        sources = {
            name: {"secret_arn": source_secrets[name].secret_arn, "signature": config.signature,
                   "format": config.format, "ack_status": config.ack_status}
            for name, config in catalog.webhook_sources.items()
        }
        routes = routes_for(catalog, {name: queue.queue_url for name, queue in flow_queues.items()})
        self.function = functions.create(
            self,
            "Function",
            code=INGEST_CODE,
            service=INGEST_SERVICE,
            description="Switchyard ingest: verify webhook signatures, enqueue events on flow queues",
            timeout=Duration.seconds(stage.ingest_timeout_seconds),
            memory_mb=stage.ingest_memory_mb,
            environment={
                "SWITCHYARD_SOURCES": stack.to_json_string(sources),
                "SWITCHYARD_ROUTES": stack.to_json_string(routes),
                "SWITCHYARD_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
                **({"SWITCHYARD_SWEPT_SOURCES": ",".join(swept),
                    "SWITCHYARD_IDEMPOTENCY_TABLE": table.table_name} if swept and table is not None else {}),
                **({"SWITCHYARD_ARCHIVE_BUCKET": archive.bucket.bucket_name,
                    "SWITCHYARD_CONFIG_DIGEST": archive.config_digest} if archive is not None else {}),
            },
        )
        if archive is not None:
            archive.grant_archive(self.function, self)
        if swept and table is not None:
            from switchyard.table_keys import pushed_grant

            from infra.table_access import grant_table_items

            grant_table_items(self.function, table, [pushed_grant(source) for source in swept])
        annotate(self.function, role="ingest")
        for queue in flow_queues.values():
            queue.grant_send_messages(self.function)
        for secret in source_secrets.values():
            secret.grant_read(self.function)

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=stage.log_retention, removal_policy=stage.stateful_removal_policy
        )
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            description=f"Switchyard {stage.name} webhooks",
            create_default_stage=False,
        )
        self.http_stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=stage.api_throttle_rate_limit, burst_limit=stage.api_throttle_burst_limit
            ),
            access_log_settings=_AccessLogSettings(self.access_logs),
        )
        for route in self.api.add_routes(
            path=WEBHOOK_PATH,
            methods=[apigwv2.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("Ingest", self.function),
        ):
            acknowledge(
                route,
                "APIG4",
                "Webhook senders authenticate with an HMAC signature over the raw body (Standard "
                "Webhooks), verified in the ingest function; an HTTP API authorizer cannot see the body, "
                "and the senders cannot present tokens or IAM credentials.",
            )

    @property
    def url(self) -> str:
        """The API's base URL, ending in ``/``."""
        return self.http_stage.url

    def webhook_url(self, source: str) -> str:
        return f"{self.url}webhooks/{source}"
