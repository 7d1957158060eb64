"""A flow that runs as a Standard Step Functions state machine: order-to-cash (``runs_as: state-machine``).

The flow's queue and worker stay as for any flow (FlowPipeline); the worker starts one execution per
event, named after the order (``switchyard.state_machines``). Every step is a Lambda task of one step
function with Retry per error class and a Catch that records the failure (DLQ, with the reason) and ends
in Fail, which the ExecutionsFailed alarm watches.

    Route ─ placed ─> Customer ─> Items ─> Document ─┐
          ─ paid ───> Payment ───────────────────────┼─> WriteBack ─> Done
          ─ cancel ─> Cancel ────────────────────────┘
    any task ──Catch──> RecordFailure ─> Failed
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct
from switchyard.catalog import FlowConfig, StateMachineRetry
from switchyard.table_keys import TableGrant

from infra.constructs.alarms import Runbook, runbook_alarm
from infra.constructs.flow import FlowPipeline, connection_secret_arns, grant_connections
from infra.functions import FunctionFactory
from infra.metadata import annotate
from infra.nag import acknowledge
from infra.paths import STEPS_CODE
from infra.settings import AlarmThresholds
from infra.table_access import grant_table_items

# Lambda's own transient errors (CDK's retry_on_service_exceptions covers the same list)
FAILURE_HANDLER_ATTEMPTS = 5


class OrderToCashStateMachine(Construct):
    """``steps`` (the task Lambda), ``state_machine``, and its alarms; wires the pipeline's worker to start it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        flow: FlowConfig,
        pipeline: FlowPipeline,
        functions: FunctionFactory,
        connection_secrets: dict[str, secretsmanager.ISecret],
        writable_connections: frozenset[str],
        idempotency_table: dynamodb.ITable,
        table_grants: tuple[TableGrant, ...],
        alarm_action: cloudwatch.IAlarmAction,
        thresholds: AlarmThresholds,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        log_level: str = "ALL",
        tracing: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        config = flow.state_machine
        assert config is not None  # the catalog guarantees it for runs_as: state-machine
        self.flow = flow
        self.steps = functions.create(
            self,
            "Steps",
            code=STEPS_CODE,
            service=flow.name,
            description=f"Switchyard flow {flow.name}: the steps of its state machine",
            timeout=Duration.seconds(config.step_timeout_seconds),
            memory_mb=config.step_memory_mb,
            environment={
                "SWITCHYARD_FLOW": flow.name,
                "SWITCHYARD_IDEMPOTENCY_TABLE": idempotency_table.table_name,
                "SWITCHYARD_CONNECTION_SECRET_ARNS": connection_secret_arns(connection_secrets),
                "SWITCHYARD_DLQ_URL": pipeline.dead_letter_queue.queue_url,
            },
        )
        grant_connections(self.steps, flow, connection_secrets, writers=writable_connections)
        # entity links (the pair's), the connection's rate limiter and token lease: only those items
        grant_table_items(self.steps, idempotency_table, table_grants)
        pipeline.dead_letter_queue.grant_send_messages(self.steps)
        annotate(self.steps, role="steps", flow=flow.name)

        failed = sfn.Fail(self, "Failed", error="OrderToCashFailed",
                          cause="A step failed for good; the event is in the flow's dead-letter queue")
        # the execution's name marks the dead letter, so its redrive starts a new execution
        record_failure = self._task("RecordFailure", "record_failure", result_path="$.failure",
                                    extra={"execution": sfn.JsonPath.string_at("$$.Execution.Name")})
        record_failure.add_retry(errors=["States.ALL"], interval=Duration.seconds(2),
                                 max_attempts=FAILURE_HANDLER_ATTEMPTS, backoff_rate=2.0,
                                 jitter_strategy=sfn.JitterType.FULL)
        record_failure.next(failed)

        def step(state_id: str, name: str) -> tasks.LambdaInvoke:
            task = self._task(state_id, name, result_path=f"$.{name}")
            self._retry(task, "StepRetryable", config.retry)
            self._retry(task, "StepThrottled", config.throttled)
            self._retry(task, "StepRateLimited", config.rate_limited)
            self._retry(task, "StepOutOfOrder", config.out_of_order)
            # a connection waiting for a reconnect: the execution waits, its event is not dead-lettered
            self._retry(task, "StepWaitingForConnection", config.waiting_for_connection)
            task.add_catch(record_failure, errors=["States.ALL"], result_path="$.error")
            return task

        write_back = step("WriteBack", "write_back")
        write_back.next(sfn.Succeed(self, "Done"))
        placed = (step("Customer", "customer").next(step("Items", "items")).next(step("Document", "document"))
                  .next(write_back))
        route = (
            sfn.Choice(self, "Route")
            .when(sfn.Condition.string_equals("$.route", "placed"), placed)
            .when(sfn.Condition.string_equals("$.route", "paid"), step("Payment", "payment").next(write_back))
            .when(sfn.Condition.string_equals("$.route", "cancel"), step("Cancel", "cancel").next(write_back))
            .otherwise(sfn.Fail(self, "UnknownRoute", error="UnknownRoute",
                                cause="The execution input names no known route"))
        )
        log_group = logs.LogGroup(self, "ExecutionLogs", retention=log_retention, removal_policy=removal_policy)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # named: CloudFormation's generated names can pass Step Functions' 80 characters
            state_machine_name=f"{Stack.of(self).stack_name}-{flow.name}"[:80],
            definition_body=sfn.DefinitionBody.from_chainable(route),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.minutes(config.timeout_with_waiting_minutes),
            tracing_enabled=tracing,
            # no execution data: states carry orders (names, addresses, e-mails)
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel[log_level], include_execution_data=False),
            comment=f"Switchyard flow {flow.name}: {flow.description}",
        )
        annotate(self.state_machine, role="state-machine", flow=flow.name)
        if log_level != "ALL":
            acknowledge(self.state_machine, "SF1", "A stage's choice (state_machine_log_level): every transition "
                        "logged costs per order; failures are still logged, and each one dead-letters with its reason.")
        if not tracing:
            acknowledge(self.state_machine, "SF2", "A stage's choice (tracing: pass_through): X-Ray records every "
                        "execution at Switchyard's rates, $5 per 1M traces.")
        acknowledge(
            self.state_machine,
            "IAM5[Resource::*]",
            "Step Functions log delivery (logs:CreateLogDelivery and friends) and X-Ray accept no resource-level "
            "permissions.",
        )
        acknowledge(
            self.state_machine,
            f"IAM5[Resource::<{self.stack_logical_id(self.steps)}.Arn>:*]",
            "The Lambda task integration may invoke the steps function's versions and aliases; it is this "
            "flow's own function and nothing else.",
        )

        worker = pipeline.worker
        worker.add_environment("SWITCHYARD_STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
        self.state_machine.grant_start_execution(worker)
        # a redelivered event finds its execution by name: running or done -> nothing to start
        self.state_machine.grant_execution(worker, "states:DescribeExecution")
        assert worker.role is not None  # the factory gives every function its own role
        acknowledge(
            worker.role,
            "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"' + self.stack_logical_id(self.state_machine) + '"}]}]}:*]',
            "Execution names are derived per event, so DescribeExecution is granted on this state machine's "
            "executions (execution:<name>:*), not on any other state machine's.",
        )
        self.alarms = self._alarms(alarm_action, thresholds.executions_failed)
        pipeline.alarms.extend(self.alarms)

    @staticmethod
    def stack_logical_id(construct: Construct) -> str:
        from aws_cdk import CfnElement

        resource = construct.node.default_child
        assert isinstance(resource, CfnElement)
        return Stack.of(construct).resolve(resource.logical_id)

    def _task(self, state_id: str, step: str, *, result_path: str,
              extra: dict[str, str] | None = None) -> tasks.LambdaInvoke:
        return tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=self.steps,
            payload=sfn.TaskInput.from_object({"step": step, "state": sfn.JsonPath.object_at("$"), **(extra or {})}),
            payload_response_only=True,
            retry_on_service_exceptions=True,
            result_path=result_path,
        )

    @staticmethod
    def _retry(task: tasks.LambdaInvoke, error: str, retry: StateMachineRetry) -> None:
        if retry.max_attempts == 0:
            return
        task.add_retry(
            errors=[error],
            interval=Duration.seconds(retry.interval_seconds),
            max_attempts=retry.max_attempts,
            backoff_rate=retry.backoff_rate,
            max_delay=Duration.seconds(retry.max_delay_seconds),
            jitter_strategy=sfn.JitterType.FULL if retry.jitter else sfn.JitterType.NONE,
        )

    def _alarms(self, action: cloudwatch.IAlarmAction, threshold: int) -> list[cloudwatch.Alarm]:
        name = self.flow.name
        gte = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        return [
            runbook_alarm(
                self,
                "ExecutionsFailedAlarm",
                metric=self.state_machine.metric_failed(period=Duration.minutes(5), statistic=cloudwatch.Stats.SUM),
                threshold=threshold,
                comparison=gte,
                summary=f"Flow {name}: an execution failed (its event and reason are in the flow's DLQ).",
                runbook=Runbook.EXECUTIONS_FAILED,
                action=action,
            ),
            runbook_alarm(
                self,
                "ExecutionsTimedOutAlarm",
                metric=self.state_machine.metric_timed_out(period=Duration.minutes(5),
                                                           statistic=cloudwatch.Stats.SUM),
                threshold=threshold,
                comparison=gte,
                summary=f"Flow {name}: an execution timed out (no failure handler ran: check the execution "
                "history, then redrive its event).",
                runbook=Runbook.EXECUTIONS_FAILED,
                action=action,
            ),
        ]
