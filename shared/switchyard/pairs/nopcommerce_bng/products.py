"""The scheduled bulk sync of BNG products into nopCommerce: stock and specification attributes.

BNG is master for products and inventory. Run on a schedule (EventBridge Scheduler, the poller Lambda), it is
both the first fill of a new connection (``since`` = the epoch) and the sweep for missed ``inventory.changed``
webhooks: every product BNG changed at or after ``since`` (its changed-since list, paged by cursor) gets

* its absolute ``OnHand`` as the shop product's ``StockQuantity``, through ``BngStockTarget.apply`` (newer wins
  per product: a sweep never puts back a number older than a webhook already applied);
* the attributes the mapping lists (``products.specification_attributes``) as specification attributes.

The answer's ``watermark`` is the latest ``UpdatedAt`` seen: the next run starts there. The list is inclusive,
so the last product is seen again; every write is absolute, so that costs a read and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from switchyard.pairs.nopcommerce_bng.stock import BngStockTarget, StockShop
from switchyard.systems.bng.client import BngClient


class ProductShop(StockShop, Protocol):
    def set_specifications(self, product_id: int, values: Mapping[str, str]) -> dict[str, str]: ...


class ProductSync:
    def __init__(self, bng: BngClient, shop: ProductShop, stock: BngStockTarget,
                 specification_attributes: Mapping[str, str]) -> None:
        self._bng = bng
        self._shop = shop
        self._stock = stock
        self._attributes = dict(specification_attributes)

    def run(self, since: str, *, run_id: str = "product-sync") -> dict[str, Any]:
        counts: dict[str, int] = {}
        watermark = since
        for product in self._bng.changed_since("products", since):
            watermark = max(watermark, str(product.get("UpdatedAt") or since))
            outcome = self._stock.apply(product, f"{run_id}:{product.get('ProductID')}:{product.get('Version')}")
            counts[f"stock_{outcome.outcome}"] = counts.get(f"stock_{outcome.outcome}", 0) + 1
            values = {self._attributes[name]: str(value) for name, value in (product.get("Attributes") or {}).items()
                      if name in self._attributes and value not in (None, "")}
            if not values:
                continue
            shop_product = self._shop.product_by_sku(str(product.get("SKU") or ""))
            if shop_product is None:
                counts["attributes_no_product"] = counts.get("attributes_no_product", 0) + 1
                continue
            written = self._shop.set_specifications(int(shop_product["id"]), values)
            key = "attributes_updated" if written else "attributes_unchanged"
            counts[key] = counts.get(key, 0) + 1
        return {"watermark": watermark, "counts": counts}
