"""clarity-to-salesforce against the org sandbox: customers, orders, products and stock, per mapping rule."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import OutOfOrderError, PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.salesforce import client as sf
from switchyard.systems.salesforce.client import MultipleMatchesError, SalesforceClient, SalesforceConnection
from switchyard.systems.salesforce.mapping import load_salesforce_mapping, parse_salesforce_mapping
from switchyard.systems.salesforce.target import SalesforceTarget
from switchyard_local.sandboxes.salesforce import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SalesforceSandbox

from tests.conftest import SAMPLES_DIR, FakeClock

FLOW = "clarity-to-salesforce"
CLIENT = "switchyard-clarity-to-salesforce"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "SESSIONS", sf._SessionCache())


@pytest.fixture
def org() -> SalesforceSandbox:
    return SalesforceSandbox(instance_url="https://acme.my.salesforce.test", clock=FakeClock(1_700_000_000.0))


@pytest.fixture
def warnings() -> list[str]:
    return []


def make_target(org: SalesforceSandbox, warnings: list[str], mapping: Any = None) -> SalesforceTarget:
    client = SalesforceClient(SalesforceConnection(base_url="https://acme.my.salesforce.test",
                                                   client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET),
                              call_options_client=CLIENT, transport=httpx.WSGITransport(app=org.wsgi_app))
    return SalesforceTarget(mapping or load_salesforce_mapping(f"{FLOW}.yaml"), client, InMemoryEntityState(),
                            warn=warnings.append)


@pytest.fixture
def target(org: SalesforceSandbox, warnings: list[str]) -> SalesforceTarget:
    return make_target(org, warnings)


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.json").read_text(), parse_float=Decimal)


def event(event_type: str, data: dict[str, Any], *, at: datetime = T0, event_id: str | None = None) -> FlowEvent:
    return FlowEvent(flow=FLOW, event_id=event_id or f"msg_{event_type}_{at.timestamp()}", source="clarity",
                     type=event_type, timestamp=at, data=data)


def api_calls(org: SalesforceSandbox) -> list[str]:
    return [f"{method} {path}" for method, path, _ in org.requests if path != "/services/oauth2/token"]


# --------------------------------------------------------------------------- customers


def test_b2b_registration_is_an_account_and_contact_in_one_call(org: SalesforceSandbox,
                                                                target: SalesforceTarget) -> None:
    result = target.deliver(event("customer.created", sample("clarity_customer_created")["data"]))
    (account,) = org.records("Account")
    (contact,) = org.records("Contact")
    assert (account["Name"], account["Type"], account["ExternalID__c"]) == ("Analytical Engines Ltd",
                                                                           "Customer - Direct", "C-601")
    assert (contact["LastName"], contact["Email"], contact["AccountId"]) == (
        "Byron", "ada.byron@analytical-engines.example", account["Id"])
    assert result.outcome == "created" and result.detail["b2b"] is True
    assert api_calls(org) == ["POST /services/data/v62.0/composite"]
    assert all(e.header["changeOrigin"].endswith(f";client={CLIENT}") for e in org.change_events)


def test_a_consumer_gets_a_household_account_named_after_them(org: SalesforceSandbox,
                                                              target: SalesforceTarget) -> None:
    data = {**sample("clarity_customer_created")["data"], "company": None}
    target.deliver(event("customer.created", data))
    (account,) = org.records("Account")
    assert (account["Name"], account["Type"]) == ("Ada Byron", "Consumer")


def test_missing_last_name_takes_the_fallback_and_counts_a_warning(org: SalesforceSandbox, target: SalesforceTarget,
                                                                   warnings: list[str]) -> None:
    data = {**sample("clarity_customer_created")["data"], "lastName": "  ", "company": None, "firstName": ""}
    result = target.deliver(event("customer.created", data))
    (contact,) = org.records("Contact")
    (account,) = org.records("Account")
    assert contact["LastName"] == account["Name"] == "ada.byron@analytical-engines.example"
    assert warnings == ["fallback:Contact.LastName", "fallback:Account.Name"]
    assert result.detail["fallbacks"] == ["Contact.LastName", "Account.Name"]


def test_an_update_does_not_overwrite_fields_salesforce_owns(org: SalesforceSandbox, target: SalesforceTarget) -> None:
    data = sample("clarity_customer_created")["data"]
    target.deliver(event("customer.created", data))
    (account,) = org.records("Account")
    org.update_record("Account", account["Id"], Phone="+44 20 0000 0001")  # the switchboard, kept in Salesforce
    changed = {**data, "phone": "+44 7700 900123", "email": "ada@new.example"}
    target.deliver(event("customer.updated", changed, at=T0 + timedelta(minutes=1)))
    assert org.records("Account")[0]["Phone"] == "+44 20 0000 0001"
    (contact,) = org.records("Contact")
    assert (contact["Phone"], contact["Email"]) == ("+44 7700 900123", "ada@new.example")


def test_an_older_event_never_overwrites_a_newer_one(org: SalesforceSandbox, target: SalesforceTarget) -> None:
    data = sample("clarity_customer_created")["data"]
    target.deliver(event("customer.updated", {**data, "phone": "new"}, at=T0 + timedelta(seconds=5)))
    result = target.deliver(event("customer.updated", {**data, "phone": "old"}, at=T0))
    assert result.outcome == "stale" and org.records("Contact")[0]["Phone"] == "new"


def test_several_contacts_sharing_the_key_go_to_the_dlq_with_their_ids(org: SalesforceSandbox,
                                                                      target: SalesforceTarget) -> None:
    ids = [org.create_record("Contact", LastName="Byron", ExternalID__c="C-601") for _ in range(2)]
    with pytest.raises(MultipleMatchesError) as error:
        target.deliver(event("customer.created", sample("clarity_customer_created")["data"]))
    assert error.value.matching_ids == ids and error.value.error_class == "permanent"
    assert org.records("Account") == []  # all or none: the account upsert was rolled back


# --------------------------------------------------------------------------- orders


def order_data(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(sample("clarity_order_b2b")["data"])
    data.update(changes)
    return data


def test_an_order_is_an_order_with_items_in_one_composite_after_one_price_book_query(
    org: SalesforceSandbox, target: SalesforceTarget
) -> None:
    desk = org.add_product("DESK-STD-01", "Desk", 450)["standard"]
    arm = org.add_product("ARM-MON-02", "Arm", 99.75)["standard"]
    result = target.deliver(event("order.created", order_data()))
    (order,) = org.records("Order")
    items = sorted(org.records("OrderItem"), key=lambda i: i["ExternalID__c"])
    assert (order["Status"], order["ExternalID__c"], order["Pricebook2Id"]) == ("Draft", "CL-10001",
                                                                                org.standard_price_book_id)
    assert order["AccountId"] == org.records("Account")[0]["Id"]
    assert [(i["PricebookEntryId"], i["Quantity"], i["UnitPrice"]) for i in items] == [(desk, 2, 450),
                                                                                       (arm, 4, 99.75)]
    assert order["TotalAmount"] == 1299.0 and result.outcome == "created"
    calls = api_calls(org)
    assert calls[-1] == "POST /services/data/v62.0/composite" and len(calls) == 3  # standard book, entries, write


def test_a_redelivered_order_writes_nothing_twice_and_entries_come_from_the_cache(
    org: SalesforceSandbox, target: SalesforceTarget
) -> None:
    org.add_product("DESK-STD-01", "Desk", 450)
    org.add_product("ARM-MON-02", "Arm", 99.75)
    target.deliver(event("order.created", order_data(), event_id="msg_1"))
    before = len(api_calls(org))
    target.deliver(event("order.created", order_data(), event_id="msg_2"))
    assert len(org.records("Order")) == 1 and len(org.records("OrderItem")) == 2
    assert len(api_calls(org)) == before + 1  # the composite only


def test_a_product_without_an_active_entry_is_a_permanent_error_naming_it(org: SalesforceSandbox,
                                                                         target: SalesforceTarget) -> None:
    org.add_product("DESK-STD-01", "Desk", 450)
    org.add_product("ARM-MON-02", "Arm", 99.75, active=False)
    with pytest.raises(PermanentError, match="ARM-MON-02") as error:
        target.deliver(event("order.created", order_data()))
    assert error.value.reason == "no_active_price_book_entry"
    assert org.records("Order") == []


def test_a_negative_total_is_rejected_by_the_mapping(org: SalesforceSandbox, target: SalesforceTarget) -> None:
    with pytest.raises(PermanentError, match="negative") as error:
        target.deliver(event("order.created", order_data(totalAmount=Decimal("-1"))))
    assert error.value.reason == "rejected_by_mapping" and api_calls(org) == []


def test_a_large_order_goes_in_batches_of_25_subrequests(org: SalesforceSandbox, target: SalesforceTarget) -> None:
    org.add_product("DESK-STD-01", "Desk", 1)
    lines = [{"sku": "DESK-STD-01", "name": f"Desk {n}", "quantity": 1, "unitPrice": Decimal(1)} for n in range(30)]
    result = target.deliver(event("order.created", order_data(lineItems=lines)))
    assert len(org.records("OrderItem")) == 30 and result.detail["calls"] == 2


def test_the_mapping_can_make_an_opportunity_with_line_items(org: SalesforceSandbox, warnings: list[str]) -> None:
    text = (SAMPLES_DIR.parents[2] / "shared/switchyard/config/mappings" / f"{FLOW}.yaml").read_text()
    text = text.replace("  record: Order ", "  record: Opportunity ").replace(
        """    EffectiveDate: {path: orderDate, transforms: [date]}
    Status: {const: Draft}""", """    Name: {template: "Clarity {orderId}"}
    StageName: {path: status, transforms: [{lookup: stage_by_status}]}
    CloseDate: {path: orderDate, transforms: [date]}
    Amount: {path: totalAmount, transforms: [decimal]}""")
    target = make_target(org, warnings, parse_salesforce_mapping(text, name="opportunity.yaml"))
    org.add_product("DESK-STD-01", "Desk", 450)
    org.add_product("ARM-MON-02", "Arm", 99.75)
    target.deliver(event("order.created", order_data(status="processing")))
    (opportunity,) = org.records("Opportunity")
    assert (opportunity["StageName"], opportunity["Amount"]) == ("Closed Won", 1299.0)
    assert len(org.records("OpportunityLineItem")) == 2 and org.records("Order") == []


# --------------------------------------------------------------------------- products and stock


def test_a_product_becomes_a_product2_with_its_standard_price_then_updates_it(org: SalesforceSandbox,
                                                                             target: SalesforceTarget) -> None:
    data = sample("clarity_product_updated")["data"]
    assert target.deliver(event("product.created", data)).outcome == "created"
    (product,) = org.records("Product2")
    entries = org.find("PricebookEntry", Product2Id=product["Id"])
    assert [(e["UnitPrice"], e["IsActive"]) for e in entries] == [(899, True)]
    target.deliver(event("product.updated", {**data, "price": Decimal("849.5"), "active": False},
                         at=T0 + timedelta(minutes=1)))
    entries = org.find("PricebookEntry", Product2Id=product["Id"])
    assert [(e["UnitPrice"], e["IsActive"]) for e in entries] == [(849.5, False)]
    assert org.records("Product2")[0]["IsActive"] is False


def test_stock_sets_the_configured_field_and_waits_for_an_unknown_product(org: SalesforceSandbox,
                                                                         target: SalesforceTarget) -> None:
    stock = sample("clarity_inventory_changed")["data"]
    with pytest.raises(OutOfOrderError):
        target.deliver(event("inventory.changed", stock))
    assert org.records("Product2") == []
    target.deliver(event("product.created", sample("clarity_product_updated")["data"]))
    target.deliver(event("inventory.changed", stock, at=T0 + timedelta(seconds=1)))
    assert org.records("Product2")[0]["StockOnHand__c"] == 17
