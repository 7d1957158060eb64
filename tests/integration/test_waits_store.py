"""switchyard.waits on moto's DynamoDB with a Step Functions fake that records what each token was sent: who
delivers, when a token is dead, and that an outcome is delivered once per token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from switchyard.errors import RetryableError
from switchyard.waits import WAIT_CANCELLED, WAIT_FAILED, Waits

TABLE = "switchyard"
FLOW = "shop-to-erp"


class StepFunctions:
    """SendTask*: a token answers once; a closed or unknown token is refused as Step Functions refuses it."""

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.sent: list[tuple[str, str, Any]] = []
        self.heartbeats: list[str] = []
        self.down = False

    def _take(self, token: str) -> None:
        if self.down:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendTaskSuccess")
        if token not in self.open:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "gone"}}, "SendTaskSuccess")
        self.open.discard(token)

    def send_task_success(self, *, taskToken: str, output: str) -> None:
        self._take(taskToken)
        self.sent.append((taskToken, "success", json.loads(output)))

    def send_task_failure(self, *, taskToken: str, error: str, cause: str) -> None:
        self._take(taskToken)
        self.sent.append((taskToken, error, json.loads(cause)))

    def send_task_heartbeat(self, *, taskToken: str) -> None:
        if taskToken not in self.open:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "gone"}}, "SendTaskHeartbeat")
        self.heartbeats.append(taskToken)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Waits, StepFunctions, Any]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        sfn = StepFunctions()
        yield Waits(dynamodb, TABLE, sfn, FLOW, clock=lambda: 1_000_000.0), sfn, dynamodb


def register(waits: Waits, sfn: StepFunctions, token: str, entity: str = "order-1") -> str:
    sfn.open.add(token)
    return waits.register("shipment", entity, token, execution=f"exec-{token}", timeout_seconds=86_400)


def test_a_waiting_execution_gets_the_outcome_once_and_a_repeat_is_only_stored(waits):
    store, sfn, dynamodb = waits
    assert register(store, sfn, "t1") == "waiting"
    assert store.complete("shipment", "order-1", {"tracking": "1Z"}) == "delivered"
    assert store.complete("shipment", "order-1", {"tracking": "1Z"}) == "stored"  # a redelivered webhook
    assert sfn.sent == [("t1", "success", {"tracking": "1Z"})]
    item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "wait#shop-to-erp#shipment#order-1"}})["Item"]
    assert (item["delivered_to"]["S"], item["execution"]["S"]) == ("t1", "exec-t1")
    assert int(item["expiration"]["N"]) == 1_000_000 + 86_400 + 30 * 86_400  # the table's TTL keeps it a while


def test_an_outcome_that_came_first_completes_the_token_when_the_wait_begins(waits):
    store, sfn, _ = waits
    assert store.cancel("shipment", "order-1", reason="cancelled", message="order.status_changed e9") == "stored"
    assert register(store, sfn, "t1") == "delivered"
    ((token, error, cause),) = sfn.sent
    assert (token, error, cause["reason"], cause["error_class"]) == ("t1", WAIT_CANCELLED, "cancelled", "cancelled")


def test_an_outcome_for_a_token_that_ended_waits_for_the_next_registration_a_redrive(waits):
    store, sfn, _ = waits
    assert register(store, sfn, "t1") == "waiting"
    sfn.open.discard("t1")  # the wait timed out: its execution was dead-lettered
    assert store.fail("shipment", "order-1", reason="shipment_lost", message="parcel lost") == "stored"
    assert register(store, sfn, "t2") == "delivered"  # the redriven execution's wait
    assert sfn.sent == [("t2", WAIT_FAILED, {"reason": "shipment_lost", "message": "parcel lost",
                                             "error_class": "permanent"})]


def test_heartbeats_reach_a_waiting_token_only(waits):
    store, sfn, _ = waits
    assert store.heartbeat("shipment", "order-1") is False  # nobody waits
    register(store, sfn, "t1")
    assert store.heartbeat("shipment", "order-1") is True
    store.complete("shipment", "order-1", {})
    assert store.heartbeat("shipment", "order-1") is False  # done
    assert sfn.heartbeats == ["t1"]


def test_step_functions_unavailable_is_retryable_and_the_outcome_stays_for_the_retry(waits):
    store, sfn, _ = waits
    register(store, sfn, "t1")
    sfn.down = True
    with pytest.raises(RetryableError) as failed:
        store.complete("shipment", "order-1", {"tracking": "1Z"})
    assert failed.value.reason == "wait_callback_failed"
    sfn.down = False
    assert store.complete("shipment", "order-1", {"tracking": "1Z"}) == "delivered"
    assert store.waiting("shipment", "order-1")["outcome"] == {"kind": "success", "output": {"tracking": "1Z"}}
