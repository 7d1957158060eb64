"""The Clarity order sweep (switchyard.systems.clarity.poller) against the Clarity sandbox in-process: the poll
rebuilds exactly the webhooks Clarity sent, a webhook that was delivered is not queued again, one that was
lost is recovered once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from switchyard.envelopes import validate_envelope
from switchyard.polling import InMemoryPollStore, InMemoryPushedLog, PolledEvent, Poller, PollSettings
from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
from switchyard.systems.clarity.poller import ClaritySweep, order_at_version, sweep_key
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append((request.headers["webhook-id"], json.loads(request.content)))
        return httpx.Response(202)

    def orders(self) -> list[tuple[str, dict[str, Any]]]:
        return [(event_id, body) for event_id, body in self.received if body["type"].startswith("order.")]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def shop(clock: Clock, receiver: Receiver) -> ClaritySandbox:
    return ClaritySandbox(webhook_url="http://switchyard.test/webhooks/clarity", clock=clock,
                          webhook_backoff=(0, 0, 0), webhook_transport=httpx.MockTransport(receiver))


@pytest.fixture
def sweep(shop: ClaritySandbox) -> ClaritySweep:
    client = ClarityClient(ClarityConnection(base_url="http://clarity.test", api_key=shop.api_key),
                           transport=httpx.WSGITransport(app=shop.wsgi_app))
    return ClaritySweep(client)


def busy_day(shop: ClaritySandbox, clock: Clock) -> None:
    """Two orders: one paid, shipped, delivered and refunded (two changes in the same second), one pending."""
    first = shop.place_order(DEMO_ORDERS[0])["orderId"]
    clock.now += 60
    shop.place_order(DEMO_ORDERS[1])
    for status in ("shipped", "delivered"):
        clock.now += 3600
        shop.set_order_status(first, status, note=f"now {status}")
    shop.set_order_status(first, "refunded")  # the same millisecond as delivered
    assert shop.wait_for_webhooks()


def poll(sweep: ClaritySweep, store: InMemoryPollStore, now: datetime, *, pushed: InMemoryPushedLog | None = None,
         grace: timedelta = timedelta(0)) -> tuple[Any, list[PolledEvent]]:
    queued: list[PolledEvent] = []
    settings = PollSettings(lookback=timedelta(days=1), page_size=2, mode="both" if pushed else "poll",
                            sweep_grace=grace)
    report = Poller(sweep, store, queued.extend, settings, pushed=pushed, clock=lambda: now,
                    validate=lambda event: validate_envelope("clarity", json.loads(event.body))).run()
    return report, queued


def test_the_sweep_rebuilds_every_order_webhook_exactly(shop: ClaritySandbox, clock: Clock, receiver: Receiver,
                                                       sweep: ClaritySweep) -> None:
    busy_day(shop, clock)
    report, polled = poll(sweep, InMemoryPollStore(), clock.at() + timedelta(seconds=1))

    sent = receiver.orders()
    assert report.invalid == []
    # the same events, each order's in the order they happened (the list is by change time: orders interleave)
    for order_id in ("CL-10001", "CL-10002"):
        assert [json.loads(e.body) for e in polled if json.loads(e.body)["data"]["orderId"] == order_id] == \
            [body for _, body in sent if body["data"]["orderId"] == order_id]
    assert sorted((e.event_type, e.timestamp) for e in polled) == \
        sorted((body["type"], body["timestamp"]) for _, body in sent)
    # a webhook's sweep key is the poll's id of the same change
    assert sorted(sweep_key(body["type"], body["data"]) or "" for _, body in sent) == \
        sorted(e.event_id for e in polled)
    assert {e.event_id for e in polled} >= {"clarity:order:CL-10001:v1", "clarity:order:CL-10001:v4",
                                            "clarity:order:CL-10002:v1"}


def test_a_refund_rebuilds_the_payment_as_paid_before_it(shop: ClaritySandbox, clock: Clock,
                                                        sweep: ClaritySweep) -> None:
    busy_day(shop, clock)
    order = shop.get_order("CL-10001")
    assert order["paymentInfo"]["status"] == "refunded"
    statuses = [order_at_version(order, v) for v in range(1, 5)]
    assert [(s[0], s[2]["status"], s[2]["paymentInfo"]["status"]) for s in statuses if s] == [
        ("order.created", "processing", "paid"), ("order.status_changed", "shipped", "paid"),
        ("order.status_changed", "delivered", "paid"), ("order.status_changed", "refunded", "refunded")]


def test_a_second_sweep_finds_only_what_changed_since(shop: ClaritySandbox, clock: Clock,
                                                     sweep: ClaritySweep) -> None:
    busy_day(shop, clock)
    store = InMemoryPollStore()
    poll(sweep, store, clock.at() + timedelta(seconds=1))
    clock.now += 120
    shop.set_order_status("CL-10002", "processing")
    _, again = poll(sweep, store, clock.at() + timedelta(seconds=1))
    assert [(e.event_id, e.event_type) for e in again] == [("clarity:order:CL-10002:v2", "order.status_changed")]
    assert json.loads(again[0].body)["data"]["previousStatus"] == "pending"
    _, nothing = poll(sweep, store, clock.at() + timedelta(seconds=2))
    assert nothing == []


def test_a_lost_webhook_is_recovered_once_and_a_delivered_one_is_not_queued(
        shop: ClaritySandbox, clock: Clock, receiver: Receiver, sweep: ClaritySweep) -> None:
    # Given webhooks recorded by ingest under their sweep keys, and one status change whose webhook was lost
    order_id = shop.place_order(DEMO_ORDERS[0])["orderId"]
    clock.now += 60
    shop.lose_next_webhooks(1)
    shop.set_order_status(order_id, "shipped")
    clock.now += 60
    shop.set_order_status(order_id, "delivered")
    assert shop.wait_for_webhooks()
    pushed = InMemoryPushedLog()
    pushed.record([sweep_key(body["type"], body["data"]) or event_id for event_id, body in receiver.orders()])
    assert [e.type for e in shop.lost_webhooks] == ["order.status_changed"]
    store = InMemoryPollStore()

    # When the sweep runs, then after its grace period
    now = clock.at() + timedelta(seconds=1)
    held, nothing = poll(sweep, store, now, pushed=pushed, grace=timedelta(minutes=10))
    report, recovered = poll(sweep, store, now + timedelta(minutes=11), pushed=pushed, grace=timedelta(minutes=10))
    _, later = poll(sweep, store, now + timedelta(minutes=12), pushed=pushed, grace=timedelta(minutes=10))

    # Then only the lost change is queued, once, exactly as the webhook would have carried it
    assert (nothing, held.held, held.already_pushed) == ([], 1, 2)
    assert [e.event_id for e in recovered] == [f"clarity:order:{order_id}:v2"]
    assert json.loads(recovered[0].body) == shop.lost_webhooks[0].payload
    assert report.recovered == 1
    assert later == []


def test_webhooks_of_other_events_have_no_sweep_key() -> None:
    assert sweep_key("customer.updated", {"customerId": "C-501", "version": 2}) == "clarity:customer:C-501:v2"
    assert sweep_key("customer.created", {"customerId": "C-501", "version": 1}) is None
    assert sweep_key("product.updated", {"sku": "A", "version": 2}) is None
    assert sweep_key("order.created", {"orderId": "CL-1", "version": True}) is None
    assert sweep_key("order.status_changed", {"orderId": "CL-1", "version": 3}) == "clarity:order:CL-1:v3"


# --------------------------------------------------------------------------- customers


def test_a_lost_customer_update_is_swept_as_the_customers_latest_version_once(
        shop: ClaritySandbox, clock: Clock, receiver: Receiver, sweep: ClaritySweep) -> None:
    # Given a registered customer (customer.created: not swept), a guest who checked out, and two profile
    # edits of the registered one, the second one's webhook lost
    registered = shop.register_customer({"email": "reg@example.org", "firstName": "Reg"})["customerId"]
    shop.place_order(DEMO_ORDERS[1])  # a guest's customer: version 1, no customer.created
    clock.now += 60
    shop.update_customer(registered, phone="+1 555 0100")
    clock.now += 60
    shop.lose_next_webhooks(1)
    shop.update_customer(registered, firstName="Regina")
    assert shop.wait_for_webhooks()
    pushed = InMemoryPushedLog()
    pushed.record([sweep_key(body["type"], body["data"]) or event_id for event_id, body in receiver.received])
    store = InMemoryPollStore()

    _, swept = poll(sweep, store, clock.at() + timedelta(seconds=1), pushed=pushed)
    _, again = poll(sweep, store, clock.at() + timedelta(minutes=1), pushed=pushed)

    customers = [e for e in swept if e.event_type.startswith("customer.")]
    assert [e.event_id for e in customers] == [f"clarity:customer:{registered}:v3"]
    assert json.loads(customers[0].body) == shop.lost_webhooks[0].payload  # what the webhook would have said
    assert again == []


def test_a_scan_goes_on_to_the_customers_when_no_order_changed(shop: ClaritySandbox, clock: Clock,
                                                                sweep: ClaritySweep) -> None:
    shop.place_order(DEMO_ORDERS[0])
    store = InMemoryPollStore()
    poll(sweep, store, clock.at() + timedelta(seconds=1))
    clock.now += 120
    shop.update_customer("C-501", lastName="Doe-Smith")  # changes no order
    report, swept = poll(sweep, store, clock.at() + timedelta(seconds=1))
    assert [e.event_id for e in swept] == ["clarity:customer:C-501:v2"]
    assert report.scan_finished
