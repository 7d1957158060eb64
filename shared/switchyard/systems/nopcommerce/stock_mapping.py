"""The mapping document of QuickBooks Items -> nopCommerce products (flow ``quickbooks-to-nopcommerce``).

``config/mappings/quickbooks-to-nopcommerce.yaml`` says which Items are carried (``item_types``), which Item
field finds the product (``match.item_key``: its value is looked up as the nopCommerce product's SKU,
``Product/GetProductBySku``) and which Item field becomes which product field (``product``: today
``stock_quantity``, floored to whole units in code). Rules read the Item as QuickBooks answers it
(``QtyOnHand``, ``Sku``, ``Name``, ``Type``, ...) in the rule language of every mapping document.

What stays in code (``switchyard.systems.nopcommerce.stock``): reading the Item (notifications carry ids
only), the realm check, items whose quantity is not tracked, products whose stock nopCommerce does not manage
per product, the change-time ordering, and writing an absolute value by read-modify-write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.catalog import mapping_path
from switchyard.errors import MappingError, PermanentError
from switchyard.mapping.rules import compile_rules

Rule = dict[str, Any]
# QuickBooks never really deletes items (they become inactive), and a merged item's stock lives on in the
# surviving one, which gets its own Update: nothing to carry, and nothing to dead-letter either.
IGNORED_TYPES = frozenset({"item.deleted", "item.merged"})
StockAction = Literal["set_stock"]
SET_STOCK: StockAction = "set_stock"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchDoc(_Doc):
    # the value looked up as the nopCommerce product's SKU (the shop compares case-insensitively)
    item_key: Rule = Field(default_factory=lambda: {"path": "Sku", "transforms": ["trim", "empty_to_null"]})


class ProductDoc(_Doc):
    # the product's stock_quantity: the Item's quantity on hand, floored (never promise stock QuickBooks lacks)
    stock_quantity: Rule = Field(default_factory=lambda: {"path": "QtyOnHand"})


class StockMappingDoc(_Doc):
    flow: str = Field(min_length=1)
    target: Literal["nopcommerce"]
    source: str = "quickbooks"
    description: str = ""
    events: dict[str, StockAction] = Field(default_factory=lambda: dict.fromkeys(("item.created", "item.updated"),
                                                                                 SET_STOCK))
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)
    item_types: list[str] = Field(default_factory=lambda: ["Inventory"], min_length=1)  # Item.Type values carried
    match: MatchDoc = Field(default_factory=MatchDoc)
    product: ProductDoc = Field(default_factory=ProductDoc)


@dataclass(frozen=True)
class ItemValues:
    """What the document makes of one QuickBooks Item: the product key, and the product's fields."""

    sku: str | None
    stock_quantity: Any


class StockMapping:
    """A validated, compiled stock mapping; built once per cold start."""

    def __init__(self, doc: StockMappingDoc) -> None:
        self.doc = doc
        self.flow = doc.flow
        self.events = dict(doc.events)
        self.item_types = frozenset(doc.item_types)
        self._values = compile_rules([("match.item_key", doc.match.item_key),
                                      ("product.stock_quantity", doc.product.stock_quantity)], doc.lookups)

    def item_values(self, item: Mapping[str, Any]) -> ItemValues:
        key, quantity = self._values(item)
        sku = str(key).strip() if key is not None else ""
        return ItemValues(sku=sku or None, stock_quantity=quantity)

    def carries(self, item: Mapping[str, Any]) -> bool:
        return item.get("Type") in self.item_types


def parse_stock_mapping(text: str, *, name: str = "<document>") -> StockMapping:
    try:
        return StockMapping(StockMappingDoc.model_validate(yaml.safe_load(text)))
    except yaml.YAMLError as exc:
        raise MappingError(f"{name}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '$'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise MappingError(f"{name}: {problems}") from None
    except MappingError as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_stock_mapping(file_name: str) -> StockMapping:
    """Load a flow's mapping document once per process (cold start), not per event."""
    try:
        text = mapping_path(file_name).read_text()
    except OSError as exc:
        raise MappingError(f"no mapping document {file_name}: {exc.strerror or exc}") from None
    return parse_stock_mapping(text, name=file_name)


def plan(mapping: StockMapping, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
    """What an Item notification becomes, calling nobody. The notification names the Item only, so the plan
    says what will be read and written; with the Item itself under ``data["Item"]`` (``switchyard dry-run
    ... --item ITEM.json``) it shows the product's SKU and the values written, or why the Item is skipped."""
    from switchyard.systems.nopcommerce.stock import whole_quantity  # the floor rule lives with the target

    if event_type in IGNORED_TYPES:
        return "none", {"reason": f"{event_type}: a product is never removed for it"}
    action = mapping.events.get(event_type)
    if action is None:
        raise MappingError(f"{mapping.flow} does not handle event type {event_type!r}")
    realm, item_id = data.get("realm_id"), data.get("id")
    shown: dict[str, Any] = {
        "realm_id": realm, "item_id": item_id,
        "read": f"GET /v3/company/{realm}/item/{item_id}",
        "carried": f"Item.Type in {sorted(mapping.item_types)}, quantity on hand tracked",
        "match": {"nopcommerce_product_sku": mapping.doc.match.item_key},
        "write": {"stock_quantity": mapping.doc.product.stock_quantity, "as": "whole units, floored"},
    }
    item = data.get("Item")
    if isinstance(item, Mapping):
        values = mapping.item_values(item)
        if not mapping.carries(item):
            shown["result"] = {"skipped": f"not carried: Item.Type {item.get('Type')!r}"}
        elif values.sku is None:
            shown["result"] = {"skipped": "the item has no key (match.item_key)"}
        elif item.get("TrackQtyOnHand") is False:
            shown["result"] = {"skipped": "quantity on hand not tracked", "sku": values.sku}
        else:
            try:
                quantity = whole_quantity(values.stock_quantity)
                shown["result"] = {"sku": values.sku, "product": {"stock_quantity": quantity}}
            except PermanentError as exc:
                shown["result"] = {"error": exc.reason, "message": str(exc)}
    return action, shown


def dry_run(mapping_file: str, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
    return plan(load_stock_mapping(mapping_file), event_type, data)
