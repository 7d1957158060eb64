"""The chaos harness's BNG checker: nopcommerce-to-bng's accepted events against the BNG sandbox.

BNG holds one record per order and one per customer, keyed by Switchyard's references, so a delivery is
checked by what is there, whichever execution, retry or redrive made it:

* ``order.placed``: exactly one sales order with ``ExternalOrderID`` = the OrderGuid, for the customer whose
  ``ExternalID`` the mapping gives (there exactly once), with the lines (SKU, quantity, unit price), currency and
  total the mapping makes of the order as sent. An order the shop shows cancelled before BNG had it is not
  created (or created and cancelled at once); an order that can never be booked (the mapping or BNG refuses it:
  a SKU BNG does not know, an address without a country or a street) has no sales order, its place is the DLQ;
* ``order.status_changed`` to Cancelled: the sales order is ``Cancelled``, or there is none because the
  placed execution saw the cancellation first; any other status change starts no execution (filtered).

``seed_products`` puts every SKU the chaos orders sell into BNG first (BNG is master for products): without
them every order would be dead-lettered ``unknown_product``.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
from switchyard.errors import PermanentError
from switchyard.pairs.nopcommerce_bng.mapping import BngOrderMapping, load_bng_mapping
from switchyard.systems.bng.client import BngClient, BngConnection

from switchyard_local.chaos.plan import CANCELLED, NopScenario, nop_template
from switchyard_local.chaos.run import ChaosRun
from switchyard_local.sandboxes.bng import DEFAULT_API_KEY, BngSandbox

NOP_BNG = "nopcommerce-to-bng"
TEMPLATES = ("nop_order_b2b", "nop_order_consumer", "nop_order_small", "nop_order_cents")


def chaos_products() -> dict[str, str]:
    """SKU -> name of every product the chaos orders' templates sell."""
    return {str(item["Product"]["Sku"]): str(item["Product"].get("Name") or item["Product"]["Sku"])
            for name in TEMPLATES for item in nop_template(name)["data"]["OrderItems"]}


def seed_products(bng: Any, on_hand: int = 1_000_000) -> None:
    """The chaos SKUs in the BNG sandbox (those it has already are left as they are)."""
    known = {str(p["SKU"]).casefold() for p in bng.snapshot()["products"]}
    for sku, name in chaos_products().items():
        if sku.casefold() not in known:
            bng.add_product(sku, name, on_hand=on_hand)


def placed_data(scenario: NopScenario) -> dict[str, Any]:
    """The ``order.placed`` data the run sent for the scenario (the run builds it from the scenario alone)."""
    event: dict[str, Any] = ChaosRun._nop_event(None, scenario, 0)  # type: ignore[arg-type]  # uses no run state
    return event["data"]


class BngChecker:
    def __init__(self, bng: dict[str, Any], mapping: BngOrderMapping | None = None) -> None:
        self.mapping = mapping or load_bng_mapping()
        self.orders: dict[str, list[dict[str, Any]]] = {}
        for order in bng.get("salesOrders", []):
            self.orders.setdefault(str(order["ExternalOrderID"]).casefold(), []).append(order)
        self.customers = Counter(str(c["ExternalID"]) for c in bng.get("customers", []))
        self.customer_ids = {str(c["CustomerID"]): str(c["ExternalID"]) for c in bng.get("customers", [])}
        self._refusals: dict[tuple[str, str | None], str] = {}

    def check(self, scenario: NopScenario, index: int) -> tuple[str, str]:
        """(effect, why) for ``Reconciler._settle``: once, filtered, missing, duplicated or wrong; ``dropped``:
        nothing to do in BNG, which the execution must have recorded as a drop with its reason; or ``refused``:
        BNG must not have the order, its place is the DLQ, or a recorded drop if the shop cancelled it first."""
        change = scenario.changes[index]
        orders = self.orders.get(scenario.guid.casefold(), [])
        if len(orders) > 1:
            return "duplicated", f"{len(orders)} BNG sales orders: {[o['SalesOrderID'] for o in orders]}"
        order = orders[0] if orders else None
        cancelled = any(c.order_status == CANCELLED for c in scenario.changes)
        if change.type == "order.status_changed":
            if change.order_status != CANCELLED:
                return "filtered", "a status change other than Cancelled starts no execution"
            if order is None:  # never created: refused, or the placed execution saw the shop's cancellation first
                return "dropped", "no BNG sales order to cancel"
            return ("once", "") if order["Status"] == "Cancelled" else \
                ("missing", f"BNG sales order {order['SalesOrderID']} is {order['Status']}, not Cancelled")
        refusal = self.refusal(scenario)
        if refusal:
            return ("wrong", f"a sales order for an order the mapping refuses ({refusal})") if order else \
                ("refused", refusal)
        if order is None:
            return ("dropped", "cancelled in the shop before BNG had the order") if cancelled else \
                ("missing", "no BNG sales order")
        if cancelled and order["Status"] != "Cancelled":
            return "wrong", f"cancelled in the shop, BNG sales order {order['SalesOrderID']} is {order['Status']}"
        problem = self._differs(scenario, order)
        return ("wrong", problem) if problem else ("once", "")

    def refusal(self, scenario: NopScenario) -> str:
        """The reason the order as sent can never be booked in BNG, or '': the mapping refuses it (an address
        without a country), or BNG does (an address without a street, a SKU it does not know). Found by booking
        it in a fresh BNG sandbox through the flow's own mapping and client: the DLQ reason the flow gives."""
        key = (scenario.template, scenario.poison)
        if key not in self._refusals:
            data = placed_data(scenario)
            bng = BngSandbox()
            seed_products(bng)
            client = BngClient(BngConnection(base_url="http://bng.check", api_key=DEFAULT_API_KEY),
                               transport=httpx.WSGITransport(app=bng.wsgi_app))
            try:
                customer = client.create_customer(self.mapping.customer(data))
                client.create_sales_order(self.mapping.sales_order(data, str(customer["CustomerID"])))
                self._refusals[key] = ""
            except PermanentError as exc:
                self._refusals[key] = exc.reason
        return self._refusals[key]

    def _differs(self, scenario: NopScenario, order: dict[str, Any]) -> str:
        data = placed_data(scenario)
        customer = self.mapping.customer(data)
        external = str(customer["ExternalID"])
        if self.customers[external] != 1:
            return f"{self.customers[external]} BNG customers with ExternalID {external}"
        if self.customer_ids.get(str(order["CustomerID"])) != external:
            return f"sales order for customer {order['CustomerID']}, not {external}"
        expected = self.mapping.sales_order(data, str(order["CustomerID"]))
        want = sorted((str(line.get("SKU")).casefold(), int(line["Quantity"]), Decimal(str(line["UnitPrice"])))
                      for line in expected["Lines"])
        have = sorted((str(line.get("SKU")).casefold(), int(line["Quantity"]), Decimal(str(line["UnitPrice"])))
                      for line in order["Lines"])
        if want != have:
            return f"lines {have}, the order is {want}"
        if order.get("Currency") != expected.get("Currency"):
            return f"currency {order.get('Currency')}, the order is {expected.get('Currency')}"
        total = (expected.get("Totals") or {}).get("Total")
        if total is not None and Decimal(str(order["Totals"]["Total"])) != Decimal(str(total)):
            return f"total {order['Totals']['Total']} {order.get('Currency')}, the order is {total}"
        return ""
