"""The nopCommerce sandbox's specification attribute routes (the Web API plugin's Controllers/Catalog)."""

from __future__ import annotations

import httpx
from switchyard_local.sandboxes.nopcommerce import NopCommerceSandbox


def test_attributes_options_and_product_mappings() -> None:
    shop = NopCommerceSandbox(developer_mode=True)
    product = shop.seed_product("Desk", "DESK-1", stock=1)
    api = httpx.Client(transport=httpx.WSGITransport(app=shop.wsgi_app), base_url="http://shop.test/api-backend")
    attribute = api.post("/SpecificationAttribute/Create", json={"name": "Material"}).json()
    assert api.get("/SpecificationAttribute/GetAll").json()["items"] == [attribute]
    oak = api.post("/SpecificationAttributeOption/Create",
                   json={"specification_attribute_id": attribute["id"], "name": "Oak"}).json()
    assert api.post("/SpecificationAttributeOption/Create",
                    json={"specification_attribute_id": 99, "name": "x"}).status_code == 500
    mapping = api.post("/ProductSpecificationAttribute/Create",
                       json={"product_id": product["id"], "specification_attribute_option_id": oak["id"],
                             "show_on_product_page": True}).json()
    assert shop.specifications(product["id"]) == {"Material": "Oak"}
    walnut = api.post("/SpecificationAttributeOption/Create",
                      json={"specification_attribute_id": attribute["id"], "name": "Walnut"}).json()
    # Update replaces the whole mapping: show_on_product_page left out becomes false
    api.put("/ProductSpecificationAttribute/Update",
            json={"id": mapping["id"], "product_id": product["id"], "specification_attribute_option_id": walnut["id"]})
    [updated] = api.get("/ProductSpecificationAttribute/GetAll", params={"productId": product["id"]}).json()
    assert updated["show_on_product_page"] is False and shop.specifications(product["id"]) == {"Material": "Walnut"}
    assert api.delete(f"/ProductSpecificationAttribute/Delete/{mapping['id']}").status_code == 200
    assert shop.specifications(product["id"]) == {}
