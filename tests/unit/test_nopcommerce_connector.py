"""NopCommerceClient against the in-process Web API Backend sandbox: token caching and renewal, auth failures,
read-modify-write updates that keep every other field, idempotent notes, products and stock."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError
from switchyard.systems.nopcommerce.client import (
    DEFAULT_MARGIN_SECONDS,
    TOKEN_PATH,
    NopCommerceClient,
    NopCommerceConnection,
    token_expiry,
)
from switchyard_local.sandboxes.nopcommerce import (
    DEFAULT_API_EMAIL,
    DEFAULT_API_PASSWORD,
    MIN_DATE,
    NO_ACCESS_EMAIL,
    NO_ACCESS_PASSWORD,
    NopCommerceSandbox,
)

from tests.conftest import FakeClock

START = 1_795_000_000.0  # 2026-11-18T11:06:40Z
DAY = 86400
BASE_URL = "http://shop.test"


class Recorder(httpx.BaseTransport):
    """Keeps (method, path, status) of every request; ``before`` runs ahead of each one."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str, int]] = []
        self.before: Callable[[httpx.Request], None] | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if self.before is not None:
            self.before(request)
        response = self.inner.handle_request(request)
        with self._lock:
            self.sent.append((request.method, request.url.path, response.status_code))
        return response

    def token_calls(self) -> int:
        return sum(1 for _, path, _ in self.sent if path == TOKEN_PATH)

    def writes(self) -> list[tuple[str, str, int]]:
        return [call for call in self.sent if call[0] in ("POST", "PUT") and call[1] != TOKEN_PATH]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> NopCommerceSandbox:
    return NopCommerceSandbox(clock=clock)


@pytest.fixture
def transport(sandbox: NopCommerceSandbox) -> Recorder:
    return Recorder(httpx.WSGITransport(app=sandbox.wsgi_app))


@pytest.fixture
def make_client(transport: Recorder, clock: FakeClock) -> Iterator[Callable[..., NopCommerceClient]]:
    clients: list[NopCommerceClient] = []

    def build(email: str = DEFAULT_API_EMAIL, password: str = DEFAULT_API_PASSWORD) -> NopCommerceClient:
        connection = NopCommerceConnection.from_secret({"base_url": BASE_URL, "email": email, "password": password})
        client = NopCommerceClient(connection, transport=transport, clock=clock)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def shop(make_client: Callable[..., NopCommerceClient]) -> NopCommerceClient:
    return make_client()


@pytest.fixture
def order(sandbox: NopCommerceSandbox) -> dict[str, Any]:
    return sandbox.seed_order({"OrderTotal": 129.5, "CustomerCurrencyCode": "EUR", "CurrencyRate": 0.92,
                               "CustomerId": 7, "PaymentStatusId": 30, "VatNumber": "DE123456789",
                               "ShippingAddressId": 4, "PaidDateUtc": "2026-11-18T10:00:00Z"})


# --------------------------------------------------------------------------- connection


def test_connection_from_secret_complete_keeps_password_out_of_repr() -> None:
    connection = NopCommerceConnection.from_secret({"base_url": BASE_URL, "email": "a@b.example",
                                                    "password": "hunter2", "unrelated": 1})

    assert (connection.base_url, connection.email, connection.password) == (BASE_URL, "a@b.example", "hunter2")
    assert "hunter2" not in repr(connection)


def test_connection_from_secret_missing_fields_names_them() -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        NopCommerceConnection.from_secret({"base_url": BASE_URL, "password": ""})

    assert "email" in str(caught.value)
    assert "password" in str(caught.value)
    assert "base_url" not in str(caught.value)


def test_connection_is_frozen() -> None:
    connection = NopCommerceConnection(base_url=BASE_URL, email="a@b.example", password="x")

    with pytest.raises(ValueError):
        connection.email = "c@d.example"  # type: ignore[misc]


# --------------------------------------------------------------------------- tokens


def test_token_expiry_reads_exp_claim_without_verifying() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": 1_800_000_000}).encode()).rstrip(b"=").decode()

    assert token_expiry(f"eyJhbGciOiJIUzI1NiJ9.{payload}.not-a-signature") == 1_800_000_000.0
    assert token_expiry("not-a-jwt") is None
    assert token_expiry("a.!!!.c") is None


def test_token_is_fetched_once_and_reused(shop: NopCommerceClient, transport: Recorder,
                                          order: dict[str, Any]) -> None:
    shop.get_order(order["id"])
    shop.get_order(order["id"])
    shop.order_notes(order["id"])

    assert transport.token_calls() == 1


