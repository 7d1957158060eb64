"""A lost refresh answer must not end the QuickBooks connection in dead letters (issue 17 item 1).

moto (SQS queue + DLQ, DynamoDB, Secrets Manager) and the QuickBooks sandbox (in-process), with the flow's
own worker, its steps (``StepApp``, as the step Lambda runs them) and a Step Functions stand-in that starts
executions by name and re-runs a step the way the definition's Retry does. Intuit here rotates on every
refresh and refuses the previous token at once (no grace): the worst case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from switchyard.aws.sqs import SqsDeadLetters, SqsQueues
from switchyard.aws.tokens import SecretsManagerTokenStore
from switchyard.catalog import load_catalog
from switchyard.compose import StepApp
from switchyard.connection_state import METRIC, ConnectionGuard, ConnectionStatus, DynamoConnectionStates
from switchyard.events import flow_message
from switchyard.state_machines import ExecutionStarter, StepError, StepWaitingForConnection
from switchyard.systems.quickbooks.client import QuickBooksClient, QuickBooksConnection
from switchyard.systems.quickbooks.order_mapping import load_order_mapping
from switchyard.systems.quickbooks.order_to_cash import ItemCache, OrderToCash
from switchyard.table_keys import ConnectionKeys
from switchyard.worker import FlowWorker, RetryLater
from switchyard_cli.connections import exchange_authorization_code, reconnect
from switchyard_local.sandboxes.quickbooks import TOKEN_PATH, QuickBooksSandbox

FLOW = "nopcommerce-to-quickbooks"
REALM = "9130"
BASE_URL = "http://qbo.test"
TABLE = "idempotency"
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:Switchyard-dev-nopcommerce-to-quickbooks"
PLACED = ("customer", "items", "document", "write_back")
SAMPLE = Path(__file__).parents[2] / "local" / "switchyard_local" / "samples" / "nop_order_b2b.json"
ORDERS = 6


class Metrics:
    def __init__(self) -> None:
        self.names: list[str] = []

    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.names.append(name)


class Shop:
    """nopCommerce's write-back port: notes deduplicated per order, status guarded (as NopCommerceClient)."""

    def __init__(self) -> None:
        self.notes: dict[int, list[str]] = {}
        self.status: dict[int, int] = {}

    def get_order(self, order_id: int) -> dict[str, Any]:
        return {"id": order_id, "order_status_id": self.status.get(order_id, 10), "payment_status_id": 30}

    def add_order_note(self, order_id: int, note: str, *, display_to_customer: bool = False,
                       marker: str | None = None) -> bool:
        if marker is not None and any(marker in existing for existing in self.notes.get(order_id, [])):
            return False
        self.notes.setdefault(order_id, []).append(note if marker is None else f"{note} [ref {marker}]")
        return True

    def set_order_status(self, order_id: int, status_id: int, *, only_from: Any = None) -> bool:
        self.status[order_id] = status_id
        return True


class StateMachine:
    """Step Functions for this test: StartExecution by name (a second start of a name is refused), and each
    execution's placed-route steps run through the step Lambda, a waiting step staying where it is."""

    def __init__(self, steps: StepApp) -> None:
        self.steps = steps
        self.executions: dict[str, dict[str, Any]] = {}

    # the client ExecutionStarter uses
    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        if name in self.executions:
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": name}}, "StartExecution")
        self.executions[name] = {"state": json.loads(input), "next": 0, "status": "RUNNING", "waits": 0}
        return {"executionArn": f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name}"}

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        return {"status": self.executions[executionArn.rsplit(":", 1)[1]]["status"]}

    def run(self) -> None:
        """Every running execution goes as far as it can (a Retry's wait has passed)."""
        for execution in self.executions.values():
            while execution["status"] == "RUNNING":
                step = PLACED[execution["next"]]
                try:
                    execution["state"][step] = self.steps.handle({"step": step, "state": execution["state"]})
                except StepWaitingForConnection:
                    execution["waits"] += 1  # Retry: this step again, later
                    break
                except StepError as exc:  # anything else would be caught and dead-lettered
                    execution["status"] = "FAILED"
                    self.steps.handle({"step": "record_failure", "execution": "x", "state": {
                        **execution["state"], "error": {"Error": type(exc).__name__, "Cause": str(exc)}}})
                    break
                execution["next"] += 1
                if execution["next"] == len(PLACED):
                    execution["status"] = "SUCCEEDED"


