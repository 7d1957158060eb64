"""A flow that runs as a Standard Step Functions state machine (``runs_as: state-machine``), built from the
flow's declaration in ``flows.yaml`` (``switchyard.machine_declaration``); this builder names no system.

The flow's queue and worker stay as for any flow (FlowPipeline); the worker starts one execution per event
that a declared route matches, named after the entity (``key``). The declaration becomes:

    run: <system>.<step>   a Lambda task of the flow's steps function (``{"step", "state"}``), result under
                           ``$.<result>``; Retry per error class (the flow's policies, a step's own where it
                           declares them); Catch ``States.ALL`` ──> its ``compensate`` state, else RecordFailure
    run: [a.x, a.y]        ONE task running the list in order (``{"steps", "state"}``), ResultPath ``$``: the
    run: {route: [...]}    steps function returns the state with each step's result under its name; a map
                           per route (``{"steps_by_route"}``) lets the execution's route pick the list, so a
                           machine can be one task (one state transition); Retry and Catch as above
    no next                the task ends the execution (``End``: no Succeed state, one transition less)
    choose: [...]          a Choice on ``$.route``, ``$.type`` (the event type) or a value in the state
    wait_for: <wait>       ``lambda:invoke.waitForTaskToken``: the steps function stores the token against the
                           entity (``switchyard.waits``) and the execution waits for complete / fail / cancel,
                           with HeartbeatSeconds; at ``alarm_after`` the wait times out into ``wait.overdue``
                           (the WaitsOverdue metric and its alarm) and waits again, with a new token, for the
                           rest of its timeout; a timeout or missed heartbeat ──> RecordFailure with the reason
                           (``wait_timed_out`` / ``wait_heartbeat_missed``); WaitCancelled ──> ``on_cancel``
    cancel_wait: <wait>    the machinery's step that cancels the entity's wait (ends a waiting execution)
    RecordFailure          the failure handler: the event to the flow's DLQ with its reason ──> Failed

An execution that ends without RecordFailure (its own timeout, StopExecution, a failure outside any Catch)
is dead-lettered by an EventBridge rule on Step Functions' execution status change (TIMED_OUT, ABORTED, FAILED)
targeting the same steps function: Step Functions has no Catch for an execution's timeout, and the dead letter
needs the event from the execution's input, which an input transformer cannot parse out of its JSON text.

The rendered definition is checked at synth (``check_definition``): every Next names a state, every state
is reachable, every task catches ``States.ALL`` last. A step handler no system provides fails synth too.
"""

from __future__ import annotations

import json
from collections.abc import Collection

import jsii
from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct, IValidation
from switchyard.catalog import FlowConfig, StateMachineConfig, StateMachineRetry
from switchyard.machine_declaration import ERROR_KINDS, StateDecl, check_definition
from switchyard.state_machines import DEAD_LETTERED
from switchyard.table_keys import TableGrant
from switchyard.waits import WAIT_CANCELLED

from infra.constructs.alarms import Runbook, runbook_alarm
from infra.constructs.flow import FlowPipeline, connection_secret_arns, grant_connections
from infra.functions import METRICS_NAMESPACE, FunctionFactory
from infra.metadata import annotate
from infra.nag import acknowledge
from infra.paths import STEPS_CODE
from infra.settings import AlarmThresholds
from infra.table_access import grant_table_items

# Lambda's own transient errors (CDK's retry_on_service_exceptions covers the same list)
FAILURE_HANDLER_ATTEMPTS = 5
# the step error each retry policy of the declaration applies to (switchyard.state_machines)
STEP_ERROR_OF = {"retry": "StepRetryable", "throttled": "StepThrottled", "rate_limited": "StepRateLimited",
                 "out_of_order": "StepOutOfOrder", "waiting_for_connection": "StepWaitingForConnection"}
ENDED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
CALLBACK_ACTIONS = ("states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat")


class DeclarationError(ValueError):
    """A flow's state machine declaration cannot be built (raised at synth)."""


