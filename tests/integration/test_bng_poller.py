"""The bng source's sweep (``systems.bng.poller`` under ``switchyard.polling``, mode both) against the BNG sandbox:
what the webhooks delivered is not queued again; a shipment or a product version whose webhook never came is
queued after the grace, with the id and shape the webhook would have had."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from switchyard.envelopes import validate_envelope
from switchyard.polling import InMemoryPollStore, InMemoryPushedLog, PolledEvent, Poller, PollSettings
from switchyard.systems.bng.client import BngClient, BngConnection
from switchyard.systems.bng.poller import BngChangeSource
from switchyard_local.sandboxes.bng import DEFAULT_API_KEY, BngSandbox

T0 = 1_796_299_200.0  # 2026-12-03T12:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class World:
    def __init__(self, *, page_size: int = 100) -> None:
        self.clock = Clock()
        self.pushed = InMemoryPushedLog()
        self.dropping = False  # the webhooks are lost on the way (answered, never queued)

        def receive(request: httpx.Request) -> httpx.Response:
            if not self.dropping:
                self.pushed.record([request.headers["webhook-id"]])
            return httpx.Response(202)

        self.bng = BngSandbox(clock=self.clock, webhook_url="http://switchyard.test/webhooks/bng",
                              webhook_transport=httpx.MockTransport(receive), webhook_backoff=(0, 0, 0))
        self.client = BngClient(BngConnection(base_url="http://bng.test", api_key=DEFAULT_API_KEY),
                                transport=httpx.WSGITransport(app=self.bng.wsgi_app))
        self.requests = 0
        self.store = InMemoryPollStore()
        self.queued: list[PolledEvent] = []
        self.settings = PollSettings(page_size=page_size, max_pages=10, lookback=timedelta(days=1), mode="both",
                                     start=datetime(2000, 1, 1, tzinfo=UTC), sweep_grace=timedelta(minutes=10))

    def drop_webhooks(self, dropping: bool) -> None:
        assert self.bng.wait_for_webhooks()  # they leave on the sandbox's thread: the earlier ones first
        self.dropping = dropping

    def poll(self) -> dict[str, int]:
        assert self.bng.wait_for_webhooks()
        poller = Poller(BngChangeSource(self.client), self.store, self.queued.extend, self.settings,
                        pushed=self.pushed, validate=lambda e: validate_envelope("bng", json.loads(e.body)),
                        clock=self.clock.moment)
        report = poller.run()
        assert report.invalid == []
        return {"queued": report.events_queued, "recovered": report.recovered, "held": report.held,
                "already_pushed": report.already_pushed, "pages": report.pages_read}

    def order(self, external: str) -> str:
        customer = self.client.create_customer({"ExternalID": f"c-{external}", "Name": "C"})
        return self.client.create_sales_order({
            "ExternalOrderID": external, "CustomerID": customer["CustomerID"], "Currency": "USD",
            "Lines": [{"SKU": "DESK-1", "Quantity": 1, "UnitPrice": "10.00"}]})["SalesOrderID"]


@pytest.fixture
def world() -> World:
    world = World()
    world.bng.add_product("DESK-1", "Desk", on_hand=10, attributes={"Material": "Oak"})
    return world


def test_what_the_webhooks_delivered_is_not_queued_again(world: World) -> None:
    world.bng.ship_order(world.order("o-1"), carrier="UPS", tracking_number="1Z1")
    first = world.poll()
    assert first["queued"] == 0 and first["recovered"] == 0
    assert first["already_pushed"] == 2  # the shipment and the product's version after the sale
    world.clock.now += 3600
    assert world.poll()["already_pushed"] == 0  # seen: the snapshots say nothing changed


def test_a_shipment_whose_webhook_never_came_is_queued_after_the_grace_as_the_webhook_would_have_been(
        world: World) -> None:
    sales_order = world.order("o-2")
    world.drop_webhooks(True)
    shipment = world.bng.ship_order(sales_order, carrier="DHL", tracking_number="JD2")
    assert world.poll()["held"] == 2 and world.queued == []  # the webhook may still be on its way
    [sent] = [d for d in world.bng.webhook_deliveries if d.type == "shipment.created"]
    world.clock.now += 11 * 60
    assert world.poll()["recovered"] == 2
    [polled] = [e for e in world.queued if e.event_type == "shipment.created"]
    assert polled.event_id == sent.event_id  # the id the lost webhook carried: idempotent if it comes after all
    data = json.loads(polled.body)["data"]
    assert (data["ShipmentID"], data["ExternalOrderID"], data["TrackingNumber"], data["OrderStatus"]) == (
        shipment["ShipmentID"], "o-2", "JD2", "Shipped")
    world.clock.now += 60
    world.queued.clear()
    assert world.poll()["queued"] == 0 and world.queued == []  # queued once


def test_a_missed_product_change_is_queued_as_the_product_now_and_the_first_scan_reads_every_product(
        world: World) -> None:
    world.clock.now += 5 * 86_400  # the desk was set up days ago, before the connection existed
    world.drop_webhooks(True)
    world.bng.add_product("ARM-1", "Arm", on_hand=4)
    world.bng.set_product_attributes("ARM-1", Material="Steel")
    world.bng.record_inventory("ARM-1", 6)
    world.clock.now += 11 * 60
    world.poll()  # first seen: held
    world.clock.now += 11 * 60
    assert world.poll()["recovered"] == 1
    world.drop_webhooks(False)
    [arm] = [json.loads(e.body)["data"] for e in world.queued]
    assert (arm["SKU"], arm["OnHand"], arm["Attributes"], arm["Version"]) == ("ARM-1", 10, {"Material": "Steel"}, 3)
    # the desk's webhook was delivered: not queued, though the first scan (from `start`) read it
    assert world.store.items.keys() == {f"product-{world.bng.product('DESK-1')['ProductID']}",
                                         f"product-{world.bng.product('ARM-1')['ProductID']}"}


def test_pages_follow_bngs_cursor_across_runs_and_lists() -> None:
    world = World(page_size=2)
    world.settings = PollSettings(page_size=2, max_pages=2, lookback=timedelta(days=1), mode="both",
                                  start=datetime(2000, 1, 1, tzinfo=UTC), sweep_grace=timedelta(0))
    world.drop_webhooks(True)
    for number in range(7):
        world.bng.add_product(f"SKU-{number}", f"Product {number}", on_hand=number)
    first = world.poll()  # two pages of two: the scan goes on in the next run
    assert (first["pages"], first["queued"]) == (2, 4)
    second = world.poll()
    assert (second["pages"], second["queued"]) == (2, 3)
    assert sorted(json.loads(e.body)["data"]["SKU"] for e in world.queued) == [f"SKU-{n}" for n in range(7)]
