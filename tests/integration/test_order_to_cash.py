"""OrderToCash against the QBO sandbox (in-process over WSGITransport) and a fake nopCommerce write-back."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
from collections.abc import Callable, Collection, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import yaml
from switchyard.catalog import mapping_path
from switchyard.connectors.http import jsonable
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import MappingError, OutOfOrderError, PermanentError, RetryableError
from switchyard.events import flow_message
from switchyard.systems.quickbooks.client import QuickBooksClient, QuickBooksConnection
from switchyard.systems.quickbooks.order_mapping import QuickBooksOrderMapping, load_order_mapping, parse_order_mapping
from switchyard.systems.quickbooks.order_to_cash import CUSTOMER_LINKS, ItemCache, OrderToCash
from switchyard.tokens import InMemoryTokenStore
from switchyard_local.nop_orders import paid_in_customer_currency, random_order
from switchyard_local.sandboxes.quickbooks import TOKEN_PATH, QuickBooksSandbox

REALM = "9130"
BASE_URL = "http://qbo.test"
T0 = 1_795_000_000.0
FLOW = "nopcommerce-to-quickbooks"
GUID = "6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10"
OTHER_GUID = "00000000-0000-4000-8000-000000001041"
EMAIL = "jane.doe@acme-corp.example"
PLACED_STEPS = ("customer", "items", "document", "write_back")


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder(httpx.BaseTransport):
    """Keeps every API request; ``before`` runs ahead of each (a bookkeeper's concurrent edit)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []
        self.before: Callable[[httpx.Request], None] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if self.before is not None:
            self.before(request)
        if request.url.path.startswith("/v3/"):
            self.sent.append(request)
        return self.inner.handle_request(request)

    def writes(self) -> list[str]:
        return [request.url.path.rsplit("/", 1)[-1] for request in self.sent if request.method == "POST"]

    def queries(self) -> list[str]:
        return [request.url.params["query"] for request in self.sent if request.url.path.endswith("/query")]


class FakeShop:
    """The OrderWriteBack port as NopCommerceClient implements it (notes deduplicated, guarded status)."""

    def __init__(self) -> None:
        self.status: dict[int, int] = {}
        self.notes: dict[int, list[str]] = {}
        self.markers: dict[int, list[str | None]] = {}
        self.reads = 0

    def get_order(self, order_id: int) -> dict[str, Any]:
        self.reads += 1
        return {"id": order_id, "order_status_id": self.status.get(order_id, 10), "payment_status_id": 10}

    def add_order_note(self, order_id: int, note: str, *, display_to_customer: bool = False,
                       marker: str | None = None) -> bool:
        notes = self.notes.setdefault(order_id, [])
        markers = self.markers.setdefault(order_id, [])
        if note in notes or (marker is not None and marker in markers):
            return False
        notes.append(note)
        markers.append(marker)
        return True

    def set_order_status(self, order_id: int, status_id: int, *, only_from: Collection[int] | None = None) -> bool:
        current = self.status.get(order_id, 10)
        if current == status_id or (only_from is not None and current not in only_from):
            return False
        self.status[order_id] = status_id
        return True


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> QuickBooksSandbox:
    return QuickBooksSandbox(clock=clock, per_second=10_000, per_minute=100_000, batch_per_minute=10_000)


@pytest.fixture
def tokens(sandbox: QuickBooksSandbox) -> dict[str, Any]:
    return sandbox.connect_realm(REALM)


@pytest.fixture
def items(sandbox: QuickBooksSandbox, tokens: dict[str, Any]) -> dict[str, str]:
    desk = sandbox.seed_item(REALM, "Standing desk", "DESK-STD-01", qty_on_hand=20, unit_price=450.0)
    arm = sandbox.seed_item(REALM, "Monitor arm", "ARM-MON-02", qty_on_hand=50, unit_price=90.0)
    shipping = sandbox.seed_item(REALM, "Shipping", "SHIPPING", qty_on_hand=0, unit_price=0, type="Service")
    return {"DESK-STD-01": desk["Id"], "ARM-MON-02": arm["Id"], "SHIPPING": shipping["Id"]}


@pytest.fixture
def transport(sandbox: QuickBooksSandbox) -> Recorder:
    return Recorder(httpx.WSGITransport(app=sandbox.wsgi_app))


@pytest.fixture
def qbo(tokens: dict[str, Any], transport: Recorder, clock: FakeClock) -> Iterator[QuickBooksClient]:
    secret = {"base_url": BASE_URL, "token_url": f"{BASE_URL}{TOKEN_PATH}", "client_id": "qbo-client",
              "client_secret": "qbo-secret", "realm_id": REALM, "refresh_token": tokens["refresh_token"],
              "access_token": tokens["access_token"], "access_token_expires_at": T0 + 3600}
    store = InMemoryTokenStore({REALM: secret}, clock=clock, sleep=lambda _: time.sleep(0.001), poll_seconds=0.01)
    client = QuickBooksClient(QuickBooksConnection.from_secret(secret), store, transport=transport, clock=clock)
    yield client
    client.close()


@pytest.fixture
def shop() -> FakeShop:
    return FakeShop()


@pytest.fixture
def mapping() -> QuickBooksOrderMapping:
    return load_order_mapping("nopcommerce-to-quickbooks.yaml")


@pytest.fixture
def o2c(mapping: QuickBooksOrderMapping, qbo: QuickBooksClient, shop: FakeShop, state: InMemoryEntityState,
        clock: FakeClock, items: dict[str, str]) -> OrderToCash:
    return OrderToCash(mapping, qbo, shop, flow=FLOW, state=state, clock=clock, item_cache=ItemCache())


@pytest.fixture
def bookkeeper(sandbox: QuickBooksSandbox) -> Iterator[httpx.Client]:
    """Someone editing QuickBooks directly (own token), e.g. between our read and our update."""
    token = sandbox.connect_realm(REALM)["access_token"]
    client = httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app),
                          base_url=f"{BASE_URL}/v3/company/{REALM}", headers={"Authorization": f"Bearer {token}"},
                          params={"minorversion": "75"})
    yield client
    client.close()


# --------------------------------------------------------------------------- events


def order(**fields: Any) -> dict[str, Any]:
    """nopCommerce's Order of the b2b sample, with the tax/shipping/discount fields."""
    return {"Id": 1042, "OrderGuid": GUID, "CustomOrderNumber": "1042", "StoreId": 1, "CustomerId": 77,
            "OrderStatusId": 10, "PaymentStatusId": 30, "ShippingStatusId": 20, "OrderSubtotalExclTax": 1260.00,
            "OrderShippingExclTax": 39.00, "OrderTax": 0.00, "OrderDiscount": 0.00, "OrderTotal": 1299.00,
            "CustomerCurrencyCode": "USD", "CurrencyRate": 1.0, "CreatedOnUtc": "2026-11-20T09:15:00Z", **fields}


def placed(**fields: Any) -> dict[str, Any]:
    return {"type": "order.placed", "timestamp": "2026-11-20T09:15:02Z", "data": {
        "Order": order(**fields),
        "OrderItems": [
            {"Id": 5001, "ProductId": 31, "Quantity": 2, "UnitPriceInclTax": 450.00, "UnitPriceExclTax": 450.00,
             "PriceInclTax": 900.00, "PriceExclTax": 900.00,
             "Product": {"Id": 31, "Name": "Standing desk", "Sku": "DESK-STD-01"}},
            {"Id": 5002, "ProductId": 48, "Quantity": 4, "UnitPriceInclTax": 90.00, "UnitPriceExclTax": 90.00,
             "PriceInclTax": 360.00, "PriceExclTax": 360.00,
             "Product": {"Id": 48, "Name": "Monitor arm", "Sku": "ARM-MON-02"}}],
        "Customer": {"Id": 77, "Email": " Jane.Doe@Acme-Corp.example ", "FirstName": "Jane", "LastName": "Doe",
                     "Company": "Acme Corp"},
        "BillingAddress": {"FirstName": "Jane", "LastName": "Doe", "Company": "Acme Corp", "Address1": "1 Main St",
                           "City": "Springfield", "ZipPostalCode": "12345", "CountryId": 1,
                           "PhoneNumber": "555-0100"},
    }}


