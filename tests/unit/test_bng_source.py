"""BNG's webhooks, as its sandbox sends them, verify and parse into the source models."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError
from switchyard.errors import ConnectionConfigError, SignatureError
from switchyard.signatures import StandardWebhookAuthenticator
from switchyard.systems.bng.client import BngConnection
from switchyard.systems.bng.source import BngEvent, change_id
from switchyard_local.sandboxes.bng import DEFAULT_WEBHOOK_SECRET, BngSandbox

EVENTS = TypeAdapter(BngEvent)


def connection_from_secret(secret: dict) -> BngConnection:
    return BngConnection.from_secret(secret)


def authenticator_for(secret: dict) -> StandardWebhookAuthenticator:
    return StandardWebhookAuthenticator(list(BngConnection.from_secret(secret).webhook_secrets))


class Request:
    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body, self.headers = body, headers


def test_the_sandboxes_webhooks_verify_and_parse() -> None:
    received: list[httpx.Request] = []
    lock = threading.Lock()

    def receive(request: httpx.Request) -> httpx.Response:
        with lock:
            received.append(request)
        return httpx.Response(200)

    bng = BngSandbox(webhook_url="http://switchyard.test/webhooks/bng", webhook_transport=httpx.MockTransport(receive))
    bng.add_product("DESK-1", "Desk", on_hand=3)
    api = httpx.Client(transport=httpx.WSGITransport(app=bng.wsgi_app), base_url="http://bng.test/api/v1",
                       headers={"X-Api-Key": "bng-key"})
    customer = api.post("/customers", json={"ExternalID": "c-1", "Name": "C"}).json()
    order = api.post("/sales-orders", json={"ExternalOrderID": "o-1", "CustomerID": customer["CustomerID"],
                                            "Currency": "EUR", "Lines": [{"SKU": "DESK-1", "Quantity": 1,
                                                                          "UnitPrice": "10"}]}).json()
    bng.ship_order(order["SalesOrderID"], carrier="DHL", tracking_number="JD1")
    assert bng.wait_for_webhooks()
    authenticator = authenticator_for({"base_url": "x", "api_key": "k", "webhook_secrets": [DEFAULT_WEBHOOK_SECRET]})
    types = []
    for request in received:
        assert authenticator.authenticate(Request(request.content, dict(request.headers)))
        types.append(EVENTS.validate_python(json.loads(request.content)).type)
    assert types == ["product.changed", "salesorder.status_changed", "inventory.changed", "shipment.created",
                     "salesorder.status_changed"]
    product = EVENTS.validate_python(json.loads(received[0].content))
    assert (product.data.SKU, product.data.OnHand, product.data.Version) == ("DESK-1", 3, 1)
    shipment = EVENTS.validate_python(json.loads(received[3].content))
    assert shipment.data.TrackingNumber == "JD1" and shipment.data.Lines[0].SKU == "DESK-1"
    inventory = EVENTS.validate_python(json.loads(received[2].content))
    assert inventory.data.OnHand == 2
    # one id per version of an entity, as a changed-since poll computes it (source.change_id)
    [made] = bng.snapshot()["shipments"]
    assert received[3].headers["webhook-id"] == change_id("shipment", made["ShipmentID"], 1, made["UpdatedAt"])
    [desk] = bng.snapshot()["products"]
    assert received[0].headers["webhook-id"] == change_id("product", desk["ProductID"], 1,
                                                          json.loads(received[0].content)["data"]["UpdatedAt"])
    assert received[2].headers["webhook-id"] == change_id("product", desk["ProductID"], 2, desk["UpdatedAt"])
    tampered = Request(received[0].content + b" ", dict(received[0].headers))
    with pytest.raises(SignatureError):
        authenticator.authenticate(tampered)


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValidationError):
        EVENTS.validate_python({"type": "salesorder.status_changed", "timestamp": "2026-12-03T12:00:00Z",
                                "data": {"SalesOrderID": "SO-1", "ExternalOrderID": "o", "Status": "Lost",
                                         "PreviousStatus": "New", "UpdatedAt": "2026-12-03T12:00:00Z"}})


def test_an_incomplete_connection_names_the_fields_but_never_the_key() -> None:
    with pytest.raises(ConnectionConfigError) as raised:
        connection_from_secret({"api_key": "s3cret-value", "paths": {"orders": "/x"}})
    assert "base_url" in str(raised.value) and "paths.orders" in str(raised.value)
    assert "s3cret-value" not in str(raised.value)
    assert "s3cret" not in repr(connection_from_secret({"base_url": "u", "api_key": "s3cret"}))
