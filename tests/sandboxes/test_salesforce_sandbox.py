"""The Salesforce org sandbox behaves like a real org (API-NOTES §2): OAuth, upserts, collections,
composite, SOQL, errors, limits and Change Data Capture."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    ChangeEvent,
    SalesforceSandbox,
    eventbridge_entries,
)

from tests.conftest import FakeClock

V = "/services/data/v62.0"
CLIENT = "switchyard-clarity-to-salesforce"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def published() -> list[ChangeEvent]:
    return []


@pytest.fixture
def org(clock: FakeClock, published: list[ChangeEvent]) -> SalesforceSandbox:
    return SalesforceSandbox(instance_url="https://acme.my.salesforce.test", clock=clock,
                             event_sink=published.append)


def raw_client(org: SalesforceSandbox, host: str = "acme.my.salesforce.test") -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=org.wsgi_app), base_url=f"https://{host}")


def token(org: SalesforceSandbox) -> str:
    with raw_client(org) as anonymous:
        response = anonymous.post("/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def api(org: SalesforceSandbox) -> Iterator[httpx.Client]:
    with raw_client(org) as client:
        client.headers.update({"Authorization": f"Bearer {token(org)}", "Sforce-Call-Options": f"client={CLIENT}"})
        yield client


def upsert(api: httpx.Client, sobject: str, key: str, body: dict[str, Any], version: str = "v62.0") -> httpx.Response:
    return api.patch(f"/services/data/{version}/sobjects/{sobject}/ExternalID__c/{key}", json=body)


# --------------------------------------------------------------------------- OAuth 2.0


def test_client_credentials_answers_the_instance_url_and_a_signed_identity(org: SalesforceSandbox) -> None:
    with raw_client(org) as anonymous:
        response = anonymous.post("/services/oauth2/token", data={"grant_type": "client_credentials"},
                                  auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET))
    body = response.json()
    assert response.status_code == 200
    assert body["instance_url"] == "https://acme.my.salesforce.test" and body["token_type"] == "Bearer"
    expected = hmac.new(DEFAULT_CLIENT_SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256)
    assert body["signature"] == base64.b64encode(expected.digest()).decode()
    assert "refresh_token" not in body


@pytest.mark.parametrize(("host", "form", "status", "error"), [
    ("login.salesforce.com", {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
                              "client_secret": DEFAULT_CLIENT_SECRET}, 400, "invalid_request"),
    ("acme.my.salesforce.test", {"grant_type": "password"}, 400, "unsupported_grant_type"),
    ("acme.my.salesforce.test", {"grant_type": "client_credentials", "client_id": "other",
                                 "client_secret": DEFAULT_CLIENT_SECRET}, 400, "invalid_client_id"),
    ("acme.my.salesforce.test", {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
                                 "client_secret": "wrong"}, 400, "invalid_client"),
])
def test_token_errors(org: SalesforceSandbox, host: str, form: dict[str, str], status: int, error: str) -> None:
    with raw_client(org, host) as anonymous:
        response = anonymous.post("/services/oauth2/token", data=form)
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_expired_or_unknown_session_is_401_invalid_session_id_in_the_error_array(
    org: SalesforceSandbox, api: httpx.Client, clock: FakeClock
) -> None:
    assert api.get(f"{V}/limits").status_code == 200
    clock.advance(7200)
    response = api.get(f"{V}/limits")
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


# --------------------------------------------------------------------------- upsert by external id


def test_upsert_creates_201_then_updates_200_or_204_before_api_46(org: SalesforceSandbox, api: httpx.Client) -> None:
    created = upsert(api, "Account", "C-501", {"Name": "Acme Corp"})
    assert created.status_code == 201
    record_id = created.json()["id"]
    assert created.json() == {"id": record_id, "success": True, "errors": [], "created": True}
    updated = upsert(api, "Account", "C-501", {"Phone": "+1 217 555 0100"})
    assert (updated.status_code, updated.json()) == (200, {"id": record_id, "success": True, "errors": [],
                                                           "created": False})
    old = upsert(api, "Account", "C-501", {"Phone": "+1 217 555 0101"}, version="v45.0")
    assert old.status_code == 204 and old.content == b""
    assert org.record("Account", record_id)["Phone"] == "+1 217 555 0101"


def test_upsert_with_two_matches_is_300_listing_both_and_writes_nothing(org: SalesforceSandbox,
                                                                         api: httpx.Client) -> None:
    first = org.create_record("Account", Name="Acme", ExternalID__c="C-501")
    second = org.create_record("Account", Name="Acme Corp", ExternalID__c="C-501")
    response = upsert(api, "Account", "C-501", {"Name": "Changed"})
    assert response.status_code == 300
    assert response.json() == [f"{V}/sobjects/Account/{first}", f"{V}/sobjects/Account/{second}"]
    assert {r["Name"] for r in org.records("Account")} == {"Acme", "Acme Corp"}


def test_upsert_by_a_field_that_is_no_external_id_is_404(api: httpx.Client) -> None:
    response = api.patch(f"{V}/sobjects/Account/Nope__c/1", json={"Name": "x"})
    assert response.status_code == 404 and response.json()[0]["errorCode"] == "NOT_FOUND"


@pytest.mark.parametrize(("body", "code", "fields"), [
    ({"Name": "x", "Shoe__c": 1}, "INVALID_FIELD", ["Shoe__c"]),
    ({"FirstName": "Ada"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
    ({"LastName": "B", "AccountId": "001000000000000AAA"}, "INVALID_CROSS_REFERENCE_KEY", ["AccountId"]),
])
def test_upsert_errors_are_salesforce_error_arrays(api: httpx.Client, body: dict[str, Any], code: str,
                                                   fields: list[str]) -> None:
    sobject = "Account" if "Name" in body else "Contact"
    response = upsert(api, sobject, "K-1", body)
    assert response.status_code == 400
    (error,) = response.json()
    assert (error["errorCode"], error["fields"]) == (code, fields)


def test_contact_references_its_account_by_external_id(org: SalesforceSandbox, api: httpx.Client) -> None:
    account = upsert(api, "Account", "C-501", {"Name": "Acme"}).json()["id"]
    contact = upsert(api, "Contact", "C-501", {"LastName": "Doe", "Account": {"ExternalID__c": "C-501"}})
    assert org.record("Contact", contact.json()["id"])["AccountId"] == account
    missing = upsert(api, "Contact", "C-502", {"LastName": "Roe", "Account": {"ExternalID__c": "C-999"}})
    assert missing.status_code == 400 and "C-999 not found" in missing.json()[0]["message"]


# --------------------------------------------------------------------------- limits and faults


def test_every_data_call_reports_usage_and_the_24h_allocation_answers_403_request_limit_exceeded(
    org: SalesforceSandbox, api: httpx.Client, clock: FakeClock
) -> None:
    assert api.get(f"{V}/limits").headers["Sforce-Limit-Info"] == "api-usage=1/100000"
    org.set_api_usage(99_999)
    assert api.get(f"{V}/limits").headers["Sforce-Limit-Info"] == "api-usage=100000/100000"
    refused = api.get(f"{V}/limits")
    assert refused.status_code == 403
    assert refused.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert "Sforce-Limit-Info" not in api.get("/services/data/").headers  # the versions root is not counted


def test_calls_older_than_24_hours_leave_the_allocation(org: SalesforceSandbox, api: httpx.Client,
                                                        clock: FakeClock) -> None:
    api.get(f"{V}/limits")
    api.get(f"{V}/limits")
    clock.advance(23 * 3600)
    api.headers["Authorization"] = f"Bearer {token(org)}"  # the session ended meanwhile
    assert api.get(f"{V}/limits").headers["Sforce-Limit-Info"] == "api-usage=3/100000"
    clock.advance(3600)
    assert org.api_usage == 1


def test_locked_row_and_injected_503_use_salesforce_codes(org: SalesforceSandbox, api: httpx.Client) -> None:
    org.lock_rows(1)
    locked = upsert(api, "Account", "C-1", {"Name": "A"})
    assert locked.status_code == 400 and locked.json()[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert org.records("Account") == []
    org.faults.fail_next(1, status=503)
    unavailable = upsert(api, "Account", "C-1", {"Name": "A"})
    assert unavailable.status_code == 503 and unavailable.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert upsert(api, "Account", "C-1", {"Name": "A"}).status_code == 201


# --------------------------------------------------------------------------- sObject Collections


def collection(api: httpx.Client, sobject: str, records: list[dict[str, Any]], all_or_none: bool = False) -> Any:
    body = {"allOrNone": all_or_none, "records": [{"attributes": {"type": sobject}, **r} for r in records]}
    response = api.patch(f"{V}/composite/sobjects/{sobject}/ExternalID__c", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_collection_upsert_answers_200_with_per_item_results(org: SalesforceSandbox, api: httpx.Client) -> None:
    existing = upsert(api, "Contact", "C-1", {"LastName": "Old"}).json()["id"]
    results = collection(api, "Contact", [{"ExternalID__c": "C-1", "LastName": "New"},
                                          {"ExternalID__c": "C-2", "FirstName": "NoLast"},
                                          {"ExternalID__c": "C-3", "LastName": "Three"}])
    assert [r["success"] for r in results] == [True, False, True]
    assert results[0] == {"id": existing, "success": True, "errors": [], "created": False}
    assert results[1]["errors"] == [{"statusCode": "REQUIRED_FIELD_MISSING",
                                     "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]
    assert results[2]["created"] is True


def test_collection_all_or_none_rolls_everything_back(org: SalesforceSandbox, api: httpx.Client,
                                                      published: list[ChangeEvent]) -> None:
    results = collection(api, "Contact", [{"ExternalID__c": "C-1", "LastName": "One"},
                                          {"ExternalID__c": "C-2", "Bogus__c": 1}], all_or_none=True)
    assert [r["errors"][0]["statusCode"] for r in results] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "INVALID_FIELD"]
    assert org.records("Contact") == [] and published == []


def test_collection_duplicate_external_id_names_the_matching_ids(org: SalesforceSandbox, api: httpx.Client) -> None:
    ids = [org.create_record("Contact", LastName="A", ExternalID__c="C-7") for _ in range(2)]
    (result,) = collection(api, "Contact", [{"ExternalID__c": "C-7", "LastName": "B"}])
    assert result["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"
    assert all(record_id in result["errors"][0]["message"] for record_id in ids)


def test_collection_over_200_records_is_400(api: httpx.Client) -> None:
    body = {"records": [{"attributes": {"type": "Contact"}, "ExternalID__c": f"C-{i}", "LastName": "x"}
                        for i in range(201)]}
    response = api.patch(f"{V}/composite/sobjects/Contact/ExternalID__c", json=body)
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# --------------------------------------------------------------------------- composite, price books, orders


def order_composite(org: SalesforceSandbox, entry_ids: list[str], *, all_or_none: bool = True) -> dict[str, Any]:
    items = [{"method": "POST", "url": f"{V}/sobjects/OrderItem", "referenceId": f"item{i}",
              "body": {"OrderId": "@{order.id}", "PricebookEntryId": entry, "Quantity": 2, "UnitPrice": 10.5}}
             for i, entry in enumerate(entry_ids)]
    return {"allOrNone": all_or_none, "compositeRequest": [
        {"method": "PATCH", "url": f"{V}/sobjects/Account/ExternalID__c/C-501", "referenceId": "account",
         "body": {"Name": "Acme"}},
        {"method": "POST", "url": f"{V}/sobjects/Order", "referenceId": "order",
         "body": {"AccountId": "@{account.id}", "EffectiveDate": "2024-05-01", "Status": "Draft",
                  "Pricebook2Id": org.standard_price_book_id, "ExternalID__c": "CL-10001"}},
        *items]}


def test_composite_order_with_items_in_one_call_resolves_references(org: SalesforceSandbox,
                                                                    api: httpx.Client) -> None:
    entry = org.add_product("DESK", "Desk", 10.5)["standard"]
    response = api.post(f"{V}/composite", json=order_composite(org, [entry, entry]))
    answers = response.json()["compositeResponse"]
    assert response.status_code == 200 and [a["httpStatusCode"] for a in answers] == [201, 201, 201, 201]
    (order,) = org.records("Order")
    assert order["AccountId"] == answers[0]["body"]["id"] and order["TotalAmount"] == 42.0
    assert org.api_usage == 1  # the token does not count; the composite counts once


def test_composite_all_or_none_failure_rolls_back_and_halts_the_others(org: SalesforceSandbox, api: httpx.Client,
                                                                       published: list[ChangeEvent]) -> None:
    other_book = org._insert("Pricebook2", {"Name": "Wholesale", "IsActive": True})
    foreign = org.add_product("CHAIR", "Chair", 5, price_book_id=other_book)["custom"]
    answers = api.post(f"{V}/composite", json=order_composite(org, [foreign])).json()["compositeResponse"]
    assert [a["httpStatusCode"] for a in answers] == [400, 400, 400]
    assert answers[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert answers[2]["body"][0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert org.records("Order") == [] and org.records("Account") == [] and published == []


def test_composite_reference_to_a_failed_subrequest_is_processing_halted(org: SalesforceSandbox,
                                                                          api: httpx.Client) -> None:
    body = {"allOrNone": False, "compositeRequest": [
        {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "account", "body": {}},
        {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "contact",
         "body": {"LastName": "Doe", "AccountId": "@{account.id}"}}]}
    answers = api.post(f"{V}/composite", json=body).json()["compositeResponse"]
    assert answers[0]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert answers[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"


def test_composite_subrequest_setting_authorization_fails_the_call(api: httpx.Client) -> None:
    body = {"compositeRequest": [{"method": "GET", "url": f"{V}/limits", "referenceId": "a",
                                  "httpHeaders": {"Authorization": "Bearer x"}}]}
    assert api.post(f"{V}/composite", json=body).status_code == 400


def test_price_book_query_by_product_codes(org: SalesforceSandbox, api: httpx.Client) -> None:
    desk = org.add_product("DESK", "Desk", 899)
    org.add_product("ARM", "Arm", 200, active=False)
    org.add_product("SOCK", "Sock", 5)
    soql = ("SELECT Id, UnitPrice, IsActive, Product2.ProductCode FROM PricebookEntry "
            f"WHERE Pricebook2Id = '{org.standard_price_book_id}' AND Product2.ProductCode IN ('DESK', 'ARM')")
    body = api.get(f"{V}/query", params={"q": soql}).json()
    assert body["done"] is True and body["totalSize"] == 2
    rows = {row["Product2"]["ProductCode"]: row for row in body["records"]}
    assert rows["DESK"]["Id"] == desk["standard"] and rows["DESK"]["UnitPrice"] == 899
    assert rows["ARM"]["IsActive"] is False


@pytest.mark.parametrize("soql", ["SELECT FROM", "SELECT Id FROM Nope__x", "SELECT Shoe FROM Account",
                                  "SELECT Id FROM Account WHERE Name = 'a' OR Name = 'b'"])
def test_bad_soql_is_400(api: httpx.Client, soql: str) -> None:
    response = api.get(f"{V}/query", params={"q": soql})
    assert response.status_code == 400 and response.json()[0]["errorCode"] in (
        "MALFORMED_QUERY", "INVALID_TYPE", "INVALID_FIELD")


def test_order_is_created_draft_and_activates_only_with_items(org: SalesforceSandbox, api: httpx.Client) -> None:
    account = upsert(api, "Account", "C-1", {"Name": "A"}).json()["id"]
    order = {"AccountId": account, "EffectiveDate": "2024-05-01", "Pricebook2Id": org.standard_price_book_id}
    assert api.post(f"{V}/sobjects/Order", json={**order, "Status": "Activated"}).status_code == 400
    order_id = api.post(f"{V}/sobjects/Order", json={**order, "Status": "Draft"}).json()["id"]
    empty = api.patch(f"{V}/sobjects/Order/{order_id}", json={"Status": "Activated"})
    assert empty.status_code == 400
    entry = org.add_product("DESK", "Desk", 1)["standard"]
    api.post(f"{V}/sobjects/OrderItem", json={"OrderId": order_id, "PricebookEntryId": entry, "Quantity": 1,
                                               "UnitPrice": 1})
    assert api.patch(f"{V}/sobjects/Order/{order_id}", json={"Status": "Activated"}).status_code == 204


# --------------------------------------------------------------------------- Change Data Capture


def test_api_writes_emit_cdc_with_the_calling_client_in_change_origin(org: SalesforceSandbox, api: httpx.Client,
                                                                      published: list[ChangeEvent]) -> None:
    record_id = upsert(api, "Contact", "C-1", {"LastName": "Doe", "Phone": "1"}).json()["id"]
    upsert(api, "Contact", "C-1", {"Phone": "2"})
    created, updated = published
    assert created.header["changeType"] == "CREATE" and created.payload["LastName"] == "Doe"
    assert created.header["changeOrigin"] == f"com/salesforce/api/rest/62.0;client={CLIENT}"
    assert updated.header["changedFields"] == ["LastModifiedDate", "Phone"]
    assert updated.header["recordIds"] == [record_id] and "LastName" not in updated.payload
    assert created.envelope["detail-type"] == "ContactChangeEvent"
    assert created.envelope["source"] == org.partner_event_source


def test_a_reps_edit_has_no_change_origin_and_carries_only_changed_and_nulled_fields(
    org: SalesforceSandbox, published: list[ChangeEvent]
) -> None:
    contact = org.create_record("Contact", LastName="Doe", Phone="1", Email="a@example.org")
    org.update_record("Contact", contact, Phone="+1 555 0199", Email=None)
    event = published[-1]
    assert event.header["changeOrigin"] == ""
    assert event.header["changedFields"] == ["Email", "LastModifiedDate", "Phone"]
    assert event.header["nulledFields"] == ["Email"]
    assert event.payload["Phone"] == "+1 555 0199"


def test_one_change_to_several_records_is_one_event_with_all_record_ids(org: SalesforceSandbox,
                                                                         published: list[ChangeEvent]) -> None:
    ids = [org.create_record("Account", Name=f"A{i}") for i in range(3)]
    published.clear()
    org.bulk_update("Account", ids, Industry="Retail")
    (event,) = published
    assert event.header["recordIds"] == ids and event.header["changeType"] == "UPDATE"


def test_delete_and_gap_events(org: SalesforceSandbox, published: list[ChangeEvent]) -> None:
    account = org.create_record("Account", Name="A")
    org.delete_record("Account", account)
    org.emit_gap("Account", [account, "001000000000000AAA"], "GAP_UPDATE")
    assert [e.header["changeType"] for e in published] == ["CREATE", "DELETE", "GAP_UPDATE"]
    assert published[-1].header["recordIds"] == [account, "001000000000000AAA"]
    assert set(published[-1].payload) == {"ChangeEventHeader"}


def test_eventbridge_entries_carry_the_partner_source_and_detail(org: SalesforceSandbox,
                                                                 published: list[ChangeEvent]) -> None:
    org.create_record("Account", Name="A")
    (entry,) = eventbridge_entries(published, "partner-bus")
    assert entry["Source"].startswith("aws.partner/salesforce.com/") and entry["DetailType"] == "AccountChangeEvent"
    assert entry["EventBusName"] == "partner-bus" and '"ChangeEventHeader"' in entry["Detail"]


def test_objects_without_cdc_emit_nothing(org: SalesforceSandbox, published: list[ChangeEvent]) -> None:
    org.add_product("DESK", "Desk", 1)
    assert published == []
