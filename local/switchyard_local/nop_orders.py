"""Realistic nopCommerce orders, priced the way nopCommerce prices them (development and tests only).

nopCommerce (``OrderTotalCalculationService``, ``ShoppingCartService``, ``TaxService``) keeps every amount in
the primary store currency and, with ``RoundPricesDuringCalculation`` on (the default), rounds each price to
the cent as it goes; with it off, amounts are stored with four decimals (``decimal(18,4)``):

* an item's unit price and its line price (unit price x quantity) are each converted between incl. and excl.
  tax and rounded, so ``Quantity x UnitPriceExclTax`` is often not ``PriceExclTax``;
* the tax of the order is the sum of the lines' tax (incl. - excl.), reduced in proportion by a subtotal
  discount (whose incl.-tax amount is the excl. one plus the tax it takes off), plus the shipping's tax
  when shipping is taxable;
* ``OrderTotal = subtotal excl. - subtotal discount + shipping excl. + tax - order discount``, rounded.

``random_order(rng)`` draws one such order's ``order.placed`` data (the webhook's ``data``, numbers as
Decimal), optionally in a customer currency with a ``CurrencyRate``. The chaos harness and the money tests use
it to check that a QuickBooks document always equals what the customer paid.
"""

from __future__ import annotations

import random
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
FOUR_PLACES = Decimal("0.0001")
TAX_RATES = ("0", "5", "7", "7.5", "8", "8.25", "10", "19", "20", "21", "25")
QUANTITIES = (1, 1, 1, 2, 2, 3, 4, 5, 7, 12, 25, 144)
FOREIGN = (("EUR", "0.92", "0.9187"), ("GBP", "0.79", "0.7861"), ("CAD", "1.3497", "1.41"),
           ("CHF", "0.8812", "0.8843"), ("SEK", "10.4175", "11.02"), ("JPY", "149.82", "151.3377"))


def _round(value: Decimal, places: Decimal) -> Decimal:
    return value.quantize(places, rounding=ROUND_HALF_UP)


def random_order(rng: random.Random, *, order_id: int = 1, skus: tuple[str, ...] = ("SKU-1", "SKU-2", "SKU-3"),
                 foreign_share: float = 0.5) -> dict[str, Any]:
    """One ``order.placed`` data: 1-6 lines, prices incl. or excl. tax at one rate, maybe a subtotal discount,
    shipping (taxable or not), an order discount, rounding during calculation on (70 %) or off, and in
    ``foreign_share`` of the orders a customer currency with its rate."""
    places = CENT if rng.random() < 0.7 else FOUR_PLACES
    rate = Decimal(rng.choice(TAX_RATES)) / 100
    prices_include_tax = rng.random() < 0.5
    items: list[dict[str, Any]] = []
    for line in range(1, rng.randint(1, 6) + 1):
        price = Decimal(rng.randint(1, 99_999)) / 100
        quantity = rng.choice(QUANTITIES)
        if prices_include_tax:
            unit_incl, unit_excl = price, _round(price / (1 + rate), places)
            line_incl, line_excl = _round(price * quantity, places), _round(price * quantity / (1 + rate), places)
        else:
            unit_excl, unit_incl = price, _round(price * (1 + rate), places)
            line_excl, line_incl = _round(price * quantity, places), _round(price * quantity * (1 + rate), places)
        sku = skus[(line - 1) % len(skus)]
        items.append({"Id": order_id * 100 + line, "ProductId": line, "Quantity": quantity,
                      "UnitPriceInclTax": unit_incl, "UnitPriceExclTax": unit_excl,
                      "PriceInclTax": line_incl, "PriceExclTax": line_excl,
                      "Product": {"Id": line, "Name": f"Product {sku}", "Sku": sku}})
    subtotal = sum((item["PriceExclTax"] for item in items), Decimal(0))
    subtotal_tax = sum((item["PriceInclTax"] - item["PriceExclTax"] for item in items), Decimal(0))
    subtotal_discount = subtotal_discount_incl = Decimal(0)
    if rng.random() < 0.3:
        subtotal_discount = _round(subtotal * Decimal(rng.choice(("5", "10", "12.5", "15"))) / 100, places)
        discounted_tax = subtotal_tax * subtotal_discount / subtotal if subtotal else Decimal(0)
        subtotal_tax -= discounted_tax
        subtotal_discount_incl = _round(subtotal_discount + discounted_tax, places)
    shipping = Decimal(rng.choice(("0", "0", "4.99", "9.95", "12.50", "25")))
    shipping_tax = shipping * rate if rng.random() < 0.5 else Decimal(0)
    tax = _round(subtotal_tax + shipping_tax, places)
    before_discount = subtotal - subtotal_discount + shipping + tax
    order_discount = Decimal(0)
    if rng.random() < 0.2:
        order_discount = min(before_discount, _round(before_discount * Decimal(rng.choice(("2", "5", "10"))) / 100,
                                                     places) if rng.random() < 0.5 else Decimal("5.00"))
    total = _round(before_discount - order_discount, places)
    currency, currency_rate = "USD", Decimal(1)
    if rng.random() < foreign_share:
        code, *rates = rng.choice(FOREIGN)
        currency, currency_rate = code, Decimal(rng.choice(rates))
    order = {"Id": order_id, "OrderGuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
             "CustomOrderNumber": str(order_id), "OrderStatusId": 10, "PaymentStatusId": rng.choice((10, 30)),
             "ShippingStatusId": 20, "CustomerCurrencyCode": currency, "CurrencyRate": currency_rate,
             "CreatedOnUtc": "2026-11-20T09:15:00Z", "OrderSubtotalExclTax": subtotal,
             "OrderSubTotalDiscountExclTax": subtotal_discount, "OrderSubTotalDiscountInclTax": subtotal_discount_incl,
             "OrderShippingExclTax": shipping, "OrderShippingInclTax": _round(shipping + shipping_tax, places),
             "OrderTax": tax, "OrderDiscount": order_discount, "OrderTotal": total}
    return {"Order": order, "OrderItems": items,
            "Customer": {"Id": 7000 + order_id % 5, "Email": f"buyer{order_id % 5}@shop.example",
                         "FirstName": "Buyer", "LastName": str(order_id % 5)},
            "BillingAddress": {"FirstName": "Buyer", "LastName": str(order_id % 5), "City": "Springfield"}}


def paid_in_customer_currency(data: dict[str, Any], home_currency: str = "USD") -> Decimal:
    """What the customer paid: OrderTotal, converted to the customer's currency, to the cent."""
    order = data["Order"]
    rate = Decimal(1) if order["CustomerCurrencyCode"] == home_currency else Decimal(order["CurrencyRate"])
    return _round(Decimal(order["OrderTotal"]) * rate, CENT)