def order_event(number: int) -> str:
    document = json.loads(SAMPLE.read_text())
    order = document["data"]["Order"]
    order.update(Id=number, CustomOrderNumber=str(number), OrderGuid=f"00000000-0000-4000-8000-{number:012d}")
    body = json.dumps(document)
    return flow_message(flow=FLOW, event_id=f"msg_{number}", source="nopcommerce", event_type="order.placed",
                        timestamp=document["timestamp"], received_at=document["timestamp"], body=body)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        sqs = boto3.client("sqs", region_name="us-east-1")
        yield {"dynamodb": dynamodb, "sqs": sqs, "secrets": boto3.client("secretsmanager", region_name="us-east-1"),
               "queue": sqs.create_queue(QueueName="flow")["QueueUrl"],
               "dlq": sqs.create_queue(QueueName="flow-dlq")["QueueUrl"]}


def pump(aws: dict[str, Any], worker: FlowWorker) -> int:
    """One turn of the SQS event source: the messages queued now go to the worker; handled ones are deleted
    (one a waiting event was sent again as is the next turn's)."""
    handled, turn = 0, visible(aws, "queue")
    while handled < turn:
        messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=min(10, turn - handled),
                                              AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        if not messages:
            return handled
        for message in messages:
            try:
                worker.handle(message["Body"], receive_count=int(message["Attributes"]["ApproximateReceiveCount"]),
                              receipt_handle=message["ReceiptHandle"])
            except RetryLater:
                continue
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])
            handled += 1


def visible(aws: dict[str, Any], queue: str) -> int:
    attributes = aws["sqs"].get_queue_attributes(QueueUrl=aws[queue], AttributeNames=["All"])["Attributes"]
    return sum(int(attributes[name]) for name in ("ApproximateNumberOfMessages",
                                                  "ApproximateNumberOfMessagesNotVisible",
                                                  "ApproximateNumberOfMessagesDelayed"))


def token_calls(sandbox: QuickBooksSandbox) -> int:
    return sum(1 for _, path, _ in sandbox.requests if path == TOKEN_PATH)


