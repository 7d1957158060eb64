"""End to end on the local stack: Clarity eCommerce ⇄ Streak, both directions, no echo loops.

One stack for the module; every test uses its own customer and orders (the sandboxes keep
numbering), so no state of one test can be mistaken for another's.
"""

from __future__ import annotations

import copy
import itertools
import json
import time

import httpx
import pytest
from switchyard_local.sandboxes.clarity import DEMO_ORDERS
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
_customers = itertools.count(700)


@pytest.fixture
def settled(stack):
    yield stack
    assert stack.drain(timeout=60), "did not settle"


def new_order(stack: LocalStack, **changes) -> dict:
    """A shopper completes a purchase in Clarity (its webhook starts everything)."""
    number = next(_customers)
    order = copy.deepcopy(DEMO_ORDERS[0])
    order["customerId"] = order["customer"]["customerId"] = f"C-{number}"
    order["customer"]["email"] = f"  Buyer{number}@Company{number}.Example "
    order["customer"]["company"] = f"Company {number}"
    order.update(changes)
    placed = stack.clarity.place_order(order)
    assert stack.drain(timeout=30)
    return placed


def box_of(stack: LocalStack, order_id: str) -> dict:
    (box,) = [b for b in stack.streak.snapshot()["boxes"] if b["fields"].get("Order number") == order_id]
    return box


def outcomes(stack: LocalStack, flow: str, since: int) -> list[str]:
    return [o["outcome"] for o in stack.outcomes(flow)[since:]]


def api_changes(stack: LocalStack, order_id: str) -> list[str]:
    return [h["status"] for h in stack.clarity.get_order(order_id)["statusHistory"] if h.get("by") == "api"]


def test_clarity_order_becomes_a_deal_with_contact_task_and_payment_note(settled):
    order = new_order(settled)
    box = box_of(settled, order["orderId"])
    assert box["stage"] == "Processing"  # the order's status, through the lookup
    assert box["fields"]["Order total"] == 1299 and box["fields"]["Currency"] == "USD"
    assert box["contacts"] == [order["customer"]["email"].strip().lower()]
    assert box["comments"] == ["Payment: card, paid"] and "4242" not in json.dumps(box)
    assert [t["text"] for t in box["tasks"]] == [f"Follow up on Clarity order {order['orderId']}"]


def test_clarity_inconsistent_email_formatting_makes_one_contact(settled):
    first = new_order(settled)
    again = copy.deepcopy(DEMO_ORDERS[0])
    again["customerId"] = again["customer"]["customerId"] = first["customerId"]
    again["customer"]["email"] = first["customer"]["email"].strip().lower()
    second = settled.clarity.place_order(again)
    assert settled.drain(timeout=30)
    contacts = [c for c in settled.streak.snapshot()["contacts"]
                if first["customer"]["email"].strip().lower() in c["emailAddresses"]]
    assert len(contacts) == 1
    assert box_of(settled, second["orderId"])["contacts"] == box_of(settled, first["orderId"])["contacts"]


def test_clarity_status_change_moves_the_box_and_its_echo_is_not_written_back(settled):
    order = new_order(settled, status="pending")
    assert box_of(settled, order["orderId"])["stage"] == "New Order"
    before = len(settled.outcomes("streak-to-clarity"))
    # When an admin ships the order in Clarity
    settled.clarity.set_order_status(order["orderId"], "shipped")
    assert settled.drain(timeout=30)
    # Then the box follows, and Streak's webhook for that move writes nothing into Clarity
    assert box_of(settled, order["orderId"])["stage"] == "Processing"
    assert "echo" in outcomes(settled, "streak-to-clarity", before)
    assert api_changes(settled, order["orderId"]) == []
    assert settled.clarity.get_order(order["orderId"])["status"] == "shipped"


def test_streak_box_moved_by_a_rep_sets_the_clarity_status_once_without_echo(settled):
    order = new_order(settled)
    box = box_of(settled, order["orderId"])
    before = len(settled.outcomes("clarity-to-streak"))
    # When a rep drags the box to Complete
    settled.streak.move_box(box["key"], "5003")
    assert settled.drain(timeout=30)
    # Then Clarity's order is delivered, written once; Clarity's webhook for it is an echo
    assert settled.clarity.get_order(order["orderId"])["status"] == "delivered"
    assert api_changes(settled, order["orderId"]) == ["delivered"]
    assert "echo" in outcomes(settled, "clarity-to-streak", before)
    assert box_of(settled, order["orderId"])["stage"] == "Complete"


def test_streak_invalid_move_lands_in_dlq_with_clarity_reason(settled):
    order = new_order(settled)
    box = box_of(settled, order["orderId"])
    settled.streak.move_box(box["key"], "5003")  # delivered
    assert settled.drain(timeout=30)
    settled.streak.move_box(box["key"], "5001")  # Clarity: a delivered order can only become refunded
    assert settled.drain(timeout=30)
    letters = [d for d in settled.dead_letters("streak-to-clarity") if order["orderId"] in d.get("message", "")]
    assert letters and letters[-1]["reason"] == "target_rejected" and letters[-1]["target_status"] == 409
    assert settled.clarity.get_order(order["orderId"])["status"] == "delivered"


