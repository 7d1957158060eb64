"""Tests for the in-memory nopCommerce Web API Backend sandbox (in-process through WSGI, one real socket)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes.nopcommerce import (
    DEFAULT_API_EMAIL,
    DEFAULT_API_PASSWORD,
    EMPTY_GUID,
    INT_MAX,
    MIN_DATE,
    NO_ACCESS_EMAIL,
    NO_ACCESS_PASSWORD,
    ORDER_DTO,
    NopCommerceSandbox,
    decode_jwt,
    snake_case,
)

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DAY = 86400


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> NopCommerceSandbox:
    return NopCommerceSandbox(clock=clock)


def make_client(sandbox: NopCommerceSandbox, **kwargs: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://shop.test", **kwargs)


@pytest.fixture
def anonymous(sandbox: NopCommerceSandbox) -> Iterator[httpx.Client]:
    with make_client(sandbox) as client:
        yield client


def get_token(client: httpx.Client, email: str = DEFAULT_API_EMAIL, password: str = DEFAULT_API_PASSWORD) -> str:
    response = client.post(
        "/api-backend/Authenticate/GetToken", json={"email": email, "password": password, "is_guest": False}
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


@pytest.fixture
def client(sandbox: NopCommerceSandbox, anonymous: httpx.Client) -> Iterator[httpx.Client]:
    token = get_token(anonymous)
    with make_client(sandbox, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def order(sandbox: NopCommerceSandbox) -> dict[str, Any]:
    return sandbox.seed_order(
        {
            "OrderTotal": 129.5,
            "CustomerCurrencyCode": "EUR",
            "CurrencyRate": 0.92,
            "CustomerId": 7,
            "PaymentStatusId": 30,
            "VatNumber": "DE123456789",
        }
    )


# --------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("Id", "id"),
        ("OrderGuid", "order_guid"),
        ("OrderSubTotalDiscountInclTax", "order_sub_total_discount_incl_tax"),
        ("CardCvv2", "card_cvv2"),
        ("CustomerIp", "customer_ip"),
        ("order_total", "order_total"),
    ],
)
def test_snake_case_dto_property_matches_newtonsoft_name(name: str, wire: str) -> None:
    assert snake_case(name) == wire


# --------------------------------------------------------------------------- authentication


def test_get_token_valid_credentials_returns_jwt_customer_id_and_username(
    sandbox: NopCommerceSandbox, anonymous: httpx.Client, clock: FakeClock
) -> None:
    response = anonymous.post(
        "/api-backend/Authenticate/GetToken",
        json={"email": DEFAULT_API_EMAIL, "password": DEFAULT_API_PASSWORD, "is_guest": False},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == 1
    assert body["username"] == DEFAULT_API_EMAIL
    claims = decode_jwt(body["token"], sandbox.secret_key)
    assert claims is not None
    assert claims["CustomerId"] == "1"
    assert claims["exp"] - claims["nbf"] == 7 * DAY


def test_get_token_wrong_password_returns_400_with_message(anonymous: httpx.Client) -> None:
    # The plugin throws NopException("Username or password is incorrect"); ErrorHandlerMiddleware maps it to 400.
    response = anonymous.post(
        "/api-backend/Authenticate/GetToken", json={"email": DEFAULT_API_EMAIL, "password": "wrong"}
    )

    assert response.status_code == 400
    assert response.json() == {
        "message": "Username or password is incorrect",
        "inner_exception_message": None,
        "stack_trace": "",
    }


def test_api_call_customer_without_permission_returns_403_access_denied(
    sandbox: NopCommerceSandbox, anonymous: httpx.Client, order: dict[str, Any]
) -> None:
    # GetToken does not check AccessWebApiBackend; every backend call afterwards does.
    token = get_token(anonymous, NO_ACCESS_EMAIL, NO_ACCESS_PASSWORD)

    response = anonymous.get(f"/api-backend/Order/GetById/{order['id']}", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 403
    assert response.json() == {"message": "Access denied."}


def test_api_call_expired_token_returns_401_unauthorized(
    sandbox: NopCommerceSandbox, anonymous: httpx.Client, clock: FakeClock, order: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {get_token(anonymous)}"}
    clock.advance(7 * DAY)
    assert anonymous.get(f"/api-backend/Order/GetById/{order['id']}", headers=headers).status_code == 200

    clock.advance(1)
    response = anonymous.get(f"/api-backend/Order/GetById/{order['id']}", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Bearer a.b.c"}],
    ids=["missing", "garbage", "bad-signature"],
)
def test_api_call_missing_or_bad_token_returns_401_unauthorized(
    anonymous: httpx.Client, order: dict[str, Any], headers: dict[str, str]
) -> None:
    response = anonymous.get(f"/api-backend/Order/GetById/{order['id']}", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_api_call_token_signed_with_rotated_key_returns_401(
    sandbox: NopCommerceSandbox, anonymous: httpx.Client, order: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {get_token(anonymous)}"}
    sandbox.rotate_secret_key()

    assert anonymous.get(f"/api-backend/Order/GetById/{order['id']}", headers=headers).status_code == 401


def test_developer_mode_request_without_token_is_allowed(clock: FakeClock) -> None:
    sandbox = NopCommerceSandbox(developer_mode=True, clock=clock)
    seeded = sandbox.seed_order()
    with make_client(sandbox) as client:
        response = client.get(f"/api-backend/Order/GetById/{seeded['id']}")

    assert response.status_code == 200


# --------------------------------------------------------------------------- orders: reads


def test_order_get_by_id_known_returns_snake_case_order_dto(client: httpx.Client, order: dict[str, Any]) -> None:
    response = client.get(f"/api-backend/Order/GetById/{order['id']}")

    assert response.status_code == 200
    dto = response.json()
    assert set(dto) == set(ORDER_DTO.kinds)
    assert dto["id"] == 1
    assert dto["custom_order_number"] == "1"
    assert dto["order_total"] == 129.5
    assert dto["customer_currency_code"] == "EUR"
    assert dto["payment_status_id"] == 30
    assert dto["order_status_id"] == 10
    assert dto["created_on_utc"] == "2023-11-14T22:13:20"  # no offset, like a DateTime read from the database
    assert dto["paid_date_utc"] is None


def test_order_get_by_id_unknown_returns_404_plain_string(client: httpx.Client) -> None:
    response = client.get("/api-backend/Order/GetById/999")

    assert response.status_code == 404
    assert response.json() == "Order Id=999 not found"


@pytest.mark.parametrize("raw", ["0", "abc"])
def test_order_get_by_id_invalid_id_returns_400_problem_details(client: httpx.Client, raw: str) -> None:
    response = client.get(f"/api-backend/Order/GetById/{raw}")

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 400


def test_order_get_by_guid_known_returns_order(client: httpx.Client, order: dict[str, Any]) -> None:
    response = client.get("/api-backend/Order/GetByGuid", params={"guid": order["order_guid"].upper()})

    assert response.status_code == 200
    assert response.json()["id"] == order["id"]


@pytest.mark.parametrize("guid", ["8f4c2c84-8a57-4b16-9a0e-0c0e6f0d1a11", EMPTY_GUID])
def test_order_get_by_guid_unknown_returns_404_order_is_not_found(
    client: httpx.Client, order: dict[str, Any], guid: str
) -> None:
    response = client.get("/api-backend/Order/GetByGuid", params={"guid": guid})

    assert response.status_code == 404
    assert response.json() == "Order is not found"


def test_order_get_by_guid_missing_parameter_returns_400_validation_problem(client: httpx.Client) -> None:
    response = client.get("/api-backend/Order/GetByGuid")

    assert response.status_code == 400
    assert "guid" in response.json()["errors"]


def test_order_get_by_custom_order_number_known_returns_order(
    sandbox: NopCommerceSandbox, client: httpx.Client
) -> None:
    sandbox.seed_order(custom_order_number="NOP-2024-0042")

    response = client.get("/api-backend/Order/GetByCustomOrderNumber", params={"customOrderNumber": "nop-2024-0042"})

    assert response.status_code == 200
    assert response.json()["custom_order_number"] == "NOP-2024-0042"


def test_route_lower_case_path_and_query_names_are_matched(client: httpx.Client, order: dict[str, Any]) -> None:
    assert client.get(f"/api-backend/order/getbyid/{order['id']}").status_code == 200
    assert client.get("/API-BACKEND/Order/GetByGuid", params={"GUID": order["order_guid"]}).status_code == 200


def test_route_unknown_action_returns_404_empty_body(client: httpx.Client) -> None:
    response = client.get("/api-backend/Order/GetEverything")

    assert response.status_code == 404
    assert response.content == b""


# --------------------------------------------------------------------------- orders: search


def seed_orders(sandbox: NopCommerceSandbox, clock: FakeClock, count: int) -> list[dict[str, Any]]:
    orders = []
    for index in range(count):
        orders.append(sandbox.seed_order(order_status_id=(10, 20, 30)[index % 3]))
        clock.advance(60)
    return orders


def test_order_search_paging_returns_newest_first_pages(
    sandbox: NopCommerceSandbox, client: httpx.Client, clock: FakeClock
) -> None:
    seed_orders(sandbox, clock, 5)

    first = client.get("/api-backend/Order/Search", params={"pageIndex": 0, "pageSize": 2}).json()
    last = client.get("/api-backend/Order/Search", params={"pageIndex": 2, "pageSize": 2}).json()

    assert [item["id"] for item in first["items"]] == [5, 4]
    assert first["total_count"] == 5
    assert first["total_pages"] == 3
    assert (first["page_index"], first["page_size"]) == (0, 2)
    assert (first["has_previous_page"], first["has_next_page"]) == (False, True)
    assert [item["id"] for item in last["items"]] == [1]
    assert (last["has_previous_page"], last["has_next_page"]) == (True, False)


def test_order_search_without_page_size_uses_int_max_value(
    sandbox: NopCommerceSandbox, client: httpx.Client, clock: FakeClock
) -> None:
    seed_orders(sandbox, clock, 4)

    page = client.get("/api-backend/Order/Search").json()

    assert page["page_size"] == INT_MAX
    assert page["total_pages"] == 1
    assert len(page["items"]) == 4


def test_order_search_status_ids_semicolon_filters_comma_is_ignored(
    sandbox: NopCommerceSandbox, client: httpx.Client, clock: FakeClock
) -> None:
    seed_orders(sandbox, clock, 6)

    filtered = client.get("/api-backend/Order/Search", params={"osIds": "10;30"}).json()
    comma = client.get("/api-backend/Order/Search", params={"osIds": "10,30"}).json()

    assert {item["order_status_id"] for item in filtered["items"]} == {10, 30}
    assert filtered["total_count"] == 4
    assert comma["total_count"] == 6  # ToIdArray drops "10,30": no filter at all


def test_order_search_get_only_total_count_returns_no_items(
    sandbox: NopCommerceSandbox, client: httpx.Client, clock: FakeClock
) -> None:
    seed_orders(sandbox, clock, 3)

    page = client.get("/api-backend/Order/Search", params={"getOnlyTotalCount": "true"}).json()

    assert (page["total_count"], page["items"]) == (3, [])


def test_order_search_unmodelled_filter_is_flagged_in_header(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    response = client.get("/api-backend/Order/Search", params={"billingEmail": "a@b.example"})

    assert response.headers["X-Sandbox-Ignored-Filters"] == "billingEmail"
    assert sandbox.snapshot()["ignored_filters"][0]["filters"] == ["billingEmail"]


# --------------------------------------------------------------------------- orders: update


def test_order_update_partial_body_resets_fields_left_out(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    body = {"id": order["id"], "order_status_id": 20, "payment_status_id": 30, "shipping_status_id": 20}

    response = client.put("/api-backend/Order/Update", json=body)

    assert response.status_code == 200
    assert response.content == b""
    stored = sandbox.order(order["id"])
    assert stored["order_status_id"] == 20
    assert stored["order_total"] == 0.0  # not sent: reset to default(decimal)
    assert stored["customer_currency_code"] is None
    assert stored["order_guid"] == EMPTY_GUID
    assert stored["created_on_utc"] == MIN_DATE


def test_order_update_read_modify_write_keeps_other_fields(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    dto = client.get(f"/api-backend/Order/GetById/{order['id']}").json()

    response = client.put("/api-backend/Order/Update", json={**dto, "order_status_id": 30})

    assert response.status_code == 200
    assert sandbox.order(order["id"]) == {**order, "order_status_id": 30}


def test_order_update_pascal_case_fields_are_ignored_and_reset(clock: FakeClock) -> None:
    # Newtonsoft binds snake_case names (case-insensitively): "Id" binds to id, "OrderStatusId" binds to nothing.
    sandbox = NopCommerceSandbox(clock=clock, strict_enums=False)
    seeded = sandbox.seed_order(order_total=50, order_status_id=20)
    with make_client(sandbox, headers={"Authorization": f"Bearer {sandbox.issue_token()}"}) as client:
        response = client.put("/api-backend/Order/Update", json={"Id": seeded["id"], "OrderStatusId": 30})

    assert response.status_code == 200
    assert sandbox.order(seeded["id"])["order_status_id"] == 0
    assert sandbox.ignored_fields[0]["fields"] == ["OrderStatusId"]


def test_order_update_unknown_order_status_id_returns_400_and_keeps_order(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    response = client.put("/api-backend/Order/Update", json={**order, "order_status_id": 99})

    assert response.status_code == 400
    assert "order_status_id" in response.json()["errors"]
    assert sandbox.order(order["id"]) == order


def test_order_update_unknown_order_status_id_accepted_when_strict_enums_off(clock: FakeClock) -> None:
    sandbox = NopCommerceSandbox(clock=clock, strict_enums=False)
    seeded = sandbox.seed_order()
    with make_client(sandbox, headers={"Authorization": f"Bearer {sandbox.issue_token()}"}) as client:
        response = client.put("/api-backend/Order/Update", json={**seeded, "order_status_id": 99})

    assert response.status_code == 200
    assert sandbox.order(seeded["id"])["order_status_id"] == 99


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"id": 1, "order_total": "lots"}},
        {"json": [1, 2]},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    ],
    ids=["wrong-type", "array", "malformed"],
)
def test_order_update_invalid_body_returns_400_validation_problem(
    client: httpx.Client, order: dict[str, Any], kwargs: dict[str, Any]
) -> None:
    response = client.put("/api-backend/Order/Update", **kwargs)

    assert response.status_code == 400
    assert response.json()["title"] == "One or more validation errors occurred."


def test_order_update_non_json_content_type_returns_415(client: httpx.Client, order: dict[str, Any]) -> None:
    response = client.put("/api-backend/Order/Update", content=b"id=1", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415


def test_order_update_unknown_id_returns_404_order_is_not_found(client: httpx.Client, order: dict[str, Any]) -> None:
    response = client.put("/api-backend/Order/Update", json={**order, "id": 404})

    assert response.status_code == 404
    assert response.json() == "Order is not found"


# --------------------------------------------------------------------------- order notes


def test_order_note_create_then_list_returns_note(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    body = {
        "order_id": order["id"],
        "note": "Synced to BNG as SO-1001",
        "display_to_customer": False,
        "created_on_utc": "2023-11-14T22:15:00Z",
    }

    created = client.post("/api-backend/OrderNote/Create", json=body)
    listed = client.get(f"/api-backend/OrderNote/GetOrderNotesByOrderId/{order['id']}")

    assert created.status_code == 200
    note = created.json()
    assert note == {
        "id": 1,
        "order_id": order["id"],
        "note": "Synced to BNG as SO-1001",
        "download_id": 0,
        "display_to_customer": False,
        "created_on_utc": "2023-11-14T22:15:00",
    }
    assert listed.json() == [note]
    assert sandbox.notes(order["id"]) == [note]
    assert client.get("/api-backend/OrderNote/GetById/1").json() == note


def test_order_note_create_without_created_on_utc_gets_min_date(client: httpx.Client, order: dict[str, Any]) -> None:
    response = client.post("/api-backend/OrderNote/Create", json={"order_id": order["id"], "note": "x"})

    assert response.json()["created_on_utc"] == MIN_DATE


def test_order_note_list_display_to_customer_filter_returns_matching_notes(
    client: httpx.Client, order: dict[str, Any]
) -> None:
    for visible in (True, False, False):
        client.post(
            "/api-backend/OrderNote/Create", json={"order_id": order["id"], "note": "n", "display_to_customer": visible}
        )

    hidden = client.get(
        f"/api-backend/OrderNote/GetOrderNotesByOrderId/{order['id']}", params={"displayToCustomer": "false"}
    ).json()

    assert [note["id"] for note in hidden] == [2, 3]


def test_order_note_create_unknown_order_returns_500_foreign_key_error(client: httpx.Client) -> None:
    response = client.post("/api-backend/OrderNote/Create", json={"order_id": 999, "note": "orphan"})

    assert response.status_code == 500
    assert "FOREIGN KEY" in response.json()["message"]


def test_order_note_create_concurrent_requests_get_unique_ids(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    def create_notes() -> None:
        for _ in range(10):
            client.post("/api-backend/OrderNote/Create", json={"order_id": order["id"], "note": "n"})

    threads = [threading.Thread(target=create_notes) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = [note["id"] for note in sandbox.notes(order["id"])]
    assert sorted(ids) == list(range(1, 81))


# --------------------------------------------------------------------------- products and stock


def test_product_get_by_sku_known_returns_product(sandbox: NopCommerceSandbox, client: httpx.Client) -> None:
    sandbox.seed_product("Trail shoes 42", "SHOE-TRAIL-42", stock=12, price=219.0)

    response = client.get("/api-backend/Product/GetProductBySku", params={"sku": " shoe-trail-42 "})

    assert response.status_code == 200
    product = response.json()
    assert (product["sku"], product["stock_quantity"], product["manage_inventory_method_id"]) == (
        "SHOE-TRAIL-42",
        12,
        1,
    )
    assert client.get(f"/api-backend/Product/GetById/{product['id']}").json() == product


def test_product_get_by_sku_unknown_returns_404_string(client: httpx.Client) -> None:
    response = client.get("/api-backend/Product/GetProductBySku", params={"sku": "NOPE"})

    assert response.status_code == 404
    assert response.json() == "Product sku=NOPE not found"


def test_product_update_stock_read_modify_write_changes_only_stock(
    sandbox: NopCommerceSandbox, client: httpx.Client
) -> None:
    seeded = sandbox.seed_product("Desk", "DESK-180", stock=5, price=899.0)
    dto = client.get("/api-backend/Product/GetProductBySku", params={"sku": "DESK-180"}).json()

    response = client.put("/api-backend/Product/Update", json={**dto, "stock_quantity": 3})

    assert response.status_code == 200
    assert sandbox.product_by_sku("DESK-180") == {**seeded, "stock_quantity": 3}
    assert sandbox.inventory_notes == []


def test_product_update_unmanaged_stock_is_accepted_and_noted(
    sandbox: NopCommerceSandbox, client: httpx.Client
) -> None:
    seeded = sandbox.seed_product("Gift wrap", "WRAP-1", stock=0, manage=0)

    response = client.put("/api-backend/Product/Update", json={**seeded, "stock_quantity": 40})

    assert response.status_code == 200
    assert sandbox.product(seeded["id"])["stock_quantity"] == 40
    note = sandbox.snapshot()["inventory_notes"][0]
    assert (note["sku"], note["via"], note["manage_inventory_method_id"]) == ("WRAP-1", "Product/Update", 0)
    assert sandbox.snapshot()["products"][0]["stock_managed"] is False


def test_product_update_unknown_id_returns_404_string(client: httpx.Client) -> None:
    response = client.put("/api-backend/Product/Update", json={"id": 77, "manage_inventory_method_id": 1})

    assert response.status_code == 404
    assert response.json() == "Product Id=77 is not found"


def test_product_adjust_inventory_managed_stock_adds_delta(sandbox: NopCommerceSandbox, client: httpx.Client) -> None:
    seeded = sandbox.seed_product("Socks", "SOCK-3", stock=10)

    response = client.post(f"/api-backend/Product/AdjustInventory/{seeded['id']}", params={"quantityToChange": -4})

    assert response.status_code == 200
    assert sandbox.product(seeded["id"])["stock_quantity"] == 6


def test_product_adjust_inventory_unmanaged_stock_is_noop_and_noted(
    sandbox: NopCommerceSandbox, client: httpx.Client
) -> None:
    seeded = sandbox.seed_product("Service", "SVC-1", stock=0, manage=0)

    client.post(f"/api-backend/Product/AdjustInventory/{seeded['id']}", params={"quantityToChange": 5})

    assert sandbox.product(seeded["id"])["stock_quantity"] == 0
    assert sandbox.inventory_notes[0]["quantity_to_change"] == 5


# --------------------------------------------------------------------------- faults


def test_faults_fail_next_returns_503_string_then_recovers(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    sandbox.faults.fail_next(1, 503)

    failed = client.get(f"/api-backend/Order/GetById/{order['id']}")
    recovered = client.get(f"/api-backend/Order/GetById/{order['id']}")

    assert failed.status_code == 503
    assert failed.json() == "Service Unavailable"
    assert recovered.status_code == 200


def test_faults_latency_delays_api_but_not_admin_requests(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    assert client.post("/_sandbox/faults", json={"latency_ms": 60}).status_code == 200

    started = time.monotonic()
    client.get(f"/api-backend/Order/GetById/{order['id']}")
    api_elapsed = time.monotonic() - started
    started = time.monotonic()
    client.get("/_sandbox/state")
    admin_elapsed = time.monotonic() - started

    assert api_elapsed >= 0.06
    assert admin_elapsed < 0.06
    assert client.delete("/_sandbox/faults").status_code == 200
    assert sandbox.faults.plan.latency_ms == 0


def test_faults_admin_invalid_plan_returns_400(client: httpx.Client) -> None:
    response = client.post("/_sandbox/faults", json={"error_rat": 0.5})

    assert response.status_code == 400
    assert "error_rat" in response.json()["error"]


# --------------------------------------------------------------------------- inspection, seeding, lifecycle


def test_seed_order_defaults_fill_id_guid_number_and_created_date(sandbox: NopCommerceSandbox) -> None:
    first = sandbox.seed_order()
    second = sandbox.seed_order({"id": 40, "OrderGuid": "5A1B6F0E-0000-4000-8000-000000000040"})

    assert (first["id"], first["custom_order_number"], first["created_on_utc"]) == (1, "1", "2023-11-14T22:13:20")
    assert first["order_guid"] != EMPTY_GUID
    assert (second["custom_order_number"], second["order_guid"]) == ("40", "5a1b6f0e-0000-4000-8000-000000000040")
    assert sandbox.seed_order()["id"] == 41


@pytest.mark.parametrize(
    "fields", [{"OrderTotl": 1}, {"order_status_id": 15}, {"id": 1}], ids=["typo", "bad-status", "duplicate-id"]
)
def test_seed_order_invalid_input_raises_value_error(sandbox: NopCommerceSandbox, fields: dict[str, Any]) -> None:
    sandbox.seed_order()

    with pytest.raises(ValueError):
        sandbox.seed_order(fields)


def test_update_order_changes_what_the_api_then_reads(sandbox: NopCommerceSandbox) -> None:
    sandbox.seed_order({"id": 7, "OrderTotal": 30})
    assert sandbox.update_order(7, OrderStatusId=40, payment_status_id=30)["order_status_id"] == 40
    assert (sandbox.order(7)["order_status_id"], sandbox.order(7)["payment_status_id"]) == (40, 30)
    with pytest.raises(ValueError):
        sandbox.update_order(7, OrderStatusId=15)
    with pytest.raises(KeyError):
        sandbox.update_order(8, OrderStatusId=40)


def test_snapshot_lists_customers_orders_notes_and_products(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    sandbox.seed_product("Desk", "DESK-180", stock=5)
    client.post("/api-backend/OrderNote/Create", json={"order_id": order["id"], "note": "hello"})

    state = client.get("/_sandbox/state").json()

    assert state == sandbox.snapshot()
    assert [c["email"] for c in state["customers"]] == [DEFAULT_API_EMAIL, NO_ACCESS_EMAIL]
    assert state["orders"][0]["order_status"] == "Pending"
    assert state["orders"][0]["payment_status"] == "Paid"
    assert state["orders"][0]["notes"] == ["hello"]
    assert state["order_notes"][0]["note"] == "hello"
    assert state["products"][0]["sku"] == "DESK-180"
    assert state["settings"] == {"developer_mode": False, "token_lifetime_days": 7, "strict_enums": True}


def test_reset_clears_data_requests_and_faults_but_keeps_tokens(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    client.get(f"/api-backend/Order/GetById/{order['id']}")
    sandbox.faults.fail_next(3)

    assert client.post("/_sandbox/reset").json() == {"ok": True}

    state = sandbox.snapshot()
    assert (state["orders"], state["order_notes"], state["products"]) == ([], [], [])
    assert len(sandbox.requests) == 0
    assert client.get("/api-backend/Order/GetById/1").status_code == 404  # no queued fault, token still valid
    assert sandbox.seed_order()["id"] == 1


def test_requests_log_records_api_calls_not_admin_calls(
    sandbox: NopCommerceSandbox, client: httpx.Client, order: dict[str, Any]
) -> None:
    sandbox.requests.clear()
    client.get(f"/api-backend/Order/GetById/{order['id']}")
    client.get("/api-backend/Order/GetById/999")
    client.get("/_sandbox/state")

    assert list(sandbox.requests) == [
        ("GET", f"/api-backend/Order/GetById/{order['id']}", 200),
        ("GET", "/api-backend/Order/GetById/999", 404),
    ]


def test_admin_seed_routes_create_order_and_product(sandbox: NopCommerceSandbox, anonymous: httpx.Client) -> None:
    order = anonymous.post("/_sandbox/orders", json={"OrderTotal": 10}).json()
    product = anonymous.post("/_sandbox/products", json={"name": "Cap", "sku": "CAP-1", "stock": 3}).json()

    assert sandbox.order(order["id"])["order_total"] == 10.0
    assert sandbox.product_by_sku("cap-1")["id"] == product["id"]


def test_serve_context_manager_answers_over_a_real_socket() -> None:
    with NopCommerceSandbox() as sandbox:
        assert sandbox.base_url is not None
        seeded = sandbox.seed_order()
        with httpx.Client(base_url=sandbox.base_url, timeout=5) as client:
            token = get_token(client)
            response = client.get(
                f"/api-backend/Order/GetById/{seeded['id']}", headers={"Authorization": f"Bearer {token}"}
            )
    assert response.status_code == 200
    assert sandbox.base_url is None


# --------------------------------------------------------------------------- deleting notes, slow answers


def create_note(client: httpx.Client, order_id: int, text: str) -> dict[str, Any]:
    response = client.post("/api-backend/OrderNote/Create", json={"order_id": order_id, "note": text,
                                                                 "created_on_utc": "2026-11-20T10:00:00Z"})
    assert response.status_code == 200
    return response.json()


def test_order_note_delete_removes_it_and_answers_200_empty(client: httpx.Client, sandbox: NopCommerceSandbox,
                                                            order: dict[str, Any]) -> None:
    note = create_note(client, order["id"], "a note")
    response = client.delete(f"/api-backend/OrderNote/Delete/{note['id']}")
    assert (response.status_code, response.content) == (200, b"")
    assert sandbox.notes(order["id"]) == []
    missing = client.delete(f"/api-backend/OrderNote/Delete/{note['id']}")
    assert (missing.status_code, missing.json()) == (404, f"Order note Id={note['id']} not found")
    assert client.delete("/api-backend/OrderNote/Delete/0").status_code == 400


@pytest.mark.parametrize(("carry_out", "seen_while_waiting"), [("late", 0), ("early", 1)])
def test_slow_next_answers_late_carrying_out_before_or_after_the_wait(
    client: httpx.Client, sandbox: NopCommerceSandbox, order: dict[str, Any], carry_out: str, seen_while_waiting: int
) -> None:
    sandbox.slow_next(1, 0.4, path="ordernote/create", carry_out=carry_out)  # type: ignore[arg-type]
    started = time.monotonic()
    slow = threading.Thread(target=create_note, args=(client, order["id"], "slow"))
    slow.start()
    time.sleep(0.2)
    assert len(sandbox.notes(order["id"])) == seen_while_waiting
    assert client.get(f"/api-backend/Order/GetById/{order['id']}").status_code == 200  # others are served meanwhile
    slow.join()
    assert time.monotonic() - started >= 0.4 and len(sandbox.notes(order["id"])) == 1
    create_note(client, order["id"], "fast")  # only the next matching request was slow
    assert time.monotonic() - started < 1.5


def test_admin_faults_queue_slow_answers_and_reject_bad_ones(sandbox: NopCommerceSandbox,
                                                             anonymous: httpx.Client) -> None:
    ok = anonymous.post("/_sandbox/faults", json={"slow_next": {"n": 2, "seconds": 12, "carry_out": "early"}})
    assert ok.status_code == 200
    assert [(slow.seconds, slow.path, slow.carry_out) for slow in sandbox._slow] == [(12.0, "ordernote/create",
                                                                                     "early")] * 2
    for bad in ({"seconds": 1, "carry_out": "never"}, {"n": 1}, "slow"):
        assert anonymous.post("/_sandbox/faults", json={"slow_next": bad}).status_code == 400
    assert anonymous.delete("/_sandbox/faults").status_code == 200 and sandbox._slow == []


# --------------------------------------------------------------------------- checkout and admin changes (no webhook)


@pytest.fixture
def placed(sandbox: NopCommerceSandbox, sample: Any) -> dict[str, Any]:
    data = sample("nop_order_b2b")["data"]
    data["Order"]["PaymentStatusId"] = 10  # pay later
    return sandbox.place_order(data)


def test_checkout_stores_items_customer_and_addresses_readable_through_the_plugin_routes(
    client: httpx.Client, placed: dict[str, Any]
) -> None:
    items = client.get(f"/api-backend/OrderItem/GetOrderItems/{placed['id']}").json()
    customer = client.get(f"/api-backend/Customer/GetById/{placed['customer_id']}").json()
    billing = client.get(f"/api-backend/Address/GetById/{placed['billing_address_id']}").json()
    shipping = client.get(f"/api-backend/Address/GetById/{placed['shipping_address_id']}").json()
    product = client.get(f"/api-backend/Product/GetById/{items[0]['product_id']}").json()

    assert placed["id"] == 1042 and placed["customer_id"] == 77
    assert [(i["id"], i["product_id"], i["quantity"], i["price_excl_tax"]) for i in items] == [
        (5001, 31, 2, 900.0), (5002, 48, 4, 360.0)]
    assert customer["email"] == " Jane.Doe@Acme-Corp.example " and customer["company"] == "Acme Corp"
    assert billing["city"] == "Springfield" and billing["email"] == "jane.doe@acme-corp.example"
    assert shipping["address1"] == "1 Main St"
    assert (product["name"], product["sku"]) == ("Standing desk", "DESK-STD-01")


def test_order_items_of_an_unknown_order_are_an_empty_list_and_unknown_entities_404_with_a_string(
    client: httpx.Client,
) -> None:
    assert client.get("/api-backend/OrderItem/GetOrderItems/99").json() == []
    missing = client.get("/api-backend/Customer/GetById/99")
    assert (missing.status_code, missing.json()) == (404, "Customer Id=99 not found")
    assert client.get("/api-backend/Address/GetById/0").status_code == 400


def test_mark_paid_then_ship_then_deliver_follows_check_order_status(
    sandbox: NopCommerceSandbox, placed: dict[str, Any], clock: FakeClock
) -> None:
    clock.advance(60)
    paid = sandbox.mark_paid(placed["id"])
    assert (paid["order_status_id"], paid["payment_status_id"], paid["shipping_status_id"]) == (20, 30, 20)
    assert paid["paid_date_utc"] == "2023-11-14T22:14:20"
    shipped = sandbox.ship(placed["id"])
    assert (shipped["order_status_id"], shipped["shipping_status_id"]) == (20, 30)  # complete when delivered
    delivered = sandbox.ship(placed["id"], delivered=True)
    assert (delivered["order_status_id"], delivered["shipping_status_id"]) == (30, 40)


def test_shipping_an_unpaid_order_makes_it_processing_not_complete(
    sandbox: NopCommerceSandbox, placed: dict[str, Any]
) -> None:
    order = sandbox.ship(placed["id"], delivered=True)
    assert (order["order_status_id"], order["payment_status_id"]) == (20, 10)


def test_cancel_voids_an_authorized_payment_and_keeps_a_pending_one(sandbox: NopCommerceSandbox) -> None:
    authorized = sandbox.seed_order(payment_status_id=20)
    pending = sandbox.seed_order()
    assert (sandbox.cancel(authorized["id"])["order_status_id"], sandbox.order(authorized["id"])["payment_status_id"]) \
        == (40, 50)
    assert sandbox.cancel(pending["id"])["payment_status_id"] == 10


def test_partial_then_full_refund_sets_refunded_amount_and_payment_status_35_then_40(
    sandbox: NopCommerceSandbox,
) -> None:
    order = sandbox.seed_order(order_total=100.0, payment_status_id=30)
    partial = sandbox.refund(order["id"], 30.25)
    assert (partial["refunded_amount"], partial["payment_status_id"]) == (30.25, 35)
    full = sandbox.refund(order["id"])
    assert (full["refunded_amount"], full["payment_status_id"]) == (100.0, 40)
    with pytest.raises(ValueError, match="not paid"):
        sandbox.refund(order["id"], 1.0)


def test_a_refund_larger_than_what_is_left_is_refused(sandbox: NopCommerceSandbox) -> None:
    order = sandbox.seed_order(order_total=10.0, payment_status_id=30)
    with pytest.raises(ValueError, match="does not fit"):
        sandbox.refund(order["id"], 10.01)
    assert sandbox.order(order["id"])["refunded_amount"] == 0.0


def test_admin_routes_check_out_and_change_orders(anonymous: httpx.Client, sample: Any) -> None:
    data = sample("nop_order_small")["data"]
    created = anonymous.post("/_sandbox/checkout", json=data)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    refunded = anonymous.post(f"/_sandbox/orders/{order_id}/pay")
    assert refunded.json()["payment_status_id"] == 30
    part = anonymous.post(f"/_sandbox/orders/{order_id}/refund", json={"amount": 1.0}).json()
    assert (part["payment_status_id"], part["refunded_amount"]) == (35, 1.0)
    assert anonymous.post(f"/_sandbox/orders/{order_id}/explode").status_code == 404
    assert anonymous.post("/_sandbox/orders/999/pay").status_code == 404
