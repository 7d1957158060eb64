"""End to end on the local stack: nopCommerce ⇄ BNG.

A nopCommerce order runs through the order-to-cash state machine declared in flows.yaml (moto's Step
Functions engine, the synthesized definition, every step the in-process Lambda): the BNG customer, then the
sales order, then a wait for the shipment. When the BNG sandbox ships, its signed ``shipment.created`` webhook
reaches the ``bng-to-nopcommerce`` flow, whose worker completes the wait; the execution writes the shipment
with its tracking number to the nopCommerce sandbox. A cancellation before shipment cancels the BNG order and
ends the waiting execution; BNG's inventory changes set nopCommerce's stock.

Every test uses its own order ids, OrderGuids and customers, and picks what it asserts on by those.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes.bng import BngError
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FLOW = "nopcommerce-to-bng"
WEBHOOKS = "bng-to-nopcommerce"
CANCELLED = 40  # nopCommerce OrderStatus
PRODUCTS = {"DESK-STD-01": ("Standing desk", "450.00"), "ARM-MON-02": ("Monitor arm", "90.00")}


@pytest.fixture(scope="module", autouse=True)
def bng_products(stack: LocalStack):
    """BNG is master for products: the order's exist there first. Only while this module runs: every
    nopCommerce order of the other modules reaches nopcommerce-to-bng too, and with the products there it would
    wait for a shipment nobody sends (the stack never settles); without them it ends in that flow's DLQ."""
    for sku, (name, price) in PRODUCTS.items():
        try:
            stack.bng.product(sku)
        except BngError:
            stack.bng.add_product(sku, name, on_hand=100, unit_price=price)
    yield
    url = stack.bng.webhook_url
    stack.bng.reset()
    stack.bng.webhook_url = url


@pytest.fixture
def http(stack: LocalStack):
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as client:
        yield client
    stack.bng.faults.clear()
    assert stack.drain(timeout=60), "the stack did not settle"


class Order:
    """One nopCommerce order of its own (id, number, OrderGuid, customer), seeded in the shop."""

    def __init__(self, stack: LocalStack, number: int) -> None:
        self.number = number
        self.guid = str(uuid.uuid4())
        self.placed_event = json.loads(sample("nop_order_b2b"))
        data = self.placed_event["data"]
        data["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=self.guid, OrderStatusId=10,
                             CustomerId=number)
        email = f"buyer{number}@example.com"
        data["Customer"].update(Id=number, Email=email, FirstName="Buyer", LastName=str(number))
        data["BillingAddress"]["Email"] = email
        stack.seed_shop_order(data)

    def placed(self) -> dict[str, Any]:
        return copy.deepcopy(self.placed_event)

    def cancelled(self) -> dict[str, Any]:
        event = json.loads(sample("nop_status_processing"))
        order = self.placed_event["data"]["Order"]
        event.update(timestamp="2026-11-22T08:00:00Z")
        event["data"]["Order"].update({key: order[key] for key in ("Id", "OrderGuid", "CustomOrderNumber",
                                                                    "PaymentStatusId", "OrderTotal",
                                                                    "CustomerCurrencyCode")},
                                      OrderStatusId=CANCELLED)
        return event

    def execution(self, suffix: str = "") -> str:
        return f"{FLOW}-{self.guid}{suffix}"


def send(stack: LocalStack, http: httpx.Client, event: dict[str, Any]) -> str:
    body = json.dumps(event).encode()
    status, answer = post_webhook(http, "nopcommerce", body, signed_headers(stack.signing_secret, body))
    assert status == 202, answer
    assert FLOW in answer["flows"]
    return answer["event_id"]


def executions_of(stack: LocalStack, order: Order) -> dict[str, str]:
    return {e["name"]: e["status"] for e in stack.executions(FLOW) if order.guid in e["name"]}


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def waiting_for_shipment(stack: LocalStack, order: Order) -> bool:
    """The placed execution has reached its wait (the poll delivers the queue; the steps run in-process)."""
    stack.poll_all()
    return executions_of(stack, order).get(order.execution()) == "RUNNING" and \
        stack.bng.order_by_external_id(order.guid) is not None


def letters(stack: LocalStack, flow: str, *event_ids: str) -> list[dict[str, Any]]:
    return [letter for letter in stack.dead_letters(flow) if letter.get("event_id") in event_ids]


def test_an_order_waits_for_bngs_shipment_and_nopcommerce_gets_its_tracking_number(stack, http):
    order = Order(stack, 5101)  # the B2B sample: 2 desks, 4 monitor arms
    placed_id = send(stack, http, order.placed())
    assert wait_until(lambda: waiting_for_shipment(stack, order), 60)

    sales_order = stack.bng.order_by_external_id(order.guid)
    assert sales_order is not None and sales_order["Status"] == "New"
    [customer] = [c for c in stack.bng.customers() if c["CustomerID"] == sales_order["CustomerID"]]
    assert customer["Email"] == "buyer5101@example.com"
    assert sorted((line["SKU"], line["Quantity"]) for line in sales_order["Lines"]) == [
        ("ARM-MON-02", 4), ("DESK-STD-01", 2)]
    assert stack.nopcommerce.shipments(5101) == []  # nothing shipped yet: the execution waits

    stack.bng.ship_order(sales_order["SalesOrderID"], carrier="UPS", tracking_number="1Z5101")
    assert stack.drain(timeout=60)

    [shipment] = stack.nopcommerce.shipments(5101)
    assert shipment["tracking_number"] == "1Z5101"
    assert executions_of(stack, order) == {order.execution(): "SUCCEEDED"}
    shipped = [o["outcome"] for o in stack.outcomes(WEBHOOKS) if o["event_type"] == "shipment.created"]
    assert shipped == ["updated"]  # BNG's webhook completed the wait (the only shipment of this module so far)
    assert letters(stack, FLOW, placed_id) == []


