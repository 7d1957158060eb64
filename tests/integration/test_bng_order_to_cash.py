"""nopCommerce ⇄ BNG order-to-cash steps against the BNG and nopCommerce sandboxes (in-process over WSGI)."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import httpx
import pytest
from switchyard.errors import OutOfOrderError, PermanentError, RetryableError
from switchyard.events import flow_message
from switchyard.pairs.nopcommerce_bng import BngOrderToCash, load_bng_mapping
from switchyard.systems.bng.client import BngClient, BngConnection
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard_local.sandboxes.bng import DEFAULT_API_KEY, BngSandbox
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

from tests.conftest import SAMPLES_DIR

FLOW = "nopcommerce-to-bng"
T0 = 1_796_299_200.0  # 2026-12-03T12:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Unreachable(httpx.BaseTransport):
    """Fails the next ``n`` requests as a network error would, then passes them on."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.failures = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            self.failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return self.inner.handle_request(request)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bng(clock: Clock) -> BngSandbox:
    sandbox = BngSandbox(clock=clock)
    sandbox.add_product("DESK-STD-01", "Standing desk", on_hand=20, attributes={"Material": "Oak"})
    sandbox.add_product("ARM-MON-02", "Monitor arm", on_hand=50)
    return sandbox


@pytest.fixture
def shop(clock: Clock) -> NopCommerceSandbox:
    return NopCommerceSandbox(clock=clock)


@pytest.fixture
def network(bng: BngSandbox) -> Unreachable:
    return Unreachable(httpx.WSGITransport(app=bng.wsgi_app))


@pytest.fixture
def bng_client(network: Unreachable, clock: Clock) -> BngClient:
    return BngClient(BngConnection(base_url="http://bng.test", api_key=DEFAULT_API_KEY), transport=network,
                     sleep=clock.sleep, clock=clock)


@pytest.fixture
def shop_client(shop: NopCommerceSandbox, clock: Clock) -> NopCommerceClient:
    return NopCommerceClient(NopCommerceConnection(base_url="http://shop.test", email=DEFAULT_API_EMAIL,
                                                   password=DEFAULT_API_PASSWORD),
                             transport=httpx.WSGITransport(app=shop.wsgi_app), clock=clock, sleep=clock.sleep)


@pytest.fixture
def steps(bng_client: BngClient, shop_client: NopCommerceClient) -> BngOrderToCash:
    return BngOrderToCash(load_bng_mapping(), bng_client, shop_client, flow=FLOW)


def placed(**order_changes: Any) -> dict[str, Any]:
    document = json.loads((SAMPLES_DIR / "nop_order_b2b.json").read_text())
    document["data"]["Order"].update(order_changes)
    return document


def state_for(document: dict[str, Any], event_id: str = "msg_1", **results: Any) -> dict[str, Any]:
    message = flow_message(flow=FLOW, event_id=event_id, source="nopcommerce", event_type=document["type"],
                           timestamp=document["timestamp"], received_at="2026-12-03T12:00:00+00:00",
                           body=json.dumps(document))
    return {"message": message, **results}


def seeded(shop: NopCommerceSandbox, document: dict[str, Any]) -> dict[str, Any]:
    order = document["data"]["Order"]
    return shop.seed_order(id=order["Id"], order_guid=order["OrderGuid"],
                           custom_order_number=order["CustomOrderNumber"], order_total=order["OrderTotal"],
                           payment_status_id=order["PaymentStatusId"])


def run_through_order(steps: BngOrderToCash, document: dict[str, Any]) -> dict[str, Any]:
    state = state_for(document)
    state["customer"] = steps.run("customer", state)
    state["sales_order"] = steps.run("sales_order", state)
    return state


# ----------------------------------------------------------------- customer


