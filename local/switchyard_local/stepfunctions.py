"""Step Functions on the local stack: moto's execution engine running the synthesized definitions, with
every Lambda task served by the in-process functions (LOCAL-STACK notes: both need one adapter each).

* moto's CloudFormation creates state machines in a backend its execution engine does not read, so each
  one is registered again, under the same name and definition, through the Step Functions API.
* moto runs a Lambda function in Docker; every invocation path (a Step Functions task included) goes
  through ``LambdaFunction._invoke_lambda``, which is replaced while the stack runs. A function error is
  answered the way Lambda answers it (``errorType`` = the exception's class name), so the definition's
  Retry and Catch match exactly as they do in AWS.
* moto's engine runs the callback pattern (``lambda:invoke.waitForTaskToken`` with TimeoutSeconds and
  HeartbeatSeconds, SendTaskSuccess, SendTaskHeartbeat), with two gaps ``CallbackFixes`` closes (moto 5.2.5):
  its SendTaskFailure API drops the ``cause`` (``StepFunctionResponse.send_task_failure`` passes the error
  only), so a wait failed by its callback would dead-letter without its reason; and a missed heartbeat
  fails the task as ``States.Timeout`` where Step Functions names it ``States.HeartbeatTimeout`` (which a
  Catch can tell from the timeout).
* moto emits no EventBridge events for execution status changes: ``ExecutionStatusEvents`` sends the
  template's rules for them (an execution that timed out, was stopped or failed outside any Catch is
  dead-lettered) the event EventBridge would.
"""

from __future__ import annotations

import json
import threading
import traceback
from typing import Any

from switchyard_local.functions import FunctionError, InProcessFunction


class InProcessLambdas:
    """While started, moto invokes the functions of ``by_name`` in this process."""

    def __init__(self, by_name: dict[str, InProcessFunction]) -> None:
        self._by_name = by_name
        self._original: Any = None

    def start(self) -> InProcessLambdas:
        from moto.awslambda.models import LambdaFunction

        self._original = LambdaFunction._invoke_lambda
        functions, original = self._by_name, self._original

        def invoke(function: Any, event: Any = None) -> tuple[str, bool, str]:
            target = functions.get(function.function_name)
            if target is None:
                return original(function, event)
            payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
            try:
                return json.dumps(target.invoke(payload), default=str), False, ""
            except Exception as exc:  # a handler's error, or one before it ran: a function error either way
                error = (exc.__cause__ or exc) if isinstance(exc, FunctionError) else exc
                return json.dumps({"errorMessage": str(error), "errorType": type(error).__name__,
                                   "stackTrace": traceback.format_tb(error.__traceback__)[-5:]}), True, ""

        LambdaFunction._invoke_lambda = invoke  # type: ignore[method-assign]
        return self

    def stop(self) -> None:
        if self._original is not None:
            from moto.awslambda.models import LambdaFunction

            LambdaFunction._invoke_lambda = self._original  # type: ignore[method-assign]
            self._original = None


class CallbackFixes:
    """While started, moto's SendTaskFailure keeps the ``cause`` it is sent, and a missed heartbeat is
    ``States.HeartbeatTimeout`` (see the module's notes)."""

    def __init__(self) -> None:
        self._original: Any = None
        self._original_from_error: Any = None

    def start(self) -> CallbackFixes:
        from moto.core.responses import EmptyResult
        from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
        from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
            StatesErrorNameType,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
        from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimeoutError
        from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
        from moto.stepfunctions.responses import StepFunctionResponse

        self._original = StepFunctionResponse.send_task_failure
        self._original_from_error = original_from_error = StateTask._from_error
        heartbeat = StatesErrorNameType.StatesHeartbeatTimeout

        def from_error(task: Any, env: Any, ex: Exception) -> Any:
            if isinstance(ex, HeartbeatTimeoutError):
                return FailureEvent(env=env, error_name=StatesErrorName(typ=heartbeat),
                                    event_type=HistoryEventType.TaskTimedOut,
                                    event_details=EventDetails(taskTimedOutEventDetails=TaskTimedOutEventDetails(
                                        error=heartbeat.to_name())))
            return original_from_error(task, env, ex)

        StateTask._from_error = from_error  # type: ignore[method-assign]

        def send_task_failure(response: Any) -> Any:
            response.stepfunction_backend.send_task_failure(response._get_param("taskToken"),
                                                            error=response._get_param("error"),
                                                            cause=response._get_param("cause"))
            return EmptyResult()

        StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]
        return self

    def stop(self) -> None:
        if self._original is not None:
            from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
            from moto.stepfunctions.responses import StepFunctionResponse

            StepFunctionResponse.send_task_failure = self._original  # type: ignore[method-assign]
            StateTask._from_error = self._original_from_error  # type: ignore[method-assign]
            self._original = None


