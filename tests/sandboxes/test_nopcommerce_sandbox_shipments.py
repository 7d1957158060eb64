"""The nopCommerce sandbox's Shipment and ShipmentItem routes (the Web API plugin's Controllers/Shipping)."""

from __future__ import annotations

import httpx
import pytest
from switchyard_local.sandboxes.nopcommerce import NopCommerceSandbox


@pytest.fixture
def shop() -> NopCommerceSandbox:
    sandbox = NopCommerceSandbox(developer_mode=True)  # no token: these tests are about the shipment routes
    sandbox.seed_order(id=7)
    return sandbox


@pytest.fixture
def api(shop: NopCommerceSandbox) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=shop.wsgi_app), base_url="http://shop.test/api-backend")


def test_a_shipment_is_created_with_items_and_listed_by_order(api: httpx.Client, shop: NopCommerceSandbox) -> None:
    created = api.post("/Shipment/Create", json={"order_id": 7, "tracking_number": "1Z", "id": 99,
                                                 "shipped_date_utc": "2026-12-04T09:30:00"})
    assert created.status_code == 200
    shipment = created.json()
    assert shipment["id"] == 1  # identity column: the sent id is ignored
    assert shipment["total_weight"] is None and shipment["created_on_utc"] == "0001-01-01T00:00:00"
    item = api.post("/ShipmentItem/Create", json={"shipment_id": 1, "order_item_id": 5001, "quantity": 2}).json()
    assert api.get("/ShipmentItem/GetByShipmentId/1").json() == [item]
    assert [s["tracking_number"] for s in api.get("/Shipment/GetByOrderId/7").json()] == ["1Z"]
    assert api.get("/Shipment/GetByOrderId/7", params={"shipped": "false"}).json() == []
    assert api.get("/Shipment/GetByOrderId/8").json() == []
    assert shop.shipments(7)[0]["items"][0]["quantity"] == 2


def test_update_replaces_the_whole_shipment_and_pascal_case_is_ignored(api: httpx.Client,
                                                                       shop: NopCommerceSandbox) -> None:
    api.post("/Shipment/Create", json={"order_id": 7, "tracking_number": "1Z", "admin_comment": "keep"})
    assert api.put("/Shipment/Update", json={"id": 1, "order_id": 7, "TrackingNumber": "2Z"}).status_code == 200
    [shipment] = shop.shipments(7)
    assert shipment["tracking_number"] is None and shipment["admin_comment"] is None
    assert shop.ignored_fields[-1]["fields"] == ["TrackingNumber"]
    missing = api.put("/Shipment/Update", json={"id": 5, "order_id": 7})
    assert missing.status_code == 404 and missing.json() == "Shipment is not found"


def test_a_shipment_of_a_missing_order_hits_the_foreign_key(api: httpx.Client) -> None:
    assert api.post("/Shipment/Create", json={"order_id": 404, "tracking_number": "1Z"}).status_code == 500
    assert api.post("/ShipmentItem/Create", json={"shipment_id": 404, "order_item_id": 1}).status_code == 500
    assert api.get("/Shipment/GetById/3").json() == "Shipment Id=3 not found"
