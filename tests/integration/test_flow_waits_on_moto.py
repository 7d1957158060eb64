"""A declared state machine with a wait for a callback, synthesized by the generic builder (CDK) and run on
moto's Step Functions engine with the steps function in process (the same StepApp the Lambda runs, the real
switchyard.waits store on moto's DynamoDB, the real DLQ on moto's SQS).

The test flow is the shape of an order that waits for its shipment: create the order in an ERP, wait for
the shipment (completed by a callback by entity), ship it in the shop; a cancellation cancels the ERP order
and ends the waiting execution; a failure compensates (undo the ERP order) and dead-letters with its reason.
Waits and Retry intervals are real seconds on moto, so the timeouts here are seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard.aws.sqs import SqsDeadLetters
from switchyard.compose import StepApp
from switchyard.errors import PermanentError
from switchyard.events import flow_message
from switchyard.machine_declaration import StateMachineConfig
from switchyard.state_machines import DEAD_LETTERED, ExecutionStarter, StepHandlers, WaitSteps
from switchyard.waits import Waits
from switchyard_local.stepfunctions import CallbackFixes, InProcessLambdas

REGION = "us-east-1"
FLOW = "shop-to-erp"
TABLE = "switchyard"
REJECTED = 666  # an order the ERP refuses (bad customer data)
EXECUTION_TIMEOUT_SECONDS = 30
# no retry waits: a step error is permanent or retried at once
FAST = {"interval_seconds": 1, "max_attempts": 1, "backoff_rate": 1.0, "max_delay_seconds": 1}
# what both declarations below share: the key, the retry policies and the two routes
COMMON: dict[str, Any] = {
    "key": "Order.OrderGuid",
    "timeout_minutes": 60,
    "retry": FAST, "throttled": FAST, "rate_limited": FAST, "out_of_order": FAST, "waiting_for_connection": FAST,
    "routes": {"placed": {"event": "order.placed", "suffix": ""},
               "cancel": {"event": "order.status_changed", "where": {"Order.OrderStatusId": 40}}},
}
DECLARATION = StateMachineConfig.model_validate({
    **COMMON,
    "states": {
        "Route": {"choose": [{"route": "placed", "next": "CreateOrder"}, {"route": "cancel", "next": "CancelOrder"}]},
        "CreateOrder": {"run": "erp.create_order", "next": "Shipment", "compensate": "UndoOrder"},
        "Shipment": {"wait_for": "shipment", "timeout_seconds": 6, "alarm_after_seconds": 3, "next": "Shipped",
                     "compensate": "UndoOrder"},
        "Shipped": {"choose": [{"output": "shipment.partial", "equals": True, "next": "ShipPart"}],
                    "otherwise": "Ship"},
        "ShipPart": {"run": "shop.ship", "result": "ship_part"},
        "Ship": {"run": "shop.ship"},
        "CancelOrder": {"run": "erp.cancel_order", "next": "EndWait"},
        "EndWait": {"cancel_wait": "shipment"},
        "UndoOrder": {"run": "erp.undo_order"},
    },
})


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.metrics: list[str] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.metrics.append(name)


def handlers(recorder: Recorder) -> StepHandlers:
    def guid(state: Mapping[str, Any]) -> str:
        return str(json.loads(json.loads(state["message"])["body"])["data"]["Order"]["OrderGuid"])

    def create_order(state: Mapping[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("create_order", guid(state)))
        if json.loads(json.loads(state["message"])["body"])["data"]["Order"]["Id"] == REJECTED:
            raise PermanentError("the ERP rejected the customer: ExternalID missing", reason="customer_rejected")
        return {"erp_order": f"SO-{guid(state)[:8]}"}

    def ship(state: Mapping[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("ship", guid(state)))
        return {"tracking": state["shipment"]["tracking"], "erp_order": state["create_order"]["erp_order"]}

    def cancel_order(state: Mapping[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("cancel_order", guid(state)))
        return {"cancelled": True}

    def undo_order(state: Mapping[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("undo_order", guid(state)))
        return {"undone": True, "because": state["error"]["Error"]}

    return StepHandlers({"erp.create_order": create_order, "shop.ship": ship, "erp.cancel_order": cancel_order,
                         "erp.undo_order": undo_order})


# the same flow whose shipment wait wants a heartbeat every 2 s (a poll that sees the order still open)
WITH_HEARTBEAT = StateMachineConfig.model_validate({
    **DECLARATION.model_dump(exclude_none=True, exclude_defaults=True),
    "states": {**{name: state.model_dump(exclude_none=True, exclude_defaults=True)
                  for name, state in DECLARATION.states.items()},
               "Shipment": {"wait_for": "shipment", "timeout_seconds": 20, "heartbeat_seconds": 2, "next": "Shipped",
                            "compensate": "UndoOrder"}},
})


@pytest.fixture(scope="module")
def definitions() -> dict[str, dict[str, Any]]:
    return {}


def synthesized(declaration: StateMachineConfig) -> dict[str, Any]:
    """The declaration's ASL as CDK synthesizes it (the steps function's ARN left as a placeholder)."""
    from aws_cdk import App, Duration, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_stepfunctions as sfn

    from infra.constructs.state_machine import MachineDefinition

    stack = Stack(App(), "WaitsTest")
    steps = lambda_.Function(stack, "Steps", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
                             code=lambda_.Code.from_inline("def handler(event, context): pass"))
    machine = sfn.StateMachine(stack, "Machine", timeout=Duration.seconds(EXECUTION_TIMEOUT_SECONDS),
                               definition_body=sfn.DefinitionBody.from_chainable(
                                   MachineDefinition(stack, declaration, steps).start))
    resource = stack.resolve(machine.node.default_child.definition_string)  # type: ignore[union-attr]
    separator, parts = resource["Fn::Join"]
    rendered = (part if isinstance(part, str) else "aws" if part == {"Ref": "AWS::Partition"} else "STEPS_ARN"
                for part in parts)
    return json.loads(separator.join(rendered))


class Stack:
    """moto with the machine registered, the steps function in process, the waits and the DLQ."""

    def __init__(self, definition: dict[str, Any], declaration: StateMachineConfig) -> None:
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        self.dlq = self.sqs.create_queue(QueueName="dlq")["QueueUrl"]
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        function_arn = boto3.client("lambda", region_name=REGION).create_function(
            FunctionName="steps", Runtime="python3.12", Role=role, Handler="index.handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18})["FunctionArn"]
        text = json.dumps(definition).replace("STEPS_ARN", function_arn)
        self.arn = self.sfn.create_state_machine(name=FLOW, definition=text, roleArn=role)["stateMachineArn"]
        self.recorder = Recorder()
        self.waits = Waits(dynamodb, TABLE, self.sfn, FLOW)
        self.app = StepApp(flow=FLOW, steps=_Fixed(handlers(self.recorder)),
                           dead_letters=SqsDeadLetters(self.sqs, self.dlq),
                           wait_steps=WaitSteps(declaration, self.waits, metrics=self.recorder),
                           describe=lambda arn: self.sfn.describe_execution(executionArn=arn))
        self.starter = ExecutionStarter(self.sfn, self.arn, declaration)

    def send(self, event_type: str, guid: str, *, status: int = 10, order_id: int = 1) -> str:
        body = json.dumps({"type": event_type, "timestamp": "2026-12-03T10:00:00Z",
                           "data": {"Order": {"OrderGuid": guid, "Id": order_id, "OrderStatusId": status}}})
        message = flow_message(flow=FLOW, event_id=f"msg_{guid}_{event_type}", source="shop", event_type=event_type,
                               timestamp="2026-12-03T10:00:00+00:00", received_at="2026-12-03T10:00:01+00:00",
                               body=body)
        from switchyard.events import FlowEvent

        result = self.starter.deliver(FlowEvent.from_message(message))
        assert result.outcome == "started", result
        return str(result.detail["execution_arn"])

    def describe(self, execution_arn: str) -> dict[str, Any]:
        return dict(self.sfn.describe_execution(executionArn=execution_arn))

    def until(self, execution_arn: str, *, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (described := self.describe(execution_arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"{execution_arn} still running"
            time.sleep(0.1)
        return described

    def until_waiting(self, guid: str, *, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not (self.waits.waiting("shipment", guid) or {}).get("execution"):
            assert time.monotonic() < deadline, "the execution never reached its wait"
            time.sleep(0.05)

    def letters(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(QueueUrl=self.dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


class _Fixed:
    """ConnectionBound's shape: ``get()`` gives the handlers (no secrets in this test)."""

    def __init__(self, steps: StepHandlers) -> None:
        self._steps = steps

    def get(self) -> StepHandlers:
        return self._steps