def test_token_renewed_shortly_before_exp(shop: NopCommerceClient, transport: Recorder, clock: FakeClock,
                                          order: dict[str, Any]) -> None:
    shop.get_order(order["id"])
    clock.advance(7 * DAY - DEFAULT_MARGIN_SECONDS - 1)  # still inside the margin: reused
    shop.get_order(order["id"])
    assert transport.token_calls() == 1

    clock.advance(2)  # inside the margin before exp: renewed ahead of time, no 401 seen
    shop.get_order(order["id"])

    assert transport.token_calls() == 2
    assert all(status != 401 for _, _, status in transport.sent)


def test_token_short_lifetime_is_renewed_after_expiry(clock: FakeClock, make_client: Callable[..., NopCommerceClient],
                                                      transport: Recorder, sandbox: NopCommerceSandbox) -> None:
    sandbox.token_lifetime_days = 1
    shop = make_client()
    seeded = sandbox.seed_order()
    shop.get_order(seeded["id"])

    clock.advance(DAY + 1)
    shop.get_order(seeded["id"])

    assert transport.token_calls() == 2


def test_token_rejected_401_is_fetched_again_and_call_retried_once(
    shop: NopCommerceClient, sandbox: NopCommerceSandbox, transport: Recorder, order: dict[str, Any]
) -> None:
    shop.get_order(order["id"])
    sandbox.rotate_secret_key()  # the admin regenerates the key: the cached token is now refused

    assert shop.get_order(order["id"])["id"] == order["id"]

    path = f"/api-backend/Order/GetById/{order['id']}"
    assert transport.sent[-3:] == [("GET", path, 401), ("POST", TOKEN_PATH, 200), ("GET", path, 200)]


def test_token_401_again_after_renewal_is_auth_failed_without_loop(
    shop: NopCommerceClient, sandbox: NopCommerceSandbox, transport: Recorder, order: dict[str, Any]
) -> None:
    def rotate_before_api_calls(request: httpx.Request) -> None:
        if request.url.path != TOKEN_PATH:
            sandbox.rotate_secret_key()

    transport.before = rotate_before_api_calls

    with pytest.raises(PermanentError) as caught:
        shop.get_order(order["id"])

    assert caught.value.reason == "target_auth_failed"
    assert caught.value.target_status == 401
    assert transport.token_calls() == 2
    assert [status for _, _, status in transport.sent].count(401) == 2


def test_wrong_password_is_target_auth_failed(make_client: Callable[..., NopCommerceClient],
                                              order: dict[str, Any]) -> None:
    shop = make_client(password="wrong")

    with pytest.raises(PermanentError) as caught:
        shop.get_order(order["id"])

    assert caught.value.reason == "target_auth_failed"
    assert caught.value.target_status == 400
    assert "Username or password is incorrect" in str(caught.value)
    assert "wrong" not in str(caught.value)


def test_customer_without_web_api_access_403_is_target_auth_failed(
    make_client: Callable[..., NopCommerceClient], transport: Recorder, order: dict[str, Any]
) -> None:
    shop = make_client(NO_ACCESS_EMAIL, NO_ACCESS_PASSWORD)

    with pytest.raises(PermanentError) as caught:
        shop.get_order(order["id"])

    assert caught.value.reason == "target_auth_failed"
    assert caught.value.target_status == 403
    assert "Access Web API Backend" in str(caught.value)
    assert transport.token_calls() == 1  # a 403 is not retried with a new token


def test_get_token_5xx_is_retryable(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                    order: dict[str, Any]) -> None:
    sandbox.faults.fail_next(1, 503)

    with pytest.raises(RetryableError) as caught:
        shop.get_order(order["id"])

    assert caught.value.target_status == 503
    assert shop.get_order(order["id"])["id"] == order["id"]


# --------------------------------------------------------------------------- orders


def test_get_order_returns_snake_case_dto(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                          order: dict[str, Any]) -> None:
    assert shop.get_order(order["id"]) == sandbox.order(order["id"])


def test_get_order_unknown_is_target_not_found(shop: NopCommerceClient) -> None:
    with pytest.raises(PermanentError) as caught:
        shop.get_order(999)

    assert caught.value.reason == "target_not_found"
    assert caught.value.target_response == "Order Id=999 not found"


def test_get_order_5xx_is_retryable(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                    order: dict[str, Any]) -> None:
    shop.get_order(order["id"])  # token first, so the fault hits the API call
    sandbox.faults.fail_next(1, 500)

    with pytest.raises(RetryableError) as caught:
        shop.get_order(order["id"])

    assert caught.value.reason == "target_unavailable"


