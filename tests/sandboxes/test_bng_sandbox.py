"""The BNG sandbox implements docs/bng-contract.md (in-process through WSGI; webhooks through a MockTransport)."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from switchyard.signatures import StandardWebhookVerifier
from switchyard_local.sandboxes.bng import DEFAULT_API_KEY, DEFAULT_WEBHOOK_SECRET, BngError, BngSandbox
from switchyard_local.sandboxes.faults import FaultPlan

START = 1_796_299_200.0  # 2026-12-03T12:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        return httpx.Response(204)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


CUSTOMER = {
    "ExternalID": "nop-customer-7", "Name": "Acme Corp", "Email": "ap@acme.example", "Type": "Business",
    "BillingAddress": {"Line1": "1 Acme Plaza", "City": "Springfield", "State": "US-IL", "PostalCode": "62701",
                       "Country": "US"},
    "CustomFields": {"CustomerType": "B2B"},
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def bng(clock: Clock, receiver: Receiver) -> BngSandbox:
    sandbox = BngSandbox(clock=clock, webhook_url="http://receiver.test/hooks", webhook_backoff=(0.01,),
                         webhook_transport=httpx.MockTransport(receiver))
    sandbox.add_product("DESK-180", "Standing desk", on_hand=10, attributes={"Material": "Oak"})
    sandbox.add_product("ARM-01", "Monitor arm", on_hand=5)
    return sandbox


@pytest.fixture
def api(bng: BngSandbox) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=bng.wsgi_app), base_url="http://bng.test/api/v1",
                        headers={"X-Api-Key": DEFAULT_API_KEY})


def _order(customer_id: str, **changes: Any) -> dict[str, Any]:
    return {"ExternalOrderID": "nop-order-1001", "CustomerID": customer_id, "Currency": "USD",
            "Lines": [{"SKU": "DESK-180", "Quantity": 1, "UnitPrice": "899.00"},
                      {"SKU": "arm-01", "Quantity": 2, "UnitPrice": "200.00"}],
            "Totals": {"Shipping": "10.00", "Tax": "0.00", "Discount": "0", "Total": "1309.00"},
            "GLDimensions": {"CostCenter": "WEB-B2B"}, "CustomFields": {"OrderSource": "web"}, **changes}


def _customer(api: httpx.Client) -> str:
    return str(api.post("/customers", json=CUSTOMER).json()["CustomerID"])


def test_every_api_request_needs_the_api_key(bng: BngSandbox) -> None:
    client = httpx.Client(transport=httpx.WSGITransport(app=bng.wsgi_app), base_url="http://bng.test")
    assert client.get("/api/v1/products").status_code == 401
    answer = client.get("/api/v1/products", headers={"X-Api-Key": "wrong"})
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


def test_a_customer_is_unique_by_external_id(api: httpx.Client) -> None:
    created = api.post("/customers", json=CUSTOMER)
    assert created.status_code == 201
    again = api.post("/customers", json={**CUSTOMER, "Name": "Acme again"})
    assert again.status_code == 409
    assert again.json()["error"] == "duplicate_external_id"
    assert again.json()["existingId"] == created.json()["CustomerID"]
    found = api.get("/customers", params={"externalId": "nop-customer-7"}).json()["Items"]
    assert [c["CustomerID"] for c in found] == [created.json()["CustomerID"]]


def test_a_customer_with_bad_data_is_refused_with_a_message_naming_each_field(api: httpx.Client) -> None:
    bad = {**CUSTOMER, "Email": "not-an-address",
           "BillingAddress": {**CUSTOMER["BillingAddress"], "Country": "USA", "State": "IL"}}
    answer = api.post("/customers", json=bad)
    assert answer.status_code == 422
    body = answer.json()
    assert {item["field"] for item in body["fields"]} == {"Email", "BillingAddress.Country", "BillingAddress.State"}
    assert "ISO 3166-1 alpha-2" in body["message"]


def test_a_state_must_belong_to_the_country(api: httpx.Client) -> None:
    bad = {**CUSTOMER, "BillingAddress": {**CUSTOMER["BillingAddress"], "State": "CA-ON"}}
    answer = api.post("/customers", json=bad)
    assert answer.status_code == 422
    assert "not a subdivision of US" in answer.json()["message"]


def test_a_sales_order_resolves_skus_computes_totals_and_is_unique_by_external_order_id(api: httpx.Client) -> None:
    customer_id = _customer(api)
    created = api.post("/sales-orders", json=_order(customer_id))
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["Status"] == "New"
    assert [(line["SKU"], line["LineTotal"]) for line in order["Lines"]] == [("DESK-180", "899.00"),
                                                                             ("ARM-01", "400.00")]
    assert order["Totals"] == {"Subtotal": "1299.00", "Shipping": "10.00", "Tax": "0.00", "Discount": "0.00",
                               "Total": "1309.00"}
    assert order["GLDimensions"] == {"CostCenter": "WEB-B2B"}
    again = api.post("/sales-orders", json=_order(customer_id))
    assert again.status_code == 409
    assert again.json()["existingId"] == order["SalesOrderID"]
    listed = api.get("/sales-orders", params={"externalOrderId": "nop-order-1001"}).json()["Items"]
    assert len(listed) == 1


def test_totals_must_add_up_to_the_cent_in_the_currencys_precision(api: httpx.Client) -> None:
    customer_id = _customer(api)
    off = api.post("/sales-orders", json=_order(customer_id, Totals={"Shipping": "10.00", "Total": "1309.01"}))
    assert off.status_code == 422 and off.json()["fields"][0]["field"] == "Totals.Total"
    yen = _order(customer_id, Currency="JPY", Totals={},
                 Lines=[{"SKU": "DESK-180", "Quantity": 1, "UnitPrice": "899.50"}])
    answer = api.post("/sales-orders", json=yen)
    assert answer.status_code == 422
    assert "more than 0 decimals" in answer.json()["fields"][0]["message"]


def test_an_unknown_product_is_refused_naming_its_sku(api: httpx.Client) -> None:
    customer_id = _customer(api)
    answer = api.post("/sales-orders", json=_order(customer_id, Lines=[
        {"SKU": "DESK-180", "Quantity": 1, "UnitPrice": "1.00"}, {"SKU": "NOPE-9", "Quantity": 1, "UnitPrice": "1"}],
        Totals={}))
    assert answer.status_code == 422
    assert answer.json()["error"] == "unknown_product"
    assert answer.json()["fields"] == [{"field": "Lines[1].SKU", "message": "unknown product SKU NOPE-9"}]


def test_shipping_creates_a_shipment_moves_stock_and_sends_signed_webhooks(
        api: httpx.Client, bng: BngSandbox, receiver: Receiver, clock: Clock) -> None:
    customer_id = _customer(api)
    order_id = api.post("/sales-orders", json=_order(customer_id)).json()["SalesOrderID"]
    clock.now += 3600
    shipment = bng.ship_order(order_id, carrier="UPS", tracking_number="1Z999AA10123456784")
    assert bng.wait_for_webhooks()
    # the fixture's two products were set up first: a product.changed each
    assert [e["type"] for e in receiver.events] == ["product.changed", "product.changed",
                                                    "salesorder.status_changed", "inventory.changed",
                                                    "inventory.changed", "shipment.created",
                                                    "salesorder.status_changed"]
    verifier = StandardWebhookVerifier([DEFAULT_WEBHOOK_SECRET])
    for request in receiver.requests:
        assert verifier.verify(request.content, request.headers).startswith("msg_")
    events = receiver.events[2:]
    assert events[3]["data"]["TrackingNumber"] == "1Z999AA10123456784"
    assert events[3]["data"]["OrderStatus"] == "Shipped"
    assert events[4]["data"]["PreviousStatus"] == "Released"
    assert bng.product("DESK-180")["OnHand"] == 9 and bng.product("ARM-01")["OnHand"] == 3
    assert api.get(f"/sales-orders/{order_id}").json()["Shipments"] == [shipment["ShipmentID"]]
    sales = api.get("/inventory-transactions", params={"sku": "ARM-01"}).json()["Items"]
    assert [(t["Type"], t["Quantity"], t["OnHandAfter"]) for t in sales] == [("Sale", -2, 3)]


def test_a_partial_shipment_leaves_the_order_released(api: httpx.Client, bng: BngSandbox) -> None:
    order_id = api.post("/sales-orders", json=_order(_customer(api))).json()["SalesOrderID"]
    bng.ship_order(order_id, carrier="DHL", tracking_number="T1", lines=[{"LineNo": 2, "Quantity": 1}])
    assert bng.order(order_id)["Status"] == "Released"
    bng.ship_order(order_id, carrier="DHL", tracking_number="T2")
    assert bng.order(order_id)["Status"] == "Shipped"
    assert [s["TrackingNumber"] for s in api.get("/shipments", params={"salesOrderId": order_id}).json()["Items"]] \
        == ["T1", "T2"]


def test_cancel_before_shipment_only(api: httpx.Client, bng: BngSandbox) -> None:
    customer_id = _customer(api)
    first = api.post("/sales-orders", json=_order(customer_id)).json()["SalesOrderID"]
    cancelled = api.post(f"/sales-orders/{first}/cancel", json={"Reason": "customer cancelled"})
    assert cancelled.status_code == 200 and cancelled.json()["Status"] == "Cancelled"
    assert api.post(f"/sales-orders/{first}/cancel").status_code == 200  # again: a no-op
    second = api.post("/sales-orders", json=_order(customer_id, ExternalOrderID="nop-order-1002")).json()
    bng.ship_order(second["SalesOrderID"], carrier="UPS", tracking_number="1Z")
    refused = api.post(f"/sales-orders/{second['SalesOrderID']}/cancel")
    assert refused.status_code == 409 and refused.json()["currentStatus"] == "Shipped"
    invoiced = bng.invoice_order(second["SalesOrderID"])
    assert invoiced["Status"] == "Invoiced" and invoiced["InvoiceNumber"].startswith("INV-")


def test_changed_since_pages_same_second_changes_with_a_cursor(api: httpx.Client, bng: BngSandbox,
                                                               clock: Clock) -> None:
    for n in range(5):  # five purchases in the same millisecond
        bng.record_inventory("DESK-180", n + 1)
    since = "2026-12-03T12:00:00.000Z"
    seen: list[str] = []
    params: dict[str, Any] = {"changedSince": since, "limit": 2}
    while True:
        page = api.get("/inventory-transactions", params=params).json()
        seen += [t["TransactionID"] for t in page["Items"]]
        if page["NextCursor"] is None:
            break
        params = {**params, "after": page["NextCursor"]}
    assert len(seen) == len(set(seen)) == 5
    clock.now += 60
    later = api.get("/inventory-transactions", params={"changedSince": "2026-12-03T12:00:30Z"}).json()["Items"]
    assert later == []
    assert api.get("/products", params={"changedSince": "yesterday"}).status_code == 422


def test_the_published_rate_limit_answers_429_with_retry_after(clock: Clock) -> None:
    bng = BngSandbox(clock=clock, rate_limit=3, rate_window_seconds=60)
    api = httpx.Client(transport=httpx.WSGITransport(app=bng.wsgi_app), base_url="http://bng.test/api/v1",
                       headers={"X-Api-Key": DEFAULT_API_KEY})
    clock.now = START + 15
    answers = [api.get("/products") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert answers[3].headers["Retry-After"] == "45"
    clock.now = START + 60
    assert api.get("/products").status_code == 200


def test_injected_faults_and_the_configurable_prefix(clock: Clock) -> None:
    bng = BngSandbox(clock=clock, api_prefix="/erp/bng/v2")
    api = httpx.Client(transport=httpx.WSGITransport(app=bng.wsgi_app), base_url="http://bng.test/erp/bng/v2",
                       headers={"X-Api-Key": DEFAULT_API_KEY})
    bng.faults.fail_next(1, 503)
    assert api.get("/products").status_code == 503
    assert api.get("/products").status_code == 200
    bng.faults.set_plan(FaultPlan(rate_limit_rate=1.0, retry_after_seconds=7))
    assert api.get("/products").headers["Retry-After"] == "7"
    bng.faults.clear()
    assert httpx.Client(transport=httpx.WSGITransport(app=bng.wsgi_app), base_url="http://bng.test").get(
        "/api/v1/products", headers={"X-Api-Key": DEFAULT_API_KEY}).status_code == 404


def test_back_office_errors_are_bng_errors(bng: BngSandbox) -> None:
    with pytest.raises(BngError) as raised:
        bng.ship_order("SO-1", carrier="UPS", tracking_number="X")
    assert raised.value.status == 404