class FlowStateMachine(Construct):
    """``steps`` (the task Lambda), ``state_machine`` built from the flow's declaration, the rule that
    dead-letters executions ending without a dead letter, and the alarms; wires the worker to start it."""

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
        step_handlers: Collection[str],
        log_level: str = "ALL",
        tracing: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        config = flow.state_machine
        assert config is not None  # the catalog guarantees it for runs_as: state-machine
        unknown = [f"{name} (state {state_name})" for state_name, state in config.states.items()
                   for name in state.state_handlers if name not in step_handlers]
        if unknown:
            raise DeclarationError(f"flow {flow.name}: unknown step handler {', '.join(unknown)}; the systems "
                                   f"provide {', '.join(sorted(step_handlers))}")
        self.flow = flow
        self.config = config
        self.machine_name = f"{Stack.of(self).stack_name}-{flow.name}"[:80]
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
        # entity links (the pair's), the connection's rate limiter and token lease, its waits: only those items
        grant_table_items(self.steps, idempotency_table, table_grants)
        pipeline.dead_letter_queue.grant_send_messages(self.steps)
        annotate(self.steps, role="steps", flow=flow.name)

        start = MachineDefinition(self, config, self.steps).start

        log_group = logs.LogGroup(self, "ExecutionLogs", retention=log_retention, removal_policy=removal_policy)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # named: CloudFormation's generated names can pass Step Functions' 80 characters
            state_machine_name=self.machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(start),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.minutes(config.timeout_with_waiting_minutes),
            tracing_enabled=tracing,
            # no execution data: states carry orders (names, addresses, e-mails)
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel[log_level], include_execution_data=False),
            comment=f"Switchyard flow {flow.name}: {flow.description}",
        )
        annotate(self.state_machine, role="state-machine", flow=flow.name)
        self.node.add_validation(_DefinitionRules(self.state_machine))
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
        self._dead_letter_ended_executions()
        if config.waits:
            # the steps complete a token themselves when an outcome came before the wait (switchyard.waits);
            # by the machine's name, not its ARN: the machine refers to the function, so the ARN would loop
            self.grant_callbacks(self.steps)
        self.alarms = self._alarms(alarm_action, thresholds.executions_failed)
        pipeline.alarms.extend(self.alarms)

    def grant_callbacks(self, grantee: iam.IGrantable) -> None:
        """Complete, fail, cancel and heartbeat this machine's waits (SendTask*); the table items of the waits
        come with the grantee's table grants (``completes_waits_of``)."""
        arn = Stack.of(self).format_arn(service="states", resource="stateMachine", resource_name=self.machine_name,
                                        arn_format=_COLON)
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=list(CALLBACK_ACTIONS),
                                                                            resources=[arn]))

    # ----------------------------------------------------------------- executions ending without a dead letter

    def _dead_letter_ended_executions(self) -> None:
        rule = events.Rule(
            self,
            "ExecutionEnded",
            description=f"Flow {self.flow.name}: an execution that timed out, was aborted or failed outside a "
            "Catch dead-letters its event with the reason",
            event_pattern=events.EventPattern(
                source=["aws.states"], detail_type=["Step Functions Execution Status Change"],
                detail={"stateMachineArn": [self.state_machine.state_machine_arn], "status": list(ENDED_STATUSES)}),
        )
        rule.add_target(events_targets.LambdaFunction(self.steps, retry_attempts=185,
                                                      max_event_age=Duration.hours(24)))
        annotate(rule, role="execution-ended", flow=self.flow.name)
        # an input EventBridge left out of the event is read back; by name: the machine's ARN would loop
        executions = Stack.of(self).format_arn(service="states", resource="execution",
                                               resource_name=f"{self.machine_name}:*", arn_format=_COLON)
        self.steps.add_to_role_policy(iam.PolicyStatement(actions=["states:DescribeExecution"],
                                                          resources=[executions]))
        assert self.steps.role is not None
        acknowledge(self.steps.role, "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                    f"execution:{self.machine_name}:*]",
                    "An ended execution's input is read back by its name, which is derived per event: "
                    "DescribeExecution on this state machine's executions only.")

    # ----------------------------------------------------------------- tasks and their policies

    @staticmethod
    def stack_logical_id(construct: Construct) -> str:
        from aws_cdk import CfnElement

        resource = construct.node.default_child
        assert isinstance(resource, CfnElement)
        return Stack.of(construct).resolve(resource.logical_id)

    # ----------------------------------------------------------------- alarms

    def _alarms(self, action: cloudwatch.IAlarmAction, threshold: int) -> list[cloudwatch.Alarm]:
        name = self.flow.name
        gte = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        alarms = [
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
                summary=f"Flow {name}: an execution timed out (its event is dead-lettered as execution_timed_out: "
                "check the execution history, then redrive it).",
                runbook=Runbook.EXECUTIONS_FAILED,
                action=action,
            ),
        ]
        if self.config.waits:
            alarms.append(runbook_alarm(
                self,
                "WaitsOverdueAlarm",
                metric=cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name="WaitsOverdue",
                                         dimensions_map={"service": name}, period=Duration.minutes(5),
                                         statistic=cloudwatch.Stats.SUM),
                threshold=1,
                comparison=gte,
                summary=f"Flow {name}: an execution has waited longer than its wait's alarm_after "
                f"({', '.join(sorted(self.config.waits))}) and still waits.",
                runbook=Runbook.WAIT_OVERDUE,
                action=action,
            ))
        return alarms