def test_unknown_route_404_says_plugin_or_base_url(clock: FakeClock, transport: Recorder,
                                                   order: dict[str, Any]) -> None:
    connection = NopCommerceConnection(base_url=f"{BASE_URL}/wrong-root", email=DEFAULT_API_EMAIL,
                                       password=DEFAULT_API_PASSWORD)
    with NopCommerceClient(connection, transport=transport, clock=clock) as shop, \
            pytest.raises(PermanentError) as caught:
        shop.product_by_sku("ANY")

    assert caught.value.reason == "target_not_found"
    assert "plugin" in str(caught.value)


def test_add_order_note_writes_once_then_is_idempotent(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                                       transport: Recorder, order: dict[str, Any]) -> None:
    assert shop.add_order_note(order["id"], "Synced to QuickBooks as invoice 1042") is True
    assert shop.add_order_note(order["id"], "Synced to QuickBooks as invoice 1042") is False

    notes = sandbox.notes(order["id"])
    assert [note["note"] for note in notes] == ["Synced to QuickBooks as invoice 1042"]
    assert notes[0]["display_to_customer"] is False
    assert notes[0]["created_on_utc"] == "2026-11-18T11:06:40"  # sent, not left to default to 0001-01-01
    assert notes[0]["created_on_utc"] != MIN_DATE
    assert len(transport.writes()) == 1
    assert shop.order_notes(order["id"]) == notes
    assert sandbox.ignored_fields == []


def test_add_order_note_other_text_and_display_to_customer(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                                           order: dict[str, Any]) -> None:
    shop.add_order_note(order["id"], "first")

    assert shop.add_order_note(order["id"], "Your order has shipped", display_to_customer=True) is True

    notes = sandbox.notes(order["id"])
    assert [(note["note"], note["display_to_customer"]) for note in notes] == [
        ("first", False), ("Your order has shipped", True)]


def test_add_order_note_with_marker_is_identified_by_it_and_copies_are_deleted(
    shop: NopCommerceClient, sandbox: NopCommerceSandbox, transport: Recorder, order: dict[str, Any]
) -> None:
    assert shop.add_order_note(order["id"], "Sent to QuickBooks: Invoice 1042", marker="0123456789ab") is True
    # the template changed between attempts: the marker, not the text, says it is written
    assert shop.add_order_note(order["id"], "Booked in QuickBooks: Invoice 1042", marker="0123456789ab") is False
    assert [note["note"] for note in sandbox.notes(order["id"])] == [
        "Sent to QuickBooks: Invoice 1042 [ref 0123456789ab]"]
    # a copy that a racing attempt left behind goes on the next look; other notes stay
    with sandbox._lock:
        for text in ("Sent to QuickBooks: Invoice 1042 [ref 0123456789ab]", "A clerk's note"):
            note_id = next(sandbox._state.note_ids)
            sandbox._state.notes[note_id] = {"id": note_id, "order_id": order["id"], "note": text,
                                             "download_id": 0, "display_to_customer": False,
                                             "created_on_utc": "2026-11-18T11:06:40"}
    assert shop.add_order_note(order["id"], "Payment recorded", marker="ba9876543210") is True
    assert [note["note"] for note in sandbox.notes(order["id"])] == [
        "Sent to QuickBooks: Invoice 1042 [ref 0123456789ab]", "A clerk's note", "Payment recorded [ref ba9876543210]"]
    deleted = [path for method, path, _ in transport.sent if method == "DELETE"]
    assert deleted == ["/api-backend/OrderNote/Delete/2"]


@pytest.mark.parametrize(("status", "settles"), [(503, False), (429, False), (502, True), (504, True)])
def test_add_order_note_create_refused_fails_at_once_one_maybe_carried_out_is_looked_for_again(
    sandbox: NopCommerceSandbox, transport: Recorder, clock: FakeClock, order: dict[str, Any], status: int,
    settles: bool
) -> None:
    waited: list[float] = []
    connection = NopCommerceConnection.from_secret({"base_url": BASE_URL, "email": DEFAULT_API_EMAIL,
                                                    "password": DEFAULT_API_PASSWORD})
    shop = NopCommerceClient(connection, transport=transport, clock=clock, settle_seconds=7, sleep=waited.append)

    def fail_the_create(request: httpx.Request) -> None:
        if request.url.path.endswith("/OrderNote/Create"):
            sandbox.faults.fail_next(1, status=status)

    transport.before = fail_the_create
    with pytest.raises(RetryableError) as caught:
        shop.add_order_note(order["id"], "Sent", marker="cafecafecafe")

    assert waited == ([7] if settles else [])
    assert caught.value.reason == ("write_outcome_unknown" if settles else
                                   "rate_limited" if status == 429 else "target_unavailable")
    assert sandbox.notes(order["id"]) == []