class _InProcess:
    def __init__(self, app: StepApp) -> None:
        self.app = app

    def invoke(self, payload: dict[str, Any]) -> Any:
        return self.app.handle(payload)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        cause = CallbackFixes().start()  # the local stack's fixes of moto's callbacks
        try:
            yield
        finally:
            cause.stop()


def running(declaration: StateMachineConfig, definitions: dict[str, dict[str, Any]]) -> Iterator[Stack]:
    key = declaration.model_dump_json()
    if key not in definitions:
        definitions[key] = synthesized(declaration)
    built = Stack(definitions[key], declaration)
    lambdas = InProcessLambdas({"steps": _InProcess(built.app)}).start()  # type: ignore[dict-item]
    try:
        yield built
    finally:
        lambdas.stop()


@pytest.fixture
def stack(aws: None, definitions: dict[str, dict[str, Any]]) -> Iterator[Stack]:
    yield from running(DECLARATION, definitions)


@pytest.fixture
def heartbeat_stack(aws: None, definitions: dict[str, dict[str, Any]]) -> Iterator[Stack]:
    yield from running(WITH_HEARTBEAT, definitions)


GUID = "8d7c6b5a-0000-4000-8000-00000000000{}"


def test_a_wait_completed_by_its_callback_goes_on_with_what_the_callback_said(stack: Stack) -> None:
    execution = stack.send("order.placed", GUID.format(1))
    stack.until_waiting(GUID.format(1))
    assert stack.describe(execution)["status"] == "RUNNING"  # waiting for the shipment

    assert stack.waits.complete("shipment", GUID.format(1), {"tracking": "1Z999", "partial": False}) == "delivered"

    done = stack.until(execution)
    assert done["status"] == "SUCCEEDED"
    output = json.loads(done["output"])
    assert output["shipment"] == {"tracking": "1Z999", "partial": False}
    assert output["ship"] == {"tracking": "1Z999", "erp_order": "SO-8d7c6b5a"}  # the choice on the wait's output
    assert stack.recorder.calls == [("create_order", GUID.format(1)), ("ship", GUID.format(1))]
    assert stack.letters() == []
    # a second completion (a redelivered webhook) finds nobody waiting and changes nothing
    assert stack.waits.complete("shipment", GUID.format(1), {"tracking": "1Z999"}) == "stored"


