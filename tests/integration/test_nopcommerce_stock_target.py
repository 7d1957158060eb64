"""NopCommerceStockTarget (quickbooks-to-nopcommerce) against both sandboxes: a QBO Item's quantity on hand
reaches the nopCommerce product with the same SKU; other items, SKUs and realms are filtered; an older
notification after a newer one is stale; a rerun changes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard.systems.nopcommerce.stock import NopCommerceStockTarget, entity_key
from switchyard.systems.nopcommerce.stock_mapping import load_stock_mapping, parse_stock_mapping
from switchyard.systems.quickbooks.client import QuickBooksClient, QuickBooksConnection
from switchyard.tokens import InMemoryTokenStore
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox
from switchyard_local.sandboxes.quickbooks import TOKEN_PATH, QuickBooksSandbox, WebhookEvent

from tests.conftest import FakeClock

FLOW = "quickbooks-to-nopcommerce"
REALM = "9130"
OTHER_REALM = "4620"
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def qbo_sandbox(clock: FakeClock) -> QuickBooksSandbox:
    # the clock stands still, so QBO's 10 requests/s would bite: raised for the tests
    return QuickBooksSandbox(clock=clock, per_second=10_000, per_minute=100_000)


@pytest.fixture
def shop_sandbox(clock: FakeClock) -> NopCommerceSandbox:
    return NopCommerceSandbox(clock=clock)


@pytest.fixture
def qbo(qbo_sandbox: QuickBooksSandbox, clock: FakeClock) -> Iterator[QuickBooksClient]:
    tokens = qbo_sandbox.connect_realm(REALM)
    secret = {"base_url": "http://qbo.test", "token_url": f"http://qbo.test{TOKEN_PATH}", "client_id": "qbo-client",
              "client_secret": "qbo-secret", "realm_id": REALM, "refresh_token": tokens["refresh_token"],
              "access_token": tokens["access_token"], "access_token_expires_at": T0 + 3600}
    store = InMemoryTokenStore({REALM: secret}, clock=clock, sleep=lambda _: time.sleep(0.001), poll_seconds=0.01)
    with QuickBooksClient(QuickBooksConnection.from_secret(secret), store,
                          transport=httpx.WSGITransport(app=qbo_sandbox.wsgi_app), clock=clock) as client:
        yield client


@pytest.fixture
def shop(shop_sandbox: NopCommerceSandbox, clock: FakeClock) -> Iterator[NopCommerceClient]:
    connection = NopCommerceConnection.from_secret({"base_url": "http://shop.test", "email": DEFAULT_API_EMAIL,
                                                    "password": DEFAULT_API_PASSWORD})
    with NopCommerceClient(connection, transport=httpx.WSGITransport(app=shop_sandbox.wsgi_app),
                           clock=clock) as client:
        yield client


@pytest.fixture
def target(qbo: QuickBooksClient, shop: NopCommerceClient, state: InMemoryEntityState) -> NopCommerceStockTarget:
    return NopCommerceStockTarget(qbo, shop, state)


@pytest.fixture
def notification(flow_event: Callable[..., FlowEvent]) -> Callable[[WebhookEvent], FlowEvent]:
    """A QBO sandbox notification as the flow receives it (the ingest side's envelope and event id)."""

    def build(change: WebhookEvent) -> FlowEvent:
        verb = {"Create": "created", "Update": "updated", "Delete": "deleted"}[change.operation]
        document = {"type": f"item.{verb}", "timestamp": change.last_updated,
                    "data": {"realm_id": change.realm_id, "entity": change.name, "id": change.entity_id,
                             "operation": change.operation, "last_updated": change.last_updated}}
        return flow_event(FLOW, "quickbooks", document, event_id=change.event_id)

    return build


@pytest.fixture
def item_event(flow_event: Callable[..., FlowEvent]) -> Callable[..., FlowEvent]:
    """A hand-made item notification: ``build(item_id, *, realm, event_type, data)``."""

    def build(item_id: str, *, realm: str = REALM, event_type: str = "item.updated",
              data: dict[str, Any] | None = None, event_id: str | None = None) -> FlowEvent:
        stamp = "2026-11-18T11:06:40.000Z"
        document = {"type": event_type, "timestamp": stamp,
                    "data": data if data is not None else {"realm_id": realm, "entity": "Item", "id": item_id,
                                                           "operation": "Update", "last_updated": stamp}}
        return flow_event(FLOW, "quickbooks", document, event_id=event_id)

    return build


def latest(qbo_sandbox: QuickBooksSandbox) -> WebhookEvent:
    return qbo_sandbox.webhook_events[-1]


# --------------------------------------------------------------------------- carried


def test_stock_change_in_quickbooks_reaches_the_product(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    notification: Callable[[WebhookEvent], FlowEvent], clock: FakeClock,
) -> None:
    item = qbo_sandbox.seed_item(REALM, "Trail shoes 42", "SHOE-TRAIL-42", qty_on_hand=12, unit_price=119.0)
    product = shop_sandbox.seed_product("Trail shoes 42", "shoe-trail-42", stock=12, price=219.0)
    clock.advance(60)
    qbo_sandbox.set_item_quantity(REALM, item["Id"], 7)  # an accountant adjusts stock

    result = target.deliver(notification(latest(qbo_sandbox)))

    assert result.outcome == "updated"
    assert result.detail == {"sku": "SHOE-TRAIL-42", "item_id": item["Id"], "product_id": product["id"],
                             "quantity": 7}
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 7
    assert shop_sandbox.product(product["id"])["price"] == 219.0  # the rest of the product as it was
    assert shop_sandbox.ignored_fields == []


def test_created_item_sets_stock_of_existing_product(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    notification: Callable[[WebhookEvent], FlowEvent],
) -> None:
    product = shop_sandbox.seed_product("Cap", "CAP-1", stock=0)
    qbo_sandbox.seed_item(REALM, "Cap", "CAP-1", qty_on_hand=40, unit_price=15.0, notify=True)

    result = target.deliver(notification(latest(qbo_sandbox)))

    assert result.outcome == "updated"
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 40


def test_fractional_quantity_is_floored_and_negative_kept(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    notification: Callable[[WebhookEvent], FlowEvent], clock: FakeClock,
) -> None:
    item = qbo_sandbox.seed_item(REALM, "Rope", "ROPE-M", qty_on_hand=10, unit_price=2.0)
    product = shop_sandbox.seed_product("Rope per metre", "ROPE-M", stock=10)

    clock.advance(1)
    qbo_sandbox.set_item_quantity(REALM, item["Id"], 2.5)
    assert target.deliver(notification(latest(qbo_sandbox))).detail["quantity"] == 2
    clock.advance(1)
    qbo_sandbox.set_item_quantity(REALM, item["Id"], -1.5)
    assert target.deliver(notification(latest(qbo_sandbox))).detail["quantity"] == -2

    assert shop_sandbox.product(product["id"])["stock_quantity"] == -2


# --------------------------------------------------------------------------- filtered


def test_non_inventory_item_is_filtered(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    item_event: Callable[..., FlowEvent],
) -> None:
    item = qbo_sandbox.seed_item(REALM, "Gift wrapping", "WRAP-1", qty_on_hand=0, unit_price=3.0, type="Service")
    product = shop_sandbox.seed_product("Gift wrapping", "WRAP-1", stock=9)

    result = target.deliver(item_event(item["Id"]))

    assert (result.outcome, result.detail["reason"]) == ("filtered", "not an inventory item")
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 9


def test_item_without_sku_is_filtered(target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox,
                                      item_event: Callable[..., FlowEvent]) -> None:
    item = qbo_sandbox.seed_item(REALM, "Loose screws", None, qty_on_hand=500, unit_price=0.1)

    result = target.deliver(item_event(item["Id"]))

    assert (result.outcome, result.detail["reason"]) == ("filtered", "item has no SKU")


def test_unknown_sku_is_filtered(target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox,
                                 shop_sandbox: NopCommerceSandbox, item_event: Callable[..., FlowEvent]) -> None:
    item = qbo_sandbox.seed_item(REALM, "Warehouse pallet", "PALLET-EU", qty_on_hand=30, unit_price=12.0)
    shop_sandbox.seed_product("Something else", "OTHER-1", stock=1)

    result = target.deliver(item_event(item["Id"]))

    assert result.outcome == "filtered"
    assert result.detail["reason"] == "no product with SKU PALLET-EU in the shop"
    assert shop_sandbox.product_by_sku("OTHER-1")["stock_quantity"] == 1


def test_product_whose_stock_is_not_managed_is_filtered(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    item_event: Callable[..., FlowEvent],
) -> None:
    item = qbo_sandbox.seed_item(REALM, "T-shirt", "TEE-1", qty_on_hand=30, unit_price=12.0)
    product = shop_sandbox.seed_product("T-shirt", "TEE-1", stock=0, manage=2)  # stock per size and colour

    result = target.deliver(item_event(item["Id"]))

    assert result.outcome == "filtered"
    assert "manage_inventory_method_id=2" in result.detail["reason"]
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 0
    assert shop_sandbox.inventory_notes == []


def test_other_realm_is_filtered_without_reading_anything(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, item_event: Callable[..., FlowEvent],
) -> None:
    result = target.deliver(item_event("7", realm=OTHER_REALM))

    assert result == type(result)("filtered", {"reason": "other realm", "realm_id": OTHER_REALM, "item_id": "7"})
    assert len(qbo_sandbox.requests) == 0


def test_deleted_item_is_filtered(target: NopCommerceStockTarget, item_event: Callable[..., FlowEvent]) -> None:
    result = target.deliver(item_event("7", event_type="item.deleted"))

    assert result.outcome == "filtered"


@pytest.mark.parametrize("data", [{"entity": "Item", "id": "7"}, {"realm_id": REALM, "entity": "Item"}],
                         ids=["no-realm", "no-id"])
def test_event_missing_realm_or_id_is_malformed(target: NopCommerceStockTarget, item_event: Callable[..., FlowEvent],
                                                data: dict[str, Any]) -> None:
    with pytest.raises(PermanentError) as caught:
        target.deliver(item_event("7", data=data))

    assert caught.value.reason == "malformed_event"


def test_unsupported_event_type_is_permanent(target: NopCommerceStockTarget,
                                             item_event: Callable[..., FlowEvent]) -> None:
    with pytest.raises(PermanentError) as caught:
        target.deliver(item_event("7", event_type="invoice.updated"))

    assert caught.value.reason == "unsupported_event"


# --------------------------------------------------------------------------- ordering and reruns


def test_older_event_after_newer_one_changes_nothing(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    notification: Callable[[WebhookEvent], FlowEvent], clock: FakeClock, state: InMemoryEntityState,
) -> None:
    item = qbo_sandbox.seed_item(REALM, "Desk", "DESK-180", qty_on_hand=10, unit_price=499.0)
    product = shop_sandbox.seed_product("Desk", "DESK-180", stock=10)
    clock.advance(60)
    qbo_sandbox.set_item_quantity(REALM, item["Id"], 5)
    older = notification(latest(qbo_sandbox))
    clock.advance(60)
    qbo_sandbox.set_item_quantity(REALM, item["Id"], 3)
    newer = notification(latest(qbo_sandbox))

    assert target.deliver(newer).outcome == "updated"
    result = target.deliver(older)

    # the older notification reads the item as it is now (the newer version, same change time): applying
    # it again changes nothing; an equal change time is no reason to drop an event
    assert result.outcome == "unchanged"
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 3
    # the newer event still owns the entity: its retry goes through
    assert not state.claim(entity_key(REALM, item["Id"]), older.timestamp, older.event_id)
    assert target.deliver(newer).outcome == "unchanged"


def test_rerun_of_the_same_event_is_unchanged(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    notification: Callable[[WebhookEvent], FlowEvent], clock: FakeClock,
) -> None:
    item = qbo_sandbox.seed_item(REALM, "Lamp", "LAMP-2", qty_on_hand=4, unit_price=39.0)
    product = shop_sandbox.seed_product("Lamp", "LAMP-2", stock=1)
    clock.advance(60)
    qbo_sandbox.set_item_quantity(REALM, item["Id"], 6)
    event = notification(latest(qbo_sandbox))

    first = target.deliver(event)
    shop_sandbox.requests.clear()
    second = target.deliver(event)

    assert (first.outcome, second.outcome) == ("updated", "unchanged")
    assert second.detail == first.detail
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 6
    assert all(method == "GET" for method, _, _ in shop_sandbox.requests)


def test_two_edits_in_the_same_second_both_reach_the_shop(
    target: NopCommerceStockTarget, qbo_sandbox: QuickBooksSandbox, shop_sandbox: NopCommerceSandbox,
    notification: Callable[[WebhookEvent], FlowEvent], clock: FakeClock,
) -> None:
    # QBO stamps LastUpdatedTime to the second: the SyncToken must tell the two versions apart
    item = qbo_sandbox.seed_item(REALM, "Chair", "CHAIR-1", qty_on_hand=10, unit_price=99.0)
    product = shop_sandbox.seed_product("Chair", "CHAIR-1", stock=10)
    clock.advance(60)
    qbo_sandbox.set_item_quantity(REALM, item["Id"], 8)
    first = notification(latest(qbo_sandbox))
    assert target.deliver(first).outcome == "updated"

    qbo_sandbox.set_item_quantity(REALM, item["Id"], 6)  # same second
    second = notification(latest(qbo_sandbox))

    assert target.deliver(second).outcome == "updated"
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 6


# --------------------------------------------------------------------------- the mapping document


def test_shipped_mapping_document_carries_stock_like_the_defaults(
    qbo: QuickBooksClient, shop: NopCommerceClient, state: InMemoryEntityState, qbo_sandbox: QuickBooksSandbox,
    shop_sandbox: NopCommerceSandbox, notification: Callable[[WebhookEvent], FlowEvent],
) -> None:
    target = NopCommerceStockTarget(qbo, shop, state, load_stock_mapping("quickbooks-to-nopcommerce.yaml"))
    product = shop_sandbox.seed_product("Cap", "CAP-1", stock=0)
    qbo_sandbox.seed_item(REALM, "Cap", " CAP-1 ", qty_on_hand=40.9, unit_price=15.0, notify=True)

    result = target.deliver(notification(latest(qbo_sandbox)))

    assert (result.outcome, result.detail["sku"]) == ("updated", "CAP-1")
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 40


def test_mapping_document_matching_products_by_the_items_name(
    qbo: QuickBooksClient, shop: NopCommerceClient, state: InMemoryEntityState, qbo_sandbox: QuickBooksSandbox,
    shop_sandbox: NopCommerceSandbox, notification: Callable[[WebhookEvent], FlowEvent],
) -> None:
    by_name = parse_stock_mapping("flow: quickbooks-to-nopcommerce\ntarget: nopcommerce\n"
                                  "match: {item_key: {path: Name}}\n")
    target = NopCommerceStockTarget(qbo, shop, state, by_name)
    product = shop_sandbox.seed_product("Beanie", "BEANIE-RED", stock=3)
    qbo_sandbox.seed_item(REALM, "BEANIE-RED", "Q-0042", qty_on_hand=17, unit_price=9.0, notify=True)

    result = target.deliver(notification(latest(qbo_sandbox)))

    assert (result.outcome, result.detail["sku"]) == ("updated", "BEANIE-RED")
    assert shop_sandbox.product(product["id"])["stock_quantity"] == 17