def paid(**fields: Any) -> dict[str, Any]:
    return {"type": "order.paid", "timestamp": "2026-11-21T10:00:00Z", "data": {
        "Order": order(**{"PaymentStatusId": 30, "PaidDateUtc": "2026-11-21T09:59:00Z", **fields})}}


def cancelled(**fields: Any) -> dict[str, Any]:
    return {"type": "order.status_changed", "timestamp": "2026-11-22T10:00:00Z", "data": {
        "Order": order(**{"OrderStatusId": 40, **fields})}}


def execution(document: dict[str, Any]) -> dict[str, Any]:
    """A state machine's initial state: the flow's queue message as ingest wrote it."""
    message = flow_message(flow=FLOW, event_id=f"msg_{document['type']}", source="nopcommerce",
                           event_type=document["type"], timestamp=document["timestamp"],
                           received_at="2026-11-20T12:00:00+00:00", body=json.dumps(document))
    return {"message": message}


def run(o2c: OrderToCash, document: dict[str, Any], steps: tuple[str, ...]) -> dict[str, Any]:
    state = execution(document)
    for step in steps:
        state[step] = o2c.run(step, state)
        json.dumps(state[step])  # Step Functions stores it as JSON
    return state


def entities(sandbox: QuickBooksSandbox, key: str) -> list[dict[str, Any]]:
    return sandbox.snapshot()["realms"][REALM][key]


# --------------------------------------------------------------------------- order.placed


def test_paid_order_becomes_sales_receipt_customer_and_note(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop, items: dict[str, str],
    state: InMemoryEntityState
) -> None:
    result = run(o2c, placed(), PLACED_STEPS)

    (customer,) = entities(sandbox, "customers")
    assert result["customer"] == {"id": customer["Id"], "display_name": "Acme Corp", "action": "created"}
    assert (customer["PrimaryEmailAddr"], customer["CompanyName"]) == ({"Address": EMAIL}, "Acme Corp")
    assert state.linked(CUSTOMER_LINKS, "77") == customer["Id"]
    assert result["items"] == {"refs": items}
    (receipt,) = entities(sandbox, "salesReceipts")
    assert result["document"] == {"entity": "SalesReceipt", "id": receipt["Id"], "doc_number": "1042",
                                  "total": 1299, "currency": "USD", "exchange_rate": None, "action": "created"}
    assert (receipt["TotalAmt"], receipt["Balance"], receipt["CustomerRef"]["value"]) == (1299.0, 0.0, customer["Id"])
    lines = [(line["SalesItemLineDetail"]["ItemRef"]["value"], line["SalesItemLineDetail"]["Qty"], line["Amount"])
             for line in receipt["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert lines == [(items["DESK-STD-01"], 2, 900.0), (items["ARM-MON-02"], 4, 360.0), (items["SHIPPING"], 1, 39.0)]
    assert GUID in receipt["PrivateNote"] and receipt["TxnDate"] == "2026-11-20"
    assert entities(sandbox, "invoices") == []
    assert result["write_back"] == {"note": "Sent to QuickBooks: SalesReceipt 1042", "note_added": True,
                                    "status_changed": True}
    assert (shop.notes[1042], shop.status[1042]) == (["Sent to QuickBooks: SalesReceipt 1042"], 20)


def test_unpaid_order_invoice_then_payment_linked_to_it(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop
) -> None:
    placed_state = run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)
    (invoice,) = entities(sandbox, "invoices")
    assert placed_state["document"]["entity"] == "Invoice" and invoice["Balance"] == 1299.0
    assert entities(sandbox, "salesReceipts") == []

    paid_state = run(o2c, paid(), ("payment", "write_back"))

    (payment,) = entities(sandbox, "payments")
    assert paid_state["payment"] == {"action": "created", "id": payment["Id"], "invoice_id": invoice["Id"],
                                     "doc_number": "1042", "amount": 1299, "currency": "USD"}
    assert payment["Line"][0]["LinkedTxn"] == [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]
    assert (payment["TotalAmt"], payment["TxnDate"], payment["CustomerRef"]["value"]) == (
        1299.0, "2026-11-21", invoice["CustomerRef"]["value"])
    after = sandbox.get_entity(REALM, "invoice", invoice["Id"])
    assert after["Balance"] == 0.0
    assert {"TxnId": payment["Id"], "TxnType": "Payment"} in after["LinkedTxn"]
    assert paid_state["write_back"] == {
        "note": f"Payment recorded in QuickBooks: Payment {payment['Id']} for Invoice 1042", "note_added": True,
        "status_changed": False}
    assert shop.notes[1042] == ["Sent to QuickBooks: Invoice 1042",
                                f"Payment recorded in QuickBooks: Payment {payment['Id']} for Invoice 1042"]


def test_rerun_of_every_step_creates_nothing_twice(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop, transport: Recorder,
    mapping: QuickBooksOrderMapping, qbo: QuickBooksClient
) -> None:
    first = run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)
    first_paid = run(o2c, paid(), ("payment", "write_back"))
    transport.sent.clear()

    again = run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)
    again_paid = run(o2c, paid(), ("payment", "write_back"))
    # a DLQ redrive in a fresh container: no entity-state link, a cold item cache
    cold = OrderToCash(mapping, qbo, shop, flow=FLOW, clock=o2c.clock, item_cache=ItemCache())
    cold_run = run(cold, placed(PaymentStatusId=10), PLACED_STEPS)
    cold_paid = run(cold, paid(), ("payment", "write_back"))

    assert transport.writes() == []  # nothing written to QuickBooks
    snapshot = sandbox.snapshot()["realms"][REALM]
    assert [len(snapshot[key]) for key in ("customers", "invoices", "salesReceipts", "payments")] == [1, 1, 0, 1]
    for rerun in (again, cold_run):
        assert rerun["customer"] == {**first["customer"], "action": "unchanged"}
        assert rerun["document"] == {**first["document"], "action": "existing"}
        assert rerun["write_back"] == {**first["write_back"], "note_added": False, "status_changed": False}
    for rerun in (again_paid, cold_paid):
        assert rerun["payment"] == {**first_paid["payment"], "action": "already_paid"}
        assert rerun["write_back"] == {**first_paid["write_back"], "note_added": False}
    assert len(shop.notes[1042]) == 2