def test_a_callback_before_the_execution_reached_its_wait_is_not_lost(stack: Stack) -> None:
    # the shipment webhook is faster than the order's steps: nobody waits yet, the outcome is stored
    assert stack.waits.complete("shipment", GUID.format(2), {"tracking": "1Z2", "partial": True}) == "stored"
    done = stack.until(stack.send("order.placed", GUID.format(2)))
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"])["ship_part"]["tracking"] == "1Z2"  # the other branch of the choice


def test_a_wait_nobody_completes_is_overdue_then_times_out_compensates_and_dead_letters(stack: Stack) -> None:
    execution = stack.send("order.placed", GUID.format(3))
    stack.until_waiting(GUID.format(3))
    time.sleep(4)  # past alarm_after (3 s): the overdue step ran, the execution waits again
    assert stack.recorder.metrics == ["WaitsOverdue"]
    assert stack.describe(execution)["status"] == "RUNNING"

    done = stack.until(execution)

    assert (done["status"], done.get("error")) == ("FAILED", DEAD_LETTERED)
    assert stack.recorder.calls == [("create_order", GUID.format(3)), ("undo_order", GUID.format(3))]
    (letter,) = stack.letters()
    assert (letter["flow"], letter["reason"], letter["error_class"]) == (FLOW, "wait_timed_out", "timed_out")
    assert "nothing completed the wait for shipment within 6 seconds" in letter["message"]
    assert json.loads(letter["original"])["retry_of"] == execution.rsplit(":", 1)[1]  # a redrive starts anew


