"""The order-to-cash write-back against a slow nopCommerce (the sandbox served on loopback, a short client
timeout): a note answered after the client gave up, and a step retried within seconds, still gives one note
per order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from switchyard.errors import RetryableError
from switchyard.events import FlowEvent, flow_message
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard.systems.quickbooks.order_mapping import load_order_mapping
from switchyard.systems.quickbooks.order_to_cash import OrderToCash, note_marker
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

FLOW = "nopcommerce-to-quickbooks"
GUID = "6f1c2b7e-3a7d-4c4e-9a55-0b9e2f1d7a10"
CLIENT_TIMEOUT = 0.3  # stands for the connector's 10 s
SHOP_DELAY = 0.8  # the shop answers after the client gave up
SETTLE = 0.8  # stands for the connector's settle_seconds
RETRY_INTERVAL = 0.1  # Step Functions retries the step "within seconds"


@pytest.fixture
def sandbox() -> Iterator[NopCommerceSandbox]:
    with NopCommerceSandbox() as shop:
        shop.seed_order({"id": 1042, "order_guid": GUID, "custom_order_number": "1042", "order_status_id": 10})
        yield shop


def client(sandbox: NopCommerceSandbox, *, settle: float = SETTLE) -> NopCommerceClient:
    assert sandbox.base_url is not None
    connection = NopCommerceConnection(base_url=sandbox.base_url, email=DEFAULT_API_EMAIL,
                                       password=DEFAULT_API_PASSWORD)
    return NopCommerceClient(connection, timeout=httpx.Timeout(CLIENT_TIMEOUT), settle_seconds=settle)


def document_state() -> dict[str, Any]:
    body = ('{"type":"order.placed","timestamp":"2026-11-20T09:15:02Z","data":{"Order":{"Id":1042,"OrderGuid":"'
            + GUID + '","CustomOrderNumber":"1042","OrderStatusId":10,"PaymentStatusId":10,"ShippingStatusId":20,'
            '"OrderTotal":30.0,"CustomerCurrencyCode":"USD","CreatedOnUtc":"2026-11-20T09:15:00Z"}}}')
    message = flow_message(flow=FLOW, event_id="msg_1", source="nopcommerce", event_type="order.placed",
                           timestamp="2026-11-20T09:15:02Z", received_at="2026-11-20T12:00:00+00:00", body=body)
    return {"message": message, "document": {"entity": "Invoice", "id": "7", "doc_number": "1042", "total": 30,
                                             "currency": "USD", "exchange_rate": None, "action": "created"}}


def write_back_as_the_state_machine_runs_it(shop: NopCommerceClient, attempts: int = 6) -> dict[str, Any]:
    """The WriteBack task with its Retry on retryable errors (a short interval instead of 2 s)."""
    o2c = OrderToCash(load_order_mapping(FLOW), qbo=None, shop=shop, flow=FLOW)  # type: ignore[arg-type]
    for _ in range(attempts - 1):
        try:
            return o2c.run("write_back", document_state())
        except RetryableError:
            time.sleep(RETRY_INTERVAL)
    return o2c.run("write_back", document_state())


def settled_notes(sandbox: NopCommerceSandbox) -> list[str]:
    time.sleep(SHOP_DELAY + 0.2)  # whatever the shop was still doing is done
    return [note["note"] for note in sandbox.notes(1042)]


@pytest.mark.parametrize("carry_out", ["late", "early"])
def test_note_answered_after_the_client_timeout_is_written_once(sandbox: NopCommerceSandbox, carry_out: str) -> None:
    # "late": the shop was busy and writes just before its late answer (a lookup meanwhile finds nothing);
    # "early": it writes at once and only the answer is late
    sandbox.slow_next(1, SHOP_DELAY, path="ordernote/create", carry_out=carry_out)  # type: ignore[arg-type]
    shop = client(sandbox)

    result = write_back_as_the_state_machine_runs_it(shop)

    marker = note_marker(FLOW, GUID, "document")
    assert settled_notes(sandbox) == [f"Sent to QuickBooks: Invoice 1042 [ref {marker}]"]
    assert result["note"] == "Sent to QuickBooks: Invoice 1042"


def test_note_still_missing_after_the_settle_delay_fails_the_attempt_then_the_retry_cleans_up(
    sandbox: NopCommerceSandbox,
) -> None:
    # the shop takes longer than timeout + settle: the attempt fails as unknown, the retry adds the note, the
    # first one lands after it, and the next look (the retry's own check, or any later write-back) deletes it
    sandbox.slow_next(1, SHOP_DELAY * 2, path="ordernote/create", carry_out="late")
    shop = client(sandbox, settle=0.2)
    with pytest.raises(RetryableError) as caught:
        shop.add_order_note(1042, "Sent to QuickBooks: Invoice 1042", marker="aaaaaaaaaaaa")
    assert caught.value.reason == "write_outcome_unknown"
    assert shop.add_order_note(1042, "Sent to QuickBooks: Invoice 1042", marker="aaaaaaaaaaaa") is True
    time.sleep(SHOP_DELAY * 2)
    assert len(sandbox.notes(1042)) == 2  # the slow first create landed after all

    assert shop.add_order_note(1042, "Sent to QuickBooks: Invoice 1042", marker="aaaaaaaaaaaa") is False
    assert [note["note"] for note in sandbox.notes(1042)] == ["Sent to QuickBooks: Invoice 1042 [ref aaaaaaaaaaaa]"]


def test_two_attempts_racing_leave_one_note(sandbox: NopCommerceSandbox) -> None:
    # both look, find nothing, create (slowly); each reads the notes again afterwards and deletes later copies
    sandbox.slow_next(2, 0.2, path="ordernote/create", carry_out="late")
    shops = [client(sandbox, settle=0.1), client(sandbox, settle=0.1)]
    results: list[Any] = []

    def attempt(shop: NopCommerceClient) -> None:
        try:
            results.append(shop.add_order_note(1042, "Payment recorded", marker="bbbbbbbbbbbb"))
        except RetryableError as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=attempt, args=(shop,)) for shop in shops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [note["note"] for note in sandbox.notes(1042)] == ["Payment recorded [ref bbbbbbbbbbbb]"]
    assert len(results) == 2


def test_notes_written_before_markers_count_as_written(sandbox: NopCommerceSandbox) -> None:
    shop = client(sandbox)
    with httpx.Client(base_url=str(sandbox.base_url)) as http:
        token = http.post("/api-backend/Authenticate/GetToken",
                          json={"email": DEFAULT_API_EMAIL, "password": DEFAULT_API_PASSWORD}).json()["token"]
        http.post("/api-backend/OrderNote/Create", headers={"Authorization": f"Bearer {token}"},
                  json={"order_id": 1042, "note": "Sent to QuickBooks: Invoice 1042", "created_on_utc": "2026-11-20"})

    assert shop.add_order_note(1042, "Sent to QuickBooks: Invoice 1042", marker="cccccccccccc") is False
    assert len(sandbox.notes(1042)) == 1


def test_event_of_the_state_uses_the_orders_guid_for_the_marker() -> None:
    event = FlowEvent.from_message(document_state()["message"])
    assert str(event.data["Order"]["OrderGuid"]) == GUID
    assert note_marker(FLOW, GUID.upper(), "document") == note_marker(FLOW, GUID, "document")
    assert len({note_marker(FLOW, GUID, kind) for kind in ("document", "payment", "cancel")}) == 3