def test_the_one_task_of_a_route_retried_after_its_last_step_failed_creates_nothing_twice(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop, transport: Recorder
) -> None:
    """The declared machine runs a route's steps in ONE task (flows.yaml); a retry of that task runs them all
    again from the first. The write-back fails (the shop times out) after the receipt exists: the retry finds
    the customer and the receipt, creates nothing, and the shop gets its note once."""
    from switchyard.catalog import load_catalog
    from switchyard.compose import StepApp
    from switchyard.state_machines import StepHandlers, StepRetryable

    declared = load_catalog().flows[FLOW].state_machine
    (book,) = declared.states.values()
    task = {"steps_by_route": {route: list(steps) for route, steps in book.sequences.items()}}
    handlers = StepHandlers({f"quickbooks.{step}": (lambda state, step=step: o2c.run(step, state))
                             for step in ("customer", "items", "document", "write_back", "payment")})

    class Bound:
        def get(self) -> StepHandlers:
            return handlers

    app = StepApp(flow=FLOW, steps=Bound(), dead_letters=None)
    flaky = {"left": 1}
    add_note = shop.add_order_note

    def times_out_once(*args: Any, **kwargs: Any) -> bool:
        if flaky["left"]:
            flaky["left"] -= 1
            raise RetryableError("nopCommerce timed out", reason="target_timeout")
        return add_note(*args, **kwargs)

    shop.add_order_note = times_out_once  # type: ignore[method-assign]
    state = {**execution(placed(PaymentStatusId=10)), "route": "placed"}
    with pytest.raises(StepRetryable) as failed:
        app.handle({**task, "state": state})
    assert json.loads(str(failed.value))["step"] == "quickbooks.write_back"
    first_writes = transport.writes()
    assert sorted(first_writes) == ["customer", "invoice"]  # the items exist already

    retried = app.handle({**task, "state": state})  # Step Functions' Retry: the same input again

    assert transport.writes() == first_writes  # nothing written on the second run
    (customer,) = entities(sandbox, "customers")
    (invoice,) = entities(sandbox, "invoices")
    assert retried["customer"] == {"id": customer["Id"], "display_name": "Acme Corp", "action": "unchanged"}
    assert (retried["document"]["id"], retried["document"]["action"]) == (invoice["Id"], "existing")
    assert retried["write_back"]["note_added"] is True
    assert shop.notes[1042] == ["Sent to QuickBooks: Invoice 1042"]
    assert {key: retried[key] for key in state} == state  # the execution's own fields are kept

    # the order.paid execution's task: its route picks payment + write-back
    paid_state = app.handle({**task, "state": {**execution(paid()), "route": "paid"}})
    assert paid_state["payment"]["invoice_id"] == invoice["Id"] and "customer" not in paid_state
    assert len(entities(sandbox, "payments")) == 1


def test_items_come_from_one_query_then_from_the_cache_until_it_expires(
    o2c: OrderToCash, transport: Recorder, clock: FakeClock
) -> None:
    o2c.run("items", execution(placed()))
    assert transport.queries() == ["select * from Item where Sku in ('DESK-STD-01', 'ARM-MON-02', 'SHIPPING') "
                                   "maxresults 1000"]
    o2c.run("items", execution(placed(Id=1041, OrderGuid=OTHER_GUID)))
    assert len(transport.queries()) == 1
    clock.now += 301
    o2c.run("items", execution(placed()))
    assert len(transport.queries()) == 2


def test_item_deleted_after_caching_drops_cache_and_retries(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, bookkeeper: httpx.Client, items: dict[str, str]
) -> None:
    state = run(o2c, placed(), ("customer", "items"))
    desk = sandbox.get_entity(REALM, "item", items["DESK-STD-01"])
    assert bookkeeper.post("/item", json={"Id": desk["Id"], "SyncToken": desk["SyncToken"], "sparse": True,
                                          "Active": False, "Sku": "DESK-OLD"}).status_code == 200
    new_desk = sandbox.seed_item(REALM, "Standing desk v2", "DESK-STD-01", qty_on_hand=5, unit_price=450.0)

    with pytest.raises(RetryableError) as caught:
        o2c.run("document", state)
    assert caught.value.reason == "stale_item_ref"
    assert entities(sandbox, "salesReceipts") == []

    state["document"] = o2c.run("document", state)  # the state machine's retry
    (receipt,) = entities(sandbox, "salesReceipts")
    assert receipt["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"] == new_desk["Id"]


@pytest.mark.parametrize("skus", [["NOPE"], ["NOPE", "GONE"]])
def test_unmapped_sku_is_permanent_and_creates_no_document(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, skus: list[str]
) -> None:
    sandbox.seed_item(REALM, "Discontinued", "GONE", qty_on_hand=0, unit_price=1.0, active=False)  # inactive
    document = placed()
    for line, sku in zip(document["data"]["OrderItems"], skus, strict=False):
        line["Product"]["Sku"] = sku
    state = run(o2c, document, ("customer",))

    for step in ("items", "document"):
        with pytest.raises(PermanentError) as caught:
            o2c.run(step, state)
        assert caught.value.reason == "unmapped_product"
        assert caught.value.message == f"unmapped product {', '.join(skus)}"
    assert entities(sandbox, "salesReceipts") == entities(sandbox, "invoices") == []


def test_two_active_items_with_one_sku_are_ambiguous(o2c: OrderToCash, sandbox: QuickBooksSandbox,
                                                      items: dict[str, str]) -> None:
    twin = sandbox.seed_item(REALM, "Standing desk (copy)", "DESK-STD-01", qty_on_hand=1, unit_price=450.0)
    with pytest.raises(PermanentError) as caught:
        o2c.run("items", execution(placed()))
    assert caught.value.reason == "ambiguous_product"
    assert f"DESK-STD-01 (Items {items['DESK-STD-01']}, {twin['Id']})" in caught.value.message


def test_order_cancelled_in_shop_before_the_document_creates_nothing(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop
) -> None:
    shop.status[1042] = 40  # cancelled since the order.placed event

    result = run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)

    assert result["document"]["action"] == "skipped_cancelled" and result["document"]["id"] is None
    assert result["document"]["dropped"] == "cancelled_before_booking"
    assert entities(sandbox, "invoices") == []
    assert result["write_back"] == {"note": None, "note_added": False, "status_changed": False}
    assert (shop.reads, shop.notes, shop.status[1042]) == (1, {}, 40)


def test_doc_number_taken_by_a_bookkeepers_document_is_permanent(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, bookkeeper: httpx.Client, items: dict[str, str]
) -> None:
    other = sandbox.seed_customer(REALM, "Walk-in")
    taken = bookkeeper.post("/salesreceipt", json={"CustomerRef": {"value": other["Id"]}, "DocNumber": "1042", "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 90.0,
         "SalesItemLineDetail": {"ItemRef": {"value": items["ARM-MON-02"]}, "Qty": 1, "UnitPrice": 90.0}}]})
    assert taken.status_code == 200
    state = run(o2c, placed(), ("customer", "items"))

    with pytest.raises(PermanentError) as caught:
        o2c.run("document", state)

    assert caught.value.reason == "duplicate_document_number"
    assert "DocNumber 1042 belongs to another transaction" in caught.value.message
    assert len(entities(sandbox, "salesReceipts")) == 1


def test_doc_number_overflow_keeps_the_last_21_characters(o2c: OrderToCash, sandbox: QuickBooksSandbox) -> None:
    number = "WEBSHOP-EU-2026-11-0001042"
    result = run(o2c, placed(CustomOrderNumber=number), PLACED_STEPS)
    (receipt,) = entities(sandbox, "salesReceipts")
    assert receipt["DocNumber"] == result["document"]["doc_number"] == "OP-EU-2026-11-0001042"
    assert f"nopCommerce order {number}" in receipt["PrivateNote"]
    assert result["write_back"]["note"] == f"Sent to QuickBooks: SalesReceipt {number[-21:]}"
    assert run(o2c, placed(CustomOrderNumber=number), ("customer", "document"))["document"]["action"] == "existing"


# --------------------------------------------------------------------------- the customer


def test_name_taken_by_a_vendor_gets_the_suffixed_name(o2c: OrderToCash, sandbox: QuickBooksSandbox) -> None:
    sandbox.seed_vendor(REALM, "Acme Corp")

    result = run(o2c, placed(), ("customer",))

    (customer,) = entities(sandbox, "customers")
    assert result["customer"] == {"id": customer["Id"], "display_name": "Acme Corp [nop 77]", "action": "created"}
    assert run(o2c, placed(), ("customer",))["customer"]["action"] == "unchanged"


