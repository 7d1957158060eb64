"""A QuickBooks document equals what the customer paid, to the cent: checked over many random orders priced
the way nopCommerce prices them (``switchyard_local.nop_orders``): taxes incl. and excl., discounts, shipping,
rounding during calculation on and off, customer currencies with a rate; booked excl. and incl. tax."""

from __future__ import annotations

import dataclasses
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from switchyard.systems.quickbooks.order_mapping import (
    QuickBooksOrderMapping,
    document_amounts,
    item_skus,
    load_order_mapping,
    sales_document,
)
from switchyard_local.nop_orders import paid_in_customer_currency, random_order

ORDERS = 3000


@pytest.fixture(scope="module")
def mapping() -> QuickBooksOrderMapping:
    return load_order_mapping("nopcommerce-to-quickbooks.yaml")


def booked_total(body: dict[str, Any]) -> Decimal:
    """The total QuickBooks computes from a body: item lines - discount + TotalTax."""
    def total_of(detail_type: str) -> Decimal:
        return sum((Decimal(str(line["Amount"])) for line in body["Line"] if line["DetailType"] == detail_type),
                   Decimal(0))

    inclusive = body.get("GlobalTaxCalculation") == "TaxInclusive"  # the lines hold the tax
    tax = Decimal(0) if inclusive else Decimal(str(body["TxnTaxDetail"]["TotalTax"]))
    return total_of("SalesItemLineDetail") - total_of("DiscountLineDetail") + tax


@pytest.mark.parametrize("tax_amounts", ["excl_tax", "incl_tax"])
def test_document_total_equals_order_total_converted_to_the_cent_for_random_orders(
    mapping: QuickBooksOrderMapping, tax_amounts: str
) -> None:
    mapping = dataclasses.replace(mapping, tax_amounts=tax_amounts)  # type: ignore[arg-type]
    rng = random.Random(20261203)
    adjusted = foreign = 0
    for number in range(1, ORDERS + 1):
        data = random_order(rng, order_id=number)
        refs = {sku: f"item-{sku}" for sku in item_skus(mapping, data)}
        document = sales_document(mapping, data, customer_id="5", item_refs=refs)
        paid = paid_in_customer_currency(data)
        context = f"order {number}: {data['Order']} {data['OrderItems']}"
        assert document.total == paid, context
        assert booked_total(document.body) == paid, context  # what QuickBooks will compute from the lines
        for line in document.body["Line"]:
            detail = line.get("SalesItemLineDetail")
            if detail is not None and "UnitPrice" in detail:  # QuickBooks: Amount = Qty x UnitPrice (6070)
                product = Decimal(detail["Qty"]) * Decimal(detail["UnitPrice"])
                assert product.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) == line["Amount"], context
                assert -Decimal(detail["UnitPrice"]).as_tuple().exponent <= 7, context
        amounts = document_amounts(mapping, data)
        rounding_lines = [line for line in document.body["Line"] if line.get("Description") == "Rounding adjustment"]
        if amounts.adjustment:
            adjusted += 1
            assert [line["Amount"] for line in rounding_lines] == [amounts.adjustment], context
            assert "rounding adjustment" in document.body["PrivateNote"], context
        else:
            assert rounding_lines == [] and "rounding" not in document.body["PrivateNote"], context
        foreign += data["Order"]["CustomerCurrencyCode"] != "USD"
    # the sample exercises both paths: most orders add up as they are, conversions often need an adjustment
    assert 0 < adjusted < ORDERS and foreign > ORDERS // 3


def test_home_currency_orders_rounded_by_nopcommerce_need_no_adjustment(mapping: QuickBooksOrderMapping) -> None:
    # with RoundPricesDuringCalculation (2 decimals) nopCommerce's own amounts add up: only conversion adjusts
    rng = random.Random(7)
    for number in range(1, 500):
        data = random_order(rng, order_id=number, foreign_share=0)
        if any(Decimal(item["PriceExclTax"]).as_tuple().exponent < -2 for item in data["OrderItems"]):
            continue  # four-decimal amounts: rounding them may need an adjustment
        assert document_amounts(mapping, data).adjustment == 0
