"""The nopCommerce poller against the sandbox shop: every order change becomes exactly the webhook's events."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from switchyard.envelopes import validate_envelope
from switchyard.polling import InMemoryPollStore, InMemoryPushedLog, PolledEvent, Poller, PollSettings
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard.systems.nopcommerce.poller import NopCommerceOrderSource, envelope_json
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

START = 1_795_000_000.0  # 2026-11-18T...


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=UTC)


class Harness:
    def __init__(self, *, settings: PollSettings | None = None, pushed: InMemoryPushedLog | None = None) -> None:
        self.clock = Clock()
        self.shop = NopCommerceSandbox(clock=self.clock)
        connection = NopCommerceConnection(base_url="http://shop.test", email=DEFAULT_API_EMAIL,
                                           password=DEFAULT_API_PASSWORD)
        self.client = NopCommerceClient(connection, transport=httpx.WSGITransport(app=self.shop.wsgi_app),
                                        clock=self.clock)
        self.store = InMemoryPollStore()
        self.queued: list[PolledEvent] = []
        self.pushed = pushed
        self.settings = settings or PollSettings(page_size=50, max_pages=5)

    def publish(self, events: Sequence[PolledEvent]) -> None:
        self.queued.extend(events)

    def poll(self) -> Any:
        poller = Poller(NopCommerceOrderSource(self.client), self.store, self.publish, self.settings,
                        pushed=self.pushed, clock=self.clock.at)
        return poller.run()

    def take(self) -> list[tuple[str, str]]:
        """(type, id suffix after the OrderGuid) of what was queued since the last take."""
        taken = [(e.event_type, e.event_id.split(":", 3)[3]) for e in self.queued]
        self.queued.clear()
        return taken

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds


@pytest.fixture
def harness() -> Harness:
    return Harness()


def place(harness: Harness, sample: Callable[..., dict[str, Any]], name: str = "nop_order_b2b",
          **order: Any) -> dict[str, Any]:
    data = sample(name)["data"]
    data["Order"].update(order)
    data["Order"]["CreatedOnUtc"] = harness.clock.at().isoformat()
    return harness.shop.place_order(data)


def test_a_placed_order_becomes_the_webhooks_order_placed_with_items_customer_and_addresses(
    harness: Harness, sample: Callable[..., dict[str, Any]]
) -> None:
    placed = sample("nop_order_b2b", decimals=True)["data"]
    place(harness, sample, PaymentStatusId=10)

    report = harness.poll()

    assert (report.pages_read, report.items_seen, report.events_queued, report.scan_finished) == (1, 1, 1, True)
    event = harness.queued[0]
    document = json.loads(event.body, parse_float=Decimal)
    assert validate_envelope("nopcommerce", json.loads(event.body)) == "order.placed"
    assert event.event_id == "nopcommerce:order:6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10:placed"
    data = document["data"]
    assert data["Order"]["OrderTotal"] == placed["Order"]["OrderTotal"] == Decimal("1299.0")
    assert data["Order"]["CustomOrderNumber"] == "1042" and data["Order"]["PaymentStatusId"] == 10
    assert data["Order"]["CreatedOnUtc"] == event.timestamp == harness.clock.at().isoformat().replace("+00:00", "Z")
    assert [(i["Id"], i["Quantity"], i["PriceExclTax"], i["Product"]["Sku"]) for i in data["OrderItems"]] == [
        (i["Id"], i["Quantity"], i["PriceExclTax"], i["Product"]["Sku"]) for i in placed["OrderItems"]]
    assert data["Customer"] == placed["Customer"]
    assert data["BillingAddress"]["Email"] == placed["BillingAddress"]["Email"]
    assert data["ShippingAddress"]["Address1"] == "1 Main St"


def test_a_guest_customer_gets_the_billing_address_email(
    harness: Harness, sample: Callable[..., dict[str, Any]]
) -> None:
    data = sample("nop_order_b2b")["data"]
    data["Customer"] = {"Id": 500}  # a guest: no e-mail on the customer
    data["Order"]["CreatedOnUtc"] = harness.clock.at().isoformat()
    harness.shop.place_order(data)

    harness.poll()

    body = json.loads(harness.queued[0].body)
    assert body["data"]["Customer"] == {"Id": 500, "Email": "jane.doe@acme-corp.example"}
    validate_envelope("nopcommerce", body)


def test_money_keeps_the_digits_the_shop_sent() -> None:
    body = envelope_json("order.paid", "2026-01-01T00:00:00Z",
                         {"Order": {"OrderTotal": Decimal("12345678901234.5678"), "Name": '"x7"'}})
    assert '"OrderTotal":12345678901234.5678' in body
    assert json.loads(body, parse_float=Decimal)["data"]["Order"]["OrderTotal"] == Decimal("12345678901234.5678")


TRANSITIONS: list[tuple[str, Callable[[NopCommerceSandbox, int], Any], list[tuple[str, str]]]] = [
    ("mark paid", lambda shop, oid: shop.mark_paid(oid),
     [("order.paid", "paid"), ("order.status_changed", "status:20-30-20")]),
    ("authorized", lambda shop, oid: shop.update_order(oid, PaymentStatusId=20, OrderStatusId=20),
     [("order.status_changed", "status:20-20-20")]),
    ("shipped", lambda shop, oid: shop.ship(oid), [("order.status_changed", "status:20-10-30")]),
    ("partially shipped", lambda shop, oid: shop.update_order(oid, ShippingStatusId=25),
     [("order.status_changed", "status:10-10-25")]),
    ("delivered", lambda shop, oid: shop.ship(oid, delivered=True), [("order.status_changed", "status:20-10-40")]),
    ("cancelled", lambda shop, oid: shop.cancel(oid), [("order.status_changed", "status:40-10-20")]),
    ("voided", lambda shop, oid: shop.update_order(oid, PaymentStatusId=50),
     [("order.status_changed", "status:10-50-20")]),
    ("paid, delivered: complete", lambda shop, oid: (shop.mark_paid(oid), shop.ship(oid, delivered=True)),
     [("order.paid", "paid"), ("order.status_changed", "status:30-30-40")]),
    ("paid then partially refunded", lambda shop, oid: (shop.mark_paid(oid), shop.refund(oid, 100.5)),
     [("order.paid", "paid"), ("order.status_changed", "status:20-35-20"), ("order.refunded", "refunded:100.5")]),
    ("nothing", lambda shop, oid: None, []),
]


@pytest.mark.parametrize(("name", "change", "expected"), TRANSITIONS, ids=[t[0] for t in TRANSITIONS])
def test_every_status_payment_and_shipping_transition_gives_the_webhook_events(
    harness: Harness, sample: Callable[..., dict[str, Any]], name: str,
    change: Callable[[NopCommerceSandbox, int], Any], expected: list[tuple[str, str]]
) -> None:
    order = place(harness, sample, PaymentStatusId=10)
    harness.poll()
    harness.take()
    harness.advance(60)

    change(harness.shop, order["id"])
    harness.poll()

    assert harness.take() == expected
    for event in harness.queued:
        validate_envelope("nopcommerce", json.loads(event.body))


def test_refunds_partial_then_full_each_once_and_a_repeat_poll_queues_nothing(
    harness: Harness, sample: Callable[..., dict[str, Any]]
) -> None:
    order = place(harness, sample, PaymentStatusId=30)
    harness.poll()
    assert harness.take() == [("order.placed", "placed"), ("order.paid", "paid")]

    harness.shop.refund(order["id"], 299.0)
    harness.poll()
    partial = list(harness.queued)
    assert harness.take() == [("order.refunded", "refunded:299")]  # the order status did not change
    body = json.loads(partial[0].body)
    assert validate_envelope("nopcommerce", body) == "order.refunded"
    assert (body["data"]["Order"]["RefundedAmount"], body["data"]["Order"]["PaymentStatusId"]) == (299.0, 35)

    harness.shop.refund(order["id"])
    harness.poll()
    assert harness.take() == [("order.refunded", "refunded:1299")]
    harness.poll()
    assert harness.take() == []


def test_an_order_first_seen_paid_cancelled_and_refunded_gives_every_event_it_missed(
    harness: Harness, sample: Callable[..., dict[str, Any]]
) -> None:
    order = place(harness, sample, PaymentStatusId=10)
    harness.shop.mark_paid(order["id"])
    harness.shop.refund(order["id"])
    harness.shop.cancel(order["id"])

    harness.poll()

    assert harness.take() == [("order.placed", "placed"), ("order.paid", "paid"),
                              ("order.status_changed", "status:40-40-20"), ("order.refunded", "refunded:1299")]


def test_a_crash_between_queueing_and_saving_requeues_the_same_events_and_skips_nothing(
    harness: Harness, sample: Callable[..., dict[str, Any]]
) -> None:
    place(harness, sample, PaymentStatusId=30)
    harness.store.fail_save = True
    with pytest.raises(RuntimeError):
        harness.poll()
    first = [(e.event_id, e.event_type) for e in harness.queued]
    harness.queued.clear()
    assert harness.store.cursor().watermark is None and harness.store.items == {}

    harness.store.fail_save = False
    harness.advance(60)
    harness.poll()

    assert [(e.event_id, e.event_type) for e in harness.queued] == first  # same ids: the worker drops them
    harness.queued.clear()
    harness.poll()
    assert harness.queued == []


def test_a_backlog_bigger_than_one_run_catches_up_over_several_runs_each_order_once(
    sample: Callable[..., dict[str, Any]]
) -> None:
    harness = Harness(settings=PollSettings(page_size=4, max_pages=2, lookback=timedelta(days=30),
                                            start=datetime(2024, 1, 1, tzinfo=UTC)))
    for index in range(21):  # two years of orders, the oldest before the look-back window
        data = sample("nop_order_small")["data"]
        data["Order"].update(Id=100 + index, OrderGuid=f"00000000-0000-4000-8000-{index:012d}",
                             CreatedOnUtc=(datetime(2024, 6, 1, tzinfo=UTC) + timedelta(days=30 * index)).isoformat())
        data["Customer"]["Id"] = 900
        data["OrderItems"][0]["Id"] = 7000 + index
        harness.shop.place_order(data)
    runs = []
    while True:
        report = harness.poll()
        runs.append((report.pages_read, report.items_seen, report.scan_finished))
        if report.scan_finished:
            break
        harness.advance(60)
        if len(runs) == 1:  # a new order while the backlog is read: the next scan has it
            newer = sample("nop_order_small")["data"]
            newer["Order"].update(Id=999, OrderGuid="00000000-0000-4000-8000-999999999999",
                                  CreatedOnUtc=harness.clock.at().isoformat())
            newer["OrderItems"][0]["Id"] = 7999
            harness.shop.place_order(newer)

    assert runs == [(2, 8, False), (2, 8, False), (2, 5, True)]
    placed = [e.event_id for e in harness.queued if e.event_type == "order.placed"]
    assert len(placed) == len(set(placed)) == 21
    harness.queued.clear()
    report = harness.poll()  # the next scan: the look-back window and what came meanwhile
    assert [e.event_id for e in harness.queued if e.event_type == "order.placed"] == [
        "nopcommerce:order:00000000-0000-4000-8000-999999999999:placed"]
    assert report.scan_finished and report.lag_seconds == 0


def test_sweep_skips_what_webhooks_delivered_and_recovers_a_lost_one_after_the_grace_period(
    sample: Callable[..., dict[str, Any]]
) -> None:
    pushed = InMemoryPushedLog()
    harness = Harness(settings=PollSettings(mode="both", sweep_grace=timedelta(minutes=10)), pushed=pushed)
    delivered = place(harness, sample, PaymentStatusId=10)
    data = sample("nop_order_small")["data"]
    data["Order"].update(CreatedOnUtc=harness.clock.at().isoformat(), PaymentStatusId=10)
    lost = harness.shop.place_order(data)
    pushed.record([f"nopcommerce:order:{delivered['order_guid']}:placed"])  # its webhook arrived

    first = harness.poll()
    assert (first.already_pushed, first.held, first.recovered, harness.queued) == (1, 1, 0, [])

    harness.advance(300)
    assert harness.poll().held == 1 and harness.queued == []  # still inside the grace period
    harness.advance(301)
    recovered = harness.poll()

    assert (recovered.recovered, harness.take()) == (1, [("order.placed", "placed")])
    assert harness.poll().recovered == 0 and harness.queued == []
    harness.shop.mark_paid(lost["id"])
    pushed.record([f"nopcommerce:order:{lost['order_guid']}:paid"])  # the paid webhook came; the status one not
    harness.advance(60)
    assert harness.poll().already_pushed == 1
    harness.advance(601)
    assert (harness.poll().recovered, harness.take()) == (1, [("order.status_changed", "status:20-30-20")])


def test_two_pollers_with_their_own_state_name_the_same_changes_alike(
    sample: Callable[..., dict[str, Any]]
) -> None:
    one, two = Harness(), Harness()
    for harness in (one, two):
        order = place(harness, sample, PaymentStatusId=10)
        harness.poll()
        harness.shop.mark_paid(order["id"])
        harness.poll()
    assert [e.event_id for e in one.queued] == [e.event_id for e in two.queued]


def test_search_always_sends_a_page_size_and_a_fixed_creation_window(
    harness: Harness, sample: Callable[..., dict[str, Any]]
) -> None:
    seen: list[httpx.URL] = []
    harness.client._http.event_hooks["request"].append(lambda request: seen.append(request.url))
    place(harness, sample)
    harness.poll()
    harness.advance(60)
    harness.poll()

    searches = [url.params for url in seen if url.path.lower().endswith("/order/search")]
    assert [params["pageSize"] for params in searches] == ["50", "50"]
    assert searches[0]["createdToUtc"] == datetime.fromtimestamp(START, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert searches[1]["createdFromUtc"] < searches[0]["createdToUtc"] < searches[1]["createdToUtc"]


def test_an_order_that_fails_the_webhook_schema_is_reported_and_never_queued(harness: Harness) -> None:
    from switchyard.envelopes import validate_envelope

    harness.shop.seed_order(order_total=10.0)  # an order without items: order.placed needs at least one
    poller = Poller(NopCommerceOrderSource(harness.client), harness.store, harness.publish, harness.settings,
                    clock=harness.clock.at,
                    validate=lambda event: validate_envelope("nopcommerce", json.loads(event.body)))
    report = poller.run()
    assert harness.queued == [] and report.events_queued == 0
    assert [entry["event_id"].rsplit(":", 1)[1] for entry in report.invalid] == ["placed"]
    assert "invalid_event" in report.invalid[0]["problem"]
    assert poller.run().invalid == []  # reported once: the snapshot moved on