def test_name_taken_by_a_customer_with_another_email_gets_the_suffixed_name(
    o2c: OrderToCash, sandbox: QuickBooksSandbox
) -> None:
    other = sandbox.seed_customer(REALM, "Acme Corp", email="ap@other-acme.example")

    result = run(o2c, placed(), ("customer",))

    assert result["customer"]["display_name"] == "Acme Corp [nop 77]"
    assert result["customer"]["id"] != other["Id"] and len(entities(sandbox, "customers")) == 2


def test_duplicate_name_6240_with_a_customer_of_the_same_email_links_to_it(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, transport: Recorder
) -> None:
    created: list[dict[str, Any]] = []

    def bookkeeper_creates_it_meanwhile(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/customer") and not created:
            created.append(sandbox.seed_customer(REALM, "Acme Corp", email=EMAIL.upper()))

    transport.before = bookkeeper_creates_it_meanwhile
    result = run(o2c, placed(), ("customer",))

    assert result["customer"] == {"id": created[0]["Id"], "display_name": "Acme Corp", "action": "linked"}
    (customer,) = entities(sandbox, "customers")
    assert customer["CompanyName"] == "Acme Corp"  # our fields applied to the linked customer


def test_customer_with_the_same_name_and_no_email_is_linked_and_completed(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, state: InMemoryEntityState
) -> None:
    existing = sandbox.seed_customer(REALM, "Acme Corp")

    result = run(o2c, placed(), ("customer",))

    assert result["customer"] == {"id": existing["Id"], "display_name": "Acme Corp", "action": "linked"}
    assert sandbox.get_entity(REALM, "customer", existing["Id"])["PrimaryEmailAddr"] == {"Address": EMAIL}
    assert state.linked(CUSTOMER_LINKS, "77") == existing["Id"]


def test_repeat_customer_costs_one_read_and_an_inactive_link_is_looked_up_again(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, transport: Recorder, bookkeeper: httpx.Client
) -> None:
    first = run(o2c, placed(), ("customer",))["customer"]
    transport.sent.clear()

    again = run(o2c, placed(Id=1041, OrderGuid=OTHER_GUID, CustomOrderNumber="1041"), ("customer",))["customer"]

    assert again == {**first, "action": "unchanged"}
    assert [(request.method, request.url.path.rsplit("/", 2)[-2:]) for request in transport.sent] == [
        ("GET", ["customer", first["id"]])]
    customer = sandbox.get_entity(REALM, "customer", first["id"])
    assert bookkeeper.post("/customer", json={"Id": customer["Id"], "SyncToken": customer["SyncToken"],
                                              "sparse": True, "Active": False}).status_code == 200

    replaced = run(o2c, placed(Id=1041, OrderGuid=OTHER_GUID, CustomOrderNumber="1041"), ("customer",))["customer"]

    assert replaced["action"] == "created" and replaced["id"] != first["id"]
    assert replaced["display_name"] == "Acme Corp [nop 77]"  # the inactive customer still holds the name


def test_changed_customer_is_sparse_updated_and_a_stale_sync_token_is_re_read(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, transport: Recorder, bookkeeper: httpx.Client
) -> None:
    run(o2c, placed(), ("customer",))
    document = placed()
    document["data"]["BillingAddress"]["PhoneNumber"] = "555-0199"
    edits: list[int] = []

    def bookkeeper_edits_first(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/customer") and not edits:
            (customer,) = entities(sandbox, "customers")
            edits.append(bookkeeper.post("/customer", json={"Id": customer["Id"], "SyncToken": customer["SyncToken"],
                                                            "sparse": True, "Notes": "VIP"}).status_code)

    transport.before = bookkeeper_edits_first
    transport.sent.clear()
    result = run(o2c, document, ("customer",))

    assert edits == [200]
    assert result["customer"]["action"] == "updated"
    assert transport.writes() == ["customer", "customer"]  # the 5010, then the retry with the new token
    (customer,) = entities(sandbox, "customers")
    assert (customer["PrimaryPhone"], customer["Notes"], customer["SyncToken"]) == (
        {"FreeFormNumber": "555-0199"}, "VIP", "2")
    sent = json.loads(transport.sent[-1].content)
    assert set(sent) == {"Id", "SyncToken", "sparse", "PrimaryPhone"}  # only what changed


# --------------------------------------------------------------------------- order.paid


def test_payment_before_the_invoice_is_out_of_order(o2c: OrderToCash, sandbox: QuickBooksSandbox) -> None:
    with pytest.raises(OutOfOrderError) as caught:
        o2c.run("payment", execution(paid()))
    assert (caught.value.reason, caught.value.message) == ("document_missing",
                                                           "no QuickBooks document yet for order 1042")
    assert entities(sandbox, "payments") == []


def test_payment_of_a_sales_receipt_is_not_needed(o2c: OrderToCash, sandbox: QuickBooksSandbox,
                                                  shop: FakeShop) -> None:
    run(o2c, placed(), PLACED_STEPS)
    result = run(o2c, paid(), ("payment", "write_back"))
    assert result["payment"]["action"] == "not_needed"
    assert result["write_back"] == {"note": None, "note_added": False, "status_changed": False}
    assert entities(sandbox, "payments") == []


# --------------------------------------------------------------------------- cancel


def test_cancel_before_payment_voids_the_invoice(o2c: OrderToCash, sandbox: QuickBooksSandbox,
                                                 shop: FakeShop) -> None:
    placed_state = run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)

    result = run(o2c, cancelled(PaymentStatusId=10), ("cancel", "write_back"))

    invoice_id = placed_state["document"]["id"]
    assert result["cancel"] == {"action": "voided", "entity": "Invoice", "id": invoice_id, "doc_number": "1042"}
    (invoice,) = entities(sandbox, "invoices")
    assert (invoice["status"], invoice["TotalAmt"]) == ("Voided", 0.0)
    assert result["write_back"] == {"note": "Voided in QuickBooks: Invoice 1042", "note_added": True,
                                    "status_changed": False}
    assert run(o2c, cancelled(), ("cancel",))["cancel"]["action"] == "already_voided"
    assert run(o2c, paid(), ("payment",))["payment"]["action"] == "flagged_for_review"  # paid after the void


def test_cancel_without_a_document_has_nothing_to_void(o2c: OrderToCash, shop: FakeShop) -> None:
    result = run(o2c, cancelled(), ("cancel", "write_back"))
    assert result["cancel"]["action"] == "nothing_to_void"
    assert result["cancel"]["dropped"] == "nothing_to_void"  # the step app records the drop with its reason
    assert result["write_back"]["note"] is None and shop.notes == {}


@pytest.mark.parametrize("payment_status", [10, 30])
def test_cancel_after_payment_is_flagged_changes_nothing_and_write_back_raises(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop, payment_status: int
) -> None:
    run(o2c, placed(PaymentStatusId=payment_status), PLACED_STEPS)
    if payment_status == 10:
        run(o2c, paid(), ("payment",))
    doc_type = "SalesReceipt" if payment_status == 30 else "Invoice"
    before = sandbox.snapshot()["realms"][REALM]

    state = run(o2c, cancelled(), ("cancel",))
    assert state["cancel"]["action"] == "flagged_for_review" and state["cancel"]["entity"] == doc_type
    with pytest.raises(PermanentError) as caught:
        o2c.run("write_back", state)

    after = sandbox.snapshot()["realms"][REALM]
    for key in ("invoices", "salesReceipts", "payments"):
        assert after[key] == before[key]
    note = (f"Cancelled after payment: {doc_type} 1042 is paid in QuickBooks and was not changed; "
            "review it there")
    assert caught.value.reason == "review_required" and note in caught.value.message
    assert shop.notes[1042][-1] == note


# --------------------------------------------------------------------------- foreign currency


def test_foreign_currency_order_converts_amounts_and_records_the_rate(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, state: InMemoryEntityState
) -> None:
    run(o2c, placed(Id=1041, OrderGuid=OTHER_GUID, CustomOrderNumber="1041"), ("customer",))  # home currency
    document = placed(CustomerCurrencyCode="EUR", CurrencyRate=0.92, PaymentStatusId=10)

    result = run(o2c, document, PLACED_STEPS)

    customers = {row["DisplayName"]: row for row in entities(sandbox, "customers")}
    assert set(customers) == {"Acme Corp", "Acme Corp (EUR)"}  # a QuickBooks customer has one currency
    assert customers["Acme Corp (EUR)"]["CurrencyRef"] == {"value": "EUR"}
    assert state.linked(CUSTOMER_LINKS, "77:EUR") == customers["Acme Corp (EUR)"]["Id"]
    (invoice,) = entities(sandbox, "invoices")
    assert [line["Amount"] for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"] == [
        828.0, 331.2, 35.88]
    assert (invoice["TotalAmt"], invoice["CurrencyRef"], invoice["ExchangeRate"]) == (
        1195.08, {"value": "EUR"}, 1.086957)
    assert "CurrencyRate 0.92 (1 USD = 0.92 EUR; ExchangeRate 1.086957)" in invoice["PrivateNote"]
    assert result["document"] == {"entity": "Invoice", "id": invoice["Id"], "doc_number": "1042", "total": 1195.08,
                                  "currency": "EUR", "exchange_rate": 1.086957, "action": "created"}

    paid_state = run(o2c, paid(CustomerCurrencyCode="EUR", CurrencyRate=0.92), ("payment",))
    (payment,) = entities(sandbox, "payments")
    assert (payment["TotalAmt"], payment["CurrencyRef"]) == (1195.08, {"value": "EUR"})
    assert paid_state["payment"]["currency"] == "EUR"
    assert sandbox.get_entity(REALM, "invoice", invoice["Id"])["Balance"] == 0.0


# --------------------------------------------------------------------------- to the cent


def cents_example(**fields: Any) -> dict[str, Any]:
    """The issue's order: UnitPriceInclTax 12.50 at 8 % tax, quantity 2, shipping 5.00: 30.00 received."""
    document = placed(OrderSubtotalExclTax=23.15, OrderShippingExclTax=5.00, OrderTax=1.85, OrderTotal=30.00,
                      **fields)
    document["data"]["OrderItems"] = [
        {"Id": 5001, "ProductId": 31, "Quantity": 2, "UnitPriceInclTax": 12.50, "UnitPriceExclTax": 11.57,
         "PriceInclTax": 25.00, "PriceExclTax": 23.15,
         "Product": {"Id": 31, "Name": "Standing desk", "Sku": "DESK-STD-01"}}]
    return document


def test_sales_receipt_of_the_cents_example_says_what_was_received(
    o2c: OrderToCash, sandbox: QuickBooksSandbox
) -> None:
    result = run(o2c, cents_example(), PLACED_STEPS)
    (receipt,) = entities(sandbox, "salesReceipts")
    assert (receipt["TotalAmt"], result["document"]["total"]) == (30.0, 30)  # was 29.99
    assert [line["Amount"] for line in receipt["Line"] if line["DetailType"] == "SalesItemLineDetail"] == [23.15, 5.0]


def test_invoice_and_payment_of_the_cents_example_equal_what_was_received(
    o2c: OrderToCash, sandbox: QuickBooksSandbox
) -> None:
    run(o2c, cents_example(PaymentStatusId=10), PLACED_STEPS)
    run(o2c, paid(OrderTotal=30.00), ("payment", "write_back"))
    (invoice,) = entities(sandbox, "invoices")
    (payment,) = entities(sandbox, "payments")
    assert (invoice["TotalAmt"], payment["TotalAmt"], payment["Line"][0]["Amount"]) == (30.0, 30.0, 30.0)
    assert sandbox.get_entity(REALM, "invoice", invoice["Id"])["Balance"] == 0.0


def test_payment_of_an_invoice_booked_a_cent_short_is_what_was_received_with_the_cent_unapplied(
    o2c: OrderToCash, sandbox: QuickBooksSandbox
) -> None:
    # an invoice booked before documents equalled OrderTotal: 23.14 + 5.00 + 1.85 = 29.99 for 30.00 paid
    short = cents_example(PaymentStatusId=10)
    short["data"]["Order"]["OrderTotal"] = 29.99
    short["data"]["OrderItems"][0]["PriceExclTax"] = 23.14
    run(o2c, short, PLACED_STEPS)

    result = run(o2c, paid(OrderTotal=30.00), ("payment",))["payment"]

    (payment,) = entities(sandbox, "payments")
    (invoice,) = entities(sandbox, "invoices")
    assert (payment["TotalAmt"], payment["Line"][0]["Amount"], payment["UnappliedAmt"]) == (30.0, 29.99, 0.01)
    assert sandbox.get_entity(REALM, "invoice", invoice["Id"])["Balance"] == 0.0
    assert (result["amount"], result["unapplied"]) == (30, 0.01)
    assert "received 30.00 USD, Invoice 1042 was open for 29.99 USD: 0.01 USD unapplied" in payment["PrivateNote"]


def test_payment_of_less_than_the_invoice_leaves_the_rest_open(o2c: OrderToCash, sandbox: QuickBooksSandbox) -> None:
    run(o2c, cents_example(PaymentStatusId=10), PLACED_STEPS)
    result = run(o2c, paid(OrderTotal=29.99), ("payment",))["payment"]  # the order was edited in the shop
    (payment,) = entities(sandbox, "payments")
    (invoice,) = entities(sandbox, "invoices")
    assert (payment["TotalAmt"], payment["UnappliedAmt"], result["left_open"]) == (29.99, 0.0, 0.01)
    assert sandbox.get_entity(REALM, "invoice", invoice["Id"])["Balance"] == 0.01


def test_cents_example_booked_incl_tax_totals_what_was_received(
    mapping: QuickBooksOrderMapping, qbo: QuickBooksClient, shop: FakeShop, sandbox: QuickBooksSandbox,
    items: dict[str, str]
) -> None:
    gross = OrderToCash(dataclasses.replace(mapping, tax_amounts="incl_tax"), qbo, shop, flow=FLOW,
                        item_cache=ItemCache())
    run(gross, cents_example(OrderShippingInclTax=5.00), PLACED_STEPS)
    (receipt,) = entities(sandbox, "salesReceipts")
    assert (receipt["TotalAmt"], receipt["GlobalTaxCalculation"], receipt["TxnTaxDetail"]["TotalTax"]) == (
        30.0, "TaxInclusive", 1.85)
    assert [line["Amount"] for line in receipt["Line"] if line["DetailType"] == "SalesItemLineDetail"] == [25.0, 5.0]


def test_random_orders_are_booked_and_paid_in_quickbooks_to_the_cent(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop
) -> None:
    sandbox.seed_item(REALM, "Rounding", "ROUNDING", qty_on_hand=0, unit_price=0, type="Service")
    gross = OrderToCash(dataclasses.replace(o2c.mapping, tax_amounts="incl_tax"), o2c.qbo, shop, flow=FLOW,
                        item_cache=ItemCache())
    rng = random.Random(17)
    kinds: set[tuple[str, bool]] = set()
    for number in range(2001, 2061):
        steps = gross if number % 2 else o2c  # half of them booked incl. tax
        data = random_order(rng, order_id=number, skus=("DESK-STD-01", "ARM-MON-02"))
        document = {"type": "order.placed", "timestamp": "2026-11-20T09:15:02Z", "data": jsonable(data)}
        received = float(paid_in_customer_currency(data))
        result = run(steps, document, PLACED_STEPS)
        entity = result["document"]["entity"]
        booked = sandbox.get_entity(REALM, entity.lower(), result["document"]["id"])
        assert booked["TotalAmt"] == received, data
        kinds.add((entity, "Rounding adjustment" in json.dumps(booked["Line"])))
        if entity == "Invoice":
            event = {"type": "order.paid", "timestamp": "2026-11-21T10:00:00Z",
                     "data": {"Order": {**document["data"]["Order"], "PaymentStatusId": 30}}}
            payment = run(steps, event, ("payment",))["payment"]
            assert sandbox.get_entity(REALM, "payment", payment["id"])["TotalAmt"] == received, data
    assert kinds == {("SalesReceipt", False), ("SalesReceipt", True), ("Invoice", False), ("Invoice", True)}


# --------------------------------------------------------------------------- the step contract


def test_unknown_step_raises_value_error(o2c: OrderToCash) -> None:
    with pytest.raises(ValueError, match="unknown order-to-cash step 'ship'"):
        o2c.run("ship", execution(placed()))


def test_step_results_are_plain_json(o2c: OrderToCash) -> None:
    state = run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)
    copy.deepcopy(state)
    assert json.loads(json.dumps(state)) == state
    assert not any(isinstance(value, Decimal) for result in state.values() if isinstance(result, dict)
                   for value in result.values())


