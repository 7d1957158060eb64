"""Month-end close for nopCommerce -> QuickBooks: the shop's orders of a period against the QuickBooks documents.

Each order created in ``[created_from, created_to]`` should have one SalesReceipt or Invoice whose PrivateNote
names its OrderGuid, for the order total converted to the customer's currency to the cent, in that
currency, paid when the order is paid. The report lists what is **missing** (an order without a document),
**extra** (a document naming a nopCommerce order the shop does not have in the period) and **different**
(amount, currency, paid or not, cancelled in the shop but active in QuickBooks). QuickBooks dates a
document by the mapping's time zone, so documents are read one day either side of the period and matched
by OrderGuid, never by date.

``missing_events`` turns the missing orders into the ``order.placed`` events the poller would queue
(``switchyard.systems.nopcommerce.poller``), for ``--enqueue``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from switchyard.polling import PolledEvent
from switchyard.systems.nopcommerce.poller import NopCommerceOrderSource, OrderReader, wire_time
from switchyard.systems.quickbooks.order_mapping import QuickBooksOrderMapping, money

PAGE = 500
_GUID = re.compile(r"OrderGuid ([0-9a-fA-F-]{36})")
PAID_OR_LATER = (30, 35, 40)
CANCELLED = 40


class DocumentReader(Protocol):
    def query(self, sql: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Finding:
    kind: Literal["missing", "extra", "different"]
    order: str  # the CustomOrderNumber (missing, different) or the DocNumber (extra)
    detail: str
    order_id: int | None = None


@dataclass
class ReconcileReport:
    orders: int = 0
    documents: int = 0
    findings: list[Finding] = field(default_factory=list)

    def of(self, kind: str) -> list[Finding]:
        return [finding for finding in self.findings if finding.kind == kind]

    def lines(self) -> list[str]:
        counts = ", ".join(f"{len(self.of(kind))} {kind}" for kind in ("missing", "extra", "different"))
        out = [f"{self.orders} orders, {self.documents} QuickBooks documents: {counts}"]
        out += [f"  {f.kind:<9} {f.order:<14} {f.detail}" for f in self.findings]
        return out


def shop_orders(shop: OrderReader, created_from: datetime, created_to: datetime) -> Iterator[dict[str, Any]]:
    page_index = 0
    while True:
        page = shop.search_orders(created_from=created_from, created_to=created_to, page_index=page_index,
                                  page_size=PAGE)
        yield from page["items"]
        if not page.get("has_next_page") or not page["items"]:
            return
        page_index += 1


def documents(qbo: DocumentReader, entity: str, first: date, last: date) -> Iterator[dict[str, Any]]:
    start = 1
    while True:
        rows = qbo.query(f"select * from {entity} where TxnDate >= '{first.isoformat()}' and TxnDate <= "
                         f"'{last.isoformat()}' startposition {start} maxresults {PAGE}")
        yield from rows
        if len(rows) < PAGE:
            return
        start += PAGE


def _expected_total(mapping: QuickBooksOrderMapping, order: Mapping[str, Any]) -> tuple[str, Decimal]:
    currency = str(order.get("customer_currency_code") or mapping.home_currency)
    total = Decimal(str(order["order_total"]))
    if currency != mapping.home_currency:
        total = total * Decimal(str(order.get("currency_rate") or 1))
    return currency, money(total)


def _voided(document: Mapping[str, Any]) -> bool:
    return money(Decimal(str(document.get("TotalAmt") or 0))) == 0 and str(
        document.get("PrivateNote") or "").startswith("Voided")


def reconcile(shop: OrderReader, qbo: DocumentReader, mapping: QuickBooksOrderMapping, *, created_from: datetime,
              created_to: datetime) -> ReconcileReport:
    margin = timedelta(days=1)
    wide = list(shop_orders(shop, created_from - margin, created_to + margin))
    by_guid = {str(order["order_guid"]).lower(): order for order in wide}
    period = [o for o in wide if created_from <= wire_time(o["created_on_utc"]) <= created_to and not o["deleted"]]
    report = ReconcileReport(orders=len(period))
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    first, last = (created_from - margin).date(), (created_to + margin).date()
    for entity in ("SalesReceipt", "Invoice"):
        for document in documents(qbo, entity, first, last):
            match = _GUID.search(str(document.get("PrivateNote") or ""))
            if match is None:
                continue  # not written by Switchyard: not ours to judge
            report.documents += 1
            guid = match.group(1).lower()
            found.setdefault(guid, []).append((entity, document))
            in_period = first + margin <= date.fromisoformat(str(document.get("TxnDate"))) <= last - margin
            if guid not in by_guid and in_period and not _voided(document):
                report.findings.append(Finding("extra", str(document.get("DocNumber")),
                                               f"{entity} {document.get('Id')} names OrderGuid {guid}, which the shop "
                                               "does not have in the period"))
    for order in period:
        number, guid = str(order["custom_order_number"]), str(order["order_guid"]).lower()
        active = [(e, d) for e, d in found.get(guid, []) if not _voided(d)]
        cancelled = order["order_status_id"] == CANCELLED
        if not active:
            if not cancelled and not found.get(guid):
                report.findings.append(Finding("missing", number, "no SalesReceipt or Invoice", int(order["id"])))
            continue
        if len(active) > 1:
            report.findings.append(Finding("different", number, f"{len(active)} documents: "
                                           + ", ".join(f"{e} {d.get('Id')}" for e, d in active), int(order["id"])))
        entity, document = active[0]
        problems = []
        if cancelled:
            problems.append(f"cancelled in the shop, {entity} {document.get('Id')} still active")
        currency, expected = _expected_total(mapping, order)
        held_currency = (document.get("CurrencyRef") or {}).get("value") or mapping.home_currency
        if held_currency != currency:
            problems.append(f"currency {held_currency} in QuickBooks, {currency} in the shop")
        held = money(Decimal(str(document.get("TotalAmt") or 0)))
        if held != expected:
            problems.append(f"total {held} in QuickBooks, {expected} {currency} in the shop")
        shop_paid = order["payment_status_id"] in PAID_OR_LATER
        books_paid = entity == "SalesReceipt" or money(Decimal(str(document.get("Balance") or 0))) == 0
        if shop_paid != books_paid:
            problems.append(f"{'paid' if shop_paid else 'not paid'} in the shop, "
                            f"{'paid' if books_paid else 'open'} in QuickBooks")
        if problems:
            report.findings.append(Finding("different", number, "; ".join(problems), int(order["id"])))
    rank = {"missing": 0, "extra": 1, "different": 2}
    report.findings.sort(key=lambda f: (rank[f.kind], f.order.zfill(30)))
    return report


def missing_events(shop: OrderReader, report: ReconcileReport, created_from: datetime, created_to: datetime,
                   observed_at: datetime) -> list[PolledEvent]:
    """The events that bring the missing orders to QuickBooks: what the poller queues for an order it sees
    for the first time (same ids, so an order that arrives meanwhile is not processed twice)."""
    wanted = {finding.order_id for finding in report.of("missing")}
    source = NopCommerceOrderSource(shop)
    return [event for order in shop_orders(shop, created_from, created_to) if int(order["id"]) in wanted
            for event in source.events(order, None, observed_at)]