def register_state_machines(sfn: Any, template: dict[str, Any], physical: dict[str, str], account: str,
                            region: str) -> dict[str, str]:
    """Make the deployed state machines executable; returns ``{flow: state machine ARN}``."""
    from moto.stepfunctions.models import stepfunctions_backends

    deployed = {machine.arn: machine for machine in stepfunctions_backends[account][region].state_machines}
    machines = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        arn = physical[logical_id]
        machine = deployed[arn]
        registered = sfn.create_state_machine(name=machine.name, definition=machine.definition,
                                              roleArn=machine.roleArn, type="STANDARD")
        flow = (resource.get("Metadata") or {}).get("switchyard:flow", logical_id)
        machines[flow] = registered["stateMachineArn"]
    return machines


class ExecutionStatusEvents:
    """EventBridge's ``Step Functions Execution Status Change`` events, for the template's rules that ask for
    them (moto emits none): ``poll()`` finds the executions of a rule's state machine that ended in one of its
    statuses since the last poll and invokes the rule's target function with the event EventBridge would send.
    A target that raises gets the event again on the next poll (EventBridge retries too)."""

    DETAIL_TYPE = "Step Functions Execution Status Change"

    def __init__(self, sfn: Any, subscriptions: list[tuple[str, tuple[str, ...], Any]]) -> None:
        self._sfn = sfn
        self._subscriptions = subscriptions  # (state machine ARN, statuses, in-process function)
        self._delivered: set[str] = set()
        self._lock = threading.Lock()  # the background pollers and a test may poll at once: one event each

    @classmethod
    def from_template(cls, sfn: Any, template: dict[str, Any], physical: dict[str, str],
                      functions: dict[str, Any]) -> ExecutionStatusEvents:
        subscriptions = []
        for resource in template.get("Resources", {}).values():
            if resource.get("Type") != "AWS::Events::Rule":
                continue
            pattern = resource["Properties"].get("EventPattern") or {}
            if pattern.get("source") != ["aws.states"] or pattern.get("detail-type") != [cls.DETAIL_TYPE]:
                continue
            detail = pattern.get("detail") or {}
            statuses = tuple(detail.get("status") or ())
            for machine in detail.get("stateMachineArn") or ():
                for target in resource["Properties"].get("Targets") or ():
                    function = functions.get((target.get("Arn") or {}).get("Fn::GetAtt", [None])[0])
                    if isinstance(machine, dict) and "Ref" in machine and function is not None:
                        subscriptions.append((physical[machine["Ref"]], statuses, function))
        return cls(sfn, subscriptions)

    def poll(self) -> int:
        with self._lock:
            return self._poll()

    def _poll(self) -> int:
        sent = 0
        for machine, statuses, function in self._subscriptions:
            for status in statuses:
                pages = self._sfn.get_paginator("list_executions").paginate(stateMachineArn=machine,
                                                                           statusFilter=status)
                for summary in (s for page in pages for s in page["executions"]):
                    arn = summary["executionArn"]
                    if arn in self._delivered:
                        continue
                    described = self._sfn.describe_execution(executionArn=arn)
                    detail = {"executionArn": arn, "stateMachineArn": machine, "name": described["name"],
                              "status": described["status"], "startDate": _millis(described.get("startDate")),
                              "stopDate": _millis(described.get("stopDate")), "input": described.get("input"),
                              "output": described.get("output"), "error": described.get("error"),
                              "cause": described.get("cause")}
                    try:
                        function.invoke({"version": "0", "detail-type": self.DETAIL_TYPE, "source": "aws.states",
                                         "resources": [arn], "detail": detail})
                    except Exception:  # EventBridge retries a failed target: so does the next poll
                        continue
                    self._delivered.add(arn)
                    sent += 1
        return sent


def _millis(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else None
