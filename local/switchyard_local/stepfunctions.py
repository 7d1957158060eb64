"""Step Functions on the local stack: moto's execution engine running the synthesized definitions, with
every Lambda task served by the in-process functions (LOCAL-STACK notes: both need one adapter each).

* moto's CloudFormation creates state machines in a backend its execution engine does not read, so each
  one is registered again, under the same name and definition, through the Step Functions API.
* moto runs a Lambda function in Docker; every invocation path (a Step Functions task included) goes
  through ``LambdaFunction._invoke_lambda``, which is replaced while the stack runs. A function error is
  answered the way Lambda answers it (``errorType`` = the exception's class name), so the definition's
  Retry and Catch match exactly as they do in AWS.
"""

from __future__ import annotations

import json
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
