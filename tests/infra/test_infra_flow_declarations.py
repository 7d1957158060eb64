"""The generic state machine builder on a declaration with a wait for a callback, a compensation and a flow
that completes the wait (a catalog of flows.yaml plus one such flow, synthesized as the dev stack), and the
errors synth gives for a declaration it cannot build."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from switchyard.catalog import Catalog, config_dir

from infra.constructs.state_machine import DeclarationError
from tests.infra.conftest import Cfn

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

WAITING = "nopcommerce-to-quickbooks-shipped"
SHIPMENT = {"wait_for": "shipment", "timeout_days": 30, "alarm_after_hours": 72, "heartbeat_hours": 24,
            "next": "WriteBack", "compensate": "Undo"}


def catalog_with(states: dict[str, Any]) -> Catalog:
    """flows.yaml plus a state-machine flow that waits (its steps borrowed from QuickBooks: the builder does not
    care what a step does), whose wait the stock flow completes."""
    raw = yaml.safe_load((config_dir() / "flows.yaml").read_text())
    order_to_cash = raw["flows"]["nopcommerce-to-quickbooks"]
    raw["flows"][WAITING] = {**order_to_cash, "state_machine": {
        "key": "Order.OrderGuid", "timeout_days": 45,
        "routes": {"placed": {"event": "order.placed", "suffix": ""},
                   "cancel": {"event": "order.status_changed", "where": {"Order.OrderStatusId": 40}}},
        "states": states}}
    raw["flows"]["quickbooks-to-nopcommerce"]["completes_waits_of"] = [WAITING]
    return Catalog.model_validate(raw)


STATES = {
    "Route": {"choose": [{"route": "placed", "next": "Customer"}, {"route": "cancel", "next": "Cancel"}]},
    # two steps in one task, then the wait; a failure of either compensates
    "Customer": {"run": ["quickbooks.customer", "quickbooks.items"], "next": "Shipment", "compensate": "Undo"},
    "Shipment": SHIPMENT,
    "WriteBack": {"run": "quickbooks.write_back"},
    "Cancel": {"run": "quickbooks.cancel", "next": "EndWait"},
    "EndWait": {"cancel_wait": "shipment"},
    "Undo": {"run": "quickbooks.cancel", "result": "undo"},
}


def synth(catalog: Catalog) -> dict[str, Any]:
    from infra.application import project_context
    from infra.settings import STAGES_CONTEXT, stages_from_context
    from infra.stack import SwitchyardStack

    stage = stages_from_context(project_context()[STAGES_CONTEXT])["dev"]
    app = App()
    stack = SwitchyardStack(app, "Switchyard-dev", stage=stage, catalog=catalog, bundle_dependencies=False)
    return app.synth().get_stack_by_name(stack.stack_name).template


@pytest.fixture(scope="module")
def waiting() -> Cfn:
    return Cfn(synth(catalog_with(STATES)))


@pytest.fixture(scope="module")
def states(waiting: Cfn) -> dict[str, Any]:
    machine = waiting.one(role="state-machine", flow=WAITING)
    return json.loads(waiting.render(machine.properties["DefinitionString"]))["States"]


def test_a_wait_stores_its_token_through_the_steps_function_with_heartbeat_and_overdue_phase(states):
    first, again = states["Shipment"], states["ShipmentAgain"]
    for task in (first, again):
        assert task["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
        payload = task["Parameters"]["Payload"]
        assert (payload["step"], payload["wait"], payload["token.$"]) == ("wait.register", "shipment", "$$.Task.Token")
        assert task["HeartbeatSeconds"] == 24 * 3600
    assert first["TimeoutSeconds"] == 72 * 3600  # overdue: the alarm's metric, then it waits on
    assert again["TimeoutSeconds"] == 30 * 86_400 - 72 * 3600  # the rest of the wait's timeout
    catches = [(c["ErrorEquals"], c["Next"]) for c in first["Catch"]]
    assert catches == [(["WaitCancelled"], "Cancelled"), (["States.HeartbeatTimeout"], "ShipmentHeartbeatMissed"),
                       (["States.Timeout"], "ShipmentOverdue"), (["States.ALL"], "Undo")]
    assert [c["Next"] for c in again["Catch"]] == ["Cancelled", "ShipmentHeartbeatMissed", "ShipmentTimedOut", "Undo"]
    assert states["ShipmentOverdue"]["Parameters"]["step"] == "wait.overdue"
    assert states["ShipmentOverdue"]["Next"] == "ShipmentAgain"
    assert first["Next"] == again["Next"] == "WriteBack"


def test_a_timed_out_wait_compensates_then_dead_letters_with_its_reason(states):
    timed_out = states["ShipmentTimedOut"]
    assert (timed_out["ResultPath"], timed_out["Next"]) == ("$.error", "Undo")
    cause = json.loads(timed_out["Result"]["Cause"])
    assert (cause["reason"], cause["error_class"]) == ("wait_timed_out", "timed_out")
    assert "within 30 days" in cause["message"]
    assert json.loads(states["ShipmentHeartbeatMissed"]["Result"]["Cause"])["reason"] == "wait_heartbeat_missed"
    # the compensation keeps the original error for the letter, and ends in the failure handler
    undo = states["Undo"]
    assert (undo["Parameters"]["step"], undo["ResultPath"], undo["Next"]) == ("quickbooks.cancel", "$.undo",
                                                                              "RecordFailure")
    assert undo["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.compensation_error",
                              "Next": "RecordFailure"}]
    assert states["Customer"]["Catch"][-1]["Next"] == "Undo"
    assert states["EndWait"]["Parameters"] | {"state.$": "$"} == {"step": "wait.cancel", "wait": "shipment",
                                                                  "state.$": "$"}
    assert states["Failed"]["Error"] == "EventDeadLettered"


def test_a_waiting_flow_times_out_in_days_and_alarms_when_a_wait_is_overdue(waiting):
    machine = waiting.one(role="state-machine", flow=WAITING)
    definition = json.loads(waiting.render(machine.properties["DefinitionString"]))
    assert definition["TimeoutSeconds"] == (45 * 1440 + 14 * 1440) * 60  # its days plus a reconnect's 14
    alarms = [a for a in waiting.of_type("AWS::CloudWatch::Alarm") if a.properties.get("MetricName") == "WaitsOverdue"
              and a.properties["Dimensions"] == [{"Name": "service", "Value": WAITING}]]
    (alarm,) = alarms
    assert "docs/runbooks.md#state-machine-wait-overdue" in alarm.properties["AlarmDescription"]


def test_the_steps_and_the_completing_flow_reach_the_waits_and_may_answer_the_token(waiting):
    from tests.infra.test_infra_table_access import granted_patterns

    steps = waiting.one(role="steps", flow=WAITING)
    completing = waiting.one(role="worker", flow="quickbooks-to-nopcommerce")
    for function in (steps, completing):
        assert granted_patterns(waiting, function)[f"wait#{WAITING}#*"] == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
        granted = waiting.actions_on(waiting.by_ref(waiting.render(function.properties["Role"])).ref)
        machine_arn = [resource for resource in granted if resource.endswith(f":stateMachine:Switchyard-dev-{WAITING}")]
        assert len(machine_arn) == 1, granted
        assert granted[machine_arn[0]] == {"states:SendTaskSuccess", "states:SendTaskFailure",
                                           "states:SendTaskHeartbeat"}
    # the order-to-cash flow has no wait: no wait items, no task answers
    other = waiting.one(role="steps", flow="nopcommerce-to-quickbooks")
    assert not any(pattern.startswith("wait#") for pattern in granted_patterns(waiting, other))


def test_an_execution_ending_without_a_dead_letter_reaches_the_steps_function_through_eventbridge(waiting):
    machine = waiting.one(role="state-machine", flow=WAITING)
    rule = waiting.one(role="execution-ended", flow=WAITING)
    pattern = waiting.render(rule.properties["EventPattern"])
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"] == {"stateMachineArn": [machine.ref], "status": ["FAILED", "TIMED_OUT", "ABORTED"]}
    (target,) = rule.properties["Targets"]
    assert waiting.render(target["Arn"]) == waiting.one(role="steps", flow=WAITING).att("Arn")
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 24 * 3600


def test_an_unknown_step_handler_fails_synth_naming_the_state():
    broken = {**STATES, "WriteBack": {"run": "bng.ship_order"}}
    with pytest.raises(DeclarationError, match=r"unknown step handler bng.ship_order \(state WriteBack\)"):
        synth(catalog_with(broken))
    inside_a_list = {**STATES, "Customer": {**STATES["Customer"], "run": ["quickbooks.customer", "bng.ship_order"]}}
    with pytest.raises(DeclarationError, match=r"unknown step handler bng.ship_order \(state Customer\)"):
        synth(catalog_with(inside_a_list))


def test_steps_declared_as_a_list_are_one_task_returning_the_state_with_every_result(states, waiting):
    customer = states["Customer"]
    assert customer["Parameters"]["steps"] == ["quickbooks.customer", "quickbooks.items"]
    assert "step" not in customer["Parameters"]
    assert (customer["ResultPath"], customer["Next"]) == ("$", "Shipment")
    # the per-class retries and the compensation of the declared state hold for the whole task
    config = catalog_with(STATES).flows[WAITING].state_machine
    assert [r["ErrorEquals"] for r in customer["Retry"]][-5:] == [
        ["StepRetryable"], ["StepThrottled"], ["StepRateLimited"], ["StepOutOfOrder"], ["StepWaitingForConnection"]]
    (throttled,) = [r for r in customer["Retry"] if r["ErrorEquals"] == ["StepThrottled"]]
    assert (throttled["IntervalSeconds"], throttled["MaxAttempts"]) == (config.throttled.interval_seconds,
                                                                        config.throttled.max_attempts)
    assert customer["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Undo"}]
    # a state without next ends the execution itself: no Succeed state to enter
    assert states["WriteBack"]["End"] is True and "Done" not in states


def test_a_definition_without_a_catch_fails_synth():
    from infra.constructs.state_machine import _DefinitionRules

    app = App()
    stack = Stack(app, "Broken")
    function = lambda_.Function(stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
                                code=lambda_.Code.from_inline("def handler(event, context): pass"))
    from aws_cdk import aws_stepfunctions_tasks as tasks

    uncaught = tasks.LambdaInvoke(stack, "Uncaught", lambda_function=function)
    machine = sfn.StateMachine(stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(uncaught))
    machine.node.add_validation(_DefinitionRules(machine))
    with pytest.raises(RuntimeError, match=r"task 'Uncaught' has no Catch of States\.ALL"):
        app.synth()
