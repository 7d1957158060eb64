"""BNG inventory → nopCommerce StockQuantity: the absolute quantity read from BNG, newer wins per product."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.events import FlowEvent, flow_message
from switchyard.pairs.nopcommerce_bng.stock import BngStockTarget
from switchyard.systems.bng.client import BngClient, BngConnection
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard_local.sandboxes.bng import DEFAULT_API_KEY, BngSandbox
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

T0 = 1_796_299_200.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Capture:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.events.append(json.loads(request.content))
        return httpx.Response(200)


@pytest.fixture
def world() -> tuple[BngSandbox, NopCommerceSandbox, BngStockTarget, Capture, Clock]:
    clock = Clock()
    capture = Capture()
    bng = BngSandbox(clock=clock, webhook_url="http://hooks.test", webhook_transport=httpx.MockTransport(capture),
                     webhook_backoff=(0.01,))
    shop = NopCommerceSandbox(clock=clock)
    bng_client = BngClient(BngConnection(base_url="http://bng.test", api_key=DEFAULT_API_KEY),
                           transport=httpx.WSGITransport(app=bng.wsgi_app))
    shop_client = NopCommerceClient(NopCommerceConnection(base_url="http://shop.test", email=DEFAULT_API_EMAIL,
                                                          password=DEFAULT_API_PASSWORD),
                                    transport=httpx.WSGITransport(app=shop.wsgi_app), clock=clock)
    return bng, shop, BngStockTarget(bng_client, shop_client, InMemoryEntityState()), capture, clock


def event(document: dict, number: int) -> FlowEvent:
    return FlowEvent.from_message(flow_message(
        flow="bng-to-nopcommerce", event_id=f"msg_{number}", source="bng", event_type=document["type"],
        timestamp=document["timestamp"], received_at="2026-12-03T12:00:00+00:00", body=json.dumps(document)))


def test_a_stock_change_is_written_as_the_absolute_quantity_once(world) -> None:
    bng, shop, target, capture, clock = world
    bng.add_product("DESK-1", "Desk", on_hand=10)
    product = shop.seed_product("Desk", "desk-1", stock=3)
    clock.now += 1
    bng.record_inventory("DESK-1", 5)  # a purchase received: 15 on hand
    assert bng.wait_for_webhooks()
    delivered = target.deliver(event(capture.events[-1], 1))
    assert delivered.outcome == "updated" and shop.product(product["id"])["stock_quantity"] == 15
    again = target.deliver(event(capture.events[-1], 1))  # redelivered: not applied as +5 again
    assert again.outcome == "unchanged" and shop.product(product["id"])["stock_quantity"] == 15


def test_events_delivered_out_of_order_end_with_the_newest_quantity(world) -> None:
    bng, shop, target, capture, clock = world
    bng.add_product("DESK-1", "Desk", on_hand=10)
    product = shop.seed_product("Desk", "DESK-1", stock=10)
    clock.now += 1
    bng.record_inventory("DESK-1", -2, "Sale")
    bng.record_inventory("DESK-1", 1, "Return")  # the same millisecond: the version orders them
    assert bng.wait_for_webhooks()
    late, early = capture.events[-1], capture.events[-2]
    assert target.deliver(event(late, 2)).outcome == "updated"
    assert shop.product(product["id"])["stock_quantity"] == 9
    # the older event arrives last: it reads BNG now (9), never the 8 its own delta left
    assert target.deliver(event(early, 1)).outcome in ("unchanged", "stale")
    assert shop.product(product["id"])["stock_quantity"] == 9


def test_a_read_older_than_one_applied_is_stale(world) -> None:
    bng, shop, target, _, _ = world
    product_id = bng.add_product("X", "X", on_hand=1)["ProductID"]
    shop.seed_product("X", "X", stock=0)
    target._state.claim(f"bng-product:{product_id}", datetime(2030, 1, 1, tzinfo=UTC), "msg_from_the_future")
    document = {"type": "inventory.changed", "timestamp": "2026-12-03T12:00:00Z", "data": {"ProductID": product_id}}
    assert target.deliver(event(document, 3)).outcome == "stale"
    assert shop.product_by_sku("X")["stock_quantity"] == 0


def test_products_whose_stock_the_shop_does_not_manage_per_product_are_left_alone(world) -> None:
    bng, shop, target, capture, _ = world
    bng.add_product("GIFT-1", "Gift card", on_hand=4)
    shop.seed_product("Gift card", "GIFT-1", stock=0, manage=0)
    bng.record_inventory("GIFT-1", 1)
    assert bng.wait_for_webhooks()
    assert target.deliver(event(capture.events[-1], 4)).outcome == "filtered"
