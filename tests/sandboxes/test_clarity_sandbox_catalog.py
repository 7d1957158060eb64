"""Clarity sandbox: registration (customer.created), products, stock and the changed-since lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClarityError, ClaritySandbox

from tests.sandboxes.test_clarity_sandbox import (
    API_KEY,
    FAST_BACKOFF,
    FakeClock,
    Receiver,
    delivered_types,
    make_client,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def sandbox(clock: FakeClock, receiver: Receiver) -> ClaritySandbox:
    return ClaritySandbox(webhook_url="http://receiver.test/webhooks/clarity", clock=clock,
                          webhook_backoff=FAST_BACKOFF, webhook_transport=httpx.MockTransport(receiver))


@pytest.fixture
def client(sandbox: ClaritySandbox) -> Iterator[httpx.Client]:
    with make_client(sandbox, headers={"X-Api-Key": API_KEY}) as client:
        yield client


def page(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- registration


def test_register_customer_emits_customer_created_with_the_full_customer(
    sandbox: ClaritySandbox, receiver: Receiver
) -> None:
    customer = sandbox.register_customer({"firstName": "Ada", "lastName": "Byron", "email": "ada@example.org",
                                          "company": "Analytical Engines Ltd"})
    assert customer["customerId"] == "C-501" and customer["version"] == 1
    assert delivered_types(sandbox, receiver) == ["customer.created"]
    (event,) = receiver.events
    assert event["data"] == customer
    assert event["timestamp"] == customer["updatedAt"]


def test_register_customer_over_http_returns_201_and_rejects_a_taken_id(
    sandbox: ClaritySandbox, clock: FakeClock
) -> None:
    with make_client(sandbox) as admin:
        created = admin.post("/_sandbox/customers", json={"customerId": "C-9", "email": "x@example.org"})
        assert created.status_code == 201 and created.json()["customerId"] == "C-9"
        taken = admin.post("/_sandbox/customers", json={"customerId": "C-9", "email": "y@example.org"})
    assert taken.status_code == 422
    assert taken.json()["fields"] == [{"field": "customerId", "message": "is taken"}]


def test_register_customer_without_email_is_422_and_emits_nothing(
    sandbox: ClaritySandbox, receiver: Receiver
) -> None:
    with pytest.raises(ClarityError) as error:
        sandbox.register_customer({"lastName": "Nobody", "shoeSize": 42})
    assert {item["field"] for item in error.value.fields} == {"email", "shoeSize"}
    assert delivered_types(sandbox, receiver) == []


# --------------------------------------------------------------------------- products and stock


def test_product_create_update_and_no_op_emit_created_updated_and_nothing(
    sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client, clock: FakeClock
) -> None:
    created = sandbox.put_product("DESK-STAND-180", name="Standing desk", price=899.0, currency="USD")
    assert created["active"] is True and created["version"] == 1
    clock.advance(5)
    updated = sandbox.put_product("DESK-STAND-180", price=849.0, active=False)
    sandbox.put_product("DESK-STAND-180", price=849.0)  # no change
    assert updated["version"] == 2 and updated["price"] == 849.0 and updated["active"] is False
    assert delivered_types(sandbox, receiver) == ["product.created", "product.updated"]
    response = client.get("/api/v1/products/DESK-STAND-180")
    assert response.json() == updated and response.headers["ETag"] == '"2"'
    assert client.get("/api/v1/products/NOPE").status_code == 404


def test_new_product_needs_name_price_currency_and_rejects_bad_values(sandbox: ClaritySandbox) -> None:
    with pytest.raises(ClarityError) as error:
        sandbox.put_product("SKU-1", price=-1, active="yes")
    fields = {item["field"] for item in error.value.fields}
    assert fields == {"price", "active", "name", "currency"}


def test_stock_change_emits_inventory_changed_and_a_count_that_did_not_change_emits_nothing(
    sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client
) -> None:
    sandbox.put_product("SKU-1", name="Widget", price=1.5, currency="EUR")
    level = sandbox.set_stock("SKU-1", 12)
    sandbox.set_stock("SKU-1", 12)
    oversold = sandbox.set_stock("SKU-1", -2)
    assert (level["version"], oversold["version"], oversold["quantityOnHand"]) == (1, 2, -2)
    assert delivered_types(sandbox, receiver) == ["product.created", "inventory.changed", "inventory.changed"]
    assert receiver.events[-1]["data"] == oversold
    assert client.get("/api/v1/inventory/SKU-1").json() == oversold


def test_stock_of_an_unknown_product_is_404(sandbox: ClaritySandbox) -> None:
    with pytest.raises(ClarityError) as error:
        sandbox.set_stock("GHOST", 1)
    assert error.value.status == 404


# --------------------------------------------------------------------------- changed-since lists


def test_changed_since_is_inclusive_ordered_by_time_then_key_and_pages_without_gaps(
    sandbox: ClaritySandbox, client: httpx.Client, clock: FakeClock
) -> None:
    for sku in ("B", "A", "C"):  # the same millisecond: ordered by sku
        sandbox.put_product(sku, name=sku, price=1, currency="USD")
    clock.advance(1)
    sandbox.put_product("A", price=2)  # A moves to the end
    first = page(client, "/api/v1/products", limit=2)
    assert [item["sku"] for item in first["items"]] == ["B", "C"]
    second = page(client, "/api/v1/products", limit=2, cursor=first["nextCursor"])
    assert [item["sku"] for item in second["items"]] == ["A"] and second["nextCursor"] is None
    watermark = second["items"][0]["updatedAt"]
    assert [item["sku"] for item in page(client, "/api/v1/products", changedSince=watermark)["items"]] == ["A"]


def test_changed_since_lists_customers_and_inventory(sandbox: ClaritySandbox, client: httpx.Client,
                                                    clock: FakeClock) -> None:
    sandbox.register_customer({"email": "old@example.org"})
    clock.advance(60)
    new = sandbox.register_customer({"email": "new@example.org"})
    sandbox.put_product("S", name="S", price=1, currency="USD")
    sandbox.set_stock("S", 3)
    customers = page(client, "/api/v1/customers", changedSince="2023-11-14T23:13:50+01:00")  # offsets accepted
    assert [item["customerId"] for item in customers["items"]] == [new["customerId"]]
    assert [item["quantityOnHand"] for item in page(client, "/api/v1/inventory")["items"]] == [3]


def test_changed_since_lists_orders_with_their_customer_by_last_status_change(
    sandbox: ClaritySandbox, client: httpx.Client, clock: FakeClock
) -> None:
    first = sandbox.place_order(DEMO_ORDERS[0])["orderId"]
    clock.advance(60)
    second = sandbox.place_order(DEMO_ORDERS[1])["orderId"]
    watermark = sandbox.get_order(second)["updatedAt"]
    clock.advance(60)
    sandbox.set_order_status(first, "shipped")  # the first order moves to the end
    sandbox.update_customer("C-501", phone="+1 217 555 0199")  # a customer's edit does not move its orders
    listed = page(client, "/api/v1/orders", changedSince=watermark)["items"]
    assert [(o["orderId"], o["version"]) for o in listed] == [(second, 1), (first, 2)]
    assert listed[1]["customer"]["phone"] == "+1 217 555 0199"  # embedded as it is now
    assert listed[1]["statusHistory"][-1]["status"] == "shipped"
    one = page(client, "/api/v1/orders", limit=1)
    assert one["items"][0]["orderId"] == second and one["nextCursor"]


def test_a_lost_webhook_is_never_sent_and_the_next_change_is(sandbox: ClaritySandbox, receiver: Receiver) -> None:
    order_id = sandbox.place_order(DEMO_ORDERS[0])["orderId"]
    sandbox.lose_next_webhooks(1)
    sandbox.set_order_status(order_id, "shipped")
    sandbox.set_order_status(order_id, "delivered")
    assert sandbox.wait_for_webhooks()
    assert receiver.types == ["order.created", "order.status_changed"]
    assert receiver.events[-1]["data"]["status"] == "delivered"
    assert [(e.type, e.payload["data"]["status"]) for e in sandbox.lost_webhooks] == [
        ("order.status_changed", "shipped")]
    assert len(sandbox.webhook_deliveries) == 2


@pytest.mark.parametrize("params, field", [
    ({"changedSince": "yesterday"}, "changedSince"),
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"cursor": "%%%"}, "cursor"),
    ({"since": "2024-01-01T00:00:00Z"}, "since"),
])
def test_changed_since_bad_parameters_are_422_naming_them(client: httpx.Client, params: dict[str, str],
                                                          field: str) -> None:
    response = client.get("/api/v1/products", params=params)
    assert response.status_code == 422
    assert [item["field"] for item in response.json()["fields"]] == [field]


def test_lists_need_credentials(sandbox: ClaritySandbox) -> None:
    with make_client(sandbox) as anonymous:
        assert anonymous.get("/api/v1/products").status_code == 401
