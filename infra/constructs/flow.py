"""One flow: its queue, its dead-letter queue, its worker function and its alarms.

Instantiated once per flow in the catalog, so adding a flow is a catalog entry, not new plumbing.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from switchyard.catalog import FlowConfig
from switchyard.table_keys import TableGrant

from infra.constructs.alarms import Runbook, runbook_alarm
from infra.functions import FunctionFactory
from infra.metadata import annotate
from infra.paths import WORKER_CODE
from infra.settings import AlarmThresholds
from infra.table_access import grant_table_items

# AWS's guidance for SQS event sources: visibility timeout at least six times the function timeout,
# so a message is not redelivered while a (retried) batch is still being processed.
VISIBILITY_TIMEOUT_FACTOR = 6
QUEUE_RETENTION = Duration.days(4)
# Longer than the queue's: SQS keeps a message's original enqueue time when it moves to the DLQ.
DLQ_RETENTION = Duration.days(14)
# SQS allows 1 MiB; the ingest accepts 256 KiB bodies and wraps them with headers and metadata,
# and the worker adds a failure reason when it dead-letters a message.
MAX_MESSAGE_BYTES = 1_048_576


def connection_secret_arns(secrets: dict[str, secretsmanager.ISecret]) -> str:
    """``SWITCHYARD_CONNECTION_SECRET_ARNS``: ``{"<connection>": "<secret ARN>"}`` (tokens resolved at deploy)."""
    return Stack.of(next(iter(secrets.values()))).to_json_string(
        {name: secret.secret_arn for name, secret in secrets.items()})


def grant_connections(function: lambda_.IFunction, flow: FlowConfig, secrets: dict[str, secretsmanager.ISecret], *,
                      writers: frozenset[str]) -> None:
    """Read every connection of the flow; write those whose tokens rotate (QuickBooks: the refresh token)."""
    for name in flow.connections:
        secrets[name].grant_read(function)
        if name in writers:
            secrets[name].grant_write(function)


class FlowPipeline(Construct):
    """``queue`` -> ``worker`` (SQS batches, partial failures), ``dead_letter_queue`` for the rest."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        flow: FlowConfig,
        functions: FunctionFactory,
        connection_secrets: dict[str, secretsmanager.ISecret],
        writable_connections: frozenset[str] = frozenset(),
        idempotency_table: dynamodb.ITable,
        table_grants: tuple[TableGrant, ...],
        alarm_action: cloudwatch.IAlarmAction,
        thresholds: AlarmThresholds,
        removal_policy: RemovalPolicy,
        audit_retention_days: int = 30,
    ) -> None:
        super().__init__(scope, construct_id)
        self.flow = flow
        sizing = flow.worker

        # Both queues: SQS-managed encryption, TLS-only queue policy, room for large events.
        encrypted = {
            "encryption": sqs.QueueEncryption.SQS_MANAGED,
            "enforce_ssl": True,
            "max_message_size_bytes": MAX_MESSAGE_BYTES,
            "removal_policy": removal_policy,
        }
        self.dead_letter_queue = sqs.Queue(self, "DeadLetterQueue", retention_period=DLQ_RETENTION, **encrypted)
        self.queue = sqs.Queue(
            self,
            "Queue",
            retention_period=QUEUE_RETENTION,
            visibility_timeout=Duration.seconds(VISIBILITY_TIMEOUT_FACTOR * sizing.timeout_seconds),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=sizing.max_receive_count
            ),
            **encrypted,
        )
        self.worker = functions.create(
            self,
            "Worker",
            code=WORKER_CODE,
            service=flow.name,
            description=f"Switchyard flow {flow.name}: {flow.source} -> {flow.target}",
            timeout=Duration.seconds(sizing.timeout_seconds),
            memory_mb=sizing.memory_mb,
            environment={
                "SWITCHYARD_FLOW": flow.name,
                "SWITCHYARD_IDEMPOTENCY_TABLE": idempotency_table.table_name,
                "SWITCHYARD_CONNECTION_SECRET_ARN": connection_secrets[flow.connection].secret_arn,
                "SWITCHYARD_CONNECTION_SECRET_ARNS": connection_secret_arns(connection_secrets),
                "SWITCHYARD_QUEUE_URL": self.queue.queue_url,
                "SWITCHYARD_DLQ_URL": self.dead_letter_queue.queue_url,
                "SWITCHYARD_MAX_RECEIVE_COUNT": str(sizing.max_receive_count),
                "SWITCHYARD_AUDIT_RETENTION_DAYS": str(audit_retention_days),  # switchyard trace's records
            },
        )
        self.worker.add_event_source(
            event_sources.SqsEventSource(
                self.queue, batch_size=sizing.batch_size, report_batch_item_failures=True,
                max_batching_window=Duration.seconds(sizing.batching_window_seconds)
                if sizing.batching_window_seconds else None)
        )
        # The event source grants consuming the queue, sqs:ChangeMessageVisibility included (the worker
        # uses it to delay out-of-order events); tests/infra checks the worker's actions.

        # The worker dead-letters permanent failures itself, with a machine-readable reason, and sends a
        # throttled event back to its own queue (a 429 must not spend the message's receive budget).
        self.dead_letter_queue.grant_send_messages(self.worker)
        self.queue.grant_send_messages(self.worker)
        if flow.runs_as == "worker":  # a state-machine flow's worker only starts executions
            grant_connections(self.worker, flow, connection_secrets, writers=writable_connections)
        # only the items of its own flow, pair and connections (switchyard.table_keys)
        grant_table_items(self.worker, idempotency_table, table_grants)

        annotate(self.worker, role="worker", flow=flow.name)
        annotate(self.queue, role="queue", flow=flow.name)
        annotate(self.dead_letter_queue, role="dlq", flow=flow.name)
        self.alarms = self._alarms(alarm_action, thresholds)

    def _alarms(self, action: cloudwatch.IAlarmAction, limits: AlarmThresholds) -> list[cloudwatch.Alarm]:
        name = self.flow.name
        gte = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        oldest_age = Duration.minutes(limits.oldest_message_age_minutes)
        return [
            runbook_alarm(
                self,
                "DeadLetterQueueNotEmptyAlarm",
                metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=limits.dead_letters,
                comparison=gte,
                summary=f"Flow {name}: events wait in the dead-letter queue (they reached no target).",
                runbook=Runbook.DLQ_NOT_EMPTY,
                action=action,
            ),
            runbook_alarm(
                self,
                "OldestMessageAgeAlarm",
                metric=self.queue.metric_approximate_age_of_oldest_message(
                    period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=oldest_age.to_seconds(),
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                summary=f"Flow {name}: the oldest queued event waits more than "
                f"{oldest_age.to_minutes():.0f} minutes (worker stuck, failing or too slow).",
                runbook=Runbook.QUEUE_MESSAGE_AGE,
                action=action,
            ),
            runbook_alarm(
                self,
                "WorkerErrorsAlarm",
                metric=self.worker.metric_errors(period=Duration.minutes(5), statistic=cloudwatch.Stats.SUM),
                threshold=limits.worker_errors,
                comparison=gte,
                summary=f"Flow {name}: the worker function failed (unhandled error or timeout).",
                runbook=Runbook.WORKER_ERRORS,
                action=action,
            ),
            runbook_alarm(
                self,
                "WorkerThrottlesAlarm",
                metric=self.worker.metric_throttles(period=Duration.minutes(5), statistic=cloudwatch.Stats.SUM),
                threshold=limits.worker_throttles,
                comparison=gte,
                summary=f"Flow {name}: the worker function was throttled (account concurrency exhausted).",
                runbook=Runbook.WORKER_THROTTLES,
                action=action,
            ),
        ]
