"""The Salesforce client against the org sandbox: auth, answers walked per item, errors classified,
the daily allocation guarded, every call tagged with Sforce-Call-Options."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from switchyard.errors import ConnectionConfigError, ConnectionDownError, PermanentError, RetryableError
from switchyard.rate_limit import RateLimitedError, ReportedAllocation
from switchyard.systems.salesforce import client as sf
from switchyard.systems.salesforce.client import (
    MultipleMatchesError,
    SalesforceClient,
    SalesforceConnection,
    UsageObserver,
)
from switchyard_local.sandboxes.salesforce import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SalesforceSandbox

from tests.conftest import FakeClock

CLIENT = "switchyard-test"
V = "/services/data/v62.0"


@pytest.fixture(autouse=True)
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "SESSIONS", sf._SessionCache())  # each test's org issues its own tokens


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def org(clock: FakeClock) -> SalesforceSandbox:
    return SalesforceSandbox(instance_url="https://acme.my.salesforce.test", clock=clock)


def connection(**changes: Any) -> SalesforceConnection:
    return SalesforceConnection.from_secret({"base_url": "https://acme.my.salesforce.test",
                                             "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                                             **changes})


def make_client(org: SalesforceSandbox, usage: UsageObserver | None = None, **changes: Any) -> SalesforceClient:
    return SalesforceClient(connection(**changes), call_options_client=CLIENT, usage=usage, connection_name="sf",
                            transport=httpx.WSGITransport(app=org.wsgi_app))


@pytest.fixture
def client(org: SalesforceSandbox) -> Iterator[SalesforceClient]:
    client = make_client(org)
    yield client
    client.close()


def test_connection_refuses_login_salesforce_com_and_bad_versions() -> None:
    with pytest.raises(ConnectionConfigError, match="My Domain"):
        connection(base_url="https://login.salesforce.com")
    with pytest.raises(ConnectionConfigError, match="api_version"):
        connection(api_version="62")


def test_token_is_fetched_once_and_reused(org: SalesforceSandbox, client: SalesforceClient) -> None:
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "B"})
    assert [path for _, path, _ in org.requests].count("/services/oauth2/token") == 1


def test_invalid_session_gets_one_new_token_and_one_retry(org: SalesforceSandbox, client: SalesforceClient) -> None:
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    org.expire_tokens()
    assert client.upsert("Account", "ExternalID__c", "C-1", {"Name": "B"}).created is False
    statuses = [(path, status) for _, path, status in org.requests]
    assert statuses[-3:] == [(f"{V}/sobjects/Account/ExternalID__c/C-1", 401), ("/services/oauth2/token", 200),
                             (f"{V}/sobjects/Account/ExternalID__c/C-1", 200)]


def test_requests_go_to_the_instance_url_from_the_token_answer() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t", "instance_url": "https://na1.salesforce.test"})
        return httpx.Response(201, json={"id": "001000000000001AAA", "success": True, "errors": [], "created": True})

    client = SalesforceClient(connection(), call_options_client=CLIENT, transport=httpx.MockTransport(handler))
    client.upsert("Account", "ExternalID__c", "C 1/2", {"Name": "A"})
    assert seen == ["https://acme.my.salesforce.test/services/oauth2/token",
                    f"https://na1.salesforce.test{V}/sobjects/Account/ExternalID__c/C%201%2F2"]


def test_rejected_client_credentials_take_the_connection_down(org: SalesforceSandbox) -> None:
    client = make_client(org, client_secret="wrong")
    with pytest.raises(ConnectionDownError) as error:
        client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    assert error.value.connection == "sf" and error.value.reason == "client_rejected"


def test_every_call_carries_sforce_call_options(org: SalesforceSandbox, client: SalesforceClient) -> None:
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    client.upsert_collection("Contact", "ExternalID__c", [{"ExternalID__c": "C-1", "LastName": "Doe"}])
    assert [c for _, _, c in org.call_options] == [CLIENT, CLIENT]
    assert all(e.header["changeOrigin"].endswith(f";client={CLIENT}") for e in org.change_events)


def test_300_is_multiple_matches_with_the_ids(org: SalesforceSandbox, client: SalesforceClient) -> None:
    ids = [org.create_record("Account", Name="A", ExternalID__c="C-1") for _ in range(2)]
    with pytest.raises(MultipleMatchesError) as error:
        client.upsert("Account", "ExternalID__c", "C-1", {"Name": "B"})
    assert error.value.matching_ids == ids and error.value.error_class == "permanent"


def test_collection_items_are_walked_duplicate_ids_become_multiple_matches(org: SalesforceSandbox,
                                                                           client: SalesforceClient) -> None:
    ids = [org.create_record("Contact", LastName="A", ExternalID__c="C-2") for _ in range(2)]
    with pytest.raises(MultipleMatchesError) as error:
        client.upsert_collection("Contact", "ExternalID__c", [{"ExternalID__c": "C-1", "LastName": "x"},
                                                              {"ExternalID__c": "C-2", "LastName": "y"}])
    assert error.value.matching_ids == ids


def test_collection_all_or_none_raises_the_real_failure_not_the_rollback(client: SalesforceClient) -> None:
    with pytest.raises(PermanentError, match="REQUIRED_FIELD_MISSING") as error:
        client.upsert_collection("Contact", "ExternalID__c", [{"ExternalID__c": "C-1", "LastName": "x"},
                                                              {"ExternalID__c": "C-2"}], all_or_none=True)
    assert error.value.reason == "target_rejected"


def test_locked_rows_are_retryable_as_an_answer_and_as_an_item(org: SalesforceSandbox,
                                                              client: SalesforceClient) -> None:
    org.lock_rows(1)
    with pytest.raises(RetryableError) as single:
        client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    org.lock_rows(1)
    with pytest.raises(RetryableError) as item:
        client.upsert_collection("Account", "ExternalID__c", [{"ExternalID__c": "C-1", "Name": "A"}])
    assert single.value.reason == item.value.reason == "record_locked"


def test_503_is_retryable(org: SalesforceSandbox, client: SalesforceClient) -> None:
    org.faults.fail_next(1, status=503)
    with pytest.raises(RetryableError) as error:
        client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    assert error.value.reason == "target_unavailable"


def test_request_limit_exceeded_403_is_throttling_not_an_auth_failure(org: SalesforceSandbox,
                                                                     client: SalesforceClient) -> None:
    org.set_api_usage(100_000)
    with pytest.raises(RetryableError) as error:
        client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    assert error.value.reason == "rate_limited" and error.value.retry_after == 900


def test_limit_info_feeds_the_metric_and_the_allocation_stops_calls_at_the_reserve(org: SalesforceSandbox) -> None:
    seen: list[tuple[int, int]] = []
    pauses: list[float] = []
    allocation = ReportedAllocation("salesforce#sf", reserve=0.1, slow_at=0.2, sleep=pauses.append)
    client = make_client(org, usage=UsageObserver(allocation, lambda used, limit: seen.append((used, limit))))
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "A"})
    assert seen == [(1, 100_000)] and pauses == []
    org.set_api_usage(85_000)
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "B"})  # learns: 15 % left
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "C"})  # paused before it
    assert pauses == [0.5]
    org.set_api_usage(90_000)
    client.upsert("Account", "ExternalID__c", "C-1", {"Name": "D"})
    calls = len(org.requests)
    with pytest.raises(RateLimitedError):
        client.upsert("Account", "ExternalID__c", "C-1", {"Name": "E"})
    assert len(org.requests) == calls  # refused before calling


def test_composite_walks_subresponses_and_raises_the_root_cause(org: SalesforceSandbox,
                                                               client: SalesforceClient) -> None:
    subrequests = [
        {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "account", "body": {"Name": "A"}},
        {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "contact",
         "body": {"AccountId": "@{account.id}"}},
    ]
    with pytest.raises(PermanentError, match=r"contact.*REQUIRED_FIELD_MISSING"):
        client.composite(subrequests)
    assert org.records("Account") == []
    subrequests[1]["body"] = {"AccountId": "@{account.id}", "LastName": "Doe"}
    answers = client.composite(subrequests)
    assert [a.status for a in answers] == [201, 201]


def test_query_and_get(org: SalesforceSandbox, client: SalesforceClient) -> None:
    product = org.add_product("DESK", "Desk", 899)
    rows = client.query(f"SELECT Id, UnitPrice FROM PricebookEntry WHERE Product2.ProductCode = 'DESK' "
                        f"AND Pricebook2Id = '{org.standard_price_book_id}'")
    assert [row["Id"] for row in rows] == [product["standard"]]
    assert client.get("Product2", product["product"], ["ProductCode"])["ProductCode"] == "DESK"  # type: ignore[index]
    org.delete_record("Product2", product["product"])
    assert client.get("Product2", product["product"]) is None
