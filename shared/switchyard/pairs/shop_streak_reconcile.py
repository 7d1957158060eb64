"""Reconcile a shop's orders of a period with the deals (boxes) its flow made in Streak.

The flow's own deal mapping says what each order should look like in Streak: whether it makes a deal at all
(``create_when``), the order key stored in ``order_key_field`` (how the box is found), the stage of the
order's current status, and the amount and its currency (``box.amount``, converted and rounded as the flow
writes it). The report lists what is **missing** (an order that should have a deal and has none),
**extra** (a second box for one order) and **different** (stage, amount to the cent, currency).

The shop side: nopCommerce orders created in the period (``Order/Search``, each as the poller's
``order.placed`` would carry it), or Clarity orders placed in the period (its list of orders changed since the
period's start, filtered by ``orderDate``). ``missing_events`` gives the poll's events of the missing orders
(the same ids: an order whose events arrive meanwhile is not processed twice), for ``--enqueue``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from switchyard.errors import PermanentError
from switchyard.polling import PolledEvent
from switchyard.systems.clarity.poller import ChangedEntities, ClaritySweep
from switchyard.systems.clarity.poller import parse_time as clarity_time
from switchyard.systems.nopcommerce.poller import NopCommerceOrderSource, OrderReader, wire_time
from switchyard.systems.streak.deal_mapping import DealMapping

PAGE = 200


class BoxReader(Protocol):
    def list_boxes(self, pipeline_key: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Finding:
    kind: Literal["missing", "extra", "different"]
    order: str  # the order key (the shop's order number as the box stores it)
    detail: str


@dataclass
class DealReport:
    orders: int = 0  # orders of the period that should have a deal
    filtered: int = 0  # orders the mapping's create_when leaves without one
    boxes: int = 0  # boxes of those orders
    findings: list[Finding] = field(default_factory=list)

    def of(self, kind: str) -> list[Finding]:
        return [finding for finding in self.findings if finding.kind == kind]

    def lines(self) -> list[str]:
        counts = ", ".join(f"{len(self.of(kind))} {kind}" for kind in ("missing", "extra", "different"))
        out = [f"{self.orders} orders with a deal ({self.filtered} without, by the mapping), {self.boxes} Streak "
               f"boxes: {counts}"]
        out += [f"  {f.kind:<9} {f.order:<14} {f.detail}" for f in self.findings]
        return out


@dataclass(frozen=True)
class ShopOrder:
    """One order of the period: its data as the flow's creating event carries it, and the poll's events."""

    ref: str  # the shop's order number, for an order the mapping cannot plan
    data: Mapping[str, Any]
    events: Sequence[PolledEvent]


def _amount(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def reconcile_deals(orders: Sequence[ShopOrder], boxes: Sequence[Mapping[str, Any]],
                    deals: DealMapping) -> DealReport:
    """Each order's expected deal (the flow's own mapping) against the boxes holding its order key."""
    report = DealReport()
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for box in boxes:
        key = (box.get("fields") or {}).get(deals.order_key_field)
        if key is not None:
            by_key.setdefault(str(key), []).append(box)
    amount = deals.doc.box.amount
    for order in orders:
        try:
            plan = deals.plan_deal(order.data)
        except PermanentError as exc:  # what the worker dead-letters: no deal, and the letter says why
            report.orders += 1
            report.findings.append(Finding("missing", order.ref, f"the mapping refuses the order: {exc}"))
            continue
        if not plan.create:
            report.filtered += 1
            continue
        report.orders += 1
        held = by_key.get(plan.order_key, [])
        report.boxes += len(held)
        if not held:
            report.findings.append(Finding("missing", plan.order_key, "no box"))
            continue
        for extra in held[1:]:
            report.findings.append(Finding("extra", plan.order_key, f"box {extra.get('boxKey')} is a second box "
                                           f"for the order (box {held[0].get('boxKey')} is the first)"))
        box = held[0]
        problems = []
        if str(box.get("stageKey")) != plan.stage_key:
            problems.append(f"stage {box.get('stageKey')} in Streak, {plan.stage_key} for the order's status")
        if amount is not None:
            fields = box.get("fields") or {}
            expected, shown = _amount(plan.fields.get(amount.field)), _amount(fields.get(amount.field))
            if expected != shown:
                problems.append(f"amount {fields.get(amount.field)} in Streak, {plan.fields.get(amount.field)} "
                                "in the shop")
            currency = plan.fields.get(amount.currency_field)
            if fields.get(amount.currency_field) != currency:
                problems.append(f"currency {fields.get(amount.currency_field)} in Streak, {currency} in the shop")
        if problems:
            report.findings.append(Finding("different", plan.order_key, "; ".join(problems)))
    rank = {"missing": 0, "extra": 1, "different": 2}
    report.findings.sort(key=lambda f: (rank[f.kind], f.order.zfill(30)))
    return report


def missing_events(orders: Sequence[ShopOrder], report: DealReport, deals: DealMapping,
                   event_types: Sequence[str]) -> list[PolledEvent]:
    """The poll's events of the missing orders that the flow subscribes to, oldest change first."""
    missing = {finding.order for finding in report.of("missing")}
    found: list[PolledEvent] = []
    for order in orders:
        try:
            key = deals.plan_deal(order.data).order_key
        except PermanentError:
            continue  # queued again it would be dead-lettered again: the order needs fixing first
        if key in missing:
            found += [event for event in order.events if event.event_type in event_types]
    return found


# --------------------------------------------------------------------------- the shops


def nopcommerce_orders(shop: OrderReader, created_from: datetime, created_to: datetime,
                       observed_at: datetime) -> list[ShopOrder]:
    """The shop's orders created in the period (not deleted), each with the events the poller would queue for
    it at first sight; the data is its ``order.placed``'s."""
    source = NopCommerceOrderSource(shop)
    found = []
    for order in _nopcommerce_pages(shop, created_from, created_to):
        if order.get("deleted") or not created_from <= wire_time(order["created_on_utc"]) <= created_to:
            continue
        events = source.events(order, None, observed_at)
        placed = next(event for event in events if event.event_type == "order.placed")
        found.append(ShopOrder(str(order["custom_order_number"]), json.loads(placed.body)["data"], events))
    return found


def _nopcommerce_pages(shop: OrderReader, created_from: datetime, created_to: datetime) -> Iterator[dict[str, Any]]:
    page_index = 0
    while True:
        page = shop.search_orders(created_from=created_from, created_to=created_to, page_index=page_index,
                                  page_size=PAGE)
        yield from page["items"]
        if not page.get("has_next_page") or not page["items"]:
            return
        page_index += 1


def clarity_orders(shop: ChangedEntities, created_from: datetime, created_to: datetime,
                   observed_at: datetime) -> list[ShopOrder]:
    """The orders placed in the period (every one changed since the period began: its creation is a change),
    each as it is now, with the sweep's events of every version."""
    sweep = ClaritySweep(shop)
    found = []
    cursor: str | None = None
    since = created_from.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    while True:
        page = shop.orders_changed_since(since, limit=PAGE, cursor=cursor)
        for order in page.get("items") or []:
            if created_from <= clarity_time(order["orderDate"]) <= created_to:
                found.append(ShopOrder(str(order["orderId"]), order, sweep.events(order, None, observed_at)))
        cursor = page.get("nextCursor")
        if not cursor:
            return sorted(found, key=lambda order: (clarity_time(order.data["orderDate"]), order.data["orderId"]))