# --------------------------------------------------------------------------- fields chosen in the mapping document


def test_fields_chosen_in_yaml_reach_quickbooks_and_later_events_find_the_document(
    qbo: QuickBooksClient, shop: FakeShop, state: InMemoryEntityState, clock: FakeClock, items: dict[str, str],
    sandbox: QuickBooksSandbox,
) -> None:
    mapping = parse_order_mapping("""
flow: nopcommerce-to-quickbooks
target: quickbooks
lookups: {class_by_store: {1: "100", "*": null}, state_provinces: {40: NY, "*": null}}
customer:
  display_name: {value: {template: "{Customer.LastName}, {Customer.FirstName}"}}
document:
  doc_number: {template: "W-{Order.CustomOrderNumber}"}
  class_id: {path: Order.StoreId, transforms: [{lookup: class_by_store}]}
  custom_fields: [{definition_id: "1", name: Sales channel, value: {const: Web shop}}]
lines:
  description: {template: "{Item.Product.Name} / {Item.Product.Sku}"}
""", name="custom.yaml")
    o2c = OrderToCash(mapping, qbo, shop, flow=FLOW, state=state, clock=clock, item_cache=ItemCache())
    document = placed(PaymentStatusId=10)
    document["data"]["BillingAddress"]["StateProvinceId"] = 40

    result = run(o2c, document, PLACED_STEPS)

    (customer,) = entities(sandbox, "customers")
    assert customer["DisplayName"] == "Doe, Jane" and customer["BillAddr"]["CountrySubDivisionCode"] == "NY"
    (invoice,) = entities(sandbox, "invoices")
    assert (invoice["DocNumber"], invoice["ClassRef"], invoice["CustomField"][0]["StringValue"]) == (
        "W-1042", {"value": "100"}, "Web shop")
    assert invoice["Line"][0]["Description"] == "Standing desk / DESK-STD-01"
    assert result["write_back"]["note"] == "Sent to QuickBooks: Invoice W-1042"
    # order.paid and the cancellation carry the order alone: the same rule finds the document
    payment = run(o2c, paid(), ("payment",))["payment"]
    assert (payment["action"], payment["doc_number"]) == ("created", "W-1042")
    assert run(o2c, cancelled(), ("cancel",))["cancel"]["action"] == "flagged_for_review"