def test_a_cancellation_before_shipment_cancels_the_bng_order_and_ends_the_waiting_execution(stack, http):
    order = Order(stack, 5102)
    placed_id = send(stack, http, order.placed())
    assert wait_until(lambda: waiting_for_shipment(stack, order), 60)

    cancel_id = send(stack, http, order.cancelled())
    assert stack.drain(timeout=60)

    assert stack.bng.order_by_external_id(order.guid)["Status"] == "Cancelled"
    statuses = executions_of(stack, order)
    assert statuses[order.execution("-cancel")] == "SUCCEEDED"
    assert statuses[order.execution()] != "RUNNING"  # the wait was ended, not left to time out in 45 days
    assert letters(stack, FLOW, placed_id, cancel_id) == []
    assert stack.nopcommerce.shipments(5102) == []


def test_a_cancellation_before_the_sales_order_exists_is_honoured_when_the_order_is_created(stack, http):
    """The cancellation comes first (its execution finds no BNG order and ends the wait that is not there yet);
    the order is then created by the placed execution, which reaches its wait, finds the stored cancellation
    and cancels the order it made: BNG is not left fulfilling a cancelled order."""
    order = Order(stack, 5103)  # the shop still shows the order open when the placed execution reads it
    cancel_id = send(stack, http, order.cancelled())
    # not a drain: the other flows of the shop retry a cancellation of an order they have not seen yet
    assert wait_until(lambda: stack.poll_all() >= 0 and executions_of(stack, order) == {
        order.execution("-cancel"): "SUCCEEDED"}, 60)
    assert stack.bng.order_by_external_id(order.guid) is None  # nothing to cancel yet

    placed_id = send(stack, http, order.placed())
    assert stack.drain(timeout=120)

    sales_order = stack.bng.order_by_external_id(order.guid)
    assert sales_order is not None and sales_order["Status"] == "Cancelled"
    assert executions_of(stack, order) == {order.execution("-cancel"): "SUCCEEDED",
                                           order.execution(): "SUCCEEDED"}
    assert letters(stack, FLOW, placed_id, cancel_id) == []


def test_a_stock_change_in_bng_reaches_nopcommerce(stack, http):
    sku = f"STOCK-{uuid.uuid4().hex[:8].upper()}"
    stack.bng.add_product(sku, "Cable tray", on_hand=10)
    shop_product = stack.nopcommerce.seed_product("Cable tray", sku, 3)

    stack.bng.record_inventory(sku, 25)  # a purchase received: 35 on hand, inventory.changed is sent
    assert stack.drain(timeout=60)

    assert stack.nopcommerce.product(shop_product["id"])["stock_quantity"] == 35


def test_a_shipment_whose_webhook_was_lost_is_found_by_the_sweep_and_ends_the_wait(stack, http):
    """The scheduled sweep of BNG's changed-since lists (the bng source's poller) queues the shipment.created the
    webhook would have brought, with the same id; the waiting execution writes the shipment as usual."""
    from switchyard.systems.bng.source import change_id

    order = Order(stack, 5104)
    placed_id = send(stack, http, order.placed())
    assert wait_until(lambda: waiting_for_shipment(stack, order), 60)
    sales_order = stack.bng.order_by_external_id(order.guid)
    url = stack.bng.webhook_url
    stack.bng.webhook_url = f"{url}-lost"  # BNG's webhooks reach no source (404): retried, then given up
    try:
        shipment = stack.bng.ship_order(sales_order["SalesOrderID"], carrier="DHL", tracking_number="JD5104")
        assert stack.bng.wait_for_webhooks(timeout=30)
    finally:
        stack.bng.webhook_url = url
    lost = [d for d in stack.bng.webhook_deliveries if d.type == "shipment.created" and not d.delivered]
    assert lost and lost[-1].event_id == change_id("shipment", shipment["ShipmentID"], 1, shipment["UpdatedAt"])
    assert stack.drain(timeout=60)
    assert executions_of(stack, order) == {order.execution(): "RUNNING"}  # nothing told it

    report = stack.poll_source("bng", grace_seconds=0)  # what the schedule runs every minute (after the grace)
    assert lost[-1].event_id in report["event_ids"] and report["recovered"] >= 1
    assert stack.drain(timeout=60)

    assert [s["tracking_number"] for s in stack.nopcommerce.shipments(5104)] == ["JD5104"]
    assert executions_of(stack, order) == {order.execution(): "SUCCEEDED"}
    assert letters(stack, FLOW, placed_id) == []
    again = stack.poll_source("bng", grace_seconds=0)
    assert lost[-1].event_id not in again["event_ids"]  # seen: queued once