def test_the_customer_is_created_once_and_updated_by_external_id(steps: BngOrderToCash, bng: BngSandbox) -> None:
    document = placed()
    first = steps.run("customer", state_for(document))
    assert first["action"] == "created"
    customer = bng.customers()[0]
    assert customer["ExternalID"] == "nop-customer-77" and customer["Name"] == "Acme Corp"
    assert customer["Email"] == "jane.doe@acme-corp.example" and customer["Type"] == "Business"
    assert customer["BillingAddress"]["Country"] == "US" and customer["BillingAddress"]["PostalCode"] == "12345"
    again = steps.run("customer", state_for(document))
    assert again == {**first, "action": "unchanged"}
    document["data"]["Customer"]["Company"] = "Acme Corporation"
    changed = steps.run("customer", state_for(document))
    assert changed["action"] == "updated" and changed["id"] == first["id"]
    assert [c["Name"] for c in bng.customers()] == ["Acme Corporation"]


def test_a_customer_create_whose_answer_was_lost_links_to_the_one_bng_made(
        steps: BngOrderToCash, bng: BngSandbox, bng_client: BngClient) -> None:
    document = placed()
    body = steps.mapping.customer(document["data"])
    made = bng_client.create_customer(body)  # an earlier attempt: carried out, its answer never arrived
    original = bng_client.find_customer
    bng_client.find_customer = lambda external_id: None  # type: ignore[method-assign]  # the lookup raced it
    try:
        result = steps.run("customer", state_for(document))
    finally:
        bng_client.find_customer = original  # type: ignore[method-assign]
    assert result["id"] == made["CustomerID"]
    assert len(bng.customers()) == 1


def test_bng_rejecting_the_customer_is_permanent_with_bngs_message(steps: BngOrderToCash, bng: BngSandbox) -> None:
    document = placed()
    document["data"]["Customer"]["Email"] = "jane@localhost"  # no domain: BNG refuses it
    with pytest.raises(PermanentError) as raised:
        steps.run("customer", state_for(document))
    assert raised.value.target_status == 422
    assert "Email: 'jane@localhost' is not an e-mail address" in raised.value.message
    assert bng.customers() == []


# ----------------------------------------------------------------- sales order


