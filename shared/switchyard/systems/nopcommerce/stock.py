"""Keeps nopCommerce stock in step with QuickBooks Online: flow ``quickbooks-to-nopcommerce``.

QBO's change notifications carry ids only (``{"realm_id", "entity": "Item", "id", "operation",
"last_updated"}``), so each event re-reads the Item and writes the quantity QBO has *now* to the product with
the same SKU, as an absolute value: a redelivered or repeated event finds nothing to change.

The mapping document (``quickbooks-to-nopcommerce.yaml``, ``stock_mapping``) says which Items are carried,
which Item field finds the product by SKU and which Item field becomes ``stock_quantity``. By default only
Inventory items with a SKU and quantity tracking are carried, and only to products whose stock
nopCommerce manages per product (``manage_inventory_method_id`` 1, one warehouse): elsewhere the storefront
would ignore ``stock_quantity``. Fractional quantities are floored (never promise stock QBO does not have);
negative ones are kept, as nopCommerce allows them.

Ordering: the entity ``quickbooks-item:<realm>:<id>`` is claimed with the change time of the Item as read
(``MetaData.LastUpdatedTime``, which QBO gives to the second, with the ``SyncToken`` as a tie-break inside the
second), not the notification's: the read decides what is written, so its version is what must not go
backwards. An event whose read returns a version older than one already applied is stale; so is a second,
different event for the version already applied (its quantity is already in the shop). A retry of the
same event goes through.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from switchyard.entity_state import EntityState
from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.nopcommerce.client import NopCommerceClient
from switchyard.systems.nopcommerce.stock_mapping import IGNORED_TYPES, StockMapping, StockMappingDoc
from switchyard.targets import DeliveryResult


class ItemSource(Protocol):
    """The accounting system's client the stock is read from (the flow's source system's, passed in)."""

    @property
    def realm(self) -> str: ...
    def read(self, entity: str, entity_id: str) -> dict[str, Any]: ...

MANAGE_STOCK = 1  # nopCommerce ManageInventoryMethod.ManageStock


def entity_key(realm: str, item_id: str) -> str:
    """The EntityState key that orders one QBO item's changes."""
    return f"quickbooks-item:{realm}:{item_id}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def item_change_time(item: dict[str, Any], fallback: datetime) -> datetime:
    """When this version of the item was made: ``MetaData.LastUpdatedTime`` plus ``SyncToken`` microseconds.

    QBO stamps changes to the second; two edits within one second would otherwise look like one version and
    the later would be dropped as stale. The SyncToken grows by one per edit, so it orders them inside the
    second (as microseconds it can never reach the next second). ``fallback`` (the event's time) only when the
    item carries no usable time."""
    stamp = (item.get("MetaData") or {}).get("LastUpdatedTime")
    try:
        changed = _aware(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")))
    except ValueError:
        return _aware(fallback)
    try:
        version = int(str(item.get("SyncToken", "0")))
    except ValueError:
        version = 0
    return changed.replace(microsecond=0) + timedelta(microseconds=version % 1_000_000)


def whole_quantity(value: Any) -> int:
    """``QtyOnHand`` as nopCommerce's int stock: floored, so 2.5 on hand never sells a third unit."""
    try:
        quantity = Decimal(str(value))
        return math.floor(quantity)
    except (InvalidOperation, ValueError, OverflowError):  # None, "abc", NaN, Infinity
        raise PermanentError(f"QuickBooks item has no usable QtyOnHand: {value!r}",
                             reason="malformed_item") from None


class NopCommerceStockTarget:
    def __init__(self, qbo: ItemSource, shop: NopCommerceClient, state: EntityState,
                 mapping: StockMapping | None = None) -> None:
        self._qbo = qbo
        self._shop = shop
        self._state = state
        # None: the document's defaults (Inventory items, Sku, QtyOnHand)
        self._mapping = mapping if mapping is not None else StockMapping(
            StockMappingDoc(flow="quickbooks-to-nopcommerce", target="nopcommerce"))

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        if event.type in IGNORED_TYPES:
            return DeliveryResult("filtered", {"reason": f"{event.type}: a product is never removed for it",
                                               "item_id": str(event.data.get("id"))})
        if event.type not in self._mapping.events:
            raise PermanentError(f"flow {event.flow} does not handle {event.type}", reason="unsupported_event")
        try:
            realm = str(event.data["realm_id"])
            item_id = str(event.data["id"])
        except (KeyError, TypeError) as exc:
            raise PermanentError(f"{event.type} event {event.event_id} lacks {exc}",
                                 reason="malformed_event") from None
        if str(event.data.get("entity", "Item")) != "Item":
            raise PermanentError(f"{event.type} event {event.event_id} is about a {event.data.get('entity')}, "
                                 "not an Item", reason="malformed_event")
        if realm != self._qbo.realm:
            return DeliveryResult("filtered", {"reason": "other realm", "realm_id": realm, "item_id": item_id})

        item = self._qbo.read("Item", item_id)
        values = self._mapping.item_values(item)
        sku = values.sku
        if not self._mapping.carries(item):
            return DeliveryResult("filtered", {"reason": "not an inventory item", "item_id": item_id,
                                               "type": item.get("Type")})
        if not sku:
            return DeliveryResult("filtered", {"reason": "item has no SKU", "item_id": item_id})
        if item.get("TrackQtyOnHand") is False:
            return DeliveryResult("filtered", {"reason": "quantity on hand not tracked", "item_id": item_id,
                                               "sku": sku})
        quantity = whole_quantity(values.stock_quantity)

        changed_at = item_change_time(item, event.timestamp)
        if not self._state.claim(entity_key(realm, item_id), changed_at, event.event_id):
            return DeliveryResult("stale", {"item_id": item_id, "sku": sku, "changed_at": changed_at.isoformat()})

        product = self._shop.product_by_sku(sku)
        if product is None:
            return DeliveryResult("filtered", {"reason": f"no product with SKU {sku} in the shop", "sku": sku,
                                               "item_id": item_id})
        detail = {"sku": sku, "item_id": item_id, "product_id": product["id"], "quantity": quantity}
        method = product.get("manage_inventory_method_id")
        if method != MANAGE_STOCK or product.get("use_multiple_warehouses"):
            # the storefront reads stock elsewhere (not at all, per attribute combination, per warehouse)
            reason = ("stock is kept per warehouse in the shop" if method == MANAGE_STOCK
                      else f"the shop does not manage this product's stock per product "
                           f"(manage_inventory_method_id={method})")
            return DeliveryResult("filtered", {**detail, "reason": reason})
        written = self._shop.set_stock_quantity(product["id"], quantity)
        return DeliveryResult("updated" if written else "unchanged", detail)
