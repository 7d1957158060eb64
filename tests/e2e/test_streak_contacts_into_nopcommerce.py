"""End to end on the local stack: a rep's edit of a Streak contact reaches the nopCommerce customer
(streak-to-nopcommerce), while the contact writes nopcommerce-to-streak makes from an order come back as
echoes and change nothing in the shop.

The stack is shared with other modules: this one keeps to its own e-mail addresses and order numbers.
"""

from __future__ import annotations

import itertools
import json
import uuid

import httpx
import pytest
from switchyard.systems.nopcommerce.customer_attributes import parse_values
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FLOW = "streak-to-nopcommerce"
_numbers = itertools.count(7601)  # order numbers no other module of the shared stack uses


@pytest.fixture
def settled(stack):
    stack.subscribe_to_vendor_webhooks()  # the stack is shared: Streak's webhooks must point at it
    names = {a["name"] for a in stack.nopcommerce.snapshot_customer_attributes()}
    for name in ("Job title", "LinkedIn") if "Job title" not in names else ():
        stack.nopcommerce.seed_customer_attribute(name)
    yield stack
    assert stack.drain(timeout=60), "did not settle"


def attribute_ids(stack: LocalStack) -> dict[str, int]:
    return {a["name"]: a["id"] for a in stack.nopcommerce.snapshot_customer_attributes()}


def place_order(stack: LocalStack, number: int, email: str, *, phone: str | None = None) -> None:
    """The shop's webhook sender posts the order (nopcommerce-to-streak makes the deal and the contact)."""
    event = json.loads(sample("nop_order_b2b"))
    # a customer of its own: the sample's customer id is linked to another contact by earlier modules' orders
    event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=str(uuid.UUID(int=number)),
                                  CustomerId=number)
    event["data"]["Customer"].update(Id=number, Email=email, FirstName="Jane", LastName="Shopper", Phone=phone)
    event["data"]["BillingAddress"].update(Email=email, PhoneNumber=phone)
    body = json.dumps(event).encode()
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as http:
        status, _ = post_webhook(http, "nopcommerce", body, signed_headers(stack.signing_secret, body))
    assert status == 202
    assert stack.drain(timeout=60)


def contact_with(stack: LocalStack, email: str) -> dict:
    (contact,) = [c for c in stack.streak.snapshot()["contacts"] if email in c["emailAddresses"]]
    return contact


def outcomes(stack: LocalStack, since: int) -> list[str]:
    return [o["outcome"] for o in stack.outcomes(FLOW)[since:]]


def test_rep_edit_of_a_contact_updates_the_shop_customer_and_our_own_contact_write_is_an_echo(settled):
    number = next(_numbers)
    email = f"jane.{number}@shopper.example"
    customer = settled.nopcommerce.seed_customer(email, FirstName="Jane", LastName="Shopper")
    before = len(settled.outcomes(FLOW))

    # Given an order of that customer: nopcommerce-to-streak creates the contact and fills its names
    place_order(settled, number, email)

    # Then the CONTACT_UPDATE of that write reached this flow as an echo, and the shop was not written
    assert "echo" in outcomes(settled, before)
    assert not [o for o in outcomes(settled, before) if o == "updated"]
    assert settled.nopcommerce.customer(customer["id"])["first_name"] == "Jane"

    # When a rep corrects the name and adds a title, a phone and a LinkedIn handle
    contact = contact_with(settled, email)
    edited_at = len(settled.outcomes(FLOW))
    settled.streak.edit_contact(contact["key"], givenName="Janine", title="Head of Purchasing",
                                phoneNumbers=["+1 555 0188"], linkedinHandle="janine-shopper")
    assert settled.drain(timeout=60)

    # Then the shop's customer has them (the empty phone filled), and nothing sits in the DLQ
    stored = settled.nopcommerce.customer(customer["id"])
    ids = attribute_ids(settled)
    held = parse_values(stored["custom_customer_attributes_xml"])
    assert [o for o in outcomes(settled, edited_at) if o != "duplicate"] == ["updated"]  # Streak may resend
    assert (stored["first_name"], stored["last_name"], stored["phone"]) == ("Janine", "Shopper", "+1 555 0188")
    assert (held[ids["Job title"]], held[ids["LinkedIn"]]) == (["Head of Purchasing"], ["janine-shopper"])
    assert [d for d in settled.dead_letters(FLOW) if email in json.dumps(d)] == []


def test_rep_edit_does_not_replace_a_phone_the_shopper_gave(settled):
    number = next(_numbers)
    email = f"jane.{number}@shopper.example"
    customer = settled.nopcommerce.seed_customer(email, FirstName="Jane", LastName="Shopper", Phone="+44 20 7946 0018")
    place_order(settled, number, email, phone="+44 20 7946 0018")

    settled.streak.edit_contact(contact_with(settled, email)["key"], phoneNumbers=["+1 555 0199"],
                                familyName="Shopper-Smith")
    assert settled.drain(timeout=60)

    stored = settled.nopcommerce.customer(customer["id"])
    assert (stored["last_name"], stored["phone"]) == ("Shopper-Smith", "+44 20 7946 0018")
