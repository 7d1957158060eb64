"""switchyard reconcile for nopCommerce -> QuickBooks: a planted discrepancy of each kind is reported, and the
missing orders become the poller's order.placed events."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from switchyard.envelopes import validate_envelope
from switchyard.pairs.nopcommerce_quickbooks_reconcile import missing_events, reconcile
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard.systems.quickbooks.order_mapping import load_order_mapping
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)


class Books:
    """Documents as QuickBooks' query answers them (paged with startposition/maxresults)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {"SalesReceipt": [], "Invoice": []}
        self.queries: list[str] = []

    def add(self, entity: str, number: str, guid: str, total: str, *, currency: str = "USD", balance: str = "0",
            txn_date: str = "2026-11-20", note: str | None = None) -> None:
        self.rows[entity].append({"Id": str(len(self.queries) + sum(map(len, self.rows.values())) + 1),
                                  "DocNumber": number, "TxnDate": txn_date, "TotalAmt": total,
                                  "Balance": balance, "CurrencyRef": {"value": currency},
                                  "PrivateNote": note or f"nopCommerce order {number} (Id {number}, OrderGuid {guid})"})

    def query(self, sql: str) -> list[dict[str, Any]]:
        self.queries.append(sql)
        entity = re.search(r"from (\w+)", sql).group(1)  # type: ignore[union-attr]
        start = int(re.search(r"startposition (\d+)", sql).group(1))  # type: ignore[union-attr]
        size = int(re.search(r"maxresults (\d+)", sql).group(1))  # type: ignore[union-attr]
        return self.rows[entity][start - 1:start - 1 + size]


@pytest.fixture
def shop() -> NopCommerceSandbox:
    return NopCommerceSandbox()


def client(shop: NopCommerceSandbox) -> NopCommerceClient:
    return NopCommerceClient(NopCommerceConnection(base_url="http://shop.test", email=DEFAULT_API_EMAIL,
                                                   password=DEFAULT_API_PASSWORD),
                             transport=httpx.WSGITransport(app=shop.wsgi_app))


def order(shop: NopCommerceSandbox, sample: Any, number: int, **changes: Any) -> str:
    data = sample("nop_order_b2b")["data"]
    guid = f"00000000-0000-4000-8000-{number:012d}"
    data["Order"].update({"Id": number, "CustomOrderNumber": str(number), "OrderGuid": guid,
                          "CreatedOnUtc": "2026-11-20T10:00:00Z", **changes})
    data["Customer"]["Id"] = 900
    for item in data["OrderItems"]:
        item["Id"] = 0
    shop.place_order(data)
    return guid


def test_a_planted_discrepancy_of_each_kind_is_reported_and_nothing_else(shop, sample) -> None:
    books = Books()
    books.add("SalesReceipt", "1", order(shop, sample, 1), "1299.00")  # matches to the cent
    books.add("Invoice", "2", order(shop, sample, 2, PaymentStatusId=10), "1299.00", balance="1299.00")
    order(shop, sample, 3)  # missing in QuickBooks
    books.add("SalesReceipt", "4", order(shop, sample, 4), "1298.99")  # a cent off
    books.add("Invoice", "5", order(shop, sample, 5), "1299.00", balance="1299.00")  # paid in the shop, open
    books.add("SalesReceipt", "6", order(shop, sample, 6, CustomerCurrencyCode="EUR", CurrencyRate=0.92),
              "1195.08", currency="EUR")  # 1299 x 0.92, in EUR: right
    books.add("SalesReceipt", "7", order(shop, sample, 7, CustomerCurrencyCode="EUR", CurrencyRate=0.92),
              "1299.00")  # in USD: wrong currency and amount
    books.add("SalesReceipt", "99", "00000000-0000-4000-8000-000000000099", "10.00")  # no such order
    books.add("SalesReceipt", "98", "00000000-0000-4000-8000-000000000098", "10.00", txn_date="2026-12-01")
    books.add("SalesReceipt", "X", "", "5.00", note="typed by the accountant")  # not Switchyard's
    books.add("Invoice", "8", order(shop, sample, 8, PaymentStatusId=10, OrderStatusId=40), "0",
              note="Voided nopCommerce order 8 (Id 8, OrderGuid 00000000-0000-4000-8000-000000000008)")
    order(shop, sample, 9, CreatedOnUtc="2026-10-31T23:30:00Z")  # before the period: not expected

    report = reconcile(client(shop), books, load_order_mapping("nopcommerce-to-quickbooks"),
                       created_from=START, created_to=END)

    assert [(f.kind, f.order) for f in report.findings] == [
        ("missing", "3"), ("extra", "99"), ("different", "4"), ("different", "5"), ("different", "7")]
    detail = {f.order: f.detail for f in report.findings}
    assert detail["4"] == "total 1298.99 in QuickBooks, 1299.00 USD in the shop"
    assert detail["5"] == "paid in the shop, open in QuickBooks"
    assert detail["7"] == ("currency USD in QuickBooks, EUR in the shop; "
                           "total 1299.00 in QuickBooks, 1195.08 EUR in the shop")
    assert report.orders == 8
    assert report.lines()[0] == "8 orders, 9 QuickBooks documents: 1 missing, 1 extra, 3 different"


def test_missing_orders_become_the_pollers_order_placed_events(shop, sample) -> None:
    guid = order(shop, sample, 3)
    report = reconcile(client(shop), Books(), load_order_mapping("nopcommerce-to-quickbooks"),
                       created_from=START, created_to=END)
    events = missing_events(client(shop), report, START, END, datetime(2026, 12, 1, tzinfo=UTC))
    assert [e.event_id for e in events] == [f"nopcommerce:order:{guid}:placed", f"nopcommerce:order:{guid}:paid"]
    assert validate_envelope("nopcommerce", json.loads(events[0].body)) == "order.placed"
