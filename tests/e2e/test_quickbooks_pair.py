"""End to end on the local stack: nopCommerce ⇄ QuickBooks Online.

nopCommerce orders run through the order-to-cash state machine (moto's Step Functions engine, the
synthesized definition unchanged, every step the in-process Lambda) into the QuickBooks sandbox, with
notes and status written back to the nopCommerce sandbox; QuickBooks stock changes come back through
the QBO webhook (``intuit-signature``) to nopCommerce's product stock.

One stack for the module. Every test uses its own order ids, OrderGuids, customers and SKUs, and picks
what it asserts on by those (documents by OrderGuid, dead letters and outcomes by event id), so no
test sees another's state. Waits in the definition are real: a 5xx retry waits up to 2 s (then 4 s),
an out-of-order retry up to 10 s (full jitter); the 429 retrier waits 60 s and is left to unit tests.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from switchyard.systems.quickbooks.webhooks import intuit_sign
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FLOW = "nopcommerce-to-quickbooks"
STOCK_FLOW = "quickbooks-to-nopcommerce"
PAID, PENDING = 30, 10  # nopCommerce PaymentStatus
CANCELLED = 40  # nopCommerce OrderStatus


@pytest.fixture
def http(stack):
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as client:
        yield client
    stack.quickbooks.faults.clear()
    settle(stack, timeout=60)


# --------------------------------------------------------------------------- orders, as the shop sends them

class Order:
    """One nopCommerce order of its own (id, number, OrderGuid, customer), seeded in the shop, and its events."""

    def __init__(self, stack: LocalStack, number: int, template: str = "nop_order_b2b", *,
                 payment_status: int = PAID, **changes: Any) -> None:
        self.stack = stack
        self.number = number
        self.guid = str(uuid.uuid4())
        self.placed_event = json.loads(sample(template))
        data = self.placed_event["data"]
        data["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=self.guid, OrderStatusId=10,
                             PaymentStatusId=payment_status, CustomerId=number, **changes)
        email = f"buyer{number}@example.com"
        data["Customer"].update(Id=number, Email=email, FirstName="Buyer", LastName=str(number))
        if data["Customer"].get("Company"):
            data["Customer"]["Company"] = data["BillingAddress"]["Company"] = f"Company {number}"
        data["BillingAddress"]["Email"] = email
        stack.seed_shop_order(data)  # the order exists in the shop before its webhook is sent

    @property
    def data(self) -> dict[str, Any]:
        return self.placed_event["data"]

    def placed(self) -> dict[str, Any]:
        return copy.deepcopy(self.placed_event)

    def paid(self) -> dict[str, Any]:
        event = self.placed()
        event.update(type="order.paid", timestamp="2026-11-21T08:00:00Z")
        order = {**event["data"]["Order"], "PaymentStatusId": PAID, "PaidDateUtc": "2026-11-21T07:59:00Z"}
        event["data"] = {"Order": order, "Customer": event["data"]["Customer"]}
        return event

    def cancelled(self) -> dict[str, Any]:
        event = json.loads(sample("nop_status_processing"))
        order = self.data["Order"]
        event.update(timestamp="2026-11-22T08:00:00Z")
        event["data"]["Order"].update({key: order[key] for key in ("Id", "OrderGuid", "CustomOrderNumber",
                                                                    "PaymentStatusId", "OrderTotal",
                                                                    "CustomerCurrencyCode")},
                                      OrderStatusId=CANCELLED)
        return event

    def execution(self, suffix: str = "") -> str:
        return f"{FLOW}-{self.guid}{suffix}"


def send(stack: LocalStack, http: httpx.Client, event: dict[str, Any], *, event_id: str | None = None) -> str:
    """Post a signed nopCommerce webhook through the front door; returns its event id."""
    body = json.dumps(event).encode()
    status, answer = post_webhook(http, "nopcommerce", body, signed_headers(stack.signing_secret, body,
                                                                             event_id=event_id))
    assert status == 202, answer
    assert FLOW in answer["flows"]
    return answer["event_id"]


# --------------------------------------------------------------------------- what the systems hold

def qbo(stack: LocalStack) -> dict[str, Any]:
    return stack.quickbooks.snapshot()["realms"][stack.qbo_realm]


def documents(stack: LocalStack, order: Order, kind: str) -> list[dict[str, Any]]:
    """The order's QuickBooks documents of ``kind`` (salesReceipts, invoices, payments), by its OrderGuid."""
    return [doc for doc in qbo(stack)[kind] if order.guid in (doc.get("PrivateNote") or "")]


