"""A polled source (``delivery: poll`` or ``both`` in flows.yaml): EventBridge Scheduler -> poller function ->
the same flow queues as its webhooks, with metrics and alarms (issue 10).

Per source: one function (``functions/poller``) and one schedule at the stage's ``poll_rate_minutes``. The
scheduler's role may invoke that function only; the function may send to its source's flow queues, read its
poll connection's secret and reach only its own items in the table (``table_keys.poll_grants``). Runs never
overlap in practice (a run reads a bounded number of pages, far inside the rate), and if two did, both would
queue the same deterministic event ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from switchyard.catalog import Catalog

from infra.constructs.alarms import Runbook, runbook_alarm
from infra.constructs.ingress import routes_for
from infra.functions import FunctionFactory
from infra.metadata import annotate
from infra.paths import POLLER_CODE
from infra.settings import StageSettings
from infra.table_access import grant_table_items

ALARM_PERIOD = Duration.minutes(5)


def poller_service(source: str) -> str:
    """The Powertools service (the ``service`` dimension of its metrics) of a source's poller."""
    return f"poller-{source}"


class SourcePoller(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: str,
        stage: StageSettings,
        catalog: Catalog,
        functions: FunctionFactory,
        connection_secrets: Mapping[str, secretsmanager.ISecret],
        flow_queues: Mapping[str, sqs.IQueue],
        table: dynamodb.ITable,
        alarm_action: cloudwatch.IAlarmAction,
    ) -> None:
        super().__init__(scope, construct_id)
        from switchyard.table_keys import poll_grants

        config = catalog.sources[source]
        assert config.poll is not None
        poll = config.poll
        connection = poll.connection
        stack = Stack.of(self)
        routes = routes_for(catalog, {name: queue.queue_url for name, queue in flow_queues.items()})[source]
        self.source = source
        self.function = functions.create(
            self,
            "Function",
            code=POLLER_CODE,
            service=poller_service(source),
            description=f"Switchyard poller: reads {source} and queues what changed since the last run",
            timeout=Duration.seconds(poll.timeout_seconds),
            memory_mb=poll.memory_mb,
            environment={
                "SWITCHYARD_SOURCE": source,
                "SWITCHYARD_DELIVERY": config.delivery,
                "SWITCHYARD_POLL_SYSTEM": catalog.connections[connection].system,
                "SWITCHYARD_POLL_CONNECTION": connection,
                "SWITCHYARD_CONNECTION_SECRET_ARN": connection_secrets[connection].secret_arn,
                "SWITCHYARD_IDEMPOTENCY_TABLE": table.table_name,
                "SWITCHYARD_ROUTES": stack.to_json_string(routes),
                "SWITCHYARD_POLL": stack.to_json_string(poll.model_dump(mode="json")),
            },
        )
        annotate(self.function, role="poller")
        subscribed = {flow for flows in routes.values() for flow in flows}
        for name in sorted(subscribed):
            flow_queues[name].grant_send_messages(self.function)
        connection_secrets[connection].grant_read(self.function)
        grant_table_items(self.function, table, poll_grants(connection, source))
        # the scheduler's own role: invoke this function (not its versions or aliases), nothing else
        self.scheduler_role = iam.Role(self, "ScheduleRole", assumed_by=iam.ServicePrincipal(
            "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}))
        self.scheduler_role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"],
                                                              resources=[self.function.function_arn]))
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description=f"Switchyard {stage.name}: poll {source} every {stage.poll_rate_minutes} minute(s)",
            schedule_expression=f"rate({stage.poll_rate_minutes} minute{'s' if stage.poll_rate_minutes > 1 else ''})",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=self.function.function_arn,
                role_arn=self.scheduler_role.role_arn,
                input="{}",
                # a failed or throttled invocation is not retried: the next run reads the same pages
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=0,
                                                                      maximum_event_age_in_seconds=60),
            ),
        )
        self.alarms = self._alarms(stage, config.delivery, alarm_action)

    def metric(self, name: str, statistic: str = cloudwatch.Stats.SUM) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace="Switchyard", metric_name=name, statistic=statistic, period=ALARM_PERIOD,
                                 dimensions_map={"service": poller_service(self.source)})

    def _alarms(self, stage: StageSettings, delivery: str, action: cloudwatch.IAlarmAction) -> list[cloudwatch.Alarm]:
        limits = stage.alarm_thresholds
        gte = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        alarms = [
            runbook_alarm(self, "FailuresAlarm", metric=self.metric("PollFailures"), threshold=limits.poll_failures,
                          comparison=gte, action=action, runbook=Runbook.POLL_FAILURES,
                          summary=f"The {self.source} poller failed {limits.poll_failures} times in 5 minutes: "
                          "no new orders or changes are read (shop down, credentials, permission)."),
            runbook_alarm(self, "LagAlarm", metric=self.metric("PollLagSeconds", cloudwatch.Stats.MINIMUM),
                          threshold=limits.poll_lag_minutes * 60, comparison=gte, action=action,
                          runbook=Runbook.POLL_LAG,
                          summary=f"The {self.source} poller is more than {limits.poll_lag_minutes} minutes behind "
                          "(a backlog still catching up, or runs that end before a scan finishes)."),
        ]
        if delivery == "both":
            alarms.append(runbook_alarm(
                self, "RecoveredAlarm", metric=self.metric("PollRecoveredBySweep"), threshold=limits.poll_recovered,
                comparison=gte, action=action, runbook=Runbook.POLL_RECOVERED,
                summary=f"The sweep queued {self.source} events its webhooks never delivered: the sender is "
                "unhealthy (down, failing signatures, or out of retries)."))
        return alarms