def test_add_order_note_unknown_order_is_not_found_not_retried_500(shop: NopCommerceClient,
                                                                   transport: Recorder) -> None:
    with pytest.raises(PermanentError) as caught:
        shop.add_order_note(999, "orphan")

    assert caught.value.reason == "target_not_found"
    assert transport.writes() == []


def test_set_order_status_read_modify_write_keeps_every_other_field(
    shop: NopCommerceClient, sandbox: NopCommerceSandbox, order: dict[str, Any]
) -> None:
    assert shop.set_order_status(order["id"], 20) is True

    assert sandbox.order(order["id"]) == {**order, "order_status_id": 20}
    assert sandbox.ignored_fields == []


def test_set_order_status_already_set_writes_nothing(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                                     transport: Recorder, order: dict[str, Any]) -> None:
    assert shop.set_order_status(order["id"], 10) is False

    assert transport.writes() == []
    assert sandbox.order(order["id"]) == order


def test_set_order_status_only_from_respected(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                              transport: Recorder, order: dict[str, Any]) -> None:
    assert shop.set_order_status(order["id"], 30, only_from={20}) is False  # it is Pending (10)
    assert transport.writes() == []

    assert shop.set_order_status(order["id"], 30, only_from=(10, 20)) is True
    assert sandbox.order(order["id"])["order_status_id"] == 30


def test_set_order_status_rejected_value_is_target_rejected(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                                            order: dict[str, Any]) -> None:
    with pytest.raises(PermanentError) as caught:
        shop.set_order_status(order["id"], 99)  # the sandbox's strict_enums answers 400

    assert caught.value.reason == "target_rejected"
    assert sandbox.order(order["id"]) == order


# --------------------------------------------------------------------------- products and stock


def test_product_by_sku_found_case_insensitively(shop: NopCommerceClient, sandbox: NopCommerceSandbox) -> None:
    seeded = sandbox.seed_product("Trail shoes 42", "SHOE-TRAIL-42", stock=12, price=219.0)

    assert shop.product_by_sku("shoe-trail-42") == seeded


def test_product_by_sku_unknown_is_none(shop: NopCommerceClient) -> None:
    assert shop.product_by_sku("NOPE") is None


def test_set_stock_quantity_read_modify_write_changes_only_stock(
    shop: NopCommerceClient, sandbox: NopCommerceSandbox, clock: FakeClock
) -> None:
    seeded = sandbox.seed_product("Desk", "DESK-180", stock=5, price=899.0, weight=31.5, published=True)
    clock.advance(3600)

    assert shop.set_stock_quantity(seeded["id"], 3) is True

    assert sandbox.product(seeded["id"]) == {**seeded, "stock_quantity": 3, "updated_on_utc": "2026-11-18T12:06:40"}
    assert sandbox.ignored_fields == []
    assert sandbox.inventory_notes == []


def test_set_stock_quantity_unchanged_writes_nothing(shop: NopCommerceClient, sandbox: NopCommerceSandbox,
                                                     transport: Recorder) -> None:
    seeded = sandbox.seed_product("Desk", "DESK-180", stock=5)

    assert shop.set_stock_quantity(seeded["id"], 5) is False

    assert transport.writes() == []


def test_set_stock_quantity_negative_is_kept(shop: NopCommerceClient, sandbox: NopCommerceSandbox) -> None:
    seeded = sandbox.seed_product("Desk", "DESK-180", stock=5)

    assert shop.set_stock_quantity(seeded["id"], -2) is True

    assert sandbox.product(seeded["id"])["stock_quantity"] == -2


def test_set_stock_quantity_repeated_converges_unlike_a_delta(shop: NopCommerceClient,
                                                              sandbox: NopCommerceSandbox) -> None:
    seeded = sandbox.seed_product("Desk", "DESK-180", stock=5)

    results = [shop.set_stock_quantity(seeded["id"], 8) for _ in range(3)]

    assert results == [True, False, False]
    assert sandbox.product(seeded["id"])["stock_quantity"] == 8


def test_set_stock_quantity_unknown_product_is_target_not_found(shop: NopCommerceClient) -> None:
    with pytest.raises(PermanentError) as caught:
        shop.set_stock_quantity(77, 1)

    assert caught.value.reason == "target_not_found"