def item_id(stack: LocalStack, sku: str) -> str:
    (item,) = [i for i in qbo(stack)["items"] if i.get("Sku") == sku]
    return item["Id"]


def executions_of(stack: LocalStack, order: Order) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in stack.executions(FLOW) if order.guid in e["name"]}


def step_errors(stack: LocalStack, name: str) -> list[str]:
    """The errors the execution's Lambda tasks failed with, in order (each was retried or caught)."""
    sfn = stack.client("stepfunctions")
    arn = stack.state_machines[FLOW].replace(":stateMachine:", ":execution:", 1) + f":{name}"
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [details["error"] for event in events for key, details in event.items()
            if key.endswith("FailedEventDetails") and event["type"] in ("TaskFailed", "LambdaFunctionFailed")]


def executions_of_named(stack: LocalStack, name: str) -> dict[str, Any]:
    (found,) = [e for e in stack.executions(FLOW) if e["name"] == name]
    return found


def letters_for(stack: LocalStack, event_id: str) -> list[dict[str, Any]]:
    return [letter for letter in stack.dead_letters(FLOW) if letter.get("event_id") == event_id]


def notes(stack: LocalStack, order: Order) -> list[str]:
    """The order's notes without their write-back markers (``[ref <12 hex>]``), each of which must be there."""
    held = [note["note"] for note in stack.nopcommerce.notes(order.number)]
    texts = [re.sub(r" \[ref [0-9a-f]{12}\]$", "", text) for text in held]
    assert all(text != plain for text, plain in zip(held, texts, strict=True)), held
    return texts