def test_a_cancellation_ends_the_waiting_execution_without_a_dead_letter(stack: Stack) -> None:
    waiting = stack.send("order.placed", GUID.format(4))
    stack.until_waiting(GUID.format(4))

    cancel = stack.send("order.status_changed", GUID.format(4), status=40)

    assert stack.until(cancel)["status"] == "SUCCEEDED"
    ended = stack.until(waiting)
    assert ended["status"] == "SUCCEEDED"
    assert json.loads(ended["output"])["shipment"]["Error"] == "WaitCancelled"
    assert ("ship", GUID.format(4)) not in stack.recorder.calls
    assert ("cancel_order", GUID.format(4)) in stack.recorder.calls
    assert stack.letters() == []


def test_a_failed_step_runs_its_compensation_then_dead_letters_with_the_steps_reason(stack: Stack) -> None:
    done = stack.until(stack.send("order.placed", GUID.format(5), order_id=REJECTED))
    assert (done["status"], done.get("error")) == ("FAILED", DEAD_LETTERED)
    assert stack.recorder.calls == [("create_order", GUID.format(5)), ("undo_order", GUID.format(5))]
    (letter,) = stack.letters()
    assert (letter["reason"], letter["error_class"]) == ("customer_rejected", "permanent")
    assert "ExternalID missing" in letter["message"]


def test_a_wait_failed_by_its_callback_compensates_and_dead_letters_with_the_callers_reason(stack: Stack) -> None:
    execution = stack.send("order.placed", GUID.format(6))
    stack.until_waiting(GUID.format(6))
    assert stack.waits.fail("shipment", GUID.format(6), reason="shipment_lost",
                            message="the carrier lost parcel 1Z6") == "delivered"
    done = stack.until(execution)
    assert (done["status"], done.get("error")) == ("FAILED", DEAD_LETTERED)
    assert ("undo_order", GUID.format(6)) in stack.recorder.calls
    (letter,) = stack.letters()
    assert (letter["reason"], letter["message"]) == ("shipment_lost", "the carrier lost parcel 1Z6")


def test_an_execution_that_times_out_is_dead_lettered_by_the_execution_ended_handler(stack: Stack) -> None:
    # Step Functions has no Catch for an execution's own timeout: EventBridge's status change event reaches the
    # steps function (moto's engine emits no such event, so it is sent here as EventBridge would)
    execution = stack.send("order.placed", GUID.format(7))
    stack.until_waiting(GUID.format(7))
    stack.sfn.stop_execution(executionArn=execution, error="Operator", cause="stopped to test")
    described = stack.describe(execution)
    detail = {"executionArn": execution, "stateMachineArn": stack.arn, "name": described["name"],
              "status": "TIMED_OUT", "input": None, "error": "States.Timeout", "cause": None}
    answer = stack.app.handle({"detail-type": "Step Functions Execution Status Change", "source": "aws.states",
                               "detail": detail})
    assert answer["dead_lettered"] is True
    (letter,) = stack.letters()
    assert (letter["reason"], letter["error_class"], letter["event_id"]) == (
        "execution_timed_out", "timed_out", f"msg_{GUID.format(7)}_order.placed")
    # a failure through the machine's own handler is in the DLQ already: not twice
    again = stack.app.handle({"detail-type": "Step Functions Execution Status Change",
                              "detail": {**detail, "status": "FAILED", "error": DEAD_LETTERED}})
    assert again == {"dead_lettered": False, "reason": "dead_lettered_already"}


