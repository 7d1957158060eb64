"""ExecutionStarter against moto's Step Functions engine, and moto's StartExecution pinned to the real
service's behaviour for a name it has seen (the flow relies on it): same name and input while running ->
the existing execution; other input, or a closed execution -> ExecutionAlreadyExists."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from switchyard.catalog import load_catalog
from switchyard.events import FlowEvent, flow_message
from switchyard.state_machines import ExecutionStarter

REGION = "us-east-1"
FLOW = "nopcommerce-to-quickbooks"
DECLARATION = load_catalog().flows[FLOW].state_machine  # its routes and key name the executions
GUID = "6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10"
# an execution runs a second, or fails at once for the event "msg_fail"
DEFINITION = {"StartAt": "Route", "States": {
    "Route": {"Type": "Choice", "Choices": [{"Variable": "$.event_id", "StringEquals": "msg_fail", "Next": "Failed"}],
              "Default": "Work"},
    "Work": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
    "Done": {"Type": "Succeed"},
    "Failed": {"Type": "Fail", "Error": "StepFailed", "Cause": "{}"}}}


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name=REGION)


@pytest.fixture
def arn(sfn: Any) -> str:
    return sfn.create_state_machine(name="order-to-cash", definition=json.dumps(DEFINITION),
                                    roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]


def paid(event_id: str) -> FlowEvent:
    body = json.dumps({"type": "order.paid", "timestamp": "2026-11-25T10:00:00Z",
                       "data": {"Order": {"OrderGuid": GUID, "OrderStatusId": 20, "Id": 7}}})
    return FlowEvent.from_message(flow_message(flow=FLOW, event_id=event_id, source="nopcommerce",
                                               event_type="order.paid", timestamp="2026-11-25T10:00:00+00:00",
                                               received_at="2026-11-25T10:00:01+00:00", body=body))


def settle(sfn: Any, arn: str) -> None:
    deadline = time.monotonic() + 10
    while sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def names(sfn: Any, arn: str) -> list[str]:
    return sorted(e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"])


def test_moto_start_execution_answers_a_seen_name_like_step_functions(sfn: Any) -> None:
    slow = {"StartAt": "Work", "States": {"Work": {"Type": "Wait", "Seconds": 3, "End": True}}}  # running a while
    arn = sfn.create_state_machine(name="slow", definition=json.dumps(slow),
                                   roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
    first = sfn.start_execution(stateMachineArn=arn, name="x", input='{"a":1}')
    again = sfn.start_execution(stateMachineArn=arn, name="x", input='{"a":1}')  # running, same input
    assert (again["executionArn"], again["startDate"]) == (first["executionArn"], first["startDate"])
    with pytest.raises(ClientError) as other_input:
        sfn.start_execution(stateMachineArn=arn, name="x", input='{"a":2}')
    assert other_input.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    settle(sfn, arn)
    with pytest.raises(ClientError) as closed:
        sfn.start_execution(stateMachineArn=arn, name="x", input='{"a":1}')
    assert closed.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    assert names(sfn, arn) == ["x"]


def test_repeated_order_paid_never_starts_a_second_execution(sfn: Any, arn: str) -> None:
    assert ExecutionStarter(sfn, arn, DECLARATION).deliver(paid("msg_1")).outcome == "started"
    # SQS redelivers a message after its visibility timeout: the worker's clock is minutes on
    starter = ExecutionStarter(sfn, arn, DECLARATION, now=lambda: datetime.now(UTC) + timedelta(minutes=5))
    outcomes = [starter.deliver(paid("msg_1")).outcome,  # redelivered while running
                starter.deliver(paid("msg_2")).outcome]  # nopCommerce sent it again, under a new id
    settle(sfn, arn)
    outcomes += [starter.deliver(paid("msg_1")).outcome, starter.deliver(paid("msg_2")).outcome]
    assert outcomes == ["duplicate"] * 4
    assert names(sfn, arn) == [f"{FLOW}-{GUID}-paid"]


def test_event_of_a_failed_execution_starts_the_next_name(sfn: Any, arn: str) -> None:
    starter = ExecutionStarter(sfn, arn, DECLARATION)
    assert starter.deliver(paid("msg_fail")).outcome == "started"
    settle(sfn, arn)
    redriven = starter.deliver(paid("msg_fail"))
    assert (redriven.outcome, redriven.detail["execution"]) == ("started", f"{FLOW}-{GUID}-paid-r2")
