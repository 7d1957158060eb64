"""BNG inventory → nopCommerce ``StockQuantity`` per SKU (BNG is master for stock).

An ``inventory.changed`` event (a sale at shipment, a return, a purchase, an adjustment) is not applied as its
delta: the product is read from BNG and its **absolute** ``OnHand`` written to the nopCommerce product with the
same SKU (read-modify-write of the whole product, ``NopCommerceClient.set_stock_quantity``). A redelivered
event, or two events whose deltas both happened, write the same number.

Newer wins per product: the entity ``bng-product:<ProductID>`` is claimed with the time of the version read
(``UpdatedAt``, with ``Version`` inside the millisecond as a tie-break), so a read that is older than one
already applied (a slow function) is dropped as ``stale`` instead of putting an old number back. Only products
whose stock nopCommerce manages per product are written (elsewhere the storefront ignores ``stock_quantity``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from switchyard.entity_state import EntityState
from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.bng.client import BngClient
from switchyard.targets import DeliveryResult

MANAGE_STOCK = 1  # nopCommerce ManageInventoryMethod.ManageStock


class StockShop(Protocol):
    def product_by_sku(self, sku: str) -> dict[str, Any] | None: ...

    def set_stock_quantity(self, product_id: int, quantity: int) -> bool: ...


def product_entity(product_id: str) -> str:
    return f"bng-product:{product_id}"


def version_time(product: dict[str, Any]) -> datetime:
    """``UpdatedAt`` (milliseconds) plus ``Version`` microseconds: two versions in one millisecond stay ordered."""
    try:
        moment = datetime.fromisoformat(str(product["UpdatedAt"]).replace("Z", "+00:00"))
        version = int(product.get("Version") or 0)
    except (KeyError, ValueError) as exc:
        raise PermanentError(f"BNG product {product.get('ProductID')} has no usable UpdatedAt/Version: {exc}",
                             reason="malformed_product") from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000) + timedelta(microseconds=version % 1000)


class BngStockTarget:
    """The worker's target for BNG ``inventory.changed`` events (flow bng-to-nopcommerce)."""

    def __init__(self, bng: BngClient, shop: StockShop, state: EntityState) -> None:
        self._bng = bng
        self._shop = shop
        self._state = state

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        if event.type != "inventory.changed":
            return DeliveryResult("filtered", {"reason": f"{event.type} does not change stock"})
        product_id = event.data.get("ProductID")
        if not product_id:
            raise PermanentError(f"inventory.changed event {event.event_id} has no ProductID", reason="malformed_event")
        product = self._bng.get_product(str(product_id))  # the quantity BNG has now, not the event's
        return self.apply(product, event.event_id)

    def apply(self, product: dict[str, Any], event_id: str) -> DeliveryResult:
        """Write the product's OnHand as read, unless a newer version was applied already."""
        product_id = product.get("ProductID")
        sku = str(product.get("SKU") or "").strip()
        on_hand = product.get("OnHand")
        if not sku or isinstance(on_hand, bool) or not isinstance(on_hand, int):
            raise PermanentError(f"BNG product {product_id} has no SKU or no whole OnHand", reason="malformed_product")
        changed_at = version_time(product)
        if not self._state.claim(product_entity(str(product_id)), changed_at, event_id):
            return DeliveryResult("stale", {"sku": sku, "changed_at": changed_at.isoformat()})
        shop_product = self._shop.product_by_sku(sku)
        if shop_product is None:
            return DeliveryResult("filtered", {"reason": f"no product with SKU {sku} in the shop", "sku": sku})
        detail = {"sku": sku, "product_id": shop_product["id"], "quantity": on_hand}
        method = shop_product.get("manage_inventory_method_id")
        if method != MANAGE_STOCK or shop_product.get("use_multiple_warehouses"):
            return DeliveryResult("filtered", {**detail, "reason": "the shop does not keep this product's stock "
                                               f"per product (manage_inventory_method_id={method})"})
        written = self._shop.set_stock_quantity(int(shop_product["id"]), on_hand)
        return DeliveryResult("updated" if written else "unchanged", detail)
