"""Tests for the in-memory QuickBooks Online sandbox (in-process through WSGI, one real socket for webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import deque
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.quickbooks import (
    DEFAULT_VERIFIER_TOKEN,
    SIGNATURE_HEADER,
    TOKEN_PATH,
    QuickBooksSandbox,
    intuit_signature,
    parse_query,
)
from werkzeug.wrappers import Request, Response

CLIENT_ID = "qbo-client"
CLIENT_SECRET = "qbo-secret"
REALM = "9130347596842384658"
OTHER_REALM = "4620816365257778210"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
FAST_RETRIES = (0.01, 0.01)
WEBHOOK_URL = "http://receiver.test/webhooks/qbo"


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
    def bodies(self) -> list[Any]:
        return [json.loads(request.content) for request in self.requests]

    def legacy_entities(self) -> list[tuple[str, str, str, str]]:
        """(realmId, name, id, operation) of every legacy notification, in order."""
        return [
            (notification["realmId"], entity["name"], entity["id"], entity["operation"])
            for body in self.bodies
            for notification in body["eventNotifications"]
            for entity in notification["dataChangeEvent"]["entities"]
        ]


def make_sandbox(clock: FakeClock, receiver: Receiver | None = None, **kwargs: Any) -> QuickBooksSandbox:
    kwargs.setdefault("webhook_retry_delays", FAST_RETRIES)
    if receiver is not None:
        kwargs.setdefault("webhook_url", WEBHOOK_URL)
        kwargs["webhook_transport"] = httpx.MockTransport(receiver)
    return QuickBooksSandbox(clock=clock, **kwargs)


def api_client(sandbox: QuickBooksSandbox, access_token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://qbo.test",
                        headers=headers)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def sandbox(clock: FakeClock, receiver: Receiver) -> QuickBooksSandbox:
    return make_sandbox(clock, receiver)


@pytest.fixture
def tokens(sandbox: QuickBooksSandbox) -> dict[str, Any]:
    return sandbox.connect_realm(REALM)


@pytest.fixture
def client(sandbox: QuickBooksSandbox, tokens: dict[str, Any]) -> httpx.Client:
    return api_client(sandbox, tokens["access_token"])


@pytest.fixture
def item(sandbox: QuickBooksSandbox) -> dict[str, Any]:
    return sandbox.seed_item(REALM, "Trail shoes", "SHOE-42", qty_on_hand=10, unit_price=9.99)


@pytest.fixture
def customer(client: httpx.Client) -> dict[str, Any]:
    response = client.post(f"/v3/company/{REALM}/customer", json={"DisplayName": "Acme Ltd",
                                                                  "PrimaryEmailAddr": {"Address": "ap@acme.test"}})
    assert response.status_code == 200, response.text
    return response.json()["Customer"]


def sales_line(item_id: str, qty: float, unit_price: float, amount: float | None = None) -> dict[str, Any]:
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": round(qty * unit_price, 2) if amount is None else amount,
        "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": qty, "UnitPrice": unit_price},
    }


def invoice_body(customer_id: str, item_id: str, qty: float = 2, unit_price: float = 9.99,
                 **extra: Any) -> dict[str, Any]:
    return {"CustomerRef": {"value": customer_id}, "Line": [sales_line(item_id, qty, unit_price)], **extra}


def fault_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"Fault", "time"}, body
    return body["Fault"]


def error_code(response: httpx.Response) -> str:
    return fault_of(response)["Error"][0]["code"]


def query(client: httpx.Client, statement: str, realm: str = REALM) -> httpx.Response:
    return client.get(f"/v3/company/{realm}/query", params={"query": statement, "minorversion": "75"})


def token_request(sandbox: QuickBooksSandbox, data: dict[str, str],
                  auth: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET)) -> httpx.Response:
    return api_client(sandbox).post("/oauth2/v1/tokens/bearer", data=data, auth=auth)


# --------------------------------------------------------------------------- OAuth2 and authentication


def test_oauth_refresh_returns_new_tokens_in_intuit_shape(sandbox: QuickBooksSandbox, tokens: dict[str, Any]) -> None:
    response = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "x_refresh_token_expires_in"}
    assert (body["token_type"], body["expires_in"], body["x_refresh_token_expires_in"]) == ("bearer", 3600, 8726400)
    assert body["refresh_token"] != tokens["refresh_token"]
    assert api_client(sandbox, body["access_token"]).get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 200


def test_oauth_refresh_reusing_a_rotated_token_returns_invalid_grant(
    sandbox: QuickBooksSandbox, tokens: dict[str, Any]
) -> None:
    first = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    reuse = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert (reuse.status_code, reuse.json()) == (400, {"error": "invalid_grant"})
    second = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert second.status_code == 200  # the newest token keeps the connection alive


def test_oauth_refresh_inside_grace_returns_same_successor_then_invalid_grant(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock, refresh_grace_seconds=5)
    old = sandbox.connect_realm(REALM)["refresh_token"]
    first = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": old}).json()
    clock.advance(4)
    racing = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": old})
    assert racing.json() == first
    clock.advance(1)
    assert token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": old}).status_code == 400


def refresh(sandbox: QuickBooksSandbox, token: str) -> httpx.Response:
    return token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": token})


def test_oauth_refresh_inside_the_rotation_window_keeps_the_refresh_token_and_its_expiry(clock: FakeClock) -> None:
    # Intuit keeps a refresh token's value for about 24 hours; its 100 days count from its issue
    sandbox = make_sandbox(clock, refresh_rotation_seconds=86_400)
    first = sandbox.connect_realm(REALM)
    clock.advance(3600)
    same = refresh(sandbox, first["refresh_token"]).json()
    assert same["refresh_token"] == first["refresh_token"]
    assert same["access_token"] != first["access_token"]
    assert same["x_refresh_token_expires_in"] == 8_726_400 - 3600
    clock.advance(86_400)
    rotated = refresh(sandbox, first["refresh_token"]).json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["x_refresh_token_expires_in"] == 8_726_400
    assert refresh(sandbox, first["refresh_token"]).json() == {"error": "invalid_grant"}


def test_oauth_refresh_token_expires_after_100_days_unused(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock)
    token = sandbox.connect_realm(REALM)["refresh_token"]
    clock.advance(8_726_400)
    assert (refresh(sandbox, token).status_code, refresh(sandbox, token).json()) == (400, {"error": "invalid_grant"})


def test_oauth_refresh_tokens_never_outlive_the_consent_by_five_years(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock)
    token = sandbox.connect_realm(REALM)["refresh_token"]
    for _ in range(30):  # refreshed every 90 days: each successor lives 100 days, but the chain ends
        clock.advance(90 * 86_400)
        answer = refresh(sandbox, token)
        if answer.status_code != 200:
            break
        token = answer.json()["refresh_token"]
    assert answer.json() == {"error": "invalid_grant"}
    assert 5 * 365 * 86_400 - 90 * 86_400 <= clock.now - START <= 5 * 365 * 86_400 + 90 * 86_400


def test_oauth_revoked_realm_refuses_its_refresh_and_access_tokens(
    sandbox: QuickBooksSandbox, tokens: dict[str, Any], client: httpx.Client
) -> None:
    other = sandbox.connect_realm(OTHER_REALM)
    sandbox.revoke_realm(REALM)
    assert refresh(sandbox, tokens["refresh_token"]).json() == {"error": "invalid_grant"}
    assert client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 401
    assert refresh(sandbox, other["refresh_token"]).status_code == 200  # other companies stay connected
    again = sandbox.connect_realm(REALM)  # the consent once more
    assert refresh(sandbox, again["refresh_token"]).status_code == 200


def test_oauth_lost_refresh_answer_rotates_the_token_and_raises_read_timeout(
    sandbox: QuickBooksSandbox, tokens: dict[str, Any]
) -> None:
    sandbox.lose_refresh_answers(1)
    with pytest.raises(httpx.ReadTimeout):
        refresh(sandbox, tokens["refresh_token"])
    # carried out: the token rotated although nobody heard the successor
    assert sandbox.refreshes_carried_out == 1
    assert refresh(sandbox, tokens["refresh_token"]).json() == {"error": "invalid_grant"}


def test_oauth_lost_refresh_answer_inside_the_grace_is_recovered_by_a_retry(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock, refresh_grace_seconds=60)
    token = sandbox.connect_realm(REALM)["refresh_token"]
    sandbox.lose_refresh_answers(1)
    with pytest.raises(httpx.ReadTimeout):
        refresh(sandbox, token)
    clock.advance(10)
    retried = refresh(sandbox, token).json()
    assert retried["refresh_token"] != token
    assert refresh(sandbox, retried["refresh_token"]).status_code == 200


def test_oauth_lost_answers_served_over_http_arrive_after_the_client_gave_up(clock: FakeClock) -> None:
    with make_sandbox(clock) as sandbox:
        token = sandbox.connect_realm(REALM)["refresh_token"]
        sandbox.lost_answer_seconds = 0.5
        admin = httpx.Client(base_url=sandbox.base_url)
        assert admin.post("/_sandbox/tokens/lose-answers", json={"n": 1}).json() == {"ok": True}
        with pytest.raises(httpx.ReadTimeout):
            admin.post(TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": token},
                       auth=(CLIENT_ID, CLIENT_SECRET), timeout=0.2)
        assert sandbox.refreshes_carried_out == 1
        assert admin.post(f"/_sandbox/realms/{REALM}/revoke").json() == {"ok": True}


@pytest.mark.parametrize(
    ("data", "auth", "status", "error"),
    [
        ({"grant_type": "refresh_token", "refresh_token": "x"}, (CLIENT_ID, "wrong"), 401, "invalid_client"),
        ({"grant_type": "refresh_token", "refresh_token": "unknown"}, (CLIENT_ID, CLIENT_SECRET), 400,
         "invalid_grant"),
        ({"grant_type": "refresh_token"}, (CLIENT_ID, CLIENT_SECRET), 400, "invalid_request"),
        ({"grant_type": "client_credentials"}, (CLIENT_ID, CLIENT_SECRET), 400, "unsupported_grant_type"),
    ],
)
def test_oauth_token_bad_request_returns_oauth_error(
    sandbox: QuickBooksSandbox, data: dict[str, str], auth: tuple[str, str], status: int, error: str
) -> None:
    response = token_request(sandbox, data, auth)
    assert (response.status_code, response.json()) == (status, {"error": error})


def test_oauth_authorization_code_exchanges_once_then_invalid_grant(sandbox: QuickBooksSandbox) -> None:
    code = sandbox.issue_auth_code(OTHER_REALM)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.test/callback"}
    exchanged = token_request(sandbox, data)
    assert exchanged.status_code == 200
    customer = api_client(sandbox, exchanged.json()["access_token"]).post(
        f"/v3/company/{OTHER_REALM}/customer", json={"DisplayName": "Via code"})
    assert customer.status_code == 200
    assert token_request(sandbox, data).json() == {"error": "invalid_grant"}


def test_api_expired_access_token_returns_401_authentication_fault(
    clock: FakeClock, sandbox: QuickBooksSandbox, client: httpx.Client
) -> None:
    assert client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 200
    clock.advance(3600)
    response = client.get(f"/v3/company/{REALM}/companyinfo/{REALM}")
    assert response.status_code == 401
    assert response.json() == {
        "Fault": {
            "Error": [{"Message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                       "Detail": "Token expired", "code": "3200"}],
            "type": "AuthenticationFault",
        },
        "time": "2023-11-14T16:13:20.000-07:00",
    }


def test_api_access_token_ttl_is_configurable(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock, access_token_ttl_seconds=60)
    tokens = sandbox.connect_realm(REALM)
    assert tokens["expires_in"] == 60
    clock.advance(59)
    assert api_client(sandbox, tokens["access_token"]).get(f"/v3/company/{REALM}/companyinfo/1").status_code == 200
    clock.advance(1)
    assert api_client(sandbox, tokens["access_token"]).get(f"/v3/company/{REALM}/companyinfo/1").status_code == 401


def test_api_missing_or_other_realm_token_returns_auth_faults(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    missing = api_client(sandbox).get(f"/v3/company/{REALM}/customer/1")
    assert (missing.status_code, fault_of(missing)["type"], error_code(missing)) == (401, "AuthenticationFault", "3200")
    other = client.get(f"/v3/company/{OTHER_REALM}/customer/1")
    assert (other.status_code, fault_of(other)["type"], error_code(other)) == (403, "AuthorizationFault", "3100")


def test_api_minorversion_is_recorded_per_realm(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    client.get(f"/v3/company/{REALM}/companyinfo/{REALM}", params={"minorversion": "75"})
    client.get(f"/v3/company/{REALM}/companyinfo/{REALM}", params={"minorversion": "75"})
    client.get(f"/v3/company/{REALM}/companyinfo/{REALM}", params={"minorversion": "65"})
    assert sandbox.minor_versions(REALM) == {"75": 2, "65": 1}
    assert sandbox.snapshot()["realms"][REALM]["minorVersions"] == {"75": 2, "65": 1}


# --------------------------------------------------------------------------- customers


def test_customer_create_returns_envelope_with_id_synctoken_and_metadata(customer: dict[str, Any]) -> None:
    assert customer["Id"] == "1"
    assert customer["SyncToken"] == "0"
    assert customer["MetaData"] == {"CreateTime": "2023-11-14T15:13:20-07:00",
                                    "LastUpdatedTime": "2023-11-14T15:13:20-07:00"}
    assert (customer["DisplayName"], customer["Active"], customer["Balance"]) == ("Acme Ltd", True, 0.0)


def test_customer_read_returns_entity_and_time(client: httpx.Client, customer: dict[str, Any]) -> None:
    response = client.get(f"/v3/company/{REALM}/customer/{customer['Id']}", params={"minorversion": "75"})
    assert response.status_code == 200
    assert response.json() == {"Customer": customer, "time": "2023-11-14T15:13:20.000-07:00"}


@pytest.mark.parametrize("name", ["Acme Ltd", "  acme   LTD ", "Jane Vendor", "Joe Employee"])
def test_customer_duplicate_display_name_returns_6240_naming_it(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], name: str
) -> None:
    sandbox.seed_vendor(REALM, "Jane Vendor")
    sandbox.seed_employee(REALM, "Joe Employee")
    response = client.post(f"/v3/company/{REALM}/customer", json={"DisplayName": name})
    assert response.status_code == 400
    error = fault_of(response)["Error"][0]
    assert (error["code"], error["Message"]) == ("6240", "Duplicate Name Exists Error")
    assert name.strip() in error["Detail"]
    assert fault_of(response)["type"] == "ValidationFault"


def test_customer_colon_in_display_name_returns_validation_fault(client: httpx.Client) -> None:
    response = client.post(f"/v3/company/{REALM}/customer", json={"DisplayName": "Acme:Shop"})
    assert response.status_code == 400
    assert fault_of(response)["type"] == "ValidationFault"
    assert fault_of(response)["Error"][0]["element"] == "DisplayName"


def test_customer_without_any_name_returns_2020(client: httpx.Client) -> None:
    response = client.post(f"/v3/company/{REALM}/customer", json={"Notes": "nameless"})
    assert (response.status_code, error_code(response)) == (400, "2020")


def test_customer_display_name_derived_from_given_and_family_name(client: httpx.Client) -> None:
    response = client.post(f"/v3/company/{REALM}/customer", json={"GivenName": "Jane", "FamilyName": "Doe"})
    assert response.json()["Customer"]["DisplayName"] == "Jane Doe"


def test_customer_sparse_update_keeps_omitted_fields_and_bumps_synctoken(
    clock: FakeClock, client: httpx.Client, customer: dict[str, Any]
) -> None:
    clock.advance(60)
    response = client.post(f"/v3/company/{REALM}/customer",
                           json={"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Notes": "VIP"})
    assert response.status_code == 200
    updated = response.json()["Customer"]
    assert (updated["SyncToken"], updated["Notes"]) == ("1", "VIP")
    assert updated["PrimaryEmailAddr"] == {"Address": "ap@acme.test"}
    assert updated["MetaData"] == {"CreateTime": "2023-11-14T15:13:20-07:00",
                                   "LastUpdatedTime": "2023-11-14T15:14:20-07:00"}


def test_customer_full_update_clears_omitted_fields(client: httpx.Client, customer: dict[str, Any]) -> None:
    response = client.post(f"/v3/company/{REALM}/customer",
                           json={"Id": customer["Id"], "SyncToken": "0", "DisplayName": "Acme Ltd"})
    assert response.status_code == 200
    assert "PrimaryEmailAddr" not in response.json()["Customer"]


def test_customer_update_with_stale_synctoken_returns_5010(client: httpx.Client, customer: dict[str, Any]) -> None:
    first = client.post(f"/v3/company/{REALM}/customer",
                        json={"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Notes": "first"})
    assert first.status_code == 200
    stale = client.post(f"/v3/company/{REALM}/customer",
                        json={"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Notes": "second"})
    assert stale.status_code == 400
    error = fault_of(stale)["Error"][0]
    assert (error["code"], error["Message"], fault_of(stale)["type"]) == ("5010", "Stale Object Error",
                                                                          "ValidationFault")
    current = client.get(f"/v3/company/{REALM}/customer/{customer['Id']}").json()["Customer"]
    assert (current["Notes"], current["SyncToken"]) == ("first", "1")


@pytest.mark.parametrize("path", ["customer/99", "item/99", "invoice/99", "salesreceipt/99", "payment/99"])
def test_read_unknown_id_returns_400_fault_610(client: httpx.Client, path: str) -> None:
    response = client.get(f"/v3/company/{REALM}/{path}")
    assert response.status_code == 400
    error = fault_of(response)["Error"][0]
    assert (error["code"], error["Message"]) == ("610", "Object Not Found")


def test_update_unknown_id_returns_610(client: httpx.Client) -> None:
    response = client.post(f"/v3/company/{REALM}/customer", json={"Id": "42", "SyncToken": "0", "sparse": True})
    assert error_code(response) == "610"


def test_customer_body_wrapped_in_envelope_returns_2010(client: httpx.Client) -> None:
    response = client.post(f"/v3/company/{REALM}/customer", json={"Customer": {"DisplayName": "Wrapped"}})
    assert (response.status_code, error_code(response)) == (400, "2010")


def test_customer_delete_is_unsupported(client: httpx.Client, customer: dict[str, Any]) -> None:
    response = client.post(f"/v3/company/{REALM}/customer", params={"operation": "delete"},
                           json={"Id": customer["Id"], "SyncToken": "0"})
    assert (response.status_code, error_code(response)) == (400, "500")


# --------------------------------------------------------------------------- invoices and sales receipts


def test_invoice_create_computes_lines_totals_docnumber_and_balance(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    body = {
        "CustomerRef": {"value": customer["Id"]},
        "TxnDate": "2024-05-01",
        "PrivateNote": "order 1001",
        "Line": [
            sales_line(item["Id"], 2, 9.99),
            sales_line(item["Id"], 3, 0.333, amount=1.0),
            {"DetailType": "DescriptionOnly", "Description": "gift wrap"},
            {"DetailType": "DiscountLineDetail", "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10}},
        ],
        "TxnTaxDetail": {"TotalTax": 1.5},
    }
    response = client.post(f"/v3/company/{REALM}/invoice", json=body)
    assert response.status_code == 200, response.text
    invoice = response.json()["Invoice"]
    assert invoice["DocNumber"] == "1001"
    assert invoice["CustomerRef"] == {"value": customer["Id"], "name": "Acme Ltd"}
    assert [line["DetailType"] for line in invoice["Line"]] == [
        "SalesItemLineDetail", "SalesItemLineDetail", "DescriptionOnly", "DiscountLineDetail", "SubTotalLineDetail"]
    assert invoice["Line"][3]["Amount"] == 2.1  # 10 % of 20.98
    assert invoice["Line"][4]["Amount"] == 20.98
    assert (invoice["TotalAmt"], invoice["Balance"]) == (20.38, 20.38)  # 20.98 - 2.10 + 1.50
    assert (invoice["TxnDate"], invoice["PrivateNote"], invoice["SyncToken"]) == ("2024-05-01", "order 1001", "0")
    assert invoice["CurrencyRef"] == {"value": "USD", "name": "United States Dollar"}
    second = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"]))
    assert second.json()["Invoice"]["DocNumber"] == "1002"


def test_invoice_foreign_currency_reports_home_total(
    sandbox: QuickBooksSandbox, client: httpx.Client, item: dict[str, Any]
) -> None:
    customer = sandbox.seed_customer(REALM, "Acme GmbH", CurrencyRef={"value": "EUR", "name": "Euro"})
    body = invoice_body(customer["Id"], item["Id"], qty=1, unit_price=100.0,
                        CurrencyRef={"value": "EUR", "name": "Euro"}, ExchangeRate=1.1)
    invoice = client.post(f"/v3/company/{REALM}/invoice", json=body).json()["Invoice"]
    assert (invoice["TotalAmt"], invoice["HomeTotalAmt"], invoice["ExchangeRate"]) == (100.0, 110.0, 1.1)


@pytest.mark.parametrize("entity", ["invoice", "salesreceipt"])
def test_sale_in_other_currency_than_the_customer_returns_6000(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], item: dict[str, Any], entity: str
) -> None:
    body = invoice_body(customer["Id"], item["Id"], CurrencyRef={"value": "EUR"}, ExchangeRate=1.1)
    response = client.post(f"/v3/company/{REALM}/{entity}", json=body)
    assert (response.status_code, error_code(response)) == (400, "6000")
    assert fault_of(response)["Error"][0]["element"] == "CurrencyRef"
    eur = sandbox.seed_customer(REALM, "Acme GmbH", CurrencyRef={"value": "EUR"})
    home = client.post(f"/v3/company/{REALM}/{entity}", json=invoice_body(eur["Id"], item["Id"]))
    assert (home.status_code, error_code(home)) == (400, "6000")  # no CurrencyRef: the home currency


def test_payment_in_other_currency_than_the_customer_returns_6000(
    sandbox: QuickBooksSandbox, client: httpx.Client, item: dict[str, Any]
) -> None:
    eur = sandbox.seed_customer(REALM, "Acme GmbH", CurrencyRef={"value": "EUR"})
    invoice = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(
        eur["Id"], item["Id"], CurrencyRef={"value": "EUR"}, ExchangeRate=1.1)).json()["Invoice"]
    line = {"Amount": 19.98, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}
    home = client.post(f"/v3/company/{REALM}/payment", json={
        "CustomerRef": {"value": eur["Id"]}, "TotalAmt": 19.98, "Line": [line]})
    assert (home.status_code, error_code(home)) == (400, "6000")
    paid = client.post(f"/v3/company/{REALM}/payment", json={
        "CustomerRef": {"value": eur["Id"]}, "TotalAmt": 19.98, "Line": [line], "CurrencyRef": {"value": "EUR"},
        "ExchangeRate": 1.1})
    assert paid.status_code == 200, paid.text
    assert sandbox.get_entity(REALM, "invoice", invoice["Id"])["Balance"] == 0.0


def test_query_item_sku_in_list_returns_active_matches_only(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    sandbox.seed_item(REALM, "Desk", "DESK-1", qty_on_hand=1, unit_price=10.0)
    sandbox.seed_item(REALM, "Arm", "ARM-2", qty_on_hand=1, unit_price=5.0)
    sandbox.seed_item(REALM, "Old arm", "ARM-OLD", qty_on_hand=1, unit_price=5.0, active=False)
    sandbox.seed_item(REALM, "Chair", "CHAIR-3", qty_on_hand=1, unit_price=5.0)
    response = query(client, "select * from Item where Sku in ('DESK-1', 'ARM-2', 'ARM-OLD', 'NOPE') maxresults 1000")
    assert response.status_code == 200, response.text
    assert sorted(row["Sku"] for row in response.json()["QueryResponse"]["Item"]) == ["ARM-2", "DESK-1"]


@pytest.mark.parametrize("entity", ["invoice", "salesreceipt"])
def test_sale_with_unknown_customer_or_item_returns_610(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any], entity: str
) -> None:
    no_customer = client.post(f"/v3/company/{REALM}/{entity}", json=invoice_body("404", item["Id"]))
    no_item = client.post(f"/v3/company/{REALM}/{entity}", json=invoice_body(customer["Id"], "404"))
    assert [(r.status_code, error_code(r)) for r in (no_customer, no_item)] == [(400, "610"), (400, "610")]
    assert fault_of(no_item)["Error"][0]["element"] == "Line.SalesItemLineDetail.ItemRef"


def test_sale_referencing_inactive_customer_returns_610(
    sandbox: QuickBooksSandbox, client: httpx.Client, item: dict[str, Any]
) -> None:
    inactive = sandbox.seed_customer(REALM, "Gone Inc", Active=False)
    response = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(inactive["Id"], item["Id"]))
    assert error_code(response) == "610"


@pytest.mark.parametrize("entity", ["invoice", "salesreceipt"])
def test_sale_amount_not_qty_times_unit_price_returns_6070(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any], entity: str
) -> None:
    body = {"CustomerRef": {"value": customer["Id"]}, "Line": [sales_line(item["Id"], 2, 9.99, amount=20.0)]}
    response = client.post(f"/v3/company/{REALM}/{entity}", json=body)
    assert response.status_code == 400
    error = fault_of(response)["Error"][0]
    assert (error["code"], error["Message"], fault_of(response)["type"]) == (
        "6070", "Amount is not equal to UnitPrice * Qty", "ValidationFault")


def test_sale_amount_is_compared_after_rounding_to_cents(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    body = {"CustomerRef": {"value": customer["Id"]}, "Line": [sales_line(item["Id"], 3, 0.335, amount=1.01)]}
    assert client.post(f"/v3/company/{REALM}/invoice", json=body).status_code == 200  # 1.005 rounds half up


def test_sale_docnumber_longer_than_21_returns_2050(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    ok = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"], DocNumber="A" * 21))
    too_long = client.post(f"/v3/company/{REALM}/invoice",
                           json=invoice_body(customer["Id"], item["Id"], DocNumber="SHOP-" + "9" * 17))
    assert ok.status_code == 200
    assert (too_long.status_code, error_code(too_long)) == (400, "2050")
    assert fault_of(too_long)["Error"][0]["element"] == "DocNumber"
    assert "Max:21 supplied length:22" in fault_of(too_long)["Error"][0]["Detail"]


def test_sale_private_note_longer_than_4000_returns_2050(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    response = client.post(f"/v3/company/{REALM}/invoice",
                           json=invoice_body(customer["Id"], item["Id"], PrivateNote="x" * 4001))
    assert (response.status_code, error_code(response)) == (400, "2050")


def test_sale_duplicate_docnumber_returns_6140_per_transaction_type(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    body = invoice_body(customer["Id"], item["Id"], DocNumber="WEB-1001")
    assert client.post(f"/v3/company/{REALM}/invoice", json=body).status_code == 200
    duplicate = client.post(f"/v3/company/{REALM}/invoice", json=body)
    assert duplicate.status_code == 400
    error = fault_of(duplicate)["Error"][0]
    assert (error["code"], error["Message"]) == ("6140", "Duplicate Document Number Error")
    assert "DocNumber=WEB-1001" in error["Detail"]
    assert client.post(f"/v3/company/{REALM}/salesreceipt", json=body).status_code == 200


def test_sale_without_lines_returns_2020(client: httpx.Client, customer: dict[str, Any]) -> None:
    response = client.post(f"/v3/company/{REALM}/invoice", json={"CustomerRef": {"value": customer["Id"]}})
    assert (response.status_code, error_code(response)) == (400, "2020")


def test_salesreceipt_balance_is_zero(client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]) -> None:
    receipt = client.post(f"/v3/company/{REALM}/salesreceipt", json=invoice_body(customer["Id"], item["Id"]))
    assert (receipt.json()["SalesReceipt"]["TotalAmt"], receipt.json()["SalesReceipt"]["Balance"]) == (19.98, 0.0)


def test_invoice_sparse_update_replaces_lines_and_recomputes_total(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    invoice = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"])).json()
    invoice = invoice["Invoice"]
    response = client.post(f"/v3/company/{REALM}/invoice", json={
        "Id": invoice["Id"], "SyncToken": invoice["SyncToken"], "sparse": True,
        "Line": [sales_line(item["Id"], 5, 9.99)]})
    updated = response.json()["Invoice"]
    assert (updated["TotalAmt"], updated["Balance"], updated["SyncToken"]) == (49.95, 49.95, "1")
    assert (updated["DocNumber"], len(updated["Line"])) == (invoice["DocNumber"], 2)


def test_invoice_void_zeroes_amounts_prefixes_note_and_records_status(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    created = client.post(f"/v3/company/{REALM}/invoice",
                          json=invoice_body(customer["Id"], item["Id"], PrivateNote="web order")).json()["Invoice"]
    stale = client.post(f"/v3/company/{REALM}/invoice", params={"operation": "void"},
                        json={"Id": created["Id"], "SyncToken": "7"})
    assert error_code(stale) == "5010"
    response = client.post(f"/v3/company/{REALM}/invoice", params={"operation": "void"},
                           json={"Id": created["Id"], "SyncToken": created["SyncToken"]})
    assert response.status_code == 200
    voided = response.json()["Invoice"]
    assert (voided["Balance"], voided["TotalAmt"], voided["SyncToken"]) == (0.0, 0.0, "1")
    assert voided["PrivateNote"] == "Voided - web order"
    assert [row["status"] for row in sandbox.snapshot()["realms"][REALM]["invoices"]] == ["Voided"]
    assert error_code(client.post(f"/v3/company/{REALM}/invoice", params={"operation": "void"},
                                  json={"Id": "404", "SyncToken": "0"})) == "610"


def test_sales_reduce_inventory_and_void_gives_it_back(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    receipt = client.post(f"/v3/company/{REALM}/salesreceipt",
                          json=invoice_body(customer["Id"], item["Id"], qty=3)).json()["SalesReceipt"]
    assert sandbox.get_entity(REALM, "item", item["Id"])["QtyOnHand"] == 7
    client.post(f"/v3/company/{REALM}/salesreceipt", params={"operation": "void"},
                json={"Id": receipt["Id"], "SyncToken": receipt["SyncToken"]})
    assert sandbox.get_entity(REALM, "Item", item["Id"])["QtyOnHand"] == 10


# --------------------------------------------------------------------------- payments


def test_payment_reduces_linked_invoice_balance_and_bumps_its_synctoken(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    invoice = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"])).json()
    invoice_id = invoice["Invoice"]["Id"]
    payment = client.post(f"/v3/company/{REALM}/payment", json={
        "CustomerRef": {"value": customer["Id"]}, "TotalAmt": 15.0,
        "Line": [{"Amount": 10.0, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}]})
    assert payment.status_code == 200, payment.text
    assert payment.json()["Payment"]["UnappliedAmt"] == 5.0
    after = client.get(f"/v3/company/{REALM}/invoice/{invoice_id}").json()["Invoice"]
    assert (after["Balance"], after["SyncToken"]) == (9.98, "1")
    assert after["LinkedTxn"] == [{"TxnId": payment.json()["Payment"]["Id"], "TxnType": "Payment"}]
    assert client.get(f"/v3/company/{REALM}/customer/{customer['Id']}").json()["Customer"]["Balance"] == 9.98
    rest = client.post(f"/v3/company/{REALM}/payment", json={
        "CustomerRef": {"value": customer["Id"]}, "TotalAmt": 9.98,
        "Line": [{"Amount": 9.98, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}]})
    assert rest.status_code == 200
    assert sandbox.get_entity(REALM, "invoice", invoice_id)["Balance"] == 0.0
    assert [row["status"] for row in sandbox.snapshot()["realms"][REALM]["invoices"]] == ["Paid"]


def test_payment_linking_unknown_invoice_returns_610(client: httpx.Client, customer: dict[str, Any]) -> None:
    response = client.post(f"/v3/company/{REALM}/payment", json={
        "CustomerRef": {"value": customer["Id"]}, "TotalAmt": 5,
        "Line": [{"Amount": 5, "LinkedTxn": [{"TxnId": "404", "TxnType": "Invoice"}]}]})
    assert (response.status_code, error_code(response)) == (400, "610")
    assert fault_of(response)["Error"][0]["element"] == "Line.LinkedTxn"


def test_payment_exceeding_open_balance_returns_6000_and_changes_nothing(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    invoice = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"])).json()
    response = client.post(f"/v3/company/{REALM}/payment", json={
        "CustomerRef": {"value": customer["Id"]}, "TotalAmt": 50,
        "Line": [{"Amount": 50, "LinkedTxn": [{"TxnId": invoice["Invoice"]["Id"], "TxnType": "Invoice"}]}]})
    assert (response.status_code, error_code(response)) == (400, "6000")
    assert sandbox.get_entity(REALM, "invoice", invoice["Invoice"]["Id"])["Balance"] == 19.98


def test_payment_delete_restores_invoice_balance(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    invoice_id = client.post(f"/v3/company/{REALM}/invoice",
                             json=invoice_body(customer["Id"], item["Id"])).json()["Invoice"]["Id"]
    payment = client.post(f"/v3/company/{REALM}/payment", json={
        "CustomerRef": {"value": customer["Id"]}, "TotalAmt": 19.98,
        "Line": [{"Amount": 19.98, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}]}).json()["Payment"]
    deleted = client.post(f"/v3/company/{REALM}/payment", params={"operation": "delete"},
                          json={"Id": payment["Id"], "SyncToken": payment["SyncToken"]})
    assert deleted.json()["Payment"] == {"status": "Deleted", "domain": "QBO", "Id": payment["Id"]}
    assert client.get(f"/v3/company/{REALM}/invoice/{invoice_id}").json()["Invoice"]["Balance"] == 19.98


# --------------------------------------------------------------------------- queries


@pytest.fixture
def catalog(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    for name, email in (("Acme Ltd", "ap@acme.test"), ("Acme Retail", "shop@acme.test"), ("Bolt & Co", "b@bolt.test"),
                        ("O'Brien Bikes", "ob@bikes.test")):
        assert client.post(f"/v3/company/{REALM}/customer",
                           json={"DisplayName": name, "PrimaryEmailAddr": {"Address": email}}).status_code == 200
    sandbox.seed_customer(REALM, "Dormant LLC", Active=False)
    sandbox.seed_item(REALM, "Trail shoes", "SHOE-42", 10, 119.0)
    sandbox.seed_item(REALM, "Socks", "SOCK-3", 50, 12.5)
    sandbox.seed_item(REALM, "Consulting", None, 0, 150.0, type="Service")


@pytest.mark.parametrize(
    ("statement", "entity", "expected"),
    [
        ("select * from Customer where DisplayName = 'Acme Ltd'", "Customer", ["Acme Ltd"]),
        ("SELECT * FROM Customer WHERE DisplayName = 'acme ltd'", "Customer", ["Acme Ltd"]),
        ("select * from Customer where DisplayName = 'O\\'Brien Bikes'", "Customer", ["O'Brien Bikes"]),
        ("select * from Customer where PrimaryEmailAddr = 'SHOP@acme.test'", "Customer", ["Acme Retail"]),
        ("select * from Customer where DisplayName like 'Acme%'", "Customer", ["Acme Ltd", "Acme Retail"]),
        ("select * from Customer where DisplayName like '%co'", "Customer", ["Bolt & Co"]),
        ("select * from Customer where DisplayName in ('Bolt & Co', 'Acme Ltd', 'Nobody')", "Customer",
         ["Acme Ltd", "Bolt & Co"]),
        ("select * from Customer where DisplayName like 'Acme%' and PrimaryEmailAddr = 'ap@acme.test'", "Customer",
         ["Acme Ltd"]),
        ("select * from Customer where Id = '3'", "Customer", ["Bolt & Co"]),
        ("select * from Customer where Id in ('1', '3')", "Customer", ["Acme Ltd", "Bolt & Co"]),
        ("select * from Customer where Active = false", "Customer", ["Dormant LLC"]),
        ("select * from Customer where Active in (true, false) orderby DisplayName desc maxresults 2", "Customer",
         ["O'Brien Bikes", "Dormant LLC"]),
        ("select * from Customer startposition 2 maxresults 2", "Customer", ["Acme Retail", "Bolt & Co"]),
        ("select * from Item where Name = 'Socks'", "Item", ["Socks"]),
        ("select * from Item where Sku = 'SHOE-42'", "Item", ["Trail shoes"]),
        ("select * from Item where Type = 'Inventory' and UnitPrice > '100'", "Item", ["Trail shoes"]),
    ],
)
def test_query_forms_return_matching_rows(
    client: httpx.Client, catalog: None, statement: str, entity: str, expected: list[str]
) -> None:
    response = query(client, statement)
    assert response.status_code == 200, response.text
    result = response.json()["QueryResponse"]
    name_field = "DisplayName" if entity == "Customer" else "Name"
    assert [row[name_field] for row in result[entity]] == expected
    assert result["maxResults"] == len(expected)
    assert result["startPosition"] == (2 if "startposition 2" in statement else 1)


def test_query_transactions_by_docnumber_and_customer(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"], DocNumber="WEB-1"))
    client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"], DocNumber="WEB-2"))
    by_doc = query(client, "select * from Invoice where DocNumber = 'WEB-2'").json()["QueryResponse"]
    assert [row["DocNumber"] for row in by_doc["Invoice"]] == ["WEB-2"]
    by_customer = query(client, f"select * from Invoice where CustomerRef = '{customer['Id']}' "
                                "and TxnDate >= '2023-11-14'").json()["QueryResponse"]
    assert [row["DocNumber"] for row in by_customer["Invoice"]] == ["WEB-1", "WEB-2"]
    assert query(client, "select count(*) from Invoice").json()["QueryResponse"] == {"totalCount": 2}


def test_query_empty_result_returns_empty_query_response(client: httpx.Client, catalog: None) -> None:
    response = query(client, "select * from Customer where DisplayName = 'Nobody'")
    assert response.json() == {"QueryResponse": {}, "time": "2023-11-14T15:13:20.000-07:00"}


@pytest.mark.parametrize(
    "statement",
    [
        "select * frm Customer",
        "select * from Customer where DisplayName = 'a' or DisplayName = 'b'",
        "select * from Customer where DisplayName = 'unterminated",
        "select * from Customer where DisplayName",
        "select * from Customer maxresults many",
        "delete from Customer",
    ],
)
def test_query_malformed_returns_4000(client: httpx.Client, statement: str) -> None:
    response = query(client, statement)
    assert (response.status_code, error_code(response)) == (400, "4000")
    assert fault_of(response)["Error"][0]["Message"] == "Error parsing query"


@pytest.mark.parametrize("statement", ["select * from Customer where Shoe = 'x'", "select * from Widget"])
def test_query_unknown_field_or_entity_returns_4001(client: httpx.Client, statement: str) -> None:
    assert error_code(query(client, statement)) == "4001"


def test_query_post_with_application_text_body(client: httpx.Client, catalog: None) -> None:
    response = client.post(f"/v3/company/{REALM}/query", content="select * from Item where Name = 'Socks'",
                           headers={"Content-Type": "application/text"})
    assert [row["Sku"] for row in response.json()["QueryResponse"]["Item"]] == ["SOCK-3"]


def test_query_without_statement_returns_4000(client: httpx.Client) -> None:
    assert error_code(client.get(f"/v3/company/{REALM}/query")) == "4000"


def test_parse_query_maxresults_is_capped_at_1000() -> None:
    assert parse_query("select * from Customer maxresults 5000").max_results == 1000


# --------------------------------------------------------------------------- requestid idempotency


def test_requestid_replay_returns_original_response_without_creating_twice(
    clock: FakeClock, sandbox: QuickBooksSandbox, client: httpx.Client
) -> None:
    first = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "req-1"}, json={"DisplayName": "Acme"})
    clock.advance(30)
    replay = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "req-1"},
                         json={"DisplayName": "Something else"})
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    assert [row["DisplayName"] for row in sandbox.snapshot()["realms"][REALM]["customers"]] == ["Acme"]
    assert sandbox.requests_per_realm(REALM)["replayed"] == 1


def test_requestid_replays_the_original_fault(client: httpx.Client) -> None:
    first = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "req-2"}, json={"DisplayName": "A:B"})
    replay = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "req-2"}, json={"DisplayName": "AB"})
    assert (replay.status_code, replay.content) == (400, first.content)


def test_requestid_is_scoped_to_the_realm(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    other = api_client(sandbox, sandbox.connect_realm(OTHER_REALM)["access_token"])
    here = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "shared"}, json={"DisplayName": "One"})
    there = other.post(f"/v3/company/{OTHER_REALM}/customer", params={"requestid": "shared"},
                       json={"DisplayName": "Two"})
    assert (here.json()["Customer"]["DisplayName"], there.json()["Customer"]["DisplayName"]) == ("One", "Two")


def test_requestid_longer_than_50_returns_400(client: httpx.Client) -> None:
    ok = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "r" * 50}, json={"DisplayName": "A"})
    long = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "r" * 51}, json={"DisplayName": "B"})
    assert ok.status_code == 200
    assert (long.status_code, error_code(long)) == (400, "2050")


def test_requestid_after_injected_503_executes_on_retry(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    sandbox.faults.fail_next(1, status=503)
    failed = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "retry"}, json={"DisplayName": "A"})
    retried = client.post(f"/v3/company/{REALM}/customer", params={"requestid": "retry"}, json={"DisplayName": "A"})
    assert (failed.status_code, retried.status_code) == (503, 200)


def test_requestid_after_client_timeout_retry_gets_the_original(
    sandbox: QuickBooksSandbox, tokens: dict[str, Any]
) -> None:
    slow = httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://qbo.test",
                        headers={"Authorization": f"Bearer {tokens['access_token']}"})
    sandbox.faults.configure({"timeout_rate": 1.0, "timeout_seconds": 0.05})
    first = slow.post(f"/v3/company/{REALM}/customer", params={"requestid": "t-1"}, json={"DisplayName": "Slow"})
    sandbox.faults.clear()
    retry = slow.post(f"/v3/company/{REALM}/customer", params={"requestid": "t-1"}, json={"DisplayName": "Slow"})
    assert retry.content == first.content
    assert len(sandbox.snapshot()["realms"][REALM]["customers"]) == 1


# --------------------------------------------------------------------------- throttling


def test_throttle_11th_request_within_a_second_returns_429_then_recovers(
    clock: FakeClock, sandbox: QuickBooksSandbox, client: httpx.Client
) -> None:
    statuses = [client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    response = client.get(f"/v3/company/{REALM}/companyinfo/{REALM}")
    assert response.status_code == 429
    assert fault_of(response) == {"Error": [{"Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                                             "code": "3001"}], "type": "ThrottlingFault"}
    assert not [name for name in response.headers if "rate" in name.lower() or name.lower() == "retry-after"]
    clock.advance(0.999)
    assert client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 429
    clock.advance(0.001)
    assert client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 200
    assert sandbox.requests_per_realm(REALM) == {"total": 14, "accepted": 11, "throttled": 3, "replayed": 0}


def test_throttle_501st_request_within_a_minute_returns_429_then_recovers(
    clock: FakeClock, sandbox: QuickBooksSandbox, client: httpx.Client
) -> None:
    statuses = []
    for _ in range(501):
        statuses.append(client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code)
        clock.advance(0.11)  # 9 requests a second: under the per-second limit
    assert statuses == [200] * 500 + [429]
    clock.now = START + 60  # the first request leaves the sliding minute
    assert client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 200
    assert client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 429


def test_throttle_time_scale_shrinks_both_windows(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock, time_scale=60, per_minute=20)
    client = api_client(sandbox, sandbox.connect_realm(REALM)["access_token"])
    statuses = [client.get(f"/v3/company/{REALM}/companyinfo/1").status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    clock.advance(1 / 60)  # a scaled second
    statuses = [client.get(f"/v3/company/{REALM}/companyinfo/1").status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]  # 20 in the scaled minute: the minute limit
    clock.advance(1 / 60)
    assert client.get(f"/v3/company/{REALM}/companyinfo/1").status_code == 429
    clock.now = START + 1.0  # one scaled minute after the first request
    assert client.get(f"/v3/company/{REALM}/companyinfo/1").status_code == 200


def test_throttle_counts_each_realm_separately(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    other = api_client(sandbox, sandbox.connect_realm(OTHER_REALM)["access_token"])
    for _ in range(10):
        client.get(f"/v3/company/{REALM}/companyinfo/1")
    assert client.get(f"/v3/company/{REALM}/companyinfo/1").status_code == 429
    assert other.get(f"/v3/company/{OTHER_REALM}/companyinfo/1").status_code == 200


def test_throttle_concurrent_requests_admit_exactly_the_limit(
    sandbox: QuickBooksSandbox, tokens: dict[str, Any]
) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        own = api_client(sandbox, tokens["access_token"])
        for _ in range(5):
            status = own.get(f"/v3/company/{REALM}/companyinfo/1").status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 10 + [429] * 30
    assert sandbox.requests_per_realm(REALM)["throttled"] == 30


def _request_arriving_while_locked(sandbox: QuickBooksSandbox, client: httpx.Client, clock: FakeClock,
                                   wait_in_queue: float) -> int:
    """One request that arrives now but reaches the sandbox's lock ``wait_in_queue`` s later (other requests'
    work ahead of it); its status."""
    arrived = threading.Event()
    statuses: list[int] = []
    real_clock = sandbox.clock

    def clock_noting_arrival() -> float:
        arrived.set()
        return real_clock()

    sandbox.clock = clock_noting_arrival  # type: ignore[method-assign]
    with sandbox._lock:  # the sandbox is busy with another request
        thread = threading.Thread(target=lambda: statuses.append(
            client.get(f"/v3/company/{REALM}/companyinfo/1").status_code))
        thread.start()
        assert arrived.wait(5)
        sandbox.clock = real_clock  # type: ignore[method-assign]
        clock.advance(wait_in_queue)
    thread.join(5)
    return statuses[0]


def test_throttle_counts_a_request_when_it_arrives_not_when_the_sandbox_gets_to_it(
    clock: FakeClock, sandbox: QuickBooksSandbox, client: httpx.Client
) -> None:
    # QBO's gateway counts arrivals: a request queued behind other work is judged by when it came in
    assert [client.get(f"/v3/company/{REALM}/companyinfo/1").status_code for _ in range(10)] == [200] * 10
    clock.advance(0.9)
    assert _request_arriving_while_locked(sandbox, client, clock, wait_in_queue=0.2) == 429
    assert client.get(f"/v3/company/{REALM}/companyinfo/1").status_code == 200  # now 1.1 s after the ten


def test_throttle_an_early_arrival_judged_late_never_overfills_a_later_window(
    clock: FakeClock, sandbox: QuickBooksSandbox
) -> None:
    # nine arrive at +0.5 s and are judged first; one that arrived at +0.0 is judged after them (it fits:
    # ten in any second), then another early one would make eleven in the second (0.0, 1.0]
    realm = sandbox._realm(REALM)
    assert all(sandbox._admit(realm, False, START + 0.5) for _ in range(9))
    assert sandbox._admit(realm, False, START)
    assert not sandbox._admit(realm, False, START + 0.1)
    assert sandbox._admit(realm, False, START + 1.01)  # (0.01, 1.01] holds the nine and this one


def test_throttle_batch_requests_have_their_own_per_minute_limit(clock: FakeClock) -> None:
    sandbox = make_sandbox(clock, batch_per_minute=2)
    client = api_client(sandbox, sandbox.connect_realm(REALM)["access_token"])
    batch = {"BatchItemRequest": [{"bId": "q", "Query": "select * from Customer"}]}
    statuses = [client.post(f"/v3/company/{REALM}/batch", json=batch).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.get(f"/v3/company/{REALM}/companyinfo/1").status_code == 200


# --------------------------------------------------------------------------- batch


def test_batch_returns_per_item_faults_inside_a_200(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    response = client.post(f"/v3/company/{REALM}/batch", json={"BatchItemRequest": [
        {"bId": "b1", "operation": "create", "Customer": {"DisplayName": "Batch Buyer"}},
        {"bId": "b2", "operation": "create", "Customer": {"DisplayName": "Acme Ltd"}},
        {"bId": "b3", "operation": "create", "Invoice": invoice_body(customer["Id"], item["Id"])},
        {"bId": "b4", "operation": "update", "Customer": {"Id": customer["Id"], "SyncToken": "9", "sparse": True}},
        {"bId": "b5", "Query": "select * from Customer where DisplayName = 'Acme Ltd'"},
        {"bId": "b6", "Query": "select * frm Customer"},
    ]})
    assert response.status_code == 200
    items = {entry["bId"]: entry for entry in response.json()["BatchItemResponse"]}
    assert list(items) == ["b1", "b2", "b3", "b4", "b5", "b6"]
    assert items["b1"]["Customer"]["DisplayName"] == "Batch Buyer"
    assert items["b2"]["Fault"]["Error"][0]["code"] == "6240"
    assert items["b2"]["Fault"]["type"] == "ValidationFault"
    assert items["b3"]["Invoice"]["TotalAmt"] == 19.98
    assert items["b4"]["Fault"]["Error"][0]["code"] == "5010"
    assert items["b5"]["QueryResponse"]["Customer"][0]["Id"] == customer["Id"]
    assert items["b6"]["Fault"]["Error"][0]["code"] == "4000"
    assert "time" in response.json()


def test_batch_items_cannot_see_objects_created_earlier_in_the_same_batch(
    sandbox: QuickBooksSandbox, client: httpx.Client, item: dict[str, Any]
) -> None:
    response = client.post(f"/v3/company/{REALM}/batch", json={"BatchItemRequest": [
        {"bId": "c", "operation": "create", "Customer": {"DisplayName": "New Buyer"}},
        {"bId": "i", "operation": "create", "Invoice": invoice_body("1", item["Id"])},
        {"bId": "q", "Query": "select * from Customer where DisplayName = 'New Buyer'"},
    ]})
    items = {entry["bId"]: entry for entry in response.json()["BatchItemResponse"]}
    assert items["c"]["Customer"]["Id"] == "1"
    assert items["i"]["Fault"]["Error"][0]["code"] == "610"
    assert items["q"]["QueryResponse"] == {}
    later = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body("1", item["Id"]))
    assert later.status_code == 200


def test_batch_with_more_than_30_items_returns_400(client: httpx.Client) -> None:
    items = [{"bId": str(n), "Query": "select * from Customer"} for n in range(31)]
    response = client.post(f"/v3/company/{REALM}/batch", json={"BatchItemRequest": items})
    assert response.status_code == 400
    assert fault_of(response)["type"] == "ValidationFault"
    assert client.post(f"/v3/company/{REALM}/batch", json={"BatchItemRequest": items[:30]}).status_code == 200


def test_batch_requestid_replays_the_whole_batch(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    batch = {"BatchItemRequest": [{"bId": "1", "operation": "create", "Customer": {"DisplayName": "Once"}}]}
    first = client.post(f"/v3/company/{REALM}/batch", params={"requestid": "batch-1"}, json=batch)
    again = client.post(f"/v3/company/{REALM}/batch", params={"requestid": "batch-1"}, json=batch)
    assert again.content == first.content
    assert len(sandbox.snapshot()["realms"][REALM]["customers"]) == 1
    too_long = client.post(f"/v3/company/{REALM}/batch", params={"requestid": "b" * 37}, json=batch)
    assert too_long.status_code == 400


# --------------------------------------------------------------------------- webhooks


def test_webhooks_legacy_payload_for_changes_is_signed_with_the_verifier_token(
    sandbox: QuickBooksSandbox, receiver: Receiver, client: httpx.Client, item: dict[str, Any]
) -> None:
    customer = client.post(f"/v3/company/{REALM}/customer", json={"DisplayName": "Hooked"}).json()["Customer"]
    invoice = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"])).json()
    sandbox.set_item_quantity(REALM, item["Id"], 4)
    assert sandbox.wait_for_webhooks()
    assert receiver.legacy_entities() == [
        (REALM, "Customer", customer["Id"], "Create"),
        (REALM, "Invoice", invoice["Invoice"]["Id"], "Create"),
        (REALM, "Item", item["Id"], "Update"),
    ]
    first = receiver.bodies[0]["eventNotifications"][0]["dataChangeEvent"]["entities"][0]
    assert first["lastUpdated"] == "2023-11-14T22:13:20.000Z"
    for request in receiver.requests:
        assert request.headers[SIGNATURE_HEADER] == intuit_signature(DEFAULT_VERIFIER_TOKEN, request.content)
    assert sandbox.get_entity(REALM, "item", item["Id"])["QtyOnHand"] == 4
    assert sandbox.get_entity(REALM, "item", item["Id"])["SyncToken"] == "1"
    assert all(delivery["outcome"] == "delivered" for delivery in sandbox.webhook_deliveries)



def test_webhooks_cloudevents_payload_uses_entity_verb_types(clock: FakeClock, receiver: Receiver) -> None:
    sandbox = make_sandbox(clock, receiver, webhook_format="cloudevents")
    client = api_client(sandbox, sandbox.connect_realm(REALM)["access_token"])
    item = sandbox.seed_item(REALM, "Widget", "W-1", 5, 2.0)
    customer = client.post(f"/v3/company/{REALM}/customer", json={"DisplayName": "Cloud"}).json()["Customer"]
    invoice = client.post(f"/v3/company/{REALM}/invoice", json=invoice_body(customer["Id"], item["Id"], 1, 2.0))
    invoice_entity = invoice.json()["Invoice"]
    client.post(f"/v3/company/{REALM}/invoice", params={"operation": "void"},
                json={"Id": invoice_entity["Id"], "SyncToken": invoice_entity["SyncToken"]})
    sandbox.set_item_quantity(REALM, item["Id"], 9)
    assert sandbox.wait_for_webhooks()
    events = [event for body in receiver.bodies for event in body]
    assert [event["type"] for event in events] == [
        "qbo.customer.created.v1", "qbo.invoice.created.v1", "qbo.invoice.voided.v1", "qbo.item.updated.v1"]
    last = events[-1]
    assert {key: last[key] for key in ("specversion", "datacontenttype", "intuitentityid", "intuitaccountid",
                                       "data", "time")} == {
        "specversion": "1.0", "datacontenttype": "application/json", "intuitentityid": item["Id"],
        "intuitaccountid": REALM, "data": {}, "time": "2023-11-14T22:13:20.000Z"}
    assert len({event["id"] for event in events}) == 4
    assert all(isinstance(event["source"], str) and event["source"] for event in events)


def test_webhooks_admin_quantity_endpoint_fires_item_update(
    sandbox: QuickBooksSandbox, receiver: Receiver, client: httpx.Client, item: dict[str, Any]
) -> None:
    response = api_client(sandbox).post(f"/_sandbox/realms/{REALM}/items/{item['Id']}/quantity", json={"qty": 3})
    assert (response.status_code, response.json()["Item"]["QtyOnHand"]) == (200, 3)
    assert sandbox.wait_for_webhooks()
    assert receiver.legacy_entities() == [(REALM, "Item", item["Id"], "Update")]
    assert len(sandbox.requests) == 0  # admin calls are not logged as API traffic


def test_webhooks_failed_delivery_is_retried_with_the_same_body(clock: FakeClock) -> None:
    receiver = Receiver(statuses=(500, 503))
    sandbox = make_sandbox(clock, receiver)
    sandbox.connect_realm(REALM)
    item = sandbox.seed_item(REALM, "Widget", "W-1", 5, 2.0)
    sandbox.set_item_quantity(REALM, item["Id"], 1)
    assert sandbox.wait_for_webhooks()
    assert [request.content for request in receiver.requests] == [receiver.requests[0].content] * 3
    assert [(d["outcome"], d["attempts"], d["status_code"]) for d in sandbox.webhook_deliveries] == [
        ("delivered", 3, 200)]


def test_webhooks_are_only_sent_for_connected_realms(clock: FakeClock, receiver: Receiver) -> None:
    sandbox = make_sandbox(clock, receiver)
    item = sandbox.seed_item(OTHER_REALM, "Widget", "W-1", 5, 2.0)
    sandbox.set_item_quantity(OTHER_REALM, item["Id"], 1)
    assert sandbox.wait_for_webhooks()
    assert (receiver.requests, sandbox.webhook_events) == ([], [])


def test_webhooks_real_socket_delivery_carries_a_verifiable_intuit_signature(clock: FakeClock) -> None:
    received: list[tuple[bytes, str]] = []

    def receiver_app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        received.append((request.get_data(), request.headers.get("intuit-signature", "")))
        return Response(status=200)(environ, start_response)

    receiver_url, stop_receiver = http.serve(receiver_app)
    try:
        with QuickBooksSandbox(verifier_token="shh-verifier", webhook_url=f"{receiver_url}/qbo",
                               webhook_retry_delays=FAST_RETRIES) as sandbox:
            tokens = httpx.post(f"{sandbox.base_url}/_sandbox/realms/{REALM}/connect", timeout=5).json()
            seeded = httpx.post(f"{sandbox.base_url}/_sandbox/realms/{REALM}/items", timeout=5,
                                json={"Name": "Socket", "Sku": "S-1", "Type": "Inventory", "QtyOnHand": 2})
            item_id = seeded.json()["Item"]["Id"]
            updated = httpx.post(f"{sandbox.base_url}/v3/company/{REALM}/item", timeout=5,
                                 headers={"Authorization": f"Bearer {tokens['access_token']}"},
                                 json={"Id": item_id, "SyncToken": "0", "sparse": True, "UnitPrice": 3.5})
            assert updated.status_code == 200
            assert sandbox.wait_for_webhooks()
    finally:
        stop_receiver()
    assert len(received) == 1
    body, signature = received[0]
    expected = base64.b64encode(hmac.new(b"shh-verifier", body, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(signature, expected)
    assert json.loads(body)["eventNotifications"][0]["dataChangeEvent"]["entities"][0]["id"] == item_id


# --------------------------------------------------------------------------- faults, admin, state


def test_faults_fail_next_503_returns_system_fault_then_succeeds(
    sandbox: QuickBooksSandbox, client: httpx.Client
) -> None:
    sandbox.faults.fail_next(1, status=503, retry_after=5)
    failed = client.get(f"/v3/company/{REALM}/companyinfo/{REALM}")
    assert failed.status_code == 503
    assert fault_of(failed)["type"] == "SystemFault"
    assert "Retry-After" not in failed.headers
    assert client.get(f"/v3/company/{REALM}/companyinfo/{REALM}").status_code == 200


def test_faults_apply_to_the_token_endpoint(sandbox: QuickBooksSandbox, tokens: dict[str, Any]) -> None:
    sandbox.faults.fail_next(1, status=500)
    failed = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert (failed.status_code, fault_of(failed)["type"]) == (500, "SystemFault")
    ok = token_request(sandbox, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert ok.status_code == 200  # the faulted call did not rotate the token


def test_faults_admin_endpoints_configure_and_are_never_faulted(
    sandbox: QuickBooksSandbox, client: httpx.Client
) -> None:
    admin = api_client(sandbox)
    configured = admin.post("/_sandbox/faults", json={"error_rate": 1.0, "error_status": 500})
    assert configured.json()["plan"]["error_rate"] == 1.0
    assert admin.get("/_sandbox/state").status_code == 200
    assert client.get(f"/v3/company/{REALM}/customer/1").status_code == 500
    assert admin.post("/_sandbox/faults", json={"bogus": 1}).status_code == 400
    assert admin.delete("/_sandbox/faults").status_code == 200
    assert client.get(f"/v3/company/{REALM}/companyinfo/1").status_code == 200


def test_faults_injected_429_is_a_throttling_fault(sandbox: QuickBooksSandbox, client: httpx.Client) -> None:
    sandbox.faults.configure({"rate_limit_rate": 1.0, "seed": 1})
    response = client.get(f"/v3/company/{REALM}/companyinfo/1")
    assert (response.status_code, error_code(response)) == (429, "3001")
    assert "Retry-After" not in response.headers


def test_state_is_per_realm_and_reset_forgets_everything(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any]
) -> None:
    other = api_client(sandbox, sandbox.connect_realm(OTHER_REALM)["access_token"])
    assert other.post(f"/v3/company/{OTHER_REALM}/customer", json={"DisplayName": "Acme Ltd"}).status_code == 200
    state = api_client(sandbox).get("/_sandbox/state").json()
    assert [c["DisplayName"] for c in state["realms"][REALM]["customers"]] == ["Acme Ltd"]
    assert [c["DisplayName"] for c in state["realms"][OTHER_REALM]["customers"]] == ["Acme Ltd"]
    assert set(state["realms"][REALM]) >= {"customers", "items", "invoices", "salesReceipts", "payments", "counters"}
    assert state["realms"][REALM]["counters"]["total"] == 1
    assert len(sandbox.requests) == 2
    assert api_client(sandbox).post("/_sandbox/reset").json() == {"ok": True}
    assert sandbox.snapshot()["realms"] == {}
    assert client.get(f"/v3/company/{REALM}/customer/1").status_code == 401
    assert len(sandbox.requests) == 1


def test_unknown_entity_path_returns_unsupported_operation(client: httpx.Client) -> None:
    response = client.post(f"/v3/company/{REALM}/widget", json={"Name": "x"})
    assert (response.status_code, error_code(response)) == (400, "500")


def test_salesreceipt_payment_method_must_exist_and_ref_num_fits_21_characters(
    sandbox: QuickBooksSandbox, client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    card = sandbox.seed_payment_method(REALM, "Visa")
    url = f"/v3/company/{REALM}/salesreceipt"

    unknown = client.post(url, json=invoice_body(customer["Id"], item["Id"], PaymentMethodRef={"value": "99"}))
    too_long = client.post(url, json=invoice_body(customer["Id"], item["Id"], PaymentMethodRef={"value": card["Id"]},
                                                  PaymentRefNum="x" * 22))
    on_invoice = client.post(f"/v3/company/{REALM}/invoice",
                             json=invoice_body(customer["Id"], item["Id"], PaymentMethodRef={"value": card["Id"]}))
    fine = client.post(url, json=invoice_body(customer["Id"], item["Id"], PaymentMethodRef={"value": card["Id"]},
                                              PaymentRefNum="x" * 21))

    assert (error_code(unknown), error_code(too_long), on_invoice.status_code) == ("610", "2050", 400)
    assert fine.json()["SalesReceipt"]["PaymentMethodRef"] == {"value": card["Id"]}
    listed = client.get(f"/v3/company/{REALM}/query", params={"query": "select * from PaymentMethod"})
    assert [row["Name"] for row in listed.json()["QueryResponse"]["PaymentMethod"]] == ["Visa"]


def test_credit_memo_holds_its_credit_until_a_payment_applies_it_to_an_invoice(
    client: httpx.Client, customer: dict[str, Any], item: dict[str, Any]
) -> None:
    base = f"/v3/company/{REALM}"
    invoice = client.post(f"{base}/invoice", json=invoice_body(customer["Id"], item["Id"])).json()["Invoice"]
    memo = client.post(f"{base}/creditmemo", json=invoice_body(customer["Id"], item["Id"], qty=1)).json()["CreditMemo"]
    refund = client.post(f"{base}/refundreceipt", json=invoice_body(customer["Id"], item["Id"], qty=1))
    assert (memo["TotalAmt"], memo["Balance"], refund.json()["RefundReceipt"]["Balance"]) == (9.99, 9.99, 0.0)

    def applying(amount: float) -> dict[str, Any]:
        return {"CustomerRef": {"value": customer["Id"]}, "TotalAmt": 0, "Line": [
            {"Amount": amount, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]},
            {"Amount": amount, "LinkedTxn": [{"TxnId": memo["Id"], "TxnType": "CreditMemo"}]}]}

    too_much = client.post(f"{base}/payment", json=applying(10.0))
    applied = client.post(f"{base}/payment", json=applying(9.99))

    assert error_code(too_much) == "6000" and applied.status_code == 200, applied.text
    assert client.get(f"{base}/creditmemo/{memo['Id']}").json()["CreditMemo"]["Balance"] == 0.0
    assert client.get(f"{base}/invoice/{invoice['Id']}").json()["Invoice"]["Balance"] == 9.99
    deleted = client.post(f"{base}/payment", params={"operation": "delete"}, json=applied.json()["Payment"])
    assert deleted.status_code == 200, deleted.text
    assert client.get(f"{base}/creditmemo/{memo['Id']}").json()["CreditMemo"]["Balance"] == 9.99
