"""BNG products into nopCommerce: stock and specification attributes (BNG is master for products and stock).

``ProductWriter`` applies one product as BNG holds it now, both halves as absolute values:

* its ``OnHand`` as the shop product's ``StockQuantity``, through ``BngStockTarget.apply`` (newer wins per
  product: an older read never puts back an older number);
* the attributes the mapping lists (``products.specification_attributes``) as specification attributes.

It is the target of both ``inventory.changed`` and ``product.changed`` (flow bng-to-nopcommerce): each reads the
product again, so whichever event reads the newest version writes all of it; an event that reads a version
already applied (its stock claim is ``stale``) writes nothing. BNG's webhooks bring the changes, and the bng
source's scheduled sweep of the changed-since lists (``systems.bng.poller``, EventBridge Scheduler) queues a
``product.changed`` for every version the webhooks missed; its first scan is the bulk fill of a new connection.

``ProductSync.run(since)`` does the same for every product changed since a time in one call (an operator's
catch-up in a shell; the schedule uses the poller).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from switchyard.errors import PermanentError
from switchyard.events import FlowEvent
from switchyard.pairs.nopcommerce_bng.stock import BngStockTarget, StockShop
from switchyard.systems.bng.client import BngClient
from switchyard.targets import DeliveryResult

PRODUCT_EVENTS = frozenset({"inventory.changed", "product.changed"})


class ProductShop(StockShop, Protocol):
    def set_specifications(self, product_id: int, values: Mapping[str, str]) -> dict[str, str]: ...


class ProductWriter:
    def __init__(self, bng: BngClient, shop: ProductShop, stock: BngStockTarget,
                 specification_attributes: Mapping[str, str]) -> None:
        self._bng = bng
        self._shop = shop
        self._stock = stock
        self._attributes = dict(specification_attributes)

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        if event.type not in PRODUCT_EVENTS:
            return DeliveryResult("filtered", {"reason": f"{event.type} does not change a product"})
        product_id = event.data.get("ProductID")
        if not product_id:
            raise PermanentError(f"{event.type} event {event.event_id} has no ProductID", reason="malformed_event")
        return self.apply(self._bng.get_product(str(product_id)), event.event_id)  # as BNG has it now

    def specifications(self, product: Mapping[str, Any]) -> dict[str, str]:
        """The product's attributes the mapping names, under their nopCommerce names (empty values left out)."""
        return {self._attributes[name]: str(value) for name, value in (product.get("Attributes") or {}).items()
                if name in self._attributes and value not in (None, "")}

    def apply(self, product: dict[str, Any], event_id: str) -> DeliveryResult:
        stock = self._stock.apply(product, event_id)
        if stock.outcome == "stale":
            return stock  # a newer version was applied already: its attributes too
        values = self.specifications(product)
        shop_product = self._shop.product_by_sku(str(product.get("SKU") or "").strip()) if values else None
        if shop_product is None:
            return DeliveryResult(stock.outcome, {**stock.detail, "attributes": {}})
        written = self._shop.set_specifications(int(shop_product["id"]), values)
        outcome = "updated" if written else ("unchanged" if stock.outcome == "filtered" else stock.outcome)
        return DeliveryResult(outcome, {**stock.detail, "attributes": written})


class ProductSync:
    def __init__(self, bng: BngClient, shop: ProductShop, stock: BngStockTarget,
                 specification_attributes: Mapping[str, str]) -> None:
        self._bng = bng
        self._writer = ProductWriter(bng, shop, stock, specification_attributes)

    def run(self, since: str, *, run_id: str = "product-sync") -> dict[str, Any]:
        """Every product BNG changed at or after ``since``; the answer's ``watermark`` (the latest ``UpdatedAt``
        seen) is where the next run starts (inclusive: the last product is read again, every write is absolute)."""
        counts: dict[str, int] = {}
        watermark = since
        for product in self._bng.changed_since("products", since):
            watermark = max(watermark, str(product.get("UpdatedAt") or since))
            result = self._writer.apply(product, f"{run_id}:{product.get('ProductID')}:{product.get('Version')}")
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        return {"watermark": watermark, "counts": counts}