def test_lost_refresh_answer_waits_for_reconnect_then_drains_every_order_once(aws: dict[str, Any]) -> None:
    # Given a connected company whose stored access token has expired, and an order-to-cash flow
    sandbox = QuickBooksSandbox(per_second=10_000, per_minute=100_000, batch_per_minute=10_000)
    consent = sandbox.connect_realm(REALM)
    for name, sku, price in (("Standing desk", "DESK-STD-01", 450.0), ("Monitor arm", "ARM-MON-02", 90.0)):
        sandbox.seed_item(REALM, name, sku, qty_on_hand=1000, unit_price=price)
    sandbox.seed_item(REALM, "Shipping", "SHIPPING", qty_on_hand=0, unit_price=0, type="Service")
    secret = {"base_url": BASE_URL, "token_url": f"{BASE_URL}{TOKEN_PATH}", "client_id": "qbo-client",
              "client_secret": "qbo-secret", "realm_id": REALM, "refresh_token": consent["refresh_token"]}
    secret_arn = aws["secrets"].create_secret(Name="connections/quickbooks", SecretString=json.dumps(secret))["ARN"]
    transport = httpx.WSGITransport(app=sandbox.wsgi_app)
    metrics, shop = Metrics(), Shop()
    catalog = load_catalog()
    flow = catalog.flows[FLOW]
    states = DynamoConnectionStates(aws["dynamodb"], TABLE)

    class Steps:  # what SecretBound gives the step Lambda: OrderToCash over the live connection secret
        def get(self) -> OrderToCash:
            tokens = SecretsManagerTokenStore(aws["secrets"], aws["dynamodb"], TABLE, secret_arn,
                                              keys=ConnectionKeys("quickbooks"))
            qbo = QuickBooksClient(QuickBooksConnection.from_secret(secret), tokens, transport=transport,
                                   sleep=lambda _: None, connection_name="quickbooks")
            return OrderToCash(load_order_mapping(flow.mapping_document), qbo, shop, flow=FLOW,
                               item_cache=ItemCache())

    dead_letters = SqsDeadLetters(aws["sqs"], aws["dlq"])
    steps = StepApp(flow=FLOW, steps=Steps(), dead_letters=dead_letters,
                    guard=ConnectionGuard(states, flow.connections, metrics=metrics))
    machine = StateMachine(steps)
    queues = SqsQueues(aws["sqs"])
    worker = FlowWorker(flow=flow, target=ExecutionStarter(machine, ARN, flow.state_machine), dead_letters=dead_letters,
                        delay=lambda receipt, seconds: queues.delay(aws["queue"], receipt, 0),
                        requeue=lambda body, seconds: queues.requeue(aws["queue"], body, 0),
                        max_receive_count=flow.worker.max_receive_count,
                        guard=ConnectionGuard(states, flow.connections, metrics=metrics),
                        reconnect_poll_seconds=0)

    # When the first order's refresh is carried out by Intuit but its answer is lost
    sandbox.lose_refresh_answers(1)
    queues.requeue(aws["queue"], order_event(1001), 0)
    pump(aws, worker)
    machine.run()

    # Then the retry with the same token was refused and the connection is marked for every function
    assert sandbox.refreshes_carried_out == 1
    state = states.get("quickbooks")
    assert (state.status, state.reason) == (ConnectionStatus.NEEDS_RECONNECT, "credentials_rejected")
    assert METRIC in metrics.names
    assert machine.executions["nopcommerce-to-quickbooks-00000000-0000-4000-8000-000000001001"]["waits"] == 1

    # and while it waits, new orders and the running execution wait too: nothing calls QuickBooks, nothing is
    # dead-lettered, however often the queue comes round (far past the flow's max receive count)
    for number in range(1002, 1001 + ORDERS):
        queues.requeue(aws["queue"], order_event(number), 0)
    calls_while_down = token_calls(sandbox)
    for _ in range(flow.worker.max_receive_count + 3):
        pump(aws, worker)
        machine.run()
    assert len(machine.executions) == 1
    assert visible(aws, "queue") == ORDERS - 1 and visible(aws, "dlq") == 0
    assert token_calls(sandbox) == calls_while_down
    assert sandbox.snapshot()["realms"][REALM]["salesReceipts"] == []
    assert metrics.names.count(METRIC) > 2 * (ORDERS - 1)  # the alarm's metric keeps coming while anything waits

    # When someone gives the consent again and reconnects (the runbook's command)
    code = sandbox.issue_auth_code(REALM)
    tokens = exchange_authorization_code(json.loads(aws["secrets"].get_secret_value(SecretId=secret_arn)
                                                    ["SecretString"]), code, "https://ops.example/callback",
                                         system="quickbooks", transport=transport)
    reconnect(aws["secrets"], aws["dynamodb"], table=TABLE, secret_id=secret_arn, connection="quickbooks",
              refresh_token=tokens["refresh_token"])
    for _ in range(3):
        pump(aws, worker)
        machine.run()

    # Then every waiting order is booked once, noted once, and nothing is left waiting or dead-lettered
    assert states.get("quickbooks").usable
    assert visible(aws, "queue") == 0 and visible(aws, "dlq") == 0
    assert {execution["status"] for execution in machine.executions.values()} == {"SUCCEEDED"}
    assert len(machine.executions) == ORDERS
    receipts = sandbox.snapshot()["realms"][REALM]["salesReceipts"]
    assert sorted(receipt["DocNumber"] for receipt in receipts) == [str(n) for n in range(1001, 1001 + ORDERS)]
    assert len(sandbox.snapshot()["realms"][REALM]["customers"]) == 1
    assert {order: len(notes) for order, notes in shop.notes.items()} == {n: 1 for n in range(1001, 1001 + ORDERS)}
    # a redelivered order after the drain starts nothing twice
    queues.requeue(aws["queue"], order_event(1003), 0)
    pump(aws, worker)
    assert len(machine.executions) == ORDERS