# --------------------------------------------------------------------------- payment details


@pytest.fixture
def payment_methods(sandbox: QuickBooksSandbox, tokens: dict[str, Any]) -> dict[str, str]:
    """The company's payment methods (ids 1 Credit Card, 2 PayPal: the mapping below names them)."""
    card = sandbox.seed_payment_method(REALM, "Credit Card", "CREDIT_CARD")
    paypal = sandbox.seed_payment_method(REALM, "PayPal", "NON_CREDIT_CARD")
    assert (card["Id"], paypal["Id"]) == ("1", "2")
    return {"card": card["Id"], "paypal": paypal["Id"]}


@pytest.fixture
def paying(mapping: QuickBooksOrderMapping, qbo: QuickBooksClient, shop: FakeShop, state: InMemoryEntityState,
           clock: FakeClock, items: dict[str, str]) -> OrderToCash:
    """The shipped mapping with the company's payment methods in lookups.payment_methods."""
    doc = yaml.safe_load(mapping_path("nopcommerce-to-quickbooks.yaml").read_text())
    doc["lookups"]["payment_methods"] = {"Payments.Manual": "1", "Payments.PayPalCommerce.Standard": "2", "*": None}
    with_methods = parse_order_mapping(yaml.safe_dump(doc), name="with payment methods")
    return OrderToCash(with_methods, qbo, shop, flow=FLOW, state=state, clock=clock, item_cache=ItemCache())


def test_sales_receipt_in_quickbooks_names_the_payment_method_and_capture_id(
    paying: OrderToCash, sandbox: QuickBooksSandbox, payment_methods: dict[str, str]
) -> None:
    run(paying, placed(PaymentMethodSystemName="Payments.Manual", CaptureTransactionId="ch_3QxR8dLkdIwHu7ix0snN0B15"),
        PLACED_STEPS)

    (receipt,) = entities(sandbox, "salesReceipts")
    assert receipt["PaymentMethodRef"] == {"value": payment_methods["card"]}
    assert receipt["PaymentRefNum"] == "R8dLkdIwHu7ix0snN0B15"
    assert "payment reference ch_3QxR8dLkdIwHu7ix0snN0B15" in receipt["PrivateNote"]


def test_payment_of_an_invoice_names_the_method_and_capture_id_once_when_redelivered(
    paying: OrderToCash, sandbox: QuickBooksSandbox, payment_methods: dict[str, str]
) -> None:
    run(paying, placed(PaymentStatusId=10, PaymentMethodSystemName="Payments.PayPalCommerce.Standard"), PLACED_STEPS)
    (invoice,) = entities(sandbox, "invoices")
    assert "PaymentMethodRef" not in invoice

    event = paid(PaymentMethodSystemName="Payments.PayPalCommerce.Standard", CaptureTransactionId="8AB12345CD6789012")
    run(paying, event, ("payment", "write_back"))
    again = run(paying, event, ("payment", "write_back"))

    (payment,) = entities(sandbox, "payments")
    assert (payment["PaymentMethodRef"], payment["PaymentRefNum"]) == (
        {"value": payment_methods["paypal"]}, "8AB12345CD6789012")
    assert again["payment"]["action"] == "already_paid"


def test_payment_without_a_transaction_id_is_referenced_by_the_doc_number(
    paying: OrderToCash, sandbox: QuickBooksSandbox, payment_methods: dict[str, str]
) -> None:
    run(paying, placed(PaymentStatusId=10), PLACED_STEPS)
    run(paying, paid(PaymentMethodSystemName="Payments.CheckMoneyOrder"), ("payment", "write_back"))

    (payment,) = entities(sandbox, "payments")
    assert payment["PaymentRefNum"] == "1042" and "PaymentMethodRef" not in payment


