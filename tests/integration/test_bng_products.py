"""The scheduled BNG product sync: stock and product attributes → nopCommerce stock and specification attributes."""

from __future__ import annotations

import httpx
import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.pairs.nopcommerce_bng import load_bng_mapping
from switchyard.pairs.nopcommerce_bng.products import ProductSync
from switchyard.pairs.nopcommerce_bng.stock import BngStockTarget
from switchyard.systems.bng.client import BngClient, BngConnection
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard_local.sandboxes.bng import DEFAULT_API_KEY, BngSandbox
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

T0 = 1_796_299_200.0
EPOCH = "1970-01-01T00:00:00.000Z"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> tuple[BngSandbox, NopCommerceSandbox, ProductSync, Clock]:
    clock = Clock()
    bng, shop = BngSandbox(clock=clock), NopCommerceSandbox(clock=clock)
    bng_client = BngClient(BngConnection(base_url="http://bng.test", api_key=DEFAULT_API_KEY),
                           transport=httpx.WSGITransport(app=bng.wsgi_app))
    shop_client = NopCommerceClient(NopCommerceConnection(base_url="http://shop.test", email=DEFAULT_API_EMAIL,
                                                          password=DEFAULT_API_PASSWORD),
                                    transport=httpx.WSGITransport(app=shop.wsgi_app), clock=clock)
    stock = BngStockTarget(bng_client, shop_client, InMemoryEntityState())
    sync = ProductSync(bng_client, shop_client, stock, load_bng_mapping().doc.products.specification_attributes)
    return bng, shop, sync, clock


def test_the_first_sync_brings_stock_and_mapped_attributes(world) -> None:
    bng, shop, sync, _ = world
    bng.add_product("DESK-1", "Desk", on_hand=12, attributes={"Material": "Oak", "WidthCm": 180, "Internal": "x"})
    bng.add_product("ARM-1", "Arm", on_hand=0)
    desk = shop.seed_product("Desk", "DESK-1", stock=0)
    shop.seed_product("Arm", "ARM-1", stock=5)
    result = sync.run(EPOCH)
    assert shop.product(desk["id"])["stock_quantity"] == 12 and shop.product_by_sku("ARM-1")["stock_quantity"] == 0
    assert shop.specifications(desk["id"]) == {"Material": "Oak", "Width (cm)": "180"}  # Internal is not mapped
    assert result["counts"] == {"updated": 2}
    assert result["watermark"] == bng.product("ARM-1")["UpdatedAt"]


def test_a_later_sync_follows_bngs_changes_and_leaves_the_rest(world) -> None:
    bng, shop, sync, clock = world
    bng.add_product("DESK-1", "Desk", on_hand=12, attributes={"Material": "Oak"})
    bng.add_product("ARM-1", "Arm", on_hand=3)
    desk = shop.seed_product("Desk", "DESK-1", stock=0)
    shop.seed_product("Arm", "ARM-1", stock=0)
    watermark = sync.run(EPOCH)["watermark"]
    clock.now += 60
    bng.set_product_attributes("DESK-1", Material="Walnut", Certification="FSC")
    again = sync.run(watermark)
    # the desk changed since; the arm's UpdatedAt is the watermark itself (inclusive): read again, nothing written
    assert again["counts"] == {"updated": 1, "unchanged": 1}  # the desk's attributes; the arm as it was
    assert shop.specifications(desk["id"]) == {"Material": "Walnut", "Certification": "FSC"}
    assert sync.run(again["watermark"])["counts"] == {"unchanged": 1}  # stock and attributes as they are
    options = [o["name"] for o in httpx.Client(transport=httpx.WSGITransport(app=shop.wsgi_app)).get(
        "http://shop.test/api-backend/SpecificationAttributeOption/"
        "GetSpecificationAttributeOptionsBySpecificationAttribute/1",
        headers={"Authorization": f"Bearer {shop.issue_token()}"}).json()]
    assert options == ["Oak", "Walnut"]  # one attribute, an option per value; the mapping was moved, not added
