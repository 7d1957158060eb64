"""End to end on the local stack: Clarity eCommerce ⇄ Salesforce through the deployed path (ingest → queue →
worker → org sandbox; org CDC → moto partner bus → rule with the input transformer → queue → worker →
Clarity), and no echo either way."""

from __future__ import annotations

import copy
import itertools

import pytest
from switchyard_local.sandboxes.clarity import DEMO_ORDERS
from switchyard_local.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-own")]
_customers = itertools.count(900)


@pytest.fixture(scope="module")
def stack(own_stack: LocalStack) -> LocalStack:
    return own_stack


def settle(stack: LocalStack) -> None:
    assert stack.drain(timeout=60), "did not settle"


def register(stack: LocalStack) -> dict:
    number = next(_customers)
    customer = stack.clarity.register_customer({"customerId": f"C-{number}", "firstName": "Ada",
                                                "lastName": f"Byron{number}", "email": f"ada{number}@example.org",
                                                "phone": "+44 20 7946 0000", "company": f"Engines {number}"})
    settle(stack)
    return customer


def contact_of(stack: LocalStack, customer_id: str) -> dict:
    (contact,) = stack.salesforce.find("Contact", ExternalID__c=customer_id)
    return contact


def test_a_registration_becomes_an_account_and_a_contact(stack):
    customer = register(stack)
    contact = contact_of(stack, customer["customerId"])
    (account,) = stack.salesforce.find("Account", ExternalID__c=customer["customerId"])
    assert contact["AccountId"] == account["Id"] and account["Name"] == customer["company"]
    assert contact["Email"] == customer["email"]


def test_a_reps_phone_change_reaches_clarity_and_nothing_echoes(stack):
    customer = register(stack)
    contact = contact_of(stack, customer["customerId"])
    events_before = len(stack.salesforce.change_events)
    stack.salesforce.update_record("Contact", contact["Id"], Phone="+44 20 7946 0999")
    settle(stack)
    assert stack.clarity.get_customer(customer["customerId"])["phone"] == "+44 20 7946 0999"
    # the rep's change is the only change event: the Clarity webhook our write caused was recognised as an
    # echo, so nothing was written back to Salesforce
    assert len(stack.salesforce.change_events) == events_before + 1
    assert "echo" in [o["outcome"] for o in stack.outcomes("clarity-to-salesforce")]


def test_an_order_becomes_an_order_with_items(stack):
    number = next(_customers)
    order = copy.deepcopy(DEMO_ORDERS[0])
    order["customerId"] = order["customer"]["customerId"] = f"C-{number}"
    order["customer"]["email"] = f"buyer{number}@example.org"
    placed = stack.clarity.place_order(order)
    settle(stack)
    (sf_order,) = stack.salesforce.find("Order", ExternalID__c=placed["orderId"])
    items = [i for i in stack.salesforce.records("OrderItem") if i["OrderId"] == sf_order["Id"]]
    assert sf_order["Status"] == "Draft" and len(items) == 2 and sf_order["TotalAmount"] == 1299.0


def test_a_product_and_its_stock_arrive(stack):
    stack.clarity.put_product("LAMP-LED-01", name="LED desk lamp", price=49.9, currency="USD")
    stack.clarity.set_stock("LAMP-LED-01", 25)
    settle(stack)
    (product,) = stack.salesforce.find("Product2", ExternalID__c="LAMP-LED-01")
    assert product["StockOnHand__c"] == 25 and product["Name"] == "LED desk lamp"
    (entry,) = stack.salesforce.find("PricebookEntry", Product2Id=product["Id"])
    assert entry["UnitPrice"] == 49.9


def test_nothing_sits_in_the_pair_dlqs(stack):
    settle(stack)
    sqs = stack.client("sqs")
    for flow in ("clarity-to-salesforce", "salesforce-to-clarity"):
        attributes = sqs.get_queue_attributes(QueueUrl=stack.flows[flow].dlq_url,
                                              AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0", flow