def test_streak_contact_edit_follows_master_data_rules_and_its_echo_stops(settled):
    order = new_order(settled)
    email = order["customer"]["email"].strip().lower()
    (contact,) = [c for c in settled.streak.snapshot()["contacts"] if email in c["emailAddresses"]]
    before = len(settled.outcomes("clarity-to-streak"))
    settled.streak.edit_contact(contact["key"], givenName="Renamed", phoneNumbers=["+1 555 0999"],
                                emailAddresses=["elsewhere@example.com"])
    assert settled.drain(timeout=30)
    customer = settled.clarity.get_customer(order["customerId"])
    assert customer["firstName"] == "Renamed"  # name: both systems may change it
    assert customer["phone"] != "+1 555 0999"  # phone: Clarity is master
    assert customer["email"] == order["customer"]["email"]  # e-mail: Clarity is master
    assert "echo" in outcomes(settled, "clarity-to-streak", before)  # Clarity's customer.updated came back


def test_clarity_customer_edit_updates_the_streak_contact_and_its_echo_stops(settled):
    order = new_order(settled)
    before = len(settled.outcomes("streak-to-clarity"))
    settled.clarity.update_customer(order["customerId"], email=f"new-{order['customerId']}@example.com",
                                    phone="+1 555 0777")
    assert settled.drain(timeout=30)
    contacts = [c for c in settled.streak.snapshot()["contacts"]
                if f"new-{order['customerId']}@example.com".lower() in c["emailAddresses"]]
    assert len(contacts) == 1 and contacts[0]["phoneNumbers"][0] == "+1 555 0777"
    assert "echo" in outcomes(settled, "streak-to-clarity", before)
    assert settled.clarity.get_customer(order["customerId"])["version"] >= 2


def test_streak_webhook_with_a_wrong_token_gets_401_and_queues_nothing(settled):
    body = json.dumps([{"key": "box_x", "pipelineKey": "pl_orders", "stageKey": "5003",
                        "lastUpdatedTimestamp": int(time.time() * 1000), "fields": {"1001": "CL-1"}}])
    response = httpx.post(f"{settled.base_url}/webhooks/streak?event=BOX_CHANGE_STAGE", content=body,
                          headers={"X-Streak-Webhook-Token": "guessed"}, timeout=10)
    assert response.status_code == 401
    assert settled.flows["streak-to-clarity"].poller.depth() == 0


def test_streak_redelivered_webhook_is_processed_once(settled):
    order = new_order(settled)
    box = dict(box_of(settled, order["orderId"]))
    delivery = json.dumps([{"key": box["key"], "pipelineKey": "pl_orders", "stageKey": "5003", "name": box["name"],
                            "fields": {"1001": order["orderId"]}, "lastUpdatedTimestamp": int(time.time() * 1000)}])
    url = f"{settled.base_url}/webhooks/streak?event=BOX_CHANGE_STAGE&token={settled.streak_token}"
    first = httpx.post(url, content=delivery, timeout=10)
    second = httpx.post(url, content=delivery, timeout=10)  # Streak retrying the same delivery
    assert (first.status_code, second.status_code) == (200, 200)  # Streak counts only 200 as delivered
    assert first.json()["event_id"] == second.json()["event_id"]
    assert settled.drain(timeout=30)
    assert api_changes(settled, order["orderId"]) == ["delivered"]


def test_clarity_signed_webhook_for_unknown_order_waits_instead_of_failing(stack):
    body = json.dumps({"type": "order.status_changed", "timestamp": "2026-11-22T08:00:00Z",
                       "data": {**json.loads(json.dumps(DEMO_ORDERS[0])), "orderId": "CL-99999",
                                "orderDate": "2026-11-21T14:05:00Z", "status": "shipped",
                                "customer": {**DEMO_ORDERS[0]["customer"], "customerId": "C-501"},
                                "customerId": "C-501"}}).encode()
    response = httpx.post(f"{stack.base_url}/webhooks/clarity", content=body,
                          headers=signed_headers(stack.signing_secret, body), timeout=10)
    assert response.status_code == 202
    stack.poll_all()
    # retried later (box_not_found is out of order), not dead-lettered at the first attempt
    assert stack.flows["clarity-to-streak"].poller.depth() == 1
    event_id = response.json()["event_id"]
    assert [d for d in stack.dead_letters("clarity-to-streak") if d.get("event_id") == event_id] == []
    queue = stack.flows["clarity-to-streak"]
    stack.client("sqs").purge_queue(QueueUrl=queue.queue_url)  # leave the module's stack clean


def test_clarity_rate_limited_streak_retries_after_retry_after_and_delivers_once(settled):
    settled.streak.faults.fail_next(1, status=429, retry_after=1)
    order = new_order(settled)
    assert box_of(settled, order["orderId"])["stage"] == "Processing"
    assert any(code == 429 for _m, _p, code in settled.streak.requests)


def test_clarity_unavailable_twice_then_the_rep_move_is_delivered_once(settled):
    order = new_order(settled)
    box = box_of(settled, order["orderId"])
    settled.clarity.faults.fail_next(2, status=503)
    settled.streak.move_box(box["key"], "5003")
    assert settled.drain(timeout=30)
    assert api_changes(settled, order["orderId"]) == ["delivered"]
    assert sum(1 for _m, _p, code in settled.clarity.requests if code == 503) == 2


def test_clarity_order_streak_refuses_with_400_lands_in_dlq_with_reason(settled):
    settled.streak.faults.fail_next(1, status=400)  # Streak refuses a field value
    order = new_order(settled)
    letters = [d for d in settled.dead_letters("clarity-to-streak") if d.get("reason") == "target_rejected"]
    assert letters and letters[-1]["target_status"] == 400 and letters[-1]["error_class"] == "permanent"
    assert not [b for b in settled.streak.snapshot()["boxes"] if b["fields"].get("Order number") == order["orderId"]]