def test_a_payment_method_missing_in_quickbooks_dead_letters_the_order(
    paying: OrderToCash, sandbox: QuickBooksSandbox
) -> None:  # no payment methods seeded: id 1 does not exist
    with pytest.raises(PermanentError) as caught:
        run(paying, placed(PaymentMethodSystemName="Payments.Manual"), PLACED_STEPS)

    assert caught.value.reason == "object_not_found"
    assert entities(sandbox, "salesReceipts") == []


# --------------------------------------------------------------------------- the shop hears about failures


def failing(o2c: OrderToCash, document: dict[str, Any], steps: tuple[str, ...] = PLACED_STEPS) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        run(o2c, document, steps)
    return caught.value


def test_an_unknown_product_notes_why_and_what_to_do_once_however_often_it_is_redelivered(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop
) -> None:
    document = placed()
    document["data"]["OrderItems"][1]["Product"]["Sku"] = "NOPE"

    errors = [failing(o2c, document) for _ in range(3)]  # the delivery, a redelivery, a redrive
    state = run(o2c, document, ("customer",))
    with pytest.raises(PermanentError):
        o2c.run("document", state)  # the same reason raised by another step

    assert {error.reason for error in errors} == {"unmapped_product"}
    assert shop.notes[1042] == [
        "Not sent to QuickBooks: unmapped product NOPE. QuickBooks has no active product or service with that SKU: "
        "add it there (or correct the SKU here), then have the order sent again (redrive it from the dead-letter "
        "queue)."]
    assert entities(sandbox, "salesReceipts") == []


def test_a_totals_mismatch_notes_the_amounts_and_the_next_reason_gets_its_own_note(
    o2c: OrderToCash, shop: FakeShop
) -> None:
    document = placed(OrderTotal=1350.00)  # a payment fee the mapping does not book
    assert failing(o2c, document).reason == "totals_mismatch"
    assert failing(o2c, document).reason == "totals_mismatch"
    fixed_total = placed()
    fixed_total["data"]["OrderItems"][0]["Product"]["Sku"] = "NOPE"
    assert failing(o2c, fixed_total).reason == "unmapped_product"

    first, second = shop.notes[1042]
    assert first.startswith("Not sent to QuickBooks: the QuickBooks document of order 1042 would total 1299.00 USD, "
                            "the order 1350.00 USD")
    assert "book this order by hand" in first
    assert second.startswith("Not sent to QuickBooks: unmapped product NOPE.")


def test_a_shop_that_cannot_be_reached_does_not_hide_the_failure(o2c: OrderToCash, shop: FakeShop) -> None:
    def unreachable(*_args: Any, **_kwargs: Any) -> bool:
        raise RetryableError("nopCommerce answered 503", reason="target_unavailable")

    shop.add_order_note = unreachable  # type: ignore[method-assign]
    document = placed()
    document["data"]["OrderItems"][0]["Product"]["Sku"] = "NOPE"

    assert failing(o2c, document).reason == "unmapped_product"


def test_a_reason_without_a_note_in_the_mapping_adds_none(
    mapping: QuickBooksOrderMapping, qbo: QuickBooksClient, shop: FakeShop, state: InMemoryEntityState,
    clock: FakeClock, items: dict[str, str]
) -> None:
    quiet = dataclasses.replace(mapping, failure_notes={})
    o2c = OrderToCash(quiet, qbo, shop, flow=FLOW, state=state, clock=clock, item_cache=ItemCache())
    document = placed()
    document["data"]["OrderItems"][0]["Product"]["Sku"] = "NOPE"

    assert failing(o2c, document).reason == "unmapped_product"
    assert shop.notes == {}


# --------------------------------------------------------------------------- new products do not stop orders


def creating_mapping(**create: Any) -> QuickBooksOrderMapping:
    """The shipped document with items.unknown: create."""
    doc = yaml.safe_load(mapping_path("nopcommerce-to-quickbooks.yaml").read_text())
    doc["items"] = {**doc["items"], "unknown": "create", "create": {"income_account_id": "79", **create}}
    return parse_order_mapping(yaml.safe_dump(doc), name="creating")


@pytest.fixture
def creating(qbo: QuickBooksClient, shop: FakeShop, state: InMemoryEntityState, clock: FakeClock,
             items: dict[str, str]) -> OrderToCash:
    return OrderToCash(creating_mapping(), qbo, shop, flow=FLOW, state=state, clock=clock, item_cache=ItemCache())


def gift_card_order(**fields: Any) -> dict[str, Any]:
    document = placed(**fields)
    line = document["data"]["OrderItems"][1]
    line["Product"] = {"Id": 99, "Name": "Gift card: 25", "Sku": "GIFT-25"}
    return document


def items_with_sku(sandbox: QuickBooksSandbox, sku: str) -> list[dict[str, Any]]:
    return [item for item in entities(sandbox, "items") if item.get("Sku") == sku]


def test_an_unknown_product_becomes_an_item_and_the_order_is_booked(
    creating: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop
) -> None:
    result = run(creating, gift_card_order(), PLACED_STEPS)

    (item,) = items_with_sku(sandbox, "GIFT-25")
    assert (item["Name"], item["Type"], item["UnitPrice"], item["IncomeAccountRef"]) == (
        "Gift card- 25", "NonInventory", 90, {"value": "79"})  # ':' is not allowed in QuickBooks names
    assert result["items"]["created"] == ["GIFT-25"] and result["items"]["refs"]["GIFT-25"] == item["Id"]
    (receipt,) = entities(sandbox, "salesReceipts")
    assert item["Id"] in [line["SalesItemLineDetail"]["ItemRef"]["value"] for line in receipt["Line"]
                          if line["DetailType"] == "SalesItemLineDetail"]
    assert receipt["TotalAmt"] == 1299.0 and shop.notes[1042] == ["Sent to QuickBooks: SalesReceipt 1042"]


def test_a_redelivered_order_and_a_second_order_find_the_created_item(
    creating: OrderToCash, sandbox: QuickBooksSandbox
) -> None:
    run(creating, gift_card_order(), PLACED_STEPS)
    creating.items_cache.clear()
    again = run(creating, gift_card_order(), PLACED_STEPS)
    other = run(creating, gift_card_order(Id=1043, CustomOrderNumber="1043", OrderGuid=OTHER_GUID), PLACED_STEPS)

    assert len(items_with_sku(sandbox, "GIFT-25")) == 1
    assert "created" not in again["items"] and "created" not in other["items"]


def test_a_create_whose_answer_was_lost_is_found_on_the_retry(
    creating: OrderToCash, sandbox: QuickBooksSandbox, transport: Recorder
) -> None:
    inner = transport.inner
    lost: list[str] = []

    class LosesFirstItemAnswer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = inner.handle_request(request)
            if request.method == "POST" and request.url.path.endswith("/item") and not lost:
                lost.append(request.url.params["requestid"])
                raise httpx.ReadTimeout("the answer was lost", request=request)
            return response

    transport.inner = LosesFirstItemAnswer()
    state = run(creating, gift_card_order(), ("customer",))
    with pytest.raises(RetryableError):
        creating.run("items", state)  # the state machine retries the step
    state["items"] = creating.run("items", state)

    (item,) = items_with_sku(sandbox, "GIFT-25")
    assert lost and state["items"]["refs"]["GIFT-25"] == item["Id"]


def test_a_name_held_by_another_item_gives_the_new_item_its_sku_in_the_name(
    creating: OrderToCash, sandbox: QuickBooksSandbox
) -> None:
    sandbox.seed_item(REALM, "Gift card- 25", "OLD-GIFT", qty_on_hand=0, unit_price=1.0, type="NonInventory")

    run(creating, gift_card_order(), PLACED_STEPS)

    (item,) = items_with_sku(sandbox, "GIFT-25")
    assert item["Name"] == "Gift card- 25 (GIFT-25)"