def redrive_letter(stack: LocalStack, event_id: str) -> int:
    """``switchyard dlq redrive`` (``operations.redrive``) for this test's letter only, since the CLI moves every
    letter of the DLQ, other tests' too: its ``original`` goes back to the flow queue unchanged, then it is
    deleted. Other letters are left where they were."""
    sqs, flow = stack.client("sqs"), stack.flows[FLOW]
    moved, others, seen = 0, [], set()
    while True:
        messages = [m for m in sqs.receive_message(QueueUrl=flow.dlq_url, MaxNumberOfMessages=10,
                                                   VisibilityTimeout=30).get("Messages", [])
                    if m["MessageId"] not in seen]
        if not messages:
            break
        for message in messages:
            seen.add(message["MessageId"])
            letter = json.loads(message["Body"])
            if letter.get("event_id") == event_id:
                sqs.send_message(QueueUrl=flow.queue_url, MessageBody=letter["original"])
                sqs.delete_message(QueueUrl=flow.dlq_url, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
            else:
                others.append(message["ReceiptHandle"])
    for receipt in others:  # visible again at once
        sqs.change_message_visibility(QueueUrl=flow.dlq_url, ReceiptHandle=receipt, VisibilityTimeout=0)
    return moved


def settle(stack: LocalStack, timeout: float = 30) -> None:
    """Drain every flow queue and wait for every execution and sandbox webhook; say what is left if not."""
    if stack.drain(timeout=timeout):
        return
    running = {e["name"]: step_errors(stack, e["name"]) for e in stack.executions(FLOW) if e["status"] == "RUNNING"}
    depths = {name: flow.poller.depth() for name, flow in stack.flows.items()}
    webhooks = {"quickbooks": stack.quickbooks.snapshot()["webhooksPending"]}
    throttled = qbo(stack)["counters"]["throttled"]
    raise AssertionError(f"not settled after {timeout}s: running {running}, queue depths {depths}, "
                         f"webhooks pending {webhooks}, QuickBooks 429s {throttled}")


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


# --------------------------------------------------------------------------- order.placed

def test_paid_order_becomes_a_sales_receipt_and_the_shop_learns_it(stack, http):
    order = Order(stack, 4101)  # the B2B sample: 2 desks at 450, 4 monitor arms at 90, shipping 39, paid
    event_id = send(stack, http, order.placed())
    settle(stack)

    (receipt,) = documents(stack, order, "salesReceipts")
    assert documents(stack, order, "invoices") == []
    assert receipt["DocNumber"] == "4101"  # = CustomOrderNumber
    assert receipt["TotalAmt"] == 1299.0 and receipt["Balance"] == 0 and receipt["status"] == "Paid"
    assert "Id 4101" in receipt["PrivateNote"] and order.guid in receipt["PrivateNote"]
    assert receipt["CustomerRef"]["name"] == "Company 4101"
    lines = [(line["SalesItemLineDetail"]["ItemRef"]["value"], line["SalesItemLineDetail"]["Qty"],
              line["SalesItemLineDetail"]["UnitPrice"], line["Amount"])
             for line in receipt["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert lines == [(item_id(stack, "DESK-STD-01"), 2, 450, 900.0), (item_id(stack, "ARM-MON-02"), 4, 90, 360.0),
                     (item_id(stack, "SHIPPING"), 1, 39, 39.0)]
    (customer,) = [c for c in qbo(stack)["customers"] if c["Id"] == receipt["CustomerRef"]["value"]]
    assert customer["PrimaryEmailAddr"]["Address"] == "buyer4101@example.com"

    assert notes(stack, order) == ["Sent to QuickBooks: SalesReceipt 4101"]
    assert stack.nopcommerce.order(4101)["order_status_id"] == 20  # Pending -> Processing (set_status_id)

    executions = executions_of(stack, order)
    assert list(executions) == [f"{FLOW}-{order.guid}"]
    assert executions[order.execution()]["status"] == "SUCCEEDED"
    assert letters_for(stack, event_id) == []


def test_unpaid_order_becomes_an_open_invoice_and_order_paid_applies_a_linked_payment(stack, http):
    order = Order(stack, 4102, payment_status=PENDING)
    send(stack, http, order.placed())
    settle(stack)
    (invoice,) = documents(stack, order, "invoices")
    assert documents(stack, order, "salesReceipts") == []
    assert (invoice["DocNumber"], invoice["status"], invoice["TotalAmt"], invoice["Balance"]) == (
        "4102", "Open", 1299.0, 1299.0)
    assert notes(stack, order) == ["Sent to QuickBooks: Invoice 4102"]

    paid_id = send(stack, http, order.paid())
    settle(stack)

    (payment,) = documents(stack, order, "payments")
    (invoice,) = documents(stack, order, "invoices")
    assert payment["TotalAmt"] == 1299.0 and payment["CustomerRef"]["value"] == invoice["CustomerRef"]["value"]
    assert [link for line in payment["Line"] for link in line["LinkedTxn"]] == [
        {"TxnId": invoice["Id"], "TxnType": "Invoice"}]
    assert invoice["Balance"] == 0 and invoice["status"] == "Paid"
    assert payment["TxnDate"] == "2026-11-21"  # PaidDateUtc
    executions = executions_of(stack, order)
    assert {name: e["status"] for name, e in executions.items()} == {
        order.execution(): "SUCCEEDED", order.execution("-paid"): "SUCCEEDED"}
    assert notes(stack, order) == ["Sent to QuickBooks: Invoice 4102",
                                   f"Payment recorded in QuickBooks: Payment {payment['Id']} for Invoice 4102"]
    assert letters_for(stack, paid_id) == []


def test_order_placed_delivered_twice_under_two_webhook_ids_runs_one_execution(stack, http):
    order = Order(stack, 4103)
    first = send(stack, http, order.placed(), event_id="msg_qbo_4103_a")
    second = send(stack, http, order.placed(), event_id="msg_qbo_4103_b")  # the shop sent it again
    settle(stack)

    assert list(executions_of(stack, order)) == [order.execution()]
    assert executions_of(stack, order)[order.execution()]["status"] == "SUCCEEDED"
    assert len(documents(stack, order, "salesReceipts")) == 1 and documents(stack, order, "invoices") == []
    outcomes = {o["event_id"]: o["outcome"] for o in stack.outcomes(FLOW) if o["event_id"] in (first, second)}
    assert sorted(outcomes.values()) == ["duplicate", "started"]  # the second start is a no-op
    assert notes(stack, order) == ["Sent to QuickBooks: SalesReceipt 4103"]


def test_foreign_currency_order_is_booked_in_its_currency_with_the_exchange_rate(stack, http):
    # the consumer sample: one chair at 240.50 (store currency, USD), the customer pays in EUR at 0.92
    order = Order(stack, 4104, "nop_order_consumer", payment_status=PENDING)
    assert order.data["Order"]["CustomerCurrencyCode"] == "EUR" and order.data["Order"]["CurrencyRate"] == 0.92
    send(stack, http, order.placed())
    settle(stack)

    (invoice,) = documents(stack, order, "invoices")
    assert invoice["CurrencyRef"]["value"] == "EUR"
    assert Decimal(str(invoice["ExchangeRate"])) == pytest.approx(Decimal(1) / Decimal("0.92"), abs=Decimal("1e-6"))
    assert invoice["TotalAmt"] == 221.26  # 240.50 * 0.92, in EUR
    (line,) = [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert line["Amount"] == 221.26 and line["SalesItemLineDetail"]["ItemRef"]["value"] == item_id(stack,
                                                                                                   "CHAIR-ERG-07")
    assert "CurrencyRate 0.92" in invoice["PrivateNote"]  # the rate it was converted with is recorded
    (customer,) = [c for c in qbo(stack)["customers"] if c["Id"] == invoice["CustomerRef"]["value"]]
    assert customer["CurrencyRef"]["value"] == "EUR"  # a QuickBooks customer has exactly one currency
    assert notes(stack, order) == ["Sent to QuickBooks: Invoice 4104"]


# --------------------------------------------------------------------------- retries

def test_order_paid_before_its_order_placed_waits_for_the_invoice_then_pays_it(stack, http):
    order = Order(stack, 4105, payment_status=PENDING)
    paid_id = send(stack, http, order.paid())
    stack.poll_all()  # the worker starts the -paid execution: no invoice yet, StepOutOfOrder, retried later
    assert wait_until(lambda: "StepOutOfOrder" in step_errors(stack, order.execution("-paid")), timeout=10)
    assert documents(stack, order, "payments") == []

    send(stack, http, order.placed())  # arrives late (out_of_order: retried after up to 10 s, then 20 s, ...)
    settle(stack, timeout=60)

    executions = executions_of(stack, order)
    assert {name: e["status"] for name, e in executions.items()} == {
        order.execution(): "SUCCEEDED", order.execution("-paid"): "SUCCEEDED"}
    assert set(step_errors(stack, order.execution("-paid"))) == {"StepOutOfOrder"}
    (invoice,) = documents(stack, order, "invoices")
    (payment,) = documents(stack, order, "payments")
    assert [link["TxnId"] for line in payment["Line"] for link in line["LinkedTxn"]] == [invoice["Id"]]
    assert invoice["Balance"] == 0
    assert letters_for(stack, paid_id) == []
    # Not covered here: a paid event whose document NEVER comes ends in the DLQ (document_missing) only after
    # out_of_order's 8 attempts: 10 s doubling up to 600 s, about half an hour with full jitter.


def test_quickbooks_5xx_during_an_execution_is_retried_and_books_one_document(stack, http):
    # 429 is not exercised here: the synthesized StepThrottled retrier waits 60 s per attempt (unit tests cover
    # the 429 -> StepThrottled translation). A 5xx is StepRetryable: 2 s doubling, full jitter.
    order = Order(stack, 4106)
    before = sum(1 for _method, _path, status in stack.quickbooks.requests if status == 503)
    stack.quickbooks.faults.fail_next(2, status=503)  # the next two QuickBooks calls: this execution's first
    send(stack, http, order.placed())
    settle(stack)

    assert sum(1 for _method, _path, status in stack.quickbooks.requests if status == 503) - before == 2
    assert step_errors(stack, order.execution()) == ["StepRetryable", "StepRetryable"]
    assert executions_of(stack, order)[order.execution()]["status"] == "SUCCEEDED"
    assert len(documents(stack, order, "salesReceipts")) == 1
    assert len([c for c in qbo(stack)["customers"] if c.get("DisplayName") == "Company 4106"]) == 1
    assert notes(stack, order) == ["Sent to QuickBooks: SalesReceipt 4106"]


# --------------------------------------------------------------------------- failures and the DLQ

def test_unmapped_sku_dead_letters_without_a_document_and_redrive_books_it_once(stack, http):
    sku = "GIFT-CARD-4107"
    order = Order(stack, 4107, "nop_order_small")  # one line, paid: a SalesReceipt
    order.data["OrderItems"][0]["Product"]["Sku"] = sku
    event_id = send(stack, http, order.placed())
    settle(stack)

    assert executions_of(stack, order)[order.execution()]["status"] == "FAILED"
    (letter,) = letters_for(stack, event_id)
    original = letter["original"]
    assert (letter["flow"], letter["error_class"], letter["reason"]) == (FLOW, "permanent", "unmapped_product")
    assert f"unmapped product {sku}" in letter["message"]
    # the step's own log line names the failure before the state machine catches it
    # (this flow's: every nopCommerce order also reaches nopcommerce-to-bng, whose steps log their own failures)
    failed = [r for r in stack.logs.records() if r.get("message") == "step failed" and r.get("event_id") == event_id
              and r.get("flow") == FLOW]
    assert [(r["step"], r["error_type"], r["reason"]) for r in failed] == [
        ("quickbooks.items", "StepFailed", "unmapped_product")]
    assert f"unmapped product {sku}" in failed[0]["error_message"]
    assert documents(stack, order, "salesReceipts") == [] and documents(stack, order, "invoices") == []
    # the shop hears why and what to do, before the state machine dead-letters the execution
    (why,) = notes(stack, order)
    assert why.startswith(f"Not sent to QuickBooks: unmapped product {sku}. QuickBooks has no active product")
    assert stack.nopcommerce.order(4107)["order_status_id"] == 10

    # the accountant creates the item, the operator redrives the letter
    stack.quickbooks.seed_item(stack.qbo_realm, "Gift card", sku, qty_on_hand=0, unit_price=24.99,
                               type="NonInventory")
    assert redrive_letter(stack, event_id) == 1
    settle(stack)

    executions = executions_of(stack, order)
    assert {name: e["status"] for name, e in executions.items()} == {
        order.execution(): "FAILED", order.execution("-r2"): "SUCCEEDED"}
    (receipt,) = documents(stack, order, "salesReceipts")
    assert receipt["DocNumber"] == "4107" and receipt["TotalAmt"] == 24.99
    assert [line["SalesItemLineDetail"]["ItemRef"]["value"] for line in receipt["Line"]
            if line["DetailType"] == "SalesItemLineDetail"] == [item_id(stack, sku)]
    assert letters_for(stack, event_id) == []
    assert notes(stack, order) == [why, "Sent to QuickBooks: SalesReceipt 4107"]

    # the letter is gone, and the same letter redriven a second time (a careless operator) starts nothing
    assert redrive_letter(stack, event_id) == 0
    stack.client("sqs").send_message(QueueUrl=stack.flows[FLOW].queue_url, MessageBody=original)
    settle(stack)
    assert list(executions_of(stack, order)) == [order.execution(), order.execution("-r2")]
    assert len(documents(stack, order, "salesReceipts")) == 1
    assert [o["outcome"] for o in stack.outcomes(FLOW) if o["event_id"] == event_id][-1] == "duplicate"


def test_cancel_before_payment_voids_the_invoice(stack, http):
    order = Order(stack, 4108, payment_status=PENDING)
    send(stack, http, order.placed())
    settle(stack)
    assert documents(stack, order, "invoices")[0]["status"] == "Open"

    cancel_id = send(stack, http, order.cancelled())
    settle(stack)

    (invoice,) = documents(stack, order, "invoices")
    assert invoice["status"] == "Voided" and invoice["TotalAmt"] == 0
    assert executions_of(stack, order)[order.execution("-cancel")]["status"] == "SUCCEEDED"
    assert notes(stack, order) == ["Sent to QuickBooks: Invoice 4108", "Voided in QuickBooks: Invoice 4108"]
    assert letters_for(stack, cancel_id) == []


def test_cancel_after_payment_changes_nothing_in_quickbooks_and_asks_for_review(stack, http):
    order = Order(stack, 4109)  # paid at checkout: a SalesReceipt
    send(stack, http, order.placed())
    settle(stack)
    (before,) = documents(stack, order, "salesReceipts")

    cancel_id = send(stack, http, order.cancelled())
    settle(stack)

    (after,) = documents(stack, order, "salesReceipts")
    assert after == before  # same SyncToken, amounts, status: untouched
    assert documents(stack, order, "payments") == []
    assert executions_of(stack, order)[order.execution("-cancel")]["status"] == "FAILED"
    (letter,) = letters_for(stack, cancel_id)
    assert letter["reason"] == "review_required" and letter["error_class"] == "permanent"
    assert notes(stack, order) == [
        "Sent to QuickBooks: SalesReceipt 4109",
        "Cancelled after payment: SalesReceipt 4109 is paid in QuickBooks and was not changed; review it there"]


# --------------------------------------------------------------------------- stock: QuickBooks -> nopCommerce

@pytest.mark.parametrize("webhook_format", ["legacy", "cloudevents"])
def test_quickbooks_stock_change_reaches_the_nopcommerce_product(stack, http, webhook_format):
    sku = f"DOCK-USB-{webhook_format.upper()}"
    item = stack.quickbooks.seed_item(stack.qbo_realm, f"USB dock ({webhook_format})", sku, qty_on_hand=10,
                                      unit_price=79.0)
    stack.nopcommerce.seed_product(f"USB dock ({webhook_format})", sku, 10, price=79.0)
    stack.quickbooks.webhook_format = webhook_format
    try:
        stack.quickbooks.set_item_quantity(stack.qbo_realm, item["Id"], 3)  # an accountant counts the docks
        settle(stack)
    finally:
        stack.quickbooks.webhook_format = "legacy"

    assert stack.nopcommerce.product_by_sku(sku)["stock_quantity"] == 3
    assert stack.quickbooks.get_entity(stack.qbo_realm, "Item", item["Id"])["QtyOnHand"] == 3
    (delivery,) = [d for d in stack.quickbooks.webhook_deliveries
                   if any(e["name"] == "Item" and e["id"] == item["Id"] for e in d["events"])]
    assert (delivery["format"], delivery["status_code"], delivery["outcome"]) == (webhook_format, 200, "delivered")
    assert stack.dead_letters(STOCK_FLOW) == []


def test_quickbooks_webhook_with_a_forged_signature_gets_401_and_queues_nothing(stack, http):
    item_ref = item_id(stack, "CHAIR-ERG-07")
    body = json.dumps({"eventNotifications": [{"realmId": stack.qbo_realm, "dataChangeEvent": {"entities": [
        {"name": "Item", "id": item_ref, "operation": "Update", "lastUpdated": "2026-11-22T08:00:00.000Z"}]}}]},
        separators=(",", ":")).encode()
    forged = http.post("/webhooks/quickbooks", content=body,
                       headers={"content-type": "application/json", **intuit_sign("not-the-verifier-token", body)})
    assert forged.status_code == 401
    assert stack.flows[STOCK_FLOW].poller.depth() == 0
    # the same body, signed with the app's verifier token, is accepted (so the 401 was the signature's)
    genuine = http.post("/webhooks/quickbooks", content=body,
                        headers={"content-type": "application/json",
                                 **intuit_sign(stack.quickbooks.verifier_token, body)})
    assert genuine.status_code == 200


def test_an_execution_whose_route_the_task_has_no_steps_for_is_dead_lettered_once_with_the_reason(stack, http):
    # Given an execution whose input names no route the machine's one task runs steps for
    from switchyard.events import flow_message

    event_id = f"evt_unrouted_{uuid.uuid4().hex[:8]}"
    message = flow_message(flow=FLOW, event_id=event_id, source="nopcommerce", event_type="order.placed",
                           timestamp="2026-12-03T10:00:00+00:00", received_at="2026-12-03T10:00:01+00:00",
                           body=json.dumps({"type": "order.placed", "data": {}}))
    name = f"{FLOW}-unrouted-{event_id}"
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.state_machines[FLOW], name=name,
        input=json.dumps({"flow": FLOW, "event_id": event_id, "type": "order.placed", "route": "bogus",
                          "message": message}))

    # When the task fails for good (nothing retries a permanent error) and the execution's status change
    # reaches the steps function too
    assert wait_until(lambda: stack.poll_all() >= 0 and letters_for(stack, event_id), timeout=30)

    # Then its event is in the DLQ with the reason, once, marked so a redrive starts a new execution
    (letter,) = letters_for(stack, event_id)
    assert (letter["reason"], letter["error_class"]) == ("unknown_route", "permanent")
    assert "no steps for route 'bogus'" in letter["message"]
    assert json.loads(letter["original"])["retry_of"] == name
    assert executions_of_named(stack, name)["status"] == "FAILED"
    stack.poll_all()  # its failure went through RecordFailure: the status rule adds no second letter
    assert len(letters_for(stack, event_id)) == 1


def test_an_execution_ending_without_its_own_dead_letter_is_dead_lettered_through_the_execution_status_rule(
        stack, http):
    # Given an order.paid whose order was never booked: the task waits for the invoice (out of order, retried)
    order = Order(stack, 4110, payment_status=PAID)
    event_id = send(stack, http, order.paid())
    name = order.execution("-paid")
    assert wait_until(lambda: stack.poll_all() >= 0 and "StepOutOfOrder" in step_errors(stack, name), timeout=60)

    # When an operator stops it (no Catch runs for a stopped execution, nor for a timed-out one)
    arn = stack.state_machines[FLOW].replace(":stateMachine:", ":execution:", 1) + f":{name}"
    stack.client("stepfunctions").stop_execution(executionArn=arn, error="Operator", cause="stopped to test")

    # Then Step Functions' status change event (the local stack sends what EventBridge would, for the
    # template's rule) dead-letters its event with the reason, once, marked so a redrive starts a new execution
    assert wait_until(lambda: stack.poll_all() >= 0 and letters_for(stack, event_id), timeout=30)
    (letter,) = letters_for(stack, event_id)
    assert (letter["reason"], letter["error_class"]) == ("execution_aborted", "aborted")
    assert json.loads(letter["original"])["retry_of"] == name
    stack.poll_all()
    assert len(letters_for(stack, event_id)) == 1
