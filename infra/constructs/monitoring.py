"""Alarm topic, ingest alarms and the stage's dashboard.

The topic is encrypted with a customer-managed KMS key because CloudWatch alarms cannot publish to a
topic encrypted with the AWS-managed ``alias/aws/sns`` key (its key policy cannot admit CloudWatch).
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct
from switchyard.circuit_breaker import METRIC as CIRCUIT_OPEN_METRIC
from switchyard.connection_state import METRIC as CONNECTION_NEEDS_RECONNECT_METRIC
from switchyard.connection_state import RECONNECT_POLL_SECONDS

from infra.constructs.alarms import Runbook, runbook_alarm
from infra.constructs.flow import FlowPipeline
from infra.constructs.ingress import INGEST_SERVICE, WebhookIngress
from infra.functions import METRICS_NAMESPACE
from infra.settings import AlarmThresholds, StageSettings
from infra.tags import integration

# Emitted by the ingest function (Powertools Metrics, default "service" dimension) per rejected webhook.
SIGNATURE_REJECTED_METRIC = "SignatureRejected"
ARCHIVE_FAILED_METRIC = "ArchiveFailed"  # functions/ingest: queued, not archived
# Every waiting event comes back every RECONNECT_POLL_SECONDS (every waiting step as often), each time
# emitting ConnectionNeedsReconnect: a period longer than that sees a datapoint for as long as anything waits.
CONNECTION_ALARM_PERIOD = Duration.seconds(RECONNECT_POLL_SECONDS + 300)
ALARM_PERIOD = Duration.minutes(5)
_WIDGET_WIDTH = 8


class Monitoring(Construct):
    """``topic`` receives every alarm; :meth:`watch_ingress` / :meth:`watch_flow` fill the dashboard."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageSettings) -> None:
        super().__init__(scope, construct_id)
        self.thresholds: AlarmThresholds = stage.alarm_thresholds
        account = Stack.of(self).account
        cloudwatch_principal = iam.ServicePrincipal(
            "cloudwatch.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
        )
        self.key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"Switchyard {stage.name}: encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=stage.stateful_removal_policy,
        )
        self.key.grant(cloudwatch_principal, "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"Switchyard {stage.name} alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.grant_publish(cloudwatch_principal)
        if stage.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(stage.alarm_email))
        self.alarm_action = cloudwatch_actions.SnsAction(self.topic)
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(6))

    def watch_ingress(self, ingress: WebhookIngress) -> list[cloudwatch.Alarm]:
        """Ingest alarms (API 5xx, signature-failure spike) and the dashboard's first row."""

        def api_metric(name: str, statistic: str = cloudwatch.Stats.SUM) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/ApiGateway",
                metric_name=name,
                dimensions_map={"ApiId": ingress.api.api_id, "Stage": ingress.http_stage.stage_name},
                statistic=statistic,
                period=ALARM_PERIOD,
            )

        server_errors = api_metric("5xx")
        rejected = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=SIGNATURE_REJECTED_METRIC,
            dimensions_map={"service": INGEST_SERVICE},
            statistic=cloudwatch.Stats.SUM,
            period=ALARM_PERIOD,
        )
        gte = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        limits = self.thresholds
        alarms = [
            runbook_alarm(
                self,
                "Ingest5xxAlarm",
                metric=server_errors,
                threshold=limits.ingest_5xx,
                comparison=gte,
                summary="Webhook API answered 5xx: events may have been refused (senders will retry).",
                runbook=Runbook.INGEST_5XX,
                action=self.alarm_action,
            ),
            runbook_alarm(
                self,
                "IngestErrorsAlarm",
                metric=ingress.function.metric_errors(period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM),
                threshold=limits.ingest_errors,
                comparison=gte,
                summary="The ingest function failed (unhandled error, timeout or out of memory): the webhooks it "
                "was handling were answered 5xx and not accepted (senders retry).",
                runbook=Runbook.INGEST_ERRORS,
                action=self.alarm_action,
            ),
            runbook_alarm(
                self,
                "SignatureRejectedAlarm",
                metric=rejected,
                threshold=limits.signature_rejected,
                comparison=gte,
                summary=f"At least {limits.signature_rejected} webhooks in 5 minutes failed signature "
                "or timestamp checks (secret not set or rotated, clock skew, or probing).",
                runbook=Runbook.SIGNATURE_REJECTED,
                action=self.alarm_action,
            ),
            runbook_alarm(
                self,
                "ArchiveFailedAlarm",
                metric=cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=ARCHIVE_FAILED_METRIC,
                                         dimensions_map={"service": INGEST_SERVICE},
                                         statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD),
                threshold=limits.archive_failed,
                comparison=gte,
                summary="Accepted webhooks were queued but not archived: they are delivered, but cannot be "
                "replayed.",
                runbook=Runbook.ARCHIVE_FAILED,
                action=self.alarm_action,
            ),
        ]
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="## Ingest (`POST /webhooks/{source}`)", width=24, height=1),
            cloudwatch.GraphWidget(
                title="Webhook API requests",
                left=[api_metric("Count"), api_metric("4xx"), server_errors],
                width=_WIDGET_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title="Webhook API latency (p99, ms)",
                left=[api_metric("Latency", "p99"), api_metric("IntegrationLatency", "p99")],
                width=_WIDGET_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title="Ingest function and rejected signatures",
                left=[
                    ingress.function.metric_errors(period=ALARM_PERIOD),
                    ingress.function.metric_throttles(period=ALARM_PERIOD),
                    rejected,
                ],
                width=_WIDGET_WIDTH,
            ),
        )
        return alarms

    def watch_table(self, table: dynamodb.ITable) -> list[cloudwatch.Alarm]:
        """Throttling of the shared table (reads and writes apart: the runbook starts differently) and a
        dashboard row."""
        gte = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        metrics = {kind: table.metric(f"{kind}ThrottleEvents", period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM)
                   for kind in ("Read", "Write")}
        alarms = [
            runbook_alarm(
                self,
                f"Table{kind}ThrottlesAlarm",
                metric=metric,
                threshold=self.thresholds.table_throttle_events,
                comparison=gte,
                summary=f"The shared DynamoDB table throttled {kind.lower()}s (a hot key such as a rate limiter "
                "item, or a burst past the on-demand table's headroom): workers slow down and retry.",
                runbook=Runbook.TABLE_THROTTLED,
                action=self.alarm_action,
            )
            for kind, metric in metrics.items()
        ]
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="## Shared table", width=24, height=1),
            cloudwatch.GraphWidget(title="Table throttle events (reads, writes)", left=list(metrics.values()),
                                   width=_WIDGET_WIDTH),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=alarms, width=_WIDGET_WIDTH),
        )
        return alarms

    def watch_integrations(self, pipelines: list[FlowPipeline]) -> dict[str, cloudwatch.CompositeAlarm]:
        """One composite alarm per integration (both directions of a pair are one), in ALARM while any alarm of
        its flows is: a single signal per integration, on the dashboard and the topic."""
        by_integration: dict[str, list[FlowPipeline]] = {}
        for pipeline in pipelines:
            by_integration.setdefault(integration(pipeline.flow), []).append(pipeline)
        composites = {}
        for name, members in by_integration.items():
            flows = ", ".join(p.flow.name for p in members)
            composite = cloudwatch.CompositeAlarm(
                self,
                f"Integration-{name}",
                alarm_rule=cloudwatch.AlarmRule.any_of(
                    *(cloudwatch.AlarmRule.from_alarm(alarm, cloudwatch.AlarmState.ALARM)
                      for p in members for alarm in p.alarms)),
                alarm_description=f"Integration {name} ({flows}): at least one of its alarms is in ALARM; "
                f"its own notification names the runbook. Runbook: {Runbook.INTEGRATION_UNHEALTHY.reference}",
            )
            composite.add_alarm_action(self.alarm_action)
            composite.add_ok_action(self.alarm_action)
            composites[name] = composite
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(
            title="Integrations", alarms=list(composites.values()), width=24, height=2))
        return composites

    def watch_connections(self, pipelines: Iterable[FlowPipeline]) -> list[cloudwatch.Alarm]:
        """Per flow, an alarm while its events or steps wait for a connection to be reconnected
        (``switchyard.connection_state``): the metric ``ConnectionNeedsReconnect`` its worker and steps emit
        (dimension ``service`` = the flow) each time something waits. One dead connection alarms every flow
        that uses it, which is what is held up."""
        alarms = []
        waiting = []
        for pipeline in pipelines:
            metric = cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=CONNECTION_NEEDS_RECONNECT_METRIC,
                dimensions_map={"service": pipeline.flow.name},
                statistic=cloudwatch.Stats.SUM,
                period=CONNECTION_ALARM_PERIOD,
            )
            waiting.append(metric.with_(label=pipeline.flow.name))  # a labelled metric only on the dashboard
            alarm = runbook_alarm(
                pipeline,
                "ConnectionNeedsReconnectAlarm",
                metric=metric,
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                summary=f"Flow {pipeline.flow.name}: a connection it uses ({', '.join(pipeline.flow.connections)}) "
                "had its credentials refused (QuickBooks: the refresh token, invalid_grant); its events wait in "
                "the queue and its executions wait until someone reconnects it.",
                runbook=Runbook.CONNECTION_NEEDS_RECONNECT,
                action=self.alarm_action,
            )
            pipeline.alarms.append(alarm)
            alarms.append(alarm)
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="## Connections", width=24, height=1),
            cloudwatch.GraphWidget(title="Events and steps waiting for a reconnect", left=waiting,
                                   width=_WIDGET_WIDTH),
            cloudwatch.AlarmStatusWidget(title="Waiting for a reconnect", alarms=alarms, width=_WIDGET_WIDTH),
        )
        return alarms

    def watch_circuits(self, pipelines: Iterable[FlowPipeline]) -> list[cloudwatch.Alarm]:
        """Per flow, an alarm while the circuit breaker of a connection it calls is open
        (``switchyard.circuit_breaker``): the metric ``CircuitOpen`` counts every opening and every call it
        refused, and waiting events look again at least every 10 minutes, so the alarm stays on while the
        target is down and clears once the breaker closed."""
        alarms = []
        for pipeline in pipelines:
            metric = cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=CIRCUIT_OPEN_METRIC,
                                       dimensions_map={"service": pipeline.flow.name},
                                       statistic=cloudwatch.Stats.SUM, period=CONNECTION_ALARM_PERIOD)
            alarm = runbook_alarm(
                pipeline, "CircuitOpenAlarm", metric=metric, threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                summary=f"Flow {pipeline.flow.name}: the circuit breaker of {pipeline.flow.connection} is open (its "
                "target kept failing with 5xx or timeouts); events wait in the queue, none is dead-lettered for it.",
                runbook=Runbook.CIRCUIT_OPEN, action=self.alarm_action)
            pipeline.alarms.append(alarm)
            alarms.append(alarm)
        return alarms

    def watch_flow(self, pipeline: FlowPipeline) -> None:
        """One dashboard row per flow: queue and DLQ depth, oldest message age, worker health."""
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=f"## Flow `{pipeline.flow.name}`", width=24, height=1),
            cloudwatch.GraphWidget(
                title="Queue depth and dead-letter queue depth",
                left=[
                    pipeline.queue.metric_approximate_number_of_messages_visible(
                        period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM, label="queue"
                    ),
                    pipeline.dead_letter_queue.metric_approximate_number_of_messages_visible(
                        period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM, label="DLQ"
                    ),
                ],
                right=[
                    pipeline.queue.metric_approximate_age_of_oldest_message(
                        period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM, label="oldest (s)"
                    )
                ],
                width=_WIDGET_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title="Worker invocations, errors, throttles",
                left=[
                    pipeline.worker.metric_invocations(period=ALARM_PERIOD),
                    pipeline.worker.metric_errors(period=ALARM_PERIOD),
                    pipeline.worker.metric_throttles(period=ALARM_PERIOD),
                ],
                width=_WIDGET_WIDTH,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=pipeline.alarms, width=_WIDGET_WIDTH),
        )
