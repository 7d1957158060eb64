"""The quickbooks-to-nopcommerce mapping document: which Items, which key finds the product, which fields."""

from __future__ import annotations

import pytest
import yaml
from switchyard.catalog import mapping_path
from switchyard.errors import MappingError
from switchyard.systems.nopcommerce.stock_mapping import (
    StockMappingDoc,
    load_stock_mapping,
    parse_stock_mapping,
    plan,
)

HEAD = "flow: quickbooks-to-nopcommerce\ntarget: nopcommerce\n"
ITEM = {"Id": "21", "Name": "Standing desk", "Sku": " DESK-STD-01 ", "Type": "Inventory", "QtyOnHand": 12.5}
NOTICE = {"realm_id": "9130", "entity": "Item", "id": "21", "operation": "Update",
          "last_updated": "2026-11-20T09:15:00Z"}


def test_shipped_document_spells_out_the_defaults() -> None:
    shipped = StockMappingDoc.model_validate(yaml.safe_load(mapping_path("quickbooks-to-nopcommerce.yaml").read_text()))
    defaults = StockMappingDoc(flow="quickbooks-to-nopcommerce", target="nopcommerce")

    assert shipped.model_dump(exclude={"description"}) == defaults.model_dump(exclude={"description"})
    assert load_stock_mapping("quickbooks-to-nopcommerce.yaml") is load_stock_mapping("quickbooks-to-nopcommerce.yaml")


def test_item_values_default_sku_trimmed_and_quantity_on_hand() -> None:
    values = load_stock_mapping("quickbooks-to-nopcommerce.yaml").item_values(ITEM)

    assert (values.sku, values.stock_quantity) == ("DESK-STD-01", 12.5)


def test_item_key_and_item_types_from_the_document() -> None:
    by_name = parse_stock_mapping(HEAD + "item_types: [Inventory, NonInventory]\nmatch: {item_key: {path: Name}}\n")

    assert by_name.item_values({**ITEM, "Sku": None}).sku == "Standing desk"
    assert by_name.carries({**ITEM, "Type": "NonInventory"}) and not by_name.carries({**ITEM, "Type": "Service"})


@pytest.mark.parametrize(("text", "message"), [
    ("target: streak\n", "target"),
    ("product: {price: {path: UnitPrice}}\n", "product.price"),
    ("events: {item.updated: set_price}\n", "events.item.updated"),
    ("match: {item_key: {path: Sku, transforms: [{lookup: nope}]}}\n", "match.item_key"),
    ("item_types: []\n", "item_types"),
])
def test_bad_document_raises_mapping_error_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(MappingError) as caught:
        parse_stock_mapping(HEAD + text, name="stock.yaml")
    assert "stock.yaml" in str(caught.value) and message in str(caught.value)


def test_plan_of_a_deleted_item_changes_nothing() -> None:
    assert plan(load_stock_mapping("quickbooks-to-nopcommerce.yaml"), "item.deleted", NOTICE)[0] == "none"


def test_plan_of_an_event_type_the_document_does_not_take_raises_mapping_error() -> None:
    only_updates = parse_stock_mapping(HEAD + "events: {item.updated: set_stock}\n")
    with pytest.raises(MappingError, match=r"item\.created"):
        plan(only_updates, "item.created", NOTICE)