def test_an_item_created_by_a_concurrent_order_is_taken_on_6240(
    creating: OrderToCash, sandbox: QuickBooksSandbox, transport: Recorder
) -> None:
    def racing_order(request: httpx.Request) -> None:  # the other execution creates it between query and create
        if request.method == "POST" and request.url.path.endswith("/item") and not items_with_sku(sandbox, "GIFT-25"):
            sandbox.seed_item(REALM, "Gift card- 25", "GIFT-25", qty_on_hand=0, unit_price=90.0, type="NonInventory")

    transport.before = racing_order
    result = run(creating, gift_card_order(), PLACED_STEPS)

    (item,) = items_with_sku(sandbox, "GIFT-25")
    assert result["items"]["refs"]["GIFT-25"] == item["Id"] and len(entities(sandbox, "salesReceipts")) == 1


def test_inventory_items_need_their_accounts_and_start_at_zero(
    qbo: QuickBooksClient, shop: FakeShop, state: InMemoryEntityState, clock: FakeClock, items: dict[str, str],
    sandbox: QuickBooksSandbox
) -> None:
    with pytest.raises(MappingError, match=r"items\.create needs asset_account_id, expense_account_id"):
        creating_mapping(type="Inventory")
    mapping = creating_mapping(type="Inventory", asset_account_id="81", expense_account_id="80")
    o2c = OrderToCash(mapping, qbo, shop, flow=FLOW, state=state, clock=clock, item_cache=ItemCache())

    run(o2c, gift_card_order(), PLACED_STEPS)

    (item,) = items_with_sku(sandbox, "GIFT-25")
    assert (item["Type"], item["TrackQtyOnHand"], item["AssetAccountRef"], item["ExpenseAccountRef"]) == (
        "Inventory", True, {"value": "81"}, {"value": "80"})


def test_without_the_switch_an_unknown_product_still_dead_letters(o2c: OrderToCash, sandbox: QuickBooksSandbox) -> None:
    assert failing(o2c, gift_card_order()).reason == "unmapped_product"
    assert items_with_sku(sandbox, "GIFT-25") == []


# --------------------------------------------------------------------------- refunds


@pytest.fixture
def refund_item(sandbox: QuickBooksSandbox, items: dict[str, str]) -> str:
    return str(sandbox.seed_item(REALM, "Refunds", "REFUND", qty_on_hand=0, unit_price=0, type="Service")["Id"])


def refunded(refunded_amount: float, status: int = 35, **fields: Any) -> dict[str, Any]:
    return {"type": "order.refunded", "timestamp": "2026-11-23T10:00:00Z", "data": {
        "Order": order(**{"PaymentStatusId": status, "RefundedAmount": refunded_amount, **fields})}}


REFUND_STEPS = ("refund", "write_back")


def test_partial_then_full_refund_of_a_sales_receipt_books_each_new_amount_once(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, shop: FakeShop, refund_item: str
) -> None:
    run(o2c, placed(), PLACED_STEPS)

    first = run(o2c, refunded(100.00), REFUND_STEPS)
    run(o2c, refunded(100.00), REFUND_STEPS)  # redelivered
    full = run(o2c, refunded(1299.00, status=40), REFUND_STEPS)
    run(o2c, refunded(1299.00, status=40), REFUND_STEPS)  # re-polled

    receipts = entities(sandbox, "refundReceipts")
    assert [r["TotalAmt"] for r in receipts] == [100.0, 1199.0]
    assert receipts[0]["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"] == refund_item
    assert (first["refund"]["action"], first["refund"]["amount"], full["refund"]["amount"]) == ("created", 100, 1199)
    assert shop.notes[1042][1:] == [f"Refund recorded in QuickBooks: RefundReceipt {receipts[0]['Id']}, 100.00 USD",
                                    f"Refund recorded in QuickBooks: RefundReceipt {receipts[1]['Id']}, 1199.00 USD"]


def test_a_refund_whose_answer_was_lost_is_not_booked_again(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, transport: Recorder, refund_item: str
) -> None:
    run(o2c, placed(), PLACED_STEPS)
    inner = transport.inner
    lost: list[bool] = []

    class LosesRefundAnswer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = inner.handle_request(request)
            if request.url.path.endswith("/refundreceipt") and not lost:
                lost.append(True)
                raise httpx.ReadTimeout("the answer was lost", request=request)
            return response

    transport.inner = LosesRefundAnswer()
    state = execution(refunded(250.00))
    with pytest.raises(RetryableError):
        o2c.run("refund", state)
    state["refund"] = o2c.run("refund", state)

    assert lost and [r["TotalAmt"] for r in entities(sandbox, "refundReceipts")] == [250.0]
    assert state["refund"]["action"] == "already_refunded"


def test_a_refund_of_an_open_invoice_is_a_credit_memo_applied_to_it(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, refund_item: str
) -> None:
    run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)
    (invoice,) = entities(sandbox, "invoices")

    result = run(o2c, refunded(299.00), REFUND_STEPS)
    run(o2c, refunded(299.00), REFUND_STEPS)

    (memo,) = entities(sandbox, "creditMemos")
    assert (memo["TotalAmt"], memo["Balance"]) == (299.0, 0.0)
    assert sandbox.get_entity(REALM, "invoice", invoice["Id"])["Balance"] == 1000.0
    assert (result["refund"]["entity"], result["refund"]["applied"]) == ("CreditMemo", 299)
    (applying,) = entities(sandbox, "payments")
    assert applying["TotalAmt"] == 0.0


def test_a_refund_of_a_paid_invoice_leaves_the_credit_with_the_customer(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, refund_item: str
) -> None:
    run(o2c, placed(PaymentStatusId=10), PLACED_STEPS)
    run(o2c, paid(), ("payment", "write_back"))

    result = run(o2c, refunded(1299.00, status=40), REFUND_STEPS)

    (memo,) = entities(sandbox, "creditMemos")
    assert (memo["TotalAmt"], memo["Balance"], result["refund"]["applied"]) == (1299.0, 1299.0, 0)


def test_a_refund_in_a_customer_currency_uses_the_orders_rate(
    o2c: OrderToCash, sandbox: QuickBooksSandbox, refund_item: str
) -> None:
    euro = {"CustomerCurrencyCode": "EUR", "CurrencyRate": 0.9}
    run(o2c, placed(**euro), PLACED_STEPS)
    (receipt,) = entities(sandbox, "salesReceipts")

    run(o2c, refunded(100.00, **euro), REFUND_STEPS)

    (refund,) = entities(sandbox, "refundReceipts")
    assert (refund["TotalAmt"], refund["CurrencyRef"]["value"], refund["ExchangeRate"]) == (
        90.0, "EUR", receipt["ExchangeRate"])


def test_a_refund_before_the_document_exists_is_out_of_order_and_more_than_it_is_permanent(
    o2c: OrderToCash, shop: FakeShop, refund_item: str
) -> None:
    with pytest.raises(OutOfOrderError):
        run(o2c, refunded(10.00), REFUND_STEPS)
    run(o2c, placed(), PLACED_STEPS)
    with pytest.raises(PermanentError) as caught:
        run(o2c, refunded(5000.00, status=40), REFUND_STEPS)
    assert caught.value.reason == "refund_exceeds_document"
    assert shop.notes[1042][-1].startswith("Refund not booked in QuickBooks: nopCommerce order 1042 refunded 5000.00 "
                                           "USD, more than its SalesReceipt 1042 (1299.00 USD)")
    assert run(o2c, refunded(0, status=30), REFUND_STEPS)["refund"]["action"] == "not_refunded"
    assert run(o2c, refunded(0, status=30), REFUND_STEPS)["refund"]["dropped"] == "not_refunded"
