"""The chaos harness's BNG checker: what BNG holds for each accepted nopcommerce-to-bng event."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from switchyard.pairs.nopcommerce_bng import load_bng_mapping
from switchyard_local.chaos.bng_check import BngChecker, chaos_products, placed_data, seed_products
from switchyard_local.chaos.plan import CANCELLED, NopChange, NopScenario, Send
from switchyard_local.sandboxes.bng import BngSandbox

PLACED = NopChange("order.placed", 10, 10, 0)
CANCEL = NopChange("order.status_changed", CANCELLED, 10, 5)
PROCESSING = NopChange("order.status_changed", 20, 10, 5)


def scenario(*changes: NopChange, poison: str | None = None, template: str = "nop_order_b2b") -> NopScenario:
    return NopScenario(n=1, number=700001, guid="6a1f0c6e-0000-4000-8000-000000000001", template=template,
                       changes=changes, sends=tuple(Send(i) for i in range(len(changes))), poison=poison)


def bng_holding(case: NopScenario, *, status: str = "New", edit: Any = None, copies: int = 1) -> dict[str, Any]:
    """A BNG snapshot with the sales order the mapping makes of the order (``edit`` changes it)."""
    mapping = load_bng_mapping()
    data = placed_data(case)
    customer = {**mapping.customer(data), "CustomerID": "C-1"}
    order = {**mapping.sales_order(data, "C-1"), "SalesOrderID": "SO-1", "Status": status}
    order["Totals"] = {**order.get("Totals", {}), "Total": order["Totals"]["Total"]}
    if edit:
        edit(order)
    orders = [{**copy.deepcopy(order), "SalesOrderID": f"SO-{i + 1}"} for i in range(copies)]
    return {"customers": [customer], "salesOrders": orders}


@pytest.mark.parametrize("template", ["nop_order_b2b", "nop_order_cents"])
def test_the_order_as_the_mapping_makes_it_is_delivered_once(template: str) -> None:
    case = scenario(PLACED, PROCESSING, template=template)
    checker = BngChecker(bng_holding(case))
    assert checker.check(case, 0) == ("once", "")
    assert checker.check(case, 1)[0] == "filtered"  # only a cancellation starts an execution


def test_a_second_sales_order_is_a_duplicate() -> None:
    case = scenario(PLACED)
    assert BngChecker(bng_holding(case, copies=2)).check(case, 0)[0] == "duplicated"


def test_wrong_lines_or_amounts_are_wrong() -> None:
    case = scenario(PLACED)

    def fewer(order: dict[str, Any]) -> None:
        order["Lines"][0]["Quantity"] += 1

    def dearer(order: dict[str, Any]) -> None:
        order["Totals"]["Total"] = "0.01"

    effect, why = BngChecker(bng_holding(case, edit=fewer)).check(case, 0)
    assert effect == "wrong" and "lines" in why
    effect, why = BngChecker(bng_holding(case, edit=dearer)).check(case, 0)
    assert effect == "wrong" and "total 0.01" in why


def test_no_sales_order_is_missing_unless_the_shop_cancelled_first() -> None:
    case = scenario(PLACED)
    assert BngChecker({}).check(case, 0) == ("missing", "no BNG sales order")
    cancelled = scenario(PLACED, CANCEL)
    # nothing to do in BNG: each execution must have recorded a drop with its reason (else the run counts it lost)
    assert BngChecker({}).check(cancelled, 0)[0] == "dropped"
    assert BngChecker({}).check(cancelled, 1)[0] == "dropped"


def test_a_cancellation_must_leave_the_sales_order_cancelled() -> None:
    case = scenario(PLACED, CANCEL)
    assert BngChecker(bng_holding(case, status="Cancelled")).check(case, 1) == ("once", "")
    assert BngChecker(bng_holding(case, status="Cancelled")).check(case, 0) == ("once", "")
    assert BngChecker(bng_holding(case, status="Released")).check(case, 1)[0] == "missing"
    assert BngChecker(bng_holding(case, status="Released")).check(case, 0)[0] == "wrong"


def test_an_unknown_sku_belongs_in_the_dlq_not_in_bng() -> None:
    case = scenario(PLACED, poison="unknown_sku")
    assert BngChecker({}).check(case, 0) == ("refused", "unknown_product")  # the reconciler finds it in the DLQ
    assert BngChecker(bng_holding(scenario(PLACED))).check(case, 0)[0] == "wrong"


def test_a_customer_bng_refuses_belongs_in_the_dlq() -> None:
    case = scenario(PLACED, template="nop_order_consumer")  # its billing address has a city, no street
    assert BngChecker({}).check(case, 0) == ("refused", "target_rejected")


def test_an_order_the_mapping_refuses_belongs_in_the_dlq() -> None:
    case = scenario(PLACED, CANCEL, template="nop_order_small")  # its billing address names no country
    assert BngChecker({}).check(case, 0) == ("refused", "missing_required_field")
    assert BngChecker({}).check(case, 1)[0] == "dropped"  # nothing to cancel: a recorded drop
    order = {"ExternalOrderID": case.guid, "SalesOrderID": "SO-9", "Status": "New", "CustomerID": "C-1"}
    assert BngChecker({"salesOrders": [order]}).check(case, 0)[0] == "wrong"


def test_the_chaos_skus_are_seeded_in_bng_once() -> None:
    bng = BngSandbox()
    seed_products(bng)
    seed_products(bng)
    assert sorted(p["SKU"] for p in bng.snapshot()["products"]) == sorted(chaos_products())