class MachineDefinition:
    """The states of one declaration, created in ``scope``, every task running ``steps``; ``start`` is the
    first. Apart from FlowStateMachine so a test can build a declaration's ASL around any function."""

    def __init__(self, scope: Construct, config: StateMachineConfig, steps: lambda_.IFunction) -> None:
        self.scope = scope
        self.config = config
        self.steps = steps
        failed = sfn.Fail(scope, "Failed", error=DEAD_LETTERED,
                          cause="A step failed for good; the event is in the flow's dead-letter queue")
        # the execution's name marks the dead letter, so its redrive starts a new execution
        self.record_failure = self._task("RecordFailure", "record_failure", result_path="$.failure",
                                         extra={"execution": sfn.JsonPath.string_at("$$.Execution.Name")})
        self.record_failure.add_retry(errors=["States.ALL"], interval=Duration.seconds(2),
                                      max_attempts=FAILURE_HANDLER_ATTEMPTS, backoff_rate=2.0,
                                      jitter_strategy=sfn.JitterType.FULL)
        self.record_failure.next(failed)
        self._cancelled: sfn.Succeed | None = None
        self._unknown_route: sfn.Fail | None = None
        self.start = self._build(config)

    # ----------------------------------------------------------------- the declaration -> states

    def _build(self, config: StateMachineConfig) -> sfn.IChainable:
        built: dict[str, sfn.State] = {}
        for name, state in config.states.items():
            built[name] = self._state(name, state)
        compensations = config.compensations
        for name, state in config.states.items():
            node = built[name]
            failure: sfn.IChainable = built[state.compensate] if state.compensate else self.record_failure
            if name in compensations:  # a failing compensation still dead-letters the original error
                failure = self.record_failure
            if state.kind == "choose":
                assert isinstance(node, sfn.Choice)
                for choice in state.choose or ():
                    node.when(self._condition(choice.route, choice.event, choice.output, choice.equals),
                              built[choice.next])
                node.otherwise(built[state.otherwise] if state.otherwise else self._unknown())
                continue
            # no next: the state ends the execution itself (End), a Succeed state would cost a transition
            after: sfn.IChainable | None = (built[state.next] if state.next else
                                            self.record_failure if name in compensations else None)
            if state.kind == "wait_for":
                self._link_wait(name, state, node, after, failure, built)
                continue
            assert isinstance(node, tasks.LambdaInvoke)
            self._policies(node, state)
            node.add_catch(failure, errors=["States.ALL"],
                           result_path="$.compensation_error" if name in compensations else "$.error")
            if after is not None:
                node.next(after)
        return built[config.start]

    def _state(self, name: str, state: StateDecl) -> sfn.State:
        if state.kind == "choose":
            return sfn.Choice(self.scope, name)
        if state.kind == "run" and isinstance(state.run, str):
            return self._task(name, state.run, result_path=f"$.{state.result_key}")
        if state.kind == "run":  # several steps in one task: it returns the whole state, each result in it
            if isinstance(state.run, dict):
                steps: dict[str, object] = {"steps_by_route": {route: list(seq) for route, seq in state.run.items()}}
            else:
                steps = {"steps": list(state.run or ())}
            return self._task(name, None, result_path="$", extra=steps)
        if state.kind == "cancel_wait":
            return self._task(name, "wait.cancel", result_path=f"$.{state.result_key}",
                              extra={"wait": str(state.cancel_wait)})
        return self._wait_task(name, state, state.alarm_after or state.wait_timeout_seconds)

    def _condition(self, route: str | None, event: str | None, output: str | None,
                   equals: str | int | bool | None) -> sfn.Condition:
        if route is not None:
            return sfn.Condition.string_equals("$.route", route)
        if event is not None:
            return sfn.Condition.string_equals("$.type", event)
        path = f"$.{output}"
        if isinstance(equals, bool):
            test = sfn.Condition.boolean_equals(path, equals)
        elif isinstance(equals, int):
            test = sfn.Condition.number_equals(path, equals)
        else:
            test = sfn.Condition.string_equals(path, str(equals))
        return sfn.Condition.and_(sfn.Condition.is_present(path), test)  # a missing value is no match, no error

    def _unknown(self) -> sfn.Fail:
        if self._unknown_route is None:
            self._unknown_route = sfn.Fail(self.scope, "UnknownRoute", error="UnknownRoute",
                                           cause="The execution input names no known route")
        return self._unknown_route

    # ----------------------------------------------------------------- waits

    def _wait_task(self, state_id: str, state: StateDecl, timeout_seconds: int) -> tasks.LambdaInvoke:
        heartbeat = state.heartbeat
        return tasks.LambdaInvoke(
            self.scope,
            state_id,
            lambda_function=self.steps,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object({
                "step": "wait.register", "wait": state.wait_for, "token": sfn.JsonPath.task_token,
                "execution": sfn.JsonPath.string_at("$$.Execution.Name"), "state": sfn.JsonPath.object_at("$")}),
            task_timeout=sfn.Timeout.duration(Duration.seconds(timeout_seconds)),
            heartbeat_timeout=sfn.Timeout.duration(Duration.seconds(heartbeat)) if heartbeat else None,
            retry_on_service_exceptions=True,
            result_path=f"$.{state.result_key}",
        )

    def _link_wait(self, name: str, state: StateDecl, first: sfn.State, after: sfn.IChainable | None,
                   failure: sfn.IChainable, built: dict[str, sfn.State]) -> None:
        """A wait, in one phase or two (``alarm_after``: overdue, then the rest of its timeout)."""
        assert isinstance(first, tasks.LambdaInvoke)
        cancelled = built[state.on_cancel] if state.on_cancel else self._cancelled_state()
        wait = str(state.wait_for)
        timed_out = self._ended_wait(f"{name}TimedOut", "wait_timed_out",
                                     f"nothing completed the wait for {wait} within "
                                     f"{_duration(state.wait_timeout_seconds)} (state {name})", failure)
        missed = (self._ended_wait(f"{name}HeartbeatMissed", "wait_heartbeat_missed",
                                   f"no heartbeat for {wait} within {_duration(state.heartbeat or 0)} (state {name})",
                                   failure) if state.heartbeat else None)
        phases: list[tasks.LambdaInvoke] = [first]
        on_timeout: list[sfn.IChainable] = [timed_out]
        alarm = state.alarm_after
        if alarm is not None:
            overdue = self._task(f"{name}Overdue", "wait.overdue", result_path=f"$.{state.result_key}_overdue",
                                 extra={"wait": wait, "execution": sfn.JsonPath.string_at("$$.Execution.Name")})
            self._policies(overdue, state)
            overdue.add_catch(failure, errors=["States.ALL"], result_path="$.error")
            again = self._wait_task(f"{name}Again", state, state.wait_timeout_seconds - alarm)
            overdue.next(again)
            phases.append(again)
            on_timeout.insert(0, overdue)
        for phase, timeout_next in zip(phases, on_timeout, strict=True):
            self._policies(phase, state)
            phase.add_catch(cancelled, errors=[WAIT_CANCELLED], result_path=f"$.{state.result_key}")
            if missed is not None:  # first: a missed heartbeat matches States.Timeout too
                phase.add_catch(missed, errors=["States.HeartbeatTimeout"], result_path="$.error")
            last = timeout_next is timed_out
            phase.add_catch(timeout_next, errors=["States.Timeout"],
                            result_path="$.error" if last else f"$.{state.result_key}_timeout")
            phase.add_catch(failure, errors=["States.ALL"], result_path="$.error")
            if after is not None:
                phase.next(after)

    def _ended_wait(self, state_id: str, reason: str, message: str, failure: sfn.IChainable) -> sfn.Pass:
        """Puts the wait's reason where RecordFailure reads it (``$.error``), then the failure path."""
        cause = json.dumps({"reason": reason, "error_class": "timed_out", "message": message})
        ended = sfn.Pass(self.scope, state_id, result=sfn.Result.from_object({"Error": reason, "Cause": cause}),
                         result_path="$.error")
        ended.next(failure)
        return ended

    def _cancelled_state(self) -> sfn.Succeed:
        if self._cancelled is None:
            self._cancelled = sfn.Succeed(self.scope, "Cancelled", comment="The wait was cancelled: nothing more to do")
        return self._cancelled

    def _task(self, state_id: str, step: str | None, *, result_path: str,
              extra: dict[str, object] | None = None) -> tasks.LambdaInvoke:
        named = {"step": step} if step is not None else {}  # several steps: ``extra`` lists them
        return tasks.LambdaInvoke(
            self.scope,
            state_id,
            lambda_function=self.steps,
            payload=sfn.TaskInput.from_object({**named, "state": sfn.JsonPath.object_at("$"), **(extra or {})}),
            payload_response_only=True,
            retry_on_service_exceptions=True,
            result_path=result_path,
        )

    def _policies(self, task: tasks.LambdaInvoke, state: StateDecl) -> None:
        for kind in ERROR_KINDS:
            # a connection waiting for a reconnect: the execution waits, its event is not dead-lettered
            self._retry(task, STEP_ERROR_OF[kind], self.config.policy(state, kind))

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


_COLON = ArnFormat.COLON_RESOURCE_NAME


@jsii.implements(IValidation)
class _DefinitionRules:
    """At synth: the rendered ASL keeps ``check_definition``'s rules (references rendered as placeholders)."""

    def __init__(self, machine: sfn.StateMachine) -> None:
        self._machine = machine

    def validate(self) -> list[str]:
        resource = self._machine.node.default_child
        assert isinstance(resource, sfn.CfnStateMachine)
        rendered = Stack.of(self._machine).resolve(resource.definition_string)
        if isinstance(rendered, dict) and "Fn::Join" in rendered:
            separator, parts = rendered["Fn::Join"]
            rendered = separator.join(part if isinstance(part, str) else "REF" for part in parts)
        try:
            check_definition(json.loads(rendered))
        except ValueError as exc:
            return [f"state machine {self._machine.node.path}: {exc}"]
        return []


def _duration(seconds: int) -> str:
    for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"
