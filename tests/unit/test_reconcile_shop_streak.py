"""switchyard reconcile for a shop's orders against Streak deals (pairs.shop_streak_reconcile): planted
discrepancies of each kind are reported, filtered orders are not missing, and the missing orders become the
poll's events of the flow's types."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from switchyard.envelopes import validate_envelope
from switchyard.pairs.shop_streak_reconcile import (
    clarity_orders,
    missing_events,
    nopcommerce_orders,
    reconcile_deals,
)
from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard.systems.streak.deal_mapping import load_deal_mapping
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def box_for(deals: Any, data: Any, key: str) -> dict[str, Any]:
    """The box the flow writes for an order: its stage and fields as the mapping plans them."""
    plan = deals.plan_deal(data)
    return {"boxKey": key, "stageKey": plan.stage_key, "fields": dict(plan.fields)}


@pytest.fixture
def clarity() -> ClaritySandbox:
    clock = iter(range(10**9))
    start = datetime(2026, 11, 10, tzinfo=UTC).timestamp()
    return ClaritySandbox(clock=lambda: start + next(clock) * 60)


def clarity_client(shop: ClaritySandbox) -> ClarityClient:
    return ClarityClient(ClarityConnection(base_url="http://clarity.test", api_key=shop.api_key),
                         transport=httpx.WSGITransport(app=shop.wsgi_app))


def place(shop: ClaritySandbox, number: int, **changes: Any) -> str:
    order = copy.deepcopy(DEMO_ORDERS[0])
    order["customerId"] = order["customer"]["customerId"] = f"C-{number}"
    order.update(changes)
    return str(shop.place_order(order)["orderId"])


def test_clarity_planted_discrepancies_are_each_reported(clarity: ClaritySandbox) -> None:
    deals = load_deal_mapping("clarity-to-streak.yaml")
    ids = [place(clarity, n) for n in range(601, 607)]  # CL-10001 .. CL-10006
    clarity.set_order_status(ids[1], "shipped")
    clarity.set_order_status(ids[2], "delivered")
    orders = clarity_orders(clarity_client(clarity), START, END, NOW)
    assert [o.data["orderId"] for o in orders] == ids
    boxes = [box_for(deals, order.data, f"box-{i}") for i, order in enumerate(orders)]
    # planted: the first order has no box; the third's box stayed at an earlier stage; the fourth's amount is
    # off by a cent; the fifth's is labelled in another currency; the sixth has a second box
    del boxes[0]
    boxes[1]["stageKey"] = "5002"
    boxes[2]["fields"]["1002"] = 1298.99
    boxes[3]["fields"]["1006"] = "EUR"
    boxes.append(dict(boxes[4], boxKey="box-dup"))

    report = reconcile_deals(orders, boxes, deals)

    assert [(f.kind, f.order) for f in report.findings] == [
        ("missing", ids[0]), ("extra", ids[5]), ("different", ids[2]), ("different", ids[3]),
        ("different", ids[4])]
    details = {f.order: f.detail for f in report.of("different")}
    assert details[ids[2]] == "stage 5002 in Streak, 5003 for the order's status"
    assert details[ids[3]] == "amount 1298.99 in Streak, 1299 in the shop"
    assert details[ids[4]] == "currency EUR in Streak, USD in the shop"
    assert "box-dup" in report.of("extra")[0].detail
    assert (report.orders, report.boxes, report.filtered) == (6, 6, 0)
    assert report.lines()[0] == "6 orders with a deal (0 without, by the mapping), 6 Streak boxes: 1 missing, " \
                                "1 extra, 3 different"


def test_clarity_orders_outside_the_period_are_not_compared(clarity: ClaritySandbox) -> None:
    deals = load_deal_mapping("clarity-to-streak.yaml")
    inside = place(clarity, 701)
    place(clarity, 702, orderDate="2026-10-31T23:59:59.000Z")  # placed in October, changed in November
    orders = clarity_orders(clarity_client(clarity), START, END, NOW)
    assert [o.data["orderId"] for o in orders] == [inside]
    assert reconcile_deals(orders, [box_for(deals, orders[0].data, "b")], deals).findings == []


def test_clarity_missing_orders_become_the_sweeps_events_of_the_flows_types(clarity: ClaritySandbox) -> None:
    deals = load_deal_mapping("clarity-to-streak.yaml")
    missing = place(clarity, 801)
    clarity.set_order_status(missing, "shipped")
    present = place(clarity, 802)
    orders = clarity_orders(clarity_client(clarity), START, END, NOW)
    report = reconcile_deals(orders, [box_for(deals, orders[1].data, "b")], deals)
    events = missing_events(orders, report, deals, ("order.created", "order.status_changed"))
    assert [(e.event_id, e.event_type) for e in events] == [
        (f"clarity:order:{missing}:v1", "order.created"), (f"clarity:order:{missing}:v2", "order.status_changed")]
    for event in events:
        validate_envelope("clarity", json.loads(event.body))
    assert present not in json.dumps([e.body for e in events])
    assert missing_events(orders, report, deals, ("order.created",))[0].event_type == "order.created"


# --------------------------------------------------------------------------- nopCommerce


@pytest.fixture
def shop() -> NopCommerceSandbox:
    return NopCommerceSandbox()


def nop_client(shop: NopCommerceSandbox) -> NopCommerceClient:
    return NopCommerceClient(NopCommerceConnection(base_url="http://nop.test", email=DEFAULT_API_EMAIL,
                                                   password=DEFAULT_API_PASSWORD),
                             transport=httpx.WSGITransport(app=shop.wsgi_app))


def nop_order(shop: NopCommerceSandbox, sample: Any, number: int, consumer: bool = False, **changes: Any) -> str:
    data = sample("nop_order_b2b")["data"]
    if consumer:
        data["Customer"].pop("Company", None)
        data["BillingAddress"].pop("Company", None)
    data["Order"].update({"Id": number, "CustomOrderNumber": str(number),
                          "OrderGuid": f"00000000-0000-4000-8000-{number:012d}", "CreatedOnUtc": "2026-11-20T10:00:00Z",
                          **changes})
    data["Customer"]["Id"] = 901 if consumer else 900
    data["Order"]["CustomerId"] = data["Customer"]["Id"]
    for item in data["OrderItems"]:
        item["Id"] = 0
    shop.place_order(data)
    return str(number)


def test_nopcommerce_planted_discrepancies_and_orders_the_mapping_leaves_without_a_deal(
        shop: NopCommerceSandbox, sample: Any) -> None:
    deals = load_deal_mapping("nopcommerce-to-streak.yaml")
    for number in (1, 2, 3):
        nop_order(shop, sample, number)
    nop_order(shop, sample, 4, CustomerCurrencyCode="EUR", CurrencyRate=0.92)
    nop_order(shop, sample, 5, consumer=True, OrderTotal=20)  # a consumer's small order: create_when, no deal
    nop_order(shop, sample, 6, CreatedOnUtc="2026-10-31T23:30:00Z")  # before the period: not expected
    orders = nopcommerce_orders(nop_client(shop), START, END, NOW)
    boxes = {order.data["Order"]["Id"]: box_for(deals, order.data, f"b{order.data['Order']['Id']}")
             for order in orders if order.data["Order"]["Id"] in (1, 3, 4)}
    boxes[3]["stageKey"] = "5004"  # order 3's box was cancelled by hand
    boxes[4]["fields"]["1002"] = 1299  # order 4's amount written unconverted (1299 x 0.92 = 1195.08 EUR)

    report = reconcile_deals(orders, list(boxes.values()), deals)

    assert [(f.kind, f.order, f.detail) for f in report.findings] == [
        ("missing", "2", "no box"),
        ("different", "3", "stage 5004 in Streak, 5001 for the order's status"),
        ("different", "4", "amount 1299 in Streak, 1195.08 in the shop")]
    assert (report.orders, report.filtered) == (4, 1)
    events = missing_events(orders, report, deals, ("order.placed", "order.status_changed"))
    assert [e.event_id for e in events][:1] == ["nopcommerce:order:00000000-0000-4000-8000-000000000002:placed"]
    assert {e.event_type for e in events} <= {"order.placed", "order.status_changed"}  # not order.paid
    assert all("-8000-000000000002:" in e.event_id for e in events)


def test_an_order_the_mapping_refuses_is_reported_missing_with_why_and_not_enqueued(
        shop: NopCommerceSandbox, sample: Any) -> None:
    deals = load_deal_mapping("nopcommerce-to-streak.yaml")
    nop_order(shop, sample, 11)
    nop_order(shop, sample, 12, CustomOrderNumber="")  # the order key the box is found by is required
    orders = nopcommerce_orders(nop_client(shop), START, END, NOW)

    report = reconcile_deals(orders, [], deals)

    assert [(f.kind, f.order) for f in report.findings] == [("missing", ""), ("missing", "11")]
    assert report.findings[0].detail.startswith("the mapping refuses the order: ")
    events = missing_events(orders, report, deals, ("order.placed",))
    assert [json.loads(e.body)["data"]["Order"]["Id"] for e in events] == [11]
