"""streak-to-nopcommerce against the nopCommerce sandbox: a rep's edit of a Streak contact reaches the shop's
customer with that e-mail (fields and text custom attributes), per the mapping's master rules; a redelivery
writes nothing; an older edit arriving late is stale; Switchyard's own contact writes coming back are echoes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from switchyard.echoes import EchoSuppressingTarget, InMemoryEchoLedger
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import MappingError, PermanentError
from switchyard.events import FlowEvent
from switchyard.pairs.nopcommerce_streak import (
    StreakContactToNopCommerceTarget,
    load_contact_mapping,
    parse_contact_mapping,
)
from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
from switchyard.systems.nopcommerce.customer_attributes import parse_values
from switchyard_local.sandboxes.nopcommerce import DEFAULT_API_EMAIL, DEFAULT_API_PASSWORD, NopCommerceSandbox

from tests.conftest import SAMPLES_DIR, FakeClock

FLOW = "streak-to-nopcommerce"
EDITED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def shop() -> NopCommerceSandbox:
    return NopCommerceSandbox(clock=FakeClock())


@pytest.fixture
def client(shop: NopCommerceSandbox) -> Iterator[NopCommerceClient]:
    connection = NopCommerceConnection(base_url="http://shop.test", email=DEFAULT_API_EMAIL,
                                       password=DEFAULT_API_PASSWORD)
    with NopCommerceClient(connection, transport=httpx.WSGITransport(app=shop.wsgi_app)) as nop:
        yield nop


@pytest.fixture
def state() -> InMemoryEntityState:
    return InMemoryEntityState()


@pytest.fixture
def target(client: NopCommerceClient, state: InMemoryEntityState) -> StreakContactToNopCommerceTarget:
    return StreakContactToNopCommerceTarget(load_contact_mapping(f"{FLOW}.yaml"), client, state)


def contact(**changes: Any) -> dict[str, Any]:
    (sample,) = json.loads((SAMPLES_DIR / "streak_contact_update.json").read_text())
    return {**sample, **changes}


def event(data: dict[str, Any], *, at: datetime = EDITED, event_id: str = "evt-1") -> FlowEvent:
    return FlowEvent(flow=FLOW, event_id=event_id, source="streak", type="CONTACT_UPDATE", timestamp=at, data=data)


def seeded(shop: NopCommerceSandbox, **fields: Any) -> dict[str, Any]:
    shop.seed_customer_attribute("Job title")
    shop.seed_customer_attribute("LinkedIn")
    shop.seed_customer_attribute("Account notes", control_type=10)
    shop.seed_customer_attribute("Newsletter", control_type=1, values=("Weekly", "Monthly"))  # a dropdown
    shop.seed_customer_attribute("Birthday", control_type=20)  # a date picker: not written
    return shop.seed_customer("Janet@Private.example", FirstName="Jan", LastName="Doe", **fields)


def attributes_by_name(shop: NopCommerceSandbox, customer: dict[str, Any]) -> dict[str, list[str]]:
    names = {1: "Job title", 2: "LinkedIn", 3: "Account notes", 4: "Newsletter", 5: "Birthday"}  # as seeded()
    return {names[i]: v for i, v in parse_values(customer["custom_customer_attributes_xml"]).items()}


def test_contact_edit_updates_the_customer_fields_and_text_attributes(shop, target):
    # Given a shop customer with the contact's e-mail (another case), a name to correct and a phone of her own
    customer = seeded(shop, Phone="+44 20 7946 0000")

    # When the rep's edit arrives
    result = target.deliver(event(contact()))

    # Then names and the text attributes are the rep's; the shopper's phone stays (nopcommerce_if_set), and the
    # notes attribute is the shop's own (master nopcommerce)
    stored = shop.customer(customer["id"])
    assert result.outcome == "updated"
    assert (stored["first_name"], stored["last_name"], stored["phone"]) == ("Janet", "Doe", "+44 20 7946 0000")
    assert attributes_by_name(shop, stored) == {"Job title": ["Head of Purchasing"], "LinkedIn": ["janet-doe"]}
    assert result.detail["written"] == ["first_name", "attribute:1", "attribute:2"]
    assert result.detail["not_master"] == ["Account notes"]
    # the whole customer was sent back: nothing the plugin does not know, nothing reset
    assert shop.snapshot()["ignored_fields"] == []
    assert (stored["email"], stored["active"], stored["customer_guid"]) == (
        customer["email"], True, customer["customer_guid"])


def test_contact_edit_fills_an_empty_shop_phone_and_keeps_other_attributes(shop, target):
    # Given a customer without a phone, holding a value of an attribute the mapping does not name
    held = '<Attributes><CustomerAttribute ID="4"><CustomerAttributeValue><Value>7</Value>' \
           '</CustomerAttributeValue></CustomerAttribute></Attributes>'
    customer = seeded(shop, CustomCustomerAttributesXML=held)

    target.deliver(event(contact()))

    stored = shop.customer(customer["id"])
    assert stored["phone"] == "+1 555 0123"
    assert attributes_by_name(shop, stored)["Newsletter"] == ["7"]


def test_redelivered_or_unchanged_contact_edit_writes_nothing(shop, target):
    customer = seeded(shop)
    assert target.deliver(event(contact())).outcome == "updated"
    writes = len([r for r in shop.requests if r[1].lower().endswith("/customer/update")])

    again = target.deliver(event(contact()))
    same_later = target.deliver(event(contact(), at=EDITED + timedelta(minutes=5), event_id="evt-2"))

    assert (again.outcome, same_later.outcome) == ("unchanged", "unchanged")
    assert len([r for r in shop.requests if r[1].lower().endswith("/customer/update")]) == writes
    assert shop.customer(customer["id"])["first_name"] == "Janet"


def test_older_contact_edit_arriving_late_is_stale(shop, target):
    customer = seeded(shop)
    target.deliver(event(contact(title="Buyer"), at=EDITED, event_id="evt-new"))

    late = target.deliver(event(contact(title="Intern"), at=EDITED - timedelta(seconds=30), event_id="evt-old"))

    assert late.outcome == "stale"
    assert attributes_by_name(shop, shop.customer(customer["id"]))["Job title"] == ["Buyer"]


def test_same_millisecond_edits_are_both_applied(shop, target):
    customer = seeded(shop)
    target.deliver(event(contact(title="Buyer"), event_id="evt-a"))

    second = target.deliver(event(contact(title="Lead buyer"), event_id="evt-b"))

    assert second.outcome == "updated"
    assert attributes_by_name(shop, shop.customer(customer["id"]))["Job title"] == ["Lead buyer"]


def test_contact_found_by_its_second_email_and_empty_values_erase_nothing(shop, target):
    customer = seeded(shop, Company="Acme")
    edited = contact(emailAddresses=["janet@work.example", "janet@private.example"], givenName="  ",
                     title=None, linkedinHandle="")

    result = target.deliver(event(edited))

    stored = shop.customer(customer["id"])
    assert result.outcome == "updated"
    assert (stored["first_name"], stored["company"]) == ("Jan", "Acme")  # a blank name is no reason to erase
    assert result.detail["written"] == ["phone"]


def test_contact_without_a_shop_customer_or_an_email_is_filtered(shop, target):
    seeded(shop)
    assert target.deliver(event(contact(emailAddresses=["nobody@example.com"]))).outcome == "filtered"
    assert target.deliver(event(contact(emailAddresses=[]))).outcome == "filtered"


def test_deleted_customer_is_not_updated(shop, target):
    customer = seeded(shop, Deleted=True)

    result = target.deliver(event(contact()))

    assert result.outcome == "filtered"
    assert shop.customer(customer["id"])["first_name"] == "Jan"


def test_attribute_the_shop_lacks_dead_letters_with_its_name(shop, client, state):
    seeded(shop)
    mapping = parse_contact_mapping(MAPPING.replace("Job title", "Department"), name="test")
    target = StreakContactToNopCommerceTarget(mapping, client, state)

    with pytest.raises(PermanentError, match="no text, dropdown or radio customer attribute 'Department'") as raised:
        target.deliver(event(contact()))
    assert raised.value.reason == "mapping_error"


def test_dropdown_attribute_takes_the_predefined_value_of_that_name(shop, client, state):
    customer = seeded(shop)
    mapping = parse_contact_mapping(MAPPING.replace("Job title", "Newsletter"), name="test")

    result = StreakContactToNopCommerceTarget(mapping, client, state).deliver(event(contact(title=" monthly ")))

    # the XML holds the id of the CustomerAttributeValue "Monthly", as nopCommerce's own form writes it
    assert result.outcome == "updated"
    assert attributes_by_name(shop, shop.customer(customer["id"]))["Newsletter"] == ["2"]


def test_dropdown_value_the_shop_does_not_offer_is_left_and_reported(shop, client, state):
    customer = seeded(shop)
    mapping = parse_contact_mapping(MAPPING.replace("Job title", "Newsletter"), name="test")

    result = StreakContactToNopCommerceTarget(mapping, client, state).deliver(event(contact(title="Daily")))

    stored = shop.customer(customer["id"])
    assert (result.outcome, result.detail["not_an_option"]) == ("updated", {"Newsletter": "Daily"})
    assert stored["first_name"] == "Janet" and "Newsletter" not in attributes_by_name(shop, stored)


def test_date_attribute_is_not_written(shop, client, state):
    seeded(shop)
    mapping = parse_contact_mapping(MAPPING.replace("Job title", "Birthday"), name="test")

    with pytest.raises(PermanentError, match="Birthday"):
        StreakContactToNopCommerceTarget(mapping, client, state).deliver(event(contact()))


def test_our_own_contact_write_coming_back_is_an_echo(shop, target):
    # Given nopcommerce-to-streak wrote this contact from an order (it records the echo before writing)
    customer = seeded(shop)
    ledger = InMemoryEchoLedger()
    written = contact()
    ledger.record("streak", "contact", written["key"], written)
    worker_target = EchoSuppressingTarget(target, ledger)

    # When Streak's CONTACT_UPDATE for that write arrives, and then a rep's edit of the same contact
    echo = worker_target.deliver(event(written))
    edit = worker_target.deliver(event(contact(familyName="Doe-Smith"), event_id="evt-2",
                                       at=EDITED + timedelta(minutes=1)))

    # Then the echo writes nothing; the rep's edit goes through
    assert echo.outcome == "echo"
    assert (edit.outcome, shop.customer(customer["id"])["last_name"]) == ("updated", "Doe-Smith")


MAPPING = """
flow: streak-to-nopcommerce
target: nopcommerce
source: streak
events: {CONTACT_UPDATE: update_customer}
customer:
  first_name: {path: givenName}
attributes:
  Job title: {path: title}
master: {first_name: streak, Job title: streak}
"""


@pytest.mark.parametrize(("change", "message"), [
    (("first_name: {path: givenName}", "email: {path: emailAddresses, transforms: [first]}"),
     "not nopCommerce customer fields"),
    (("master: {first_name: streak, Job title: streak}", "master: {first_name: streak}"),
     "say which system wins for Job title"),
    (("master: {first_name: streak, Job title: streak}", "master: {first_name: streak, Job title: crm}"),
     "Job title"),
    (("master: {first_name: streak, Job title: streak}",
      "master: {first_name: streak, Job title: streak, phone: streak}"), "phone is not mapped"),
])
def test_mapping_document_is_checked_when_it_loads(change, message):
    with pytest.raises(MappingError, match=message):
        parse_contact_mapping(MAPPING.replace(*change), name="test")