def test_the_sales_order_carries_lines_totals_custom_fields_and_gl_dimensions(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    assert state["sales_order"]["action"] == "created"
    order = bng.order(state["sales_order"]["id"])
    assert order["ExternalOrderID"] == "6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10"
    assert [(line["SKU"], line["Quantity"], line["UnitPrice"], line["ExternalLineID"]) for line in order["Lines"]] \
        == [("DESK-STD-01", 2, "450.00", "5001"), ("ARM-MON-02", 4, "90.00", "5002")]
    assert order["Totals"]["Total"] == "1299.00" and order["Totals"]["Shipping"] == "39.00"
    assert order["GLDimensions"] == {"CostCenter": "WEB-B2B", "Channel": "web", "Store": "STORE-1"}
    assert order["CustomFields"]["NopOrderId"] == 1042 and order["CustomFields"]["OrderSource"] == "web"
    assert order["Reference"] == "nopCommerce order 1042 (Id 1042)"


def test_a_duplicate_order_makes_no_second_sales_order(steps: BngOrderToCash, bng: BngSandbox,
                                                       shop: NopCommerceSandbox,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    document = placed()
    seeded(shop, document)
    first = run_through_order(steps, document)["sales_order"]
    with caplog.at_level(logging.WARNING):
        second = run_through_order(steps, document)["sales_order"]  # the same order delivered again
    assert second == {**first, "action": "existing"}
    assert len(bng.orders()) == 1
    assert any("duplicate order" in record.message for record in caplog.records)


def test_a_retry_after_a_timeout_finds_the_order_instead_of_creating_a_second(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox, bng_client: BngClient) -> None:
    document = placed()
    seeded(shop, document)
    state = state_for(document)
    state["customer"] = steps.run("customer", state)
    created = bng_client.create_sales_order
    calls: list[str] = []

    def lost_answer(body: Any) -> Any:  # BNG carried the create out; the client gave up waiting
        calls.append("create")
        created(body)
        raise RetryableError("BNG timed out on POST", reason="target_timeout")

    bng_client.create_sales_order = lost_answer  # type: ignore[method-assign]
    with pytest.raises(RetryableError):
        steps.run("sales_order", state)
    bng_client.create_sales_order = created  # type: ignore[method-assign]
    retried = steps.run("sales_order", state)
    assert retried["action"] == "existing" and calls == ["create"]
    assert len(bng.orders()) == 1


def test_an_unknown_product_is_permanent_naming_the_sku(steps: BngOrderToCash, bng: BngSandbox,
                                                        shop: NopCommerceSandbox) -> None:
    document = placed()
    document["data"]["OrderItems"][1]["Product"]["Sku"] = "GHOST-9"
    seeded(shop, document)
    state = state_for(document)
    state["customer"] = steps.run("customer", state)
    with pytest.raises(PermanentError) as raised:
        steps.run("sales_order", state)
    assert raised.value.reason == "unknown_product"
    assert "GHOST-9" in raised.value.message
    assert bng.orders() == []


def test_the_rate_limit_is_waited_out_within_the_limit(clock: Clock, shop: NopCommerceSandbox,
                                                       shop_client: NopCommerceClient) -> None:
    bng = BngSandbox(clock=clock, rate_limit=3, rate_window_seconds=60)
    bng.add_product("DESK-STD-01", "Standing desk")
    bng.add_product("ARM-MON-02", "Monitor arm")
    client = BngClient(BngConnection(base_url="http://bng.test", api_key=DEFAULT_API_KEY,
                                     max_rate_limit_wait_seconds=60),
                       transport=httpx.WSGITransport(app=bng.wsgi_app), sleep=clock.sleep)
    steps = BngOrderToCash(load_bng_mapping(), client, shop_client, flow=FLOW)
    document = placed()
    seeded(shop, document)
    started = clock.now
    state = run_through_order(steps, document)  # 4 BNG calls: find, create, find, create
    assert state["sales_order"]["action"] == "created"
    assert client.rate_limit_waits == 1 and clock.now - started == 60  # waited for the next window, once
    assert [status for _, _, status in bng.requests].count(429) == 1


def test_a_rate_limit_wait_beyond_the_budget_leaves_as_throttled(clock: Clock) -> None:
    bng = BngSandbox(clock=clock, rate_limit=1, rate_window_seconds=60)
    client = BngClient(BngConnection(base_url="http://bng.test", api_key=DEFAULT_API_KEY,
                                     max_rate_limit_wait_seconds=5),
                       transport=httpx.WSGITransport(app=bng.wsgi_app), sleep=clock.sleep)
    client.product_by_sku("X")
    with pytest.raises(RetryableError) as raised:
        client.product_by_sku("X")
    assert raised.value.reason == "rate_limited" and raised.value.retry_after == 60


def test_a_network_failure_is_retried_without_creating_twice(steps: BngOrderToCash, bng: BngSandbox,
                                                             shop: NopCommerceSandbox, network: Unreachable) -> None:
    document = placed()
    seeded(shop, document)
    state = state_for(document)
    network.failures = 1
    with pytest.raises(RetryableError) as raised:
        steps.run("customer", state)
    assert raised.value.reason == "target_unreachable"
    state["customer"] = steps.run("customer", state)  # the state machine's retry
    network.failures = 1
    with pytest.raises(RetryableError):
        steps.run("sales_order", state)
    state["sales_order"] = steps.run("sales_order", state)
    assert len(bng.customers()) == 1 and len(bng.orders()) == 1


# ----------------------------------------------------------------- shipment back to nopCommerce


def test_the_shipment_poll_waits_until_bng_ships(steps: BngOrderToCash, shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    with pytest.raises(OutOfOrderError) as raised:
        steps.run("shipment", state)
    assert raised.value.reason == "not_shipped_yet"


def test_the_shipment_with_tracking_and_the_mapped_statuses_reach_nopcommerce(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    bng.ship_order(state["sales_order"]["id"], carrier="UPS", tracking_number="1Z999AA10123456784",
                   shipped_at=T0 + 86400)
    state["shipment"] = steps.run("shipment", state)
    result = steps.run("write_shipment", state)
    assert result["complete"] is True
    [shipment] = shop.shipments(1042)
    assert shipment["tracking_number"] == "1Z999AA10123456784"
    assert shipment["shipped_date_utc"] == "2026-12-04T12:00:00"
    assert shipment["admin_comment"].startswith("BNG SH-")
    assert sorted((i["order_item_id"], i["quantity"]) for i in shipment["items"]) == [(5001, 2), (5002, 4)]
    order = shop.order(1042)
    assert (order["order_status_id"], order["shipping_status_id"]) == (20, 30)
    assert any("UPS, tracking number 1Z999AA10123456784" in note["note"] for note in shop.notes(1042))
    again = steps.run("write_shipment", state)  # a retry or a redrive: nothing twice
    assert [s["created"] for s in again["shipments"]] == [False] and again["statuses"] == {}
    assert len(shop.shipments(1042)) == 1 and len(shop.notes(1042)) == 1


def test_a_partial_shipment_is_partially_shipped(steps: BngOrderToCash, bng: BngSandbox,
                                                 shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    bng.ship_order(state["sales_order"]["id"], carrier="DHL", tracking_number="JD01", lines=[{"LineNo": 2,
                                                                                          "Quantity": 4}])
    state["shipment"] = steps.run("shipment", state)
    result = steps.run("write_shipment", state)
    assert result["complete"] is False
    assert shop.order(1042)["shipping_status_id"] == 25


def test_invoiced_in_bng_is_pushed_back_as_the_mapping_says(steps: BngOrderToCash, bng: BngSandbox,
                                                            shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    bng.ship_order(state["sales_order"]["id"], carrier="UPS", tracking_number="1Z")
    invoiced = bng.invoice_order(state["sales_order"]["id"])
    event = {"type": "salesorder.status_changed", "timestamp": invoiced["UpdatedAt"],
             "data": {**invoiced, "PreviousStatus": "Shipped"}}
    result = steps.run("write_status", state_for(event, "msg_bng_1"))
    assert result["statuses"] == {"order_status_id": 30}  # payment was Paid already
    assert (shop.order(1042)["order_status_id"], shop.order(1042)["payment_status_id"]) == (30, 30)
    assert any(invoiced["InvoiceNumber"] in note["note"] for note in shop.notes(1042))


def test_a_bng_status_never_moves_a_cancelled_nopcommerce_order_back(steps: BngOrderToCash, bng: BngSandbox,
                                                                     shop: NopCommerceSandbox) -> None:
    """never_from (the mapping): BNG releasing an order the shop cancelled meanwhile leaves it Cancelled."""
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    shop.update_order(1042, OrderStatusId=40)
    released = bng.release_order(state["sales_order"]["id"])
    event = {"type": "salesorder.status_changed", "timestamp": released["UpdatedAt"],
             "data": {**released, "PreviousStatus": "New"}}
    result = steps.run("write_status", state_for(event, "msg_3"))
    assert result["statuses"] == {} and shop.order(1042)["order_status_id"] == 40


# ----------------------------------------------------------------- cancellation


def cancelled(document: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    changed["type"] = "order.status_changed"
    changed["data"]["Order"]["OrderStatusId"] = 40
    return changed


def test_a_cancellation_before_shipment_cancels_the_bng_order(steps: BngOrderToCash, bng: BngSandbox,
                                                              shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    result = steps.run("cancel", state_for(cancelled(document), "msg_2"))
    assert result["action"] == "cancelled"
    assert bng.order(state["sales_order"]["id"])["Status"] == "Cancelled"
    assert steps.run("cancel", state_for(cancelled(document), "msg_2"))["action"] == "already_cancelled"
    assert steps.run("shipment", state)["action"] == "cancelled"  # the poll ends the wait too


def test_a_cancellation_after_shipment_is_flagged_for_review_and_changes_nothing(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    bng.ship_order(state["sales_order"]["id"], carrier="UPS", tracking_number="1Z")
    with pytest.raises(PermanentError) as raised:
        steps.run("cancel", state_for(cancelled(document), "msg_2"))
    assert raised.value.reason == "review_required"
    assert bng.order(state["sales_order"]["id"])["Status"] == "Shipped"
    assert any("review" in note["note"] for note in shop.notes(1042))


def test_an_order_cancelled_before_its_sales_order_is_not_created(steps: BngOrderToCash, bng: BngSandbox,
                                                                  shop: NopCommerceSandbox) -> None:
    document = placed()
    shop.seed_order(id=1042, order_status_id=40)
    state = run_through_order(steps, document)
    assert state["sales_order"]["action"] == "skipped_cancelled"
    assert state["sales_order"]["dropped"] == "cancelled_before_booking"
    assert bng.orders() == []


def test_the_placed_execution_cancels_its_own_order_though_its_event_is_the_placed_one(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    """cancel_order: the compensation (a timed-out wait) and a cancellation that reached the wait before the
    order existed. The ``cancel`` step would answer ``not_cancelled`` to this order.placed event."""
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    assert steps.run("cancel", state)["action"] == "not_cancelled"
    assert steps.run("cancel_order", state) == {"action": "cancelled", "id": state["sales_order"]["id"]}
    assert bng.order(state["sales_order"]["id"])["Status"] == "Cancelled"
    assert steps.run("cancel_order", state)["action"] == "already_cancelled"


def test_the_placed_executions_cancel_finds_the_order_by_its_external_id_or_nothing(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    assert steps.run("cancel_order", state_for(document)) == {"action": "nothing_to_cancel"}
    created = run_through_order(steps, document)["sales_order"]["id"]
    # a state without the sales_order result (a redrive) finds it by ExternalOrderID
    assert steps.run("cancel_order", state_for(document))["id"] == created
    assert bng.order(created)["Status"] == "Cancelled"


def test_the_placed_executions_cancel_of_a_shipped_order_is_flagged_for_review(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    bng.ship_order(state["sales_order"]["id"], carrier="UPS", tracking_number="1Z")
    with pytest.raises(PermanentError) as raised:
        steps.run("cancel_order", state)
    assert raised.value.reason == "review_required"
    assert bng.order(state["sales_order"]["id"])["Status"] == "Shipped"


def test_connection_field_names_and_paths_are_the_connections(clock: Clock) -> None:
    bng = BngSandbox(clock=clock, api_prefix="/erp/v2")
    client = BngClient(BngConnection.from_secret({"base_url": "http://bng.test", "api_key": DEFAULT_API_KEY,
                                                  "api_prefix": "/erp/v2"}),
                       transport=httpx.WSGITransport(app=bng.wsgi_app))
    created = client.create_customer({"ExternalID": "nop-customer-1", "Name": "A"})
    assert client.find_customer("nop-customer-1") == created
    renamed = BngClient(BngConnection.from_secret({"base_url": "http://bng.test", "api_key": DEFAULT_API_KEY,
                                                   "api_prefix": "/erp/v2", "fields": {"external_id": "ExtRef"}}),
                        transport=httpx.WSGITransport(app=bng.wsgi_app))
    with pytest.raises(PermanentError) as raised:  # this BNG calls it ExternalID: the renamed field is unknown
        renamed.create_customer({"ExternalID": "nop-customer-2", "Name": "B"})
    assert "ExtRef: unknown field" in raised.value.message


class LostAnswer(httpx.BaseTransport):
    """Carries the first request whose path contains ``part`` out, then times out as if its answer was lost."""

    def __init__(self, inner: httpx.BaseTransport, part: str) -> None:
        self.inner, self.part, self.done = inner, part, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not self.done and self.part in request.url.path:
            self.done = True
            raise httpx.ReadTimeout("timed out", request=request)
        return response


def test_a_shipment_create_whose_answer_was_lost_is_found_not_made_twice(shop: NopCommerceSandbox,
                                                                         clock: Clock) -> None:
    shop.seed_order(id=7)
    client = NopCommerceClient(NopCommerceConnection(base_url="http://shop.test", email=DEFAULT_API_EMAIL,
                                                     password=DEFAULT_API_PASSWORD),
                               transport=LostAnswer(httpx.WSGITransport(app=shop.wsgi_app), "Shipment/Create"),
                               clock=clock, sleep=clock.sleep)
    shipment_id, created = client.add_shipment(7, tracking_number="1Z", shipped_date_utc="2026-12-04T09:30:00",
                                               items={5001: 2}, marker="abc123abc123")
    assert created is False  # found after the settle time, not made again
    [shipment] = shop.shipments(7)
    assert shipment["id"] == shipment_id and [i["order_item_id"] for i in shipment["items"]] == [5001]
    assert client.set_order_statuses(7, {"shipping_status_id": 30}) == {"shipping_status_id": 30}
    assert client.set_order_statuses(7, {"order_status_id": 40}, never_from={"order_status_id": [10]}) == {}


def test_a_callback_with_the_last_of_two_shipments_writes_both_and_completes(
        steps: BngOrderToCash, bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    from switchyard.pairs.nopcommerce_bng.order_to_cash import shipment_callback

    document = placed()
    seeded(shop, document)
    state = run_through_order(steps, document)
    bng.ship_order(state["sales_order"]["id"], carrier="DHL", tracking_number="JD01",
                   lines=[{"LineNo": 2, "Quantity": 4}])
    last = bng.ship_order(state["sales_order"]["id"], carrier="UPS", tracking_number="1Z02")
    entity, output = shipment_callback({**last, "OrderStatus": "Shipped"})
    assert entity == document["data"]["Order"]["OrderGuid"]
    state["shipment"] = output  # how the wait-for-callback step ends
    result = steps.run("write_shipment", state)
    assert result["complete"] is True
    assert sorted(s["tracking_number"] for s in shop.shipments(1042)) == ["1Z02", "JD01"]
    assert shop.order(1042)["shipping_status_id"] == 30


def _sandbox_context(flow: str, clients: dict[str, Any], adapters: Any = None) -> Any:
    """The flow's registry context, its clients the sandboxes' (FlowContext builds real HTTP clients)."""
    from switchyard.catalog import load_catalog
    from switchyard.registry import FlowContext

    class SandboxContext(FlowContext):
        def client(self, connection: str, secrets: Any) -> Any:
            return clients[self.system_of(connection)]

    catalog = load_catalog()
    return SandboxContext(flow=catalog.flows[flow], catalog=catalog, adapters=adapters)


def test_the_declared_steps_run_from_the_pairs_registered_step_set(bng_client: BngClient,
                                                                    shop_client: NopCommerceClient,
                                                                    bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    from switchyard.compose import declared_steps

    context = _sandbox_context(FLOW, {"bng": bng_client, "nopcommerce": shop_client})
    assert context.flow.state_machine is not None
    runner = declared_steps(context, context.flow.state_machine.handlers)({})
    document = placed()
    seeded(shop, document)
    state = state_for(document)
    state["customer"] = runner.run("bng.customer", state)
    state["sales_order"] = runner.run("bng.sales_order", state)
    assert state["sales_order"]["action"] == "created"
    assert bng.order_by_external_id(document["data"]["Order"]["OrderGuid"]) is not None


class RecordingWaits:
    def __init__(self) -> None:
        self.completed: list[tuple[str, str, dict[str, Any]]] = []

    def complete(self, wait: str, entity: str, output: Any) -> str:
        self.completed.append((wait, entity, dict(output)))
        return "delivered"


class Adapters:
    time_scale = 1.0

    def __init__(self, waits: RecordingWaits) -> None:
        from switchyard.entity_state import InMemoryEntityState

        self._waits = waits
        self._state = InMemoryEntityState()

    def entity_state(self) -> Any:
        return self._state

    def waits(self, flow: str) -> RecordingWaits:
        assert flow == FLOW
        return self._waits


def test_bngs_events_complete_the_shipment_wait_and_set_stock(bng_client: BngClient, shop_client: NopCommerceClient,
                                                              bng: BngSandbox, shop: NopCommerceSandbox) -> None:
    from datetime import UTC, datetime

    from switchyard.compose import flow_target
    from switchyard.events import FlowEvent

    waits = RecordingWaits()
    context = _sandbox_context("bng-to-nopcommerce", {"bng": bng_client, "nopcommerce": shop_client}, Adapters(waits))
    target = flow_target(context)({})
    guid = "5f1d8c1e-0000-4000-8000-000000000001"
    at = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    shipped = FlowEvent(flow="bng-to-nopcommerce", event_id="evt_1", source="bng", type="shipment.created",
                        timestamp=at, data={"ExternalOrderID": guid, "SalesOrderID": "SO-1", "TrackingNumber": "1Z9",
                              "OrderStatus": "Shipped"})
    assert target.deliver(shipped).detail["delivery"] == "delivered"
    [(wait, entity, output)] = waits.completed
    assert (wait, entity, output["action"]) == ("shipment", guid, "shipped")
    assert output["shipments"][0]["TrackingNumber"] == "1Z9"

    product = bng.add_product("SKU-STOCK", "Widget", on_hand=5)
    shop_product = shop.seed_product("Widget", "SKU-STOCK", 1)
    bng.record_inventory("SKU-STOCK", 7)  # 5 + 7 on hand
    changed = FlowEvent(flow="bng-to-nopcommerce", event_id="evt_2", source="bng", type="inventory.changed",
                        timestamp=at, data={"ProductID": product["ProductID"], "SKU": "SKU-STOCK", "Quantity": 7})
    assert target.deliver(changed).outcome == "updated"
    assert shop.product(shop_product["id"])["stock_quantity"] == 12


def test_a_product_change_sets_attributes_and_stock_whichever_event_reads_the_newest_version(
        bng_client: BngClient, shop_client: NopCommerceClient, bng: BngSandbox, shop: NopCommerceSandbox,
        clock: Clock) -> None:
    """product.changed (an attribute edited in BNG, or the sweep's product found missing) writes the mapped
    specification attributes and the stock. An inventory.changed processed first that already reads the newer
    version writes the attributes too: the product.changed that follows reads that version, nothing left to do."""
    from datetime import UTC, datetime

    from switchyard.compose import flow_target
    from switchyard.events import FlowEvent

    context = _sandbox_context("bng-to-nopcommerce", {"bng": bng_client, "nopcommerce": shop_client},
                               Adapters(RecordingWaits()))
    target = flow_target(context)({})
    desk = bng.add_product("DESK-ATTR", "Desk", on_hand=3, attributes={"Material": "Oak", "Internal": "x"})
    shop_desk = shop.seed_product("Desk", "DESK-ATTR", 0)

    def event(event_id: str, event_type: str) -> FlowEvent:
        return FlowEvent(flow="bng-to-nopcommerce", event_id=event_id, source="bng", type=event_type,
                         timestamp=datetime.fromtimestamp(clock.now, UTC), data={"ProductID": desk["ProductID"]})

    first = target.deliver(event("evt_p1", "product.changed"))
    assert first.outcome == "updated" and first.detail["attributes"] == {"Material": "Oak"}
    assert shop.specifications(shop_desk["id"]) == {"Material": "Oak"}  # Internal is not in the mapping
    assert shop.product(shop_desk["id"])["stock_quantity"] == 3

    clock.now += 1
    bng.set_product_attributes("DESK-ATTR", Material="Walnut")  # product.changed (version 2)
    clock.now += 1
    bng.record_inventory("DESK-ATTR", 4)  # inventory.changed (version 3), processed first
    assert target.deliver(event("evt_i3", "inventory.changed")).outcome == "updated"
    assert shop.specifications(shop_desk["id"]) == {"Material": "Walnut"}
    assert shop.product(shop_desk["id"])["stock_quantity"] == 7
    assert target.deliver(event("evt_p2", "product.changed")).outcome == "unchanged"
    assert shop.specifications(shop_desk["id"]) == {"Material": "Walnut"}