def test_a_wait_stays_while_heartbeats_come_and_dead_letters_when_they_stop(heartbeat_stack: Stack) -> None:
    stack = heartbeat_stack
    execution = stack.send("order.placed", GUID.format(8))
    stack.until_waiting(GUID.format(8))
    for _ in range(4):  # 4 s of heartbeats, twice the heartbeat timeout
        time.sleep(1)
        assert stack.waits.heartbeat("shipment", GUID.format(8)) is True
    assert stack.describe(execution)["status"] == "RUNNING"

    done = stack.until(execution)  # no more heartbeats

    assert (done["status"], done.get("error")) == ("FAILED", DEAD_LETTERED)
    assert ("undo_order", GUID.format(8)) in stack.recorder.calls
    (letter,) = stack.letters()
    assert letter["reason"] == "wait_heartbeat_missed"
    assert "no heartbeat for shipment within 2 seconds" in letter["message"]
    assert stack.waits.heartbeat("shipment", GUID.format(8)) is False  # nobody waits any more


# --------------------------------------------------------------------------- several steps in one task

# the route picks the steps of ONE task (no Choice state); a choice after it reads an inner step's result
IN_ONE_TASK = StateMachineConfig.model_validate({
    **COMMON,
    "states": {
        "Book": {"run": {"placed": ["erp.create_order", "erp.cancel_order"], "cancel": ["erp.cancel_order"]},
                 "next": "Decide", "compensate": "UndoOrder"},
        "Decide": {"choose": [{"output": "cancel_order.cancelled", "equals": True, "next": "Again"}]},
        "Again": {"run": "erp.cancel_order", "result": "again"},
        "UndoOrder": {"run": "erp.undo_order"},
    },
})


@pytest.fixture
def one_task_stack(aws: None, definitions: dict[str, dict[str, Any]]) -> Iterator[Stack]:
    yield from running(IN_ONE_TASK, definitions)


def _entered(stack: Stack, execution_arn: str) -> list[str]:
    events = stack.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def test_one_task_runs_the_routes_steps_and_the_next_states_read_each_steps_result(one_task_stack: Stack) -> None:
    stack = one_task_stack
    done = stack.until(stack.send("order.placed", GUID.format(8)))

    assert done["status"] == "SUCCEEDED"
    output = json.loads(done["output"])
    assert (output["create_order"], output["cancel_order"], output["again"]) == (
        {"erp_order": "SO-8d7c6b5a"}, {"cancelled": True}, {"cancelled": True})
    assert output["route"] == "placed" and "message" in output  # the execution's own fields are kept
    assert stack.recorder.calls == [("create_order", GUID.format(8)), ("cancel_order", GUID.format(8)),
                                    ("cancel_order", GUID.format(8))]
    # two steps, one state entered; the last task ends the execution (no Succeed state)
    assert _entered(stack, done["executionArn"]) == ["Book", "Decide", "Again"]


def test_a_failing_inner_step_compensates_and_dead_letters_with_its_reason_and_names_itself(
        one_task_stack: Stack) -> None:
    stack = one_task_stack
    done = stack.until(stack.send("order.placed", GUID.format(9), order_id=REJECTED))

    assert (done["status"], done.get("error")) == ("FAILED", DEAD_LETTERED)
    # the steps after the failing one never ran; the compensation did
    assert stack.recorder.calls == [("create_order", GUID.format(9)), ("undo_order", GUID.format(9))]
    (letter,) = stack.letters()
    assert (letter["reason"], letter["error_class"]) == ("customer_rejected", "permanent")
    events = stack.sfn.get_execution_history(executionArn=done["executionArn"], maxResults=1000)["events"]
    (failed,) = [details for e in events if e["type"] in ("TaskFailed", "LambdaFunctionFailed")
                 for key, details in e.items() if key.endswith("FailedEventDetails")]
    cause = json.loads(json.loads(failed["cause"])["errorMessage"])
    assert (failed["error"], cause["step"]) == ("StepFailed", "erp.create_order")
