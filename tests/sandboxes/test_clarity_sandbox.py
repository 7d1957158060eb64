"""Tests for the in-memory Clarity eCommerce sandbox (in-process through WSGI, one real socket for webhooks)."""

from __future__ import annotations

import copy
import json
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from switchyard.signatures import StandardWebhookVerifier
from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.clarity import (
    DEFAULT_WEBHOOK_BACKOFF,
    DEFAULT_WEBHOOK_SECRET,
    DEMO_ORDERS,
    ClarityError,
    ClaritySandbox,
    rfc3339,
)
from switchyard_local.sandboxes.faults import FaultPlan
from werkzeug.wrappers import Request, Response

API_KEY = "clarity-key"
CLIENT_ID = "switchyard"
CLIENT_SECRET = "clarity-secret"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
FAST_BACKOFF = (0.01, 0.01, 0.01)


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """An httpx MockTransport handler that records webhook deliveries and answers scripted statuses."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._statuses = deque(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            status = self._statuses.popleft() if self._statuses else 200
        return httpx.Response(status)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def sandbox(clock: FakeClock, receiver: Receiver) -> ClaritySandbox:
    return ClaritySandbox(
        webhook_url="http://receiver.test/webhooks/clarity",
        clock=clock,
        webhook_backoff=FAST_BACKOFF,
        webhook_transport=httpx.MockTransport(receiver),
    )


def make_client(sandbox: ClaritySandbox, **kwargs: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://clarity.test", **kwargs)


@pytest.fixture
def client(sandbox: ClaritySandbox) -> Iterator[httpx.Client]:
    with make_client(sandbox, headers={"X-Api-Key": API_KEY}) as client:
        yield client


@pytest.fixture
def anonymous(sandbox: ClaritySandbox) -> Iterator[httpx.Client]:
    with make_client(sandbox) as client:
        yield client


def demo_order(index: int = 0, **changes: Any) -> dict[str, Any]:
    order = copy.deepcopy(DEMO_ORDERS[index])
    order.update(changes)
    return order


@pytest.fixture
def placed(sandbox: ClaritySandbox) -> dict[str, Any]:
    """The B2B demo order, placed and its order.created webhook delivered (so tests see only their own)."""
    order = sandbox.place_order(demo_order(0))
    assert sandbox.wait_for_webhooks()
    return order


def delivered_types(sandbox: ClaritySandbox, receiver: Receiver) -> list[str]:
    assert sandbox.wait_for_webhooks()
    return receiver.types


def get_token(anonymous: httpx.Client) -> str:
    form = {"grant_type": "client_credentials"}
    response = anonymous.post("/oauth/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def patch_status(client: httpx.Client, order_id: str, status: str, **extra: Any) -> httpx.Response:
    return client.patch(f"/api/v1/orders/{order_id}/status", json={"status": status, **extra})


# --------------------------------------------------------------------------- API key auth


def test_api_key_valid_returns_customer(client: httpx.Client, placed: dict[str, Any]) -> None:
    response = client.get("/api/v1/customers/C-501")
    assert response.status_code == 200
    assert response.json()["email"] == " Jane.Doe@Acme-Corp.example "


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"headers": {"X-Api-Key": "wrong"}}, {"auth": (API_KEY, "")}, {"headers": {"Authorization": "Token x"}}],
    ids=["none", "wrong-key", "basic-auth", "other-scheme"],
)
def test_api_key_missing_or_wrong_returns_401_unauthorized(sandbox: ClaritySandbox, kwargs: dict[str, Any]) -> None:
    with make_client(sandbox, **kwargs) as client:
        response = client.get("/api/v1/customers/C-501")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.json()["message"]


def test_api_unknown_path_without_auth_returns_401_and_with_auth_404(
    anonymous: httpx.Client, client: httpx.Client
) -> None:
    assert anonymous.get("/api/v1/products/1").status_code == 401
    response = client.get("/api/v1/products/1")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_api_known_path_wrong_method_returns_405_with_allow(client: httpx.Client, placed: dict[str, Any]) -> None:
    response = client.delete("/api/v1/customers/C-501")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "PATCH" in response.headers["Allow"]


# --------------------------------------------------------------------------- OAuth2 client credentials


def test_oauth_token_basic_auth_returns_bearer_token_that_authorizes_api(
    sandbox: ClaritySandbox, anonymous: httpx.Client, placed: dict[str, Any]
) -> None:
    response = anonymous.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "orders customers"
    assert response.headers["Cache-Control"] == "no-store"
    api = anonymous.get("/api/v1/orders/CL-10001", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert api.status_code == 200
    assert api.json()["orderId"] == "CL-10001"


def test_oauth_token_form_credentials_returns_token(anonymous: httpx.Client) -> None:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    response = anonymous.post("/oauth/token", data=form)
    assert response.status_code == 200
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auth": (CLIENT_ID, "wrong")},
        {"auth": ("someone-else", CLIENT_SECRET)},
        {"data": {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "wrong"}},
        {"data": {"grant_type": "client_credentials"}},
    ],
    ids=["basic-wrong-secret", "basic-wrong-id", "form-wrong-secret", "no-credentials"],
)
def test_oauth_token_bad_client_credentials_returns_401_invalid_client(
    anonymous: httpx.Client, kwargs: dict[str, Any]
) -> None:
    kwargs.setdefault("data", {"grant_type": "client_credentials"})
    response = anonymous.post("/oauth/token", **kwargs)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_oauth_token_unsupported_grant_returns_400_unsupported_grant_type(anonymous: httpx.Client) -> None:
    response = anonymous.post("/oauth/token", data={"grant_type": "password"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_oauth_token_without_grant_type_returns_400_invalid_request(anonymous: httpx.Client) -> None:
    response = anonymous.post("/oauth/token", data={}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_oauth_token_after_ttl_returns_401_invalid_token(
    clock: FakeClock, anonymous: httpx.Client, placed: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {get_token(anonymous)}"}
    clock.advance(3599)
    assert anonymous.get("/api/v1/customers/C-501", headers=headers).status_code == 200
    clock.advance(1)
    response = anonymous.get("/api/v1/customers/C-501", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert "invalid_token" in response.headers["WWW-Authenticate"]
    headers = {"Authorization": f"Bearer {get_token(anonymous)}"}  # a fresh token works again
    assert anonymous.get("/api/v1/customers/C-501", headers=headers).status_code == 200


def test_oauth_token_ttl_zero_is_expired_at_once(clock: FakeClock) -> None:
    sandbox = ClaritySandbox(token_ttl_seconds=0, clock=clock)
    with make_client(sandbox) as anonymous:
        token_response = anonymous.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
        )
        assert token_response.json()["expires_in"] == 0
        token = token_response.json()["access_token"]
        response = anonymous.get("/api/v1/customers/C-1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_bearer_unknown_token_returns_401_invalid_token_even_with_valid_api_key(anonymous: httpx.Client) -> None:
    headers = {"Authorization": "Bearer forged", "X-Api-Key": API_KEY}
    response = anonymous.get("/api/v1/customers/C-501", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


# --------------------------------------------------------------------------- customers


def test_customer_get_unknown_returns_404_not_found(client: httpx.Client) -> None:
    response = client.get("/api/v1/customers/C-999")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "customer C-999 not found"}


def test_customer_patch_changes_fields_bumps_version_and_sets_updated_at(
    clock: FakeClock, client: httpx.Client, placed: dict[str, Any]
) -> None:
    clock.advance(60)
    response = client.patch("/api/v1/customers/C-501", json={"lastName": "Doe-Smith", "phone": None})
    assert response.status_code == 200
    customer = response.json()
    assert customer["lastName"] == "Doe-Smith" and customer["phone"] is None and customer["firstName"] == "Jane"
    assert customer["version"] == 2
    assert customer["updatedAt"] == rfc3339(START + 60) == "2023-11-14T22:14:20.000Z"
    assert response.headers["ETag"] == '"2"'
    assert client.get("/api/v1/customers/C-501").json() == customer


def test_customer_patch_dates_each_changed_field_and_keeps_the_others_times(
    clock: FakeClock, client: httpx.Client, placed: dict[str, Any]
) -> None:
    placed_at = client.get("/api/v1/customers/C-501").json()["fieldUpdatedAt"]
    assert set(placed_at) == {"firstName", "lastName", "email", "phone", "company"}
    clock.advance(60)
    customer = client.patch("/api/v1/customers/C-501", json={"lastName": "Doe-Smith", "firstName": "Jane"}).json()
    # firstName was sent unchanged: only the last name's time moves
    assert customer["fieldUpdatedAt"] == {**placed_at, "lastName": customer["updatedAt"]}
    assert customer["fieldUpdatedAt"]["firstName"] < customer["updatedAt"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fieldUpdatedAt": {"lastName": "2020-01-01T00:00:00.000Z"}}, "fieldUpdatedAt"),
        ({"nickname": "JD"}, "nickname"),
        ({"customerId": "C-9"}, "customerId"),
        ({"email": "jane.doe.example"}, "email"),
        ({"email": None}, "email"),
        ({"firstName": None}, "firstName"),
        ({"company": 42}, "company"),
    ],
)
def test_customer_patch_invalid_field_returns_422_naming_it_and_changes_nothing(
    sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client, placed: dict[str, Any],
    body: dict[str, Any], field: str,
) -> None:
    response = client.patch("/api/v1/customers/C-501", json={"lastName": "Changed", **body})
    assert response.status_code == 422
    assert response.json()["error"] == "validation_failed"
    assert [item["field"] for item in response.json()["fields"]] == [field]
    assert sandbox.get_customer("C-501")["lastName"] == "Doe"
    assert delivered_types(sandbox, receiver) == ["order.created"]


def test_customer_patch_non_json_body_returns_400_malformed_body(client: httpx.Client, placed: dict[str, Any]) -> None:
    response = client.patch("/api/v1/customers/C-501", content=b"not json")
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"


def test_customer_patch_stale_if_match_returns_412_and_changes_nothing(
    sandbox: ClaritySandbox, client: httpx.Client, placed: dict[str, Any]
) -> None:
    assert client.patch("/api/v1/customers/C-501", json={"company": "Acme Inc"}).json()["version"] == 2
    response = client.patch("/api/v1/customers/C-501", json={"company": "Other"}, headers={"If-Match": "1"})
    assert response.status_code == 412
    assert response.json()["error"] == "precondition_failed"
    assert sandbox.get_customer("C-501")["company"] == "Acme Inc"


@pytest.mark.parametrize("if_match", ["2", '"2"', "*", '"1", "2"'])
def test_customer_patch_current_if_match_is_applied(
    client: httpx.Client, placed: dict[str, Any], if_match: str
) -> None:
    client.patch("/api/v1/customers/C-501", json={"company": "Acme Inc"})
    response = client.patch("/api/v1/customers/C-501", json={"company": "Acme GmbH"}, headers={"If-Match": if_match})
    assert response.status_code == 200
    assert response.json()["version"] == 3


@pytest.mark.parametrize("body", [{}, {"firstName": "Jane", "company": "Acme Corp"}])
def test_customer_patch_no_change_returns_200_without_version_bump_or_webhook(
    sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client, placed: dict[str, Any], body: dict[str, Any]
) -> None:
    response = client.patch("/api/v1/customers/C-501", json=body)
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert response.json()["updatedAt"] == placed["customer"]["updatedAt"]
    assert delivered_types(sandbox, receiver) == ["order.created"]


# --------------------------------------------------------------------------- orders


def test_order_get_embeds_the_current_customer(client: httpx.Client, placed: dict[str, Any]) -> None:
    client.patch("/api/v1/customers/C-501", json={"email": "jane@acme.example"})
    order = client.get("/api/v1/orders/CL-10001").json()
    assert order["customer"]["email"] == "jane@acme.example"
    assert order["customer"]["version"] == 2
    assert order["version"] == 1  # a customer edit is not an order change


def test_order_get_unknown_returns_404_not_found(client: httpx.Client) -> None:
    response = client.get("/api/v1/orders/CL-99999")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_order_status_patch_changes_status_and_records_history(
    clock: FakeClock, client: httpx.Client, placed: dict[str, Any]
) -> None:
    clock.advance(5)
    response = patch_status(client, "CL-10001", "shipped", note="UPS 1Z999")
    assert response.status_code == 200
    order = response.json()
    assert order["status"] == "shipped" and order["version"] == 2
    assert order["updatedAt"] == rfc3339(START + 5)
    assert order["statusHistory"] == [
        {"status": "processing", "at": rfc3339(START), "note": None, "by": "shopper"},
        {"status": "shipped", "at": rfc3339(START + 5), "note": "UPS 1Z999", "by": "api"},
    ]
    assert response.headers["ETag"] == '"2"'


@pytest.mark.parametrize("body", [{"status": "lost"}, {"status": "SHIPPED"}, {}, {"status": None}])
def test_order_status_patch_unknown_status_returns_422_naming_status(
    client: httpx.Client, placed: dict[str, Any], body: dict[str, Any]
) -> None:
    response = client.patch("/api/v1/orders/CL-10001/status", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_failed"
    assert response.json()["fields"][0]["field"] == "status"


def test_order_status_patch_unknown_key_returns_422(client: httpx.Client, placed: dict[str, Any]) -> None:
    response = patch_status(client, "CL-10001", "shipped", carrier="UPS")
    assert response.status_code == 422
    assert [item["field"] for item in response.json()["fields"]] == ["carrier"]


@pytest.mark.parametrize(("terminal", "target"), [("cancelled", "processing"), ("refunded", "delivered")])
def test_order_status_patch_from_terminal_status_returns_409_invalid_transition(
    client: httpx.Client, placed: dict[str, Any], terminal: str, target: str
) -> None:
    assert patch_status(client, "CL-10001", terminal).status_code == 200
    response = patch_status(client, "CL-10001", target)
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"
    assert client.get("/api/v1/orders/CL-10001").json()["status"] == terminal


@pytest.mark.parametrize("target", ["pending", "processing", "shipped", "cancelled"])
def test_order_status_patch_delivered_to_other_than_refunded_returns_409(
    client: httpx.Client, placed: dict[str, Any], target: str
) -> None:
    patch_status(client, "CL-10001", "delivered")
    response = patch_status(client, "CL-10001", target)
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"


def test_order_status_patch_delivered_to_refunded_refunds_the_payment(
    client: httpx.Client, placed: dict[str, Any]
) -> None:
    patch_status(client, "CL-10001", "delivered")
    order = patch_status(client, "CL-10001", "refunded").json()
    assert order["status"] == "refunded"
    assert order["paymentInfo"]["status"] == "refunded"


def test_order_status_patch_backwards_between_open_statuses_is_allowed(
    client: httpx.Client, placed: dict[str, Any]
) -> None:
    assert patch_status(client, "CL-10001", "shipped").status_code == 200
    assert patch_status(client, "CL-10001", "pending").json()["status"] == "pending"


@pytest.mark.parametrize("status", ["processing", "cancelled"])
def test_order_status_patch_same_status_returns_200_without_change_or_webhook(
    sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client, placed: dict[str, Any], status: str
) -> None:
    patch_status(client, "CL-10001", status)
    before = client.get("/api/v1/orders/CL-10001").json()
    response = patch_status(client, "CL-10001", status, note="again")
    assert response.status_code == 200
    assert response.json() == before
    expected = ["order.created"] if status == "processing" else ["order.created", "order.status_changed"]
    assert delivered_types(sandbox, receiver) == expected


def test_order_status_patch_stale_if_match_returns_412(client: httpx.Client, placed: dict[str, Any]) -> None:
    patch_status(client, "CL-10001", "shipped")
    response = client.patch("/api/v1/orders/CL-10001/status", json={"status": "delivered"}, headers={"If-Match": "1"})
    assert response.status_code == 412
    assert client.get("/api/v1/orders/CL-10001").json()["status"] == "shipped"


def test_order_status_patch_unknown_order_returns_404(client: httpx.Client) -> None:
    assert patch_status(client, "CL-404", "shipped").status_code == 404


# --------------------------------------------------------------------------- placing orders (admin)


def test_place_order_assigns_ids_versions_and_creates_customers(clock: FakeClock, sandbox: ClaritySandbox) -> None:
    first = sandbox.place_order(demo_order(0))
    second = sandbox.place_order(demo_order(1))
    assert (first["orderId"], second["orderId"]) == ("CL-10001", "CL-10002")
    assert first["version"] == 1 and first["updatedAt"] == first["orderDate"] == rfc3339(START)
    assert first["customer"]["version"] == 1 and first["customer"]["company"] == "Acme Corp"
    assert second["currency"] == "EUR" and second["totalAmount"] == 240.50
    assert second["paymentInfo"] == {"method": "card", "status": "pending", "maskedCard": "************1881"}
    assert [c["customerId"] for c in sandbox.snapshot()["customers"]] == ["C-501", "C-502"]


def test_place_order_without_customer_id_assigns_a_free_one(sandbox: ClaritySandbox) -> None:
    sandbox.place_order(demo_order(0))
    order = demo_order(1)
    del order["customerId"], order["customer"]["customerId"]
    assert sandbox.place_order(order)["customerId"] == "C-502"
    order["customer"]["email"] = "another@gmail.com"
    assert sandbox.place_order(order)["customerId"] == "C-503"


def test_place_order_keeps_given_order_date(sandbox: ClaritySandbox) -> None:
    order = sandbox.place_order(demo_order(0, orderDate="2024-05-01T09:30:00+02:00"))
    assert order["orderDate"] == "2024-05-01T09:30:00+02:00"


def test_place_order_invalid_input_raises_422_naming_every_field(sandbox: ClaritySandbox) -> None:
    order = demo_order(0, orderId="CL-1", totalAmount="1299", currency="usd", status="lost", coupon="X")
    order["lineItems"][1]["quantity"] = 0
    order["paymentInfo"]["status"] = "captured"
    order["customer"]["email"] = "jane"
    with pytest.raises(ClarityError) as caught:
        sandbox.place_order(order)
    assert caught.value.status == 422
    assert {item["field"] for item in caught.value.fields} == {
        "orderId", "coupon", "status", "totalAmount", "currency", "lineItems[1].quantity",
        "paymentInfo.status", "customer.email",
    }
    assert sandbox.snapshot()["orders"] == [] and sandbox.snapshot()["customers"] == []


def test_place_order_new_customer_without_email_raises_422(sandbox: ClaritySandbox) -> None:
    order = demo_order(1)
    del order["customer"]["email"]
    with pytest.raises(ClarityError) as caught:
        sandbox.place_order(order)
    assert [item["field"] for item in caught.value.fields] == ["customer.email"]


def test_place_order_conflicting_customer_ids_raises_422(sandbox: ClaritySandbox) -> None:
    with pytest.raises(ClarityError) as caught:
        sandbox.place_order(demo_order(0, customerId="C-777"))
    assert [item["field"] for item in caught.value.fields] == ["customerId"]


def test_admin_place_order_endpoint_returns_201_without_auth(
    sandbox: ClaritySandbox, receiver: Receiver, anonymous: httpx.Client
) -> None:
    response = anonymous.post("/_sandbox/orders", json=demo_order(1))
    assert response.status_code == 201
    assert response.json()["orderId"] == "CL-10001"
    invalid = anonymous.post("/_sandbox/orders", json={"customer": {}})
    assert invalid.status_code == 422 and invalid.json()["error"] == "validation_failed"
    assert delivered_types(sandbox, receiver) == ["order.created"]


# --------------------------------------------------------------------------- webhooks


def test_webhooks_api_changes_emit_one_event_per_change_in_order(
    sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client, placed: dict[str, Any]
) -> None:
    patch_status(client, "CL-10001", "shipped")
    patch_status(client, "CL-10001", "shipped")  # no-op
    client.patch("/api/v1/customers/C-501", json={"phone": "+1 217 555 0199"})
    client.patch("/api/v1/customers/C-501", json={"phone": "+1 217 555 0199"})  # no-op
    patch_status(client, "CL-10001", "delivered")
    assert delivered_types(sandbox, receiver) == [
        "order.created", "order.status_changed", "customer.updated", "order.status_changed",
    ]
    created, shipped, customer, delivered = receiver.events
    assert created["data"] == placed
    assert shipped["data"]["status"] == "shipped" and shipped["data"]["previousStatus"] == "processing"
    assert shipped["data"]["statusHistory"][-1]["by"] == "api"
    assert customer["data"] == sandbox.get_customer("C-501")
    assert delivered["data"]["previousStatus"] == "shipped"
    assert delivered["data"]["customer"]["phone"] == "+1 217 555 0199"
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 4
    assert [d.attempts for d in sandbox.webhook_deliveries] == [1, 1, 1, 1]


def test_webhooks_envelope_timestamp_is_the_time_of_the_change(
    clock: FakeClock, sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client, placed: dict[str, Any]
) -> None:
    clock.advance(90)
    order = patch_status(client, "CL-10001", "shipped").json()
    sandbox.wait_for_webhooks()
    event = receiver.events[-1]
    assert set(event) == {"type", "timestamp", "data"}
    assert event["timestamp"] == order["updatedAt"] == rfc3339(START + 90)
    assert receiver.events[0]["timestamp"] == placed["updatedAt"]


def test_webhooks_are_signed_with_the_webhook_secret(
    sandbox: ClaritySandbox, receiver: Receiver, placed: dict[str, Any]
) -> None:
    request = receiver.requests[0]
    assert request.headers["content-type"] == "application/json"
    verifier = StandardWebhookVerifier([DEFAULT_WEBHOOK_SECRET])
    assert verifier.verify(request.content, request.headers) == sandbox.webhook_deliveries[0].event_id
    assert request.headers["webhook-id"].startswith("msg_")


def test_webhooks_admin_changes_emit_events_like_api_changes(
    sandbox: ClaritySandbox, receiver: Receiver, anonymous: httpx.Client, placed: dict[str, Any]
) -> None:
    assert anonymous.post("/_sandbox/orders/CL-10001/status", json={"status": "cancelled"}).status_code == 200
    assert anonymous.post("/_sandbox/orders/CL-10001/status", json={"status": "shipped"}).status_code == 409
    assert anonymous.post("/_sandbox/customers/C-501", json={"firstName": "Janet"}).json()["version"] == 2
    assert anonymous.post("/_sandbox/customers/C-501", json={"firstName": "Janet"}).json()["version"] == 2
    assert anonymous.post("/_sandbox/customers/C-501", json={"email": "x"}).status_code == 422
    assert anonymous.post("/_sandbox/customers/C-404", json={}).status_code == 404
    assert delivered_types(sandbox, receiver) == ["order.created", "order.status_changed", "customer.updated"]
    cancelled = receiver.events[1]["data"]
    assert cancelled["previousStatus"] == "processing"
    assert cancelled["statusHistory"][-1] == {"status": "cancelled", "at": rfc3339(START), "note": None, "by": "admin"}
    assert receiver.events[2]["data"]["firstName"] == "Janet"


def test_webhooks_python_admin_api_emits_events(sandbox: ClaritySandbox, receiver: Receiver) -> None:
    sandbox.place_order(demo_order(1))
    sandbox.set_order_status("CL-10001", "processing", note="payment captured")
    sandbox.set_order_status("CL-10001", "processing")  # no-op
    sandbox.update_customer("C-502", phone="+39 02 555 0101")
    with pytest.raises(ClarityError) as caught:
        sandbox.update_customer("C-502", email="nope")
    assert caught.value.status == 422
    assert delivered_types(sandbox, receiver) == ["order.created", "order.status_changed", "customer.updated"]
    assert receiver.events[1]["data"]["statusHistory"][-1]["note"] == "payment captured"


def test_webhooks_checkout_by_existing_customer_with_new_details_emits_customer_updated_first(
    sandbox: ClaritySandbox, receiver: Receiver, placed: dict[str, Any]
) -> None:
    again = demo_order(0)
    again["customer"]["phone"] = "+1 217 555 0142"
    order = sandbox.place_order(again)
    assert order["customer"]["version"] == 2
    sandbox.place_order(demo_order(0))  # the old phone again: another real change
    assert delivered_types(sandbox, receiver) == [
        "order.created", "customer.updated", "order.created", "customer.updated", "order.created",
    ]


def test_webhooks_receiver_500_is_retried_with_the_same_id_then_delivered(clock: FakeClock) -> None:
    receiver = Receiver(statuses=(500, 502))
    sandbox = ClaritySandbox(webhook_url="http://receiver.test/hook", clock=clock, webhook_backoff=FAST_BACKOFF,
                             webhook_transport=httpx.MockTransport(receiver))
    sandbox.place_order(demo_order(0))
    assert sandbox.wait_for_webhooks()
    assert len(receiver.requests) == 3
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1
    [delivery] = sandbox.webhook_deliveries
    assert (delivery.type, delivery.status_code, delivery.error, delivery.attempts) == ("order.created", 200, None, 3)
    assert delivery.delivered


def test_webhooks_receiver_failing_every_attempt_records_failure_and_continues(clock: FakeClock) -> None:
    receiver = Receiver(statuses=(500, 500, 500, 500))
    sandbox = ClaritySandbox(webhook_url="http://receiver.test/hook", clock=clock, webhook_backoff=FAST_BACKOFF,
                             webhook_transport=httpx.MockTransport(receiver))
    sandbox.place_order(demo_order(0))
    sandbox.set_order_status("CL-10001", "shipped")
    assert sandbox.wait_for_webhooks()
    failed, delivered = sandbox.webhook_deliveries
    assert (failed.type, failed.status_code, failed.error, failed.attempts) == ("order.created", 500, "HTTP 500", 4)
    assert not failed.delivered
    assert (delivered.type, delivered.attempts, delivered.delivered) == ("order.status_changed", 1, True)
    assert receiver.types == ["order.created"] * 4 + ["order.status_changed"]


def test_webhooks_connection_error_is_retried_and_recorded(clock: FakeClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sandbox = ClaritySandbox(webhook_url="http://receiver.test/hook", clock=clock, webhook_backoff=FAST_BACKOFF,
                             webhook_transport=httpx.MockTransport(refuse))
    sandbox.place_order(demo_order(0))
    assert sandbox.wait_for_webhooks()
    [delivery] = sandbox.webhook_deliveries
    assert delivery.status_code is None and delivery.attempts == 4
    assert delivery.error == "ConnectError: connection refused"


def test_webhooks_invalid_url_is_recorded_as_failed_and_delivery_continues(clock: FakeClock) -> None:
    sandbox = ClaritySandbox(webhook_url="not a url", clock=clock, webhook_backoff=(0.0, 0.0, 0.0))
    sandbox.place_order(demo_order(0))
    assert sandbox.wait_for_webhooks()
    [delivery] = sandbox.webhook_deliveries
    assert not delivery.delivered and delivery.attempts == 4 and delivery.status_code is None


def test_webhooks_default_backoff_is_three_retries() -> None:
    assert DEFAULT_WEBHOOK_BACKOFF == (0.2, 0.5, 1.0)


def test_webhooks_without_url_are_kept_then_delivered_in_order_once_url_is_set(clock: FakeClock) -> None:
    receiver = Receiver()
    sandbox = ClaritySandbox(clock=clock, webhook_transport=httpx.MockTransport(receiver))
    sandbox.place_order(demo_order(0))
    sandbox.set_order_status("CL-10001", "shipped")
    assert [event.type for event in sandbox.outbox_undelivered] == ["order.created", "order.status_changed"]
    assert sandbox.wait_for_webhooks(timeout=0.1) is False
    assert sandbox.snapshot()["webhooksUndelivered"][0]["type"] == "order.created"
    kept_ids = [event.event_id for event in sandbox.outbox_undelivered]
    sandbox.webhook_url = "http://receiver.test/hook"
    sandbox.set_order_status("CL-10001", "delivered")
    assert sandbox.wait_for_webhooks()
    assert receiver.types == ["order.created", "order.status_changed", "order.status_changed"]
    assert [request.headers["webhook-id"] for request in receiver.requests][:2] == kept_ids
    assert sandbox.outbox_undelivered == []


def test_webhooks_many_changes_are_delivered_in_change_order(
    sandbox: ClaritySandbox, receiver: Receiver, placed: dict[str, Any]
) -> None:
    for i in range(20):
        sandbox.update_customer("C-501", phone=f"+1 555 {i:04d}")
    assert sandbox.wait_for_webhooks()
    assert [event["data"]["version"] for event in receiver.events[1:]] == list(range(2, 22))


# --------------------------------------------------------------------------- faults


def test_faults_fail_next_503_then_request_succeeds(
    sandbox: ClaritySandbox, client: httpx.Client, placed: dict[str, Any]
) -> None:
    sandbox.faults.fail_next(1, 503)
    response = client.get("/api/v1/orders/CL-10001")
    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable", "message": "Service Unavailable"}
    assert client.get("/api/v1/orders/CL-10001").status_code == 200


def test_faults_faulted_write_changes_nothing(
    sandbox: ClaritySandbox, receiver: Receiver, client: httpx.Client, placed: dict[str, Any]
) -> None:
    sandbox.faults.fail_next(1, 500)
    assert patch_status(client, "CL-10001", "shipped").status_code == 500
    assert sandbox.get_order("CL-10001")["status"] == "processing"
    assert delivered_types(sandbox, receiver) == ["order.created"]


def test_faults_rate_limit_returns_429_rate_limited_with_retry_after(
    sandbox: ClaritySandbox, client: httpx.Client, placed: dict[str, Any]
) -> None:
    sandbox.faults.set_plan(FaultPlan(rate_limit_rate=1.0, retry_after_seconds=7))
    response = client.get("/api/v1/customers/C-501")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"] == "rate_limited"


def test_faults_queued_429_without_retry_after_still_sends_retry_after(
    sandbox: ClaritySandbox, client: httpx.Client
) -> None:
    sandbox.faults.fail_next(1, 429)
    response = client.get("/api/v1/customers/C-501")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"


def test_faults_apply_to_the_token_endpoint(sandbox: ClaritySandbox, anonymous: httpx.Client) -> None:
    sandbox.faults.fail_next(1, 503)
    form = {"grant_type": "client_credentials"}
    assert anonymous.post("/oauth/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET)).status_code == 503
    assert anonymous.post("/oauth/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET)).status_code == 200


def test_faults_admin_paths_are_never_faulted(sandbox: ClaritySandbox, anonymous: httpx.Client) -> None:
    sandbox.faults.set_plan(FaultPlan(error_rate=1.0))
    assert anonymous.get("/_sandbox/state").status_code == 200
    assert anonymous.post("/_sandbox/orders", json=demo_order(0)).status_code == 201


def test_faults_admin_endpoint_configures_plan_and_fail_next(
    sandbox: ClaritySandbox, anonymous: httpx.Client, client: httpx.Client
) -> None:
    response = anonymous.post("/_sandbox/faults", json={"latency_ms": 0, "fail_next": {"n": 2, "status": 502}})
    assert response.status_code == 200 and response.json()["plan"]["latency_ms"] == 0
    assert [client.get("/api/v1/orders/CL-1").status_code for _ in range(3)] == [502, 502, 404]
    invalid = anonymous.post("/_sandbox/faults", json={"eror_rate": 1})
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid_fault_plan"
    anonymous.post("/_sandbox/faults", json={"error_rate": 1.0})
    assert anonymous.delete("/_sandbox/faults").status_code == 200
    assert sandbox.faults.plan == FaultPlan()


# --------------------------------------------------------------------------- snapshot, requests, reset


def test_snapshot_shows_customers_orders_history_and_deliveries(
    sandbox: ClaritySandbox, client: httpx.Client, anonymous: httpx.Client
) -> None:
    sandbox.place_order(demo_order(0))
    sandbox.place_order(demo_order(1))
    patch_status(client, "CL-10002", "processing", note="paid")
    sandbox.wait_for_webhooks()
    snapshot = anonymous.get("/_sandbox/state").json()
    assert snapshot == sandbox.snapshot()
    assert [c["email"] for c in snapshot["customers"]] == [" Jane.Doe@Acme-Corp.example ", "luca.bianchi@gmail.com"]
    consumer = snapshot["orders"][1]
    assert consumer == {
        "orderId": "CL-10002",
        "customerId": "C-502",
        "customerEmail": "luca.bianchi@gmail.com",
        "status": "processing",
        "paymentStatus": "pending",
        "totalAmount": 240.5,
        "currency": "EUR",
        "version": 2,
        "statusHistory": [
            {"status": "pending", "at": rfc3339(START), "note": None, "by": "shopper"},
            {"status": "processing", "at": rfc3339(START), "note": "paid", "by": "api"},
        ],
    }
    assert [(d["type"], d["statusCode"], d["delivered"]) for d in snapshot["webhookDeliveries"]] == [
        ("order.created", 200, True), ("order.created", 200, True), ("order.status_changed", 200, True),
    ]
    assert snapshot["webhooksPending"] == 0 and snapshot["webhooksUndelivered"] == []


def test_requests_log_records_api_and_token_calls_but_not_admin_calls(
    sandbox: ClaritySandbox, client: httpx.Client
) -> None:
    client.get("/api/v1/orders/CL-1")
    client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET))
    client.get("/_sandbox/state")
    assert list(sandbox.requests) == [("GET", "/api/v1/orders/CL-1", 404), ("POST", "/oauth/token", 200)]


def test_reset_forgets_data_tokens_requests_faults_and_webhooks(
    sandbox: ClaritySandbox, anonymous: httpx.Client, placed: dict[str, Any]
) -> None:
    token = get_token(anonymous)
    sandbox.faults.set_plan(FaultPlan(error_rate=1.0))
    assert anonymous.post("/_sandbox/reset").status_code == 200
    assert sandbox.snapshot() == {
        "customers": [], "orders": [], "products": [], "inventory": [], "webhookDeliveries": [],
        "webhooksPending": 0, "webhooksUndelivered": [],
    }
    assert len(sandbox.requests) == 0 and sandbox.faults.plan == FaultPlan()
    response = anonymous.get("/api/v1/orders/CL-10001", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["error"] == "invalid_token"
    assert sandbox.place_order(demo_order(0))["orderId"] == "CL-10001"


def test_demo_orders_are_a_b2b_and_a_consumer_order(sandbox: ClaritySandbox) -> None:
    b2b, consumer = (sandbox.place_order(demo_order(i)) for i in range(2))
    assert (b2b["customer"]["company"], b2b["totalAmount"], b2b["currency"], len(b2b["lineItems"])) == (
        "Acme Corp", 1299.0, "USD", 2,
    )
    assert b2b["customer"]["email"] != b2b["customer"]["email"].strip().lower()
    assert b2b["paymentInfo"]["status"] == "paid"
    assert consumer["customer"]["email"].endswith("@gmail.com") and consumer["customer"]["company"] is None
    payment_status = consumer["paymentInfo"]["status"]
    assert (consumer["totalAmount"], consumer["currency"], payment_status) == (240.5, "EUR", "pending")


# --------------------------------------------------------------------------- concurrency and real sockets


def test_concurrent_customer_patches_keep_every_change_and_event(
    sandbox: ClaritySandbox, receiver: Receiver, placed: dict[str, Any]
) -> None:
    errors: list[BaseException] = []

    def worker(worker_id: int) -> None:
        try:
            with make_client(sandbox, headers={"X-Api-Key": API_KEY}) as client:
                for i in range(10):
                    response = client.patch("/api/v1/customers/C-501", json={"phone": f"{worker_id}-{i}"})
                    assert response.status_code == 200, response.text
        except BaseException as error:  # surfaced below; threads swallow exceptions otherwise
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sandbox.get_customer("C-501")["version"] == 81
    assert sandbox.wait_for_webhooks()
    assert [event["data"]["version"] for event in receiver.events[1:]] == list(range(2, 82))


def test_serve_real_socket_delivers_signed_webhooks_to_a_local_receiver() -> None:
    received: list[tuple[bytes, dict[str, str]]] = []
    lock = threading.Lock()

    def receiver_app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with lock:
            received.append((request.get_data(), {k.lower(): v for k, v in request.headers.items()}))
        return Response(status=204)(environ, start_response)

    receiver_url, stop_receiver = http.serve(receiver_app)
    try:
        with ClaritySandbox(webhook_backoff=FAST_BACKOFF) as sandbox:
            sandbox.webhook_url = f"{receiver_url}/webhooks/clarity"
            base = sandbox.base_url
            placed = httpx.post(f"{base}/_sandbox/orders", json=demo_order(0), timeout=5)
            assert placed.status_code == 201
            token = httpx.post(
                f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                auth=(CLIENT_ID, CLIENT_SECRET), timeout=5,
            ).json()["access_token"]
            shipped = httpx.patch(
                f"{base}/api/v1/orders/CL-10001/status", json={"status": "shipped"},
                headers={"Authorization": f"Bearer {token}"}, timeout=5,
            )
            assert shipped.status_code == 200
            assert sandbox.wait_for_webhooks()
            deliveries = sandbox.webhook_deliveries
    finally:
        stop_receiver()
    verifier = StandardWebhookVerifier([DEFAULT_WEBHOOK_SECRET])
    assert [verifier.verify(body, headers) for body, headers in received] == [d.event_id for d in deliveries]
    assert [json.loads(body)["type"] for body, _ in received] == ["order.created", "order.status_changed"]
    assert [(d.status_code, d.attempts) for d in deliveries] == [(204, 1), (204, 1)]
    assert sandbox.base_url is None
