"""End to end on the local stack: a nopCommerce shop with no webhook sender at all (issue 10).

Orders are placed, paid, cancelled and refunded in the nopCommerce sandbox, which sends nothing; the poller
(``functions/poller`` from the synthesized template, as its EventBridge schedule runs it) reads them through
the Web API plugin and queues the webhook's events, which reach Streak and QuickBooks exactly once. A webhook
that arrived is not queued again by the sweep; one lost on purpose is recovered, once.

Clarity's sweep on the same stack: its webhooks reach Streak as usual; a status change and a new order whose
webhooks Clarity never sent are found by the poll of the orders changed since its last run and reach Streak
once; what the webhooks delivered is not queued again.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from switchyard_local.sandboxes.clarity import DEMO_ORDERS
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-own")]
NOW_GRACE = 0  # the demo's and these tests' "recover now": the schedule's runs wait sweep_grace_minutes


@pytest.fixture(scope="module")
def stack(own_stack: LocalStack) -> LocalStack:
    own_stack.poll_source("nopcommerce", grace_seconds=NOW_GRACE)  # the stack's own seeded orders first
    assert own_stack.drain(timeout=120)
    return own_stack


def checkout(stack: LocalStack, number: int, *, paid: bool) -> dict[str, Any]:
    """A shopper checks out in the sandbox shop: nothing is sent anywhere."""
    data = json.loads(sample("nop_order_b2b"))["data"]
    guid = str(uuid.uuid4())
    data["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=guid, PaymentStatusId=30 if paid else 10,
                         CustomerId=number, CreatedOnUtc=stack.nopcommerce.order(1042)["created_on_utc"] + "Z")
    data["Customer"].update(Id=number, Email=f"buyer{number}@example.com", Company=f"Company {number}")
    data["BillingAddress"].update(Email=f"buyer{number}@example.com", Company=f"Company {number}")
    for index, item in enumerate(data["OrderItems"]):
        item.update(Id=number * 10 + index, OrderItemGuid=str(uuid.uuid4()))
    stack.nopcommerce.place_order(data)
    return data


def qbo_documents(stack: LocalStack, guid: str, kind: str) -> list[dict[str, Any]]:
    realm = stack.quickbooks.snapshot()["realms"][stack.qbo_realm]
    return [doc for doc in realm[kind] if guid in (doc.get("PrivateNote") or "")]


def boxes(stack: LocalStack, number: int) -> list[dict[str, Any]]:
    return [b for b in stack.streak.snapshot()["boxes"] if b["fields"].get("Order number") == str(number)]


def poll_and_settle(stack: LocalStack) -> dict[str, Any]:
    report = stack.poll_source("nopcommerce", grace_seconds=NOW_GRACE)
    assert stack.drain(timeout=120), "flows did not settle"
    return report


def test_orders_reach_streak_and_quickbooks_with_no_webhook_exactly_once(stack: LocalStack) -> None:
    paid = checkout(stack, 7101, paid=True)
    later = checkout(stack, 7102, paid=False)
    cancelled = checkout(stack, 7103, paid=False)
    guids = {o["Order"]["OrderGuid"] for o in (paid, later, cancelled)}

    first = poll_and_settle(stack)
    # the QuickBooks flow wrote the order status back to the shop: the next poll sees that change, as the
    # webhook plugin would (EntityUpdatedEvent<Order>); nothing else, and after it nothing at all
    echoed = poll_and_settle(stack)
    again = poll_and_settle(stack)

    mine = [i for i in first["event_ids"] if i.split(":")[2] in guids]
    assert sorted(i.split(":", 3)[3] for i in mine) == ["paid", "placed", "placed", "placed"]
    assert all(":status:" in i for i in echoed["event_ids"]) and again["events_queued"] == 0
    assert len(qbo_documents(stack, paid["Order"]["OrderGuid"], "salesReceipts")) == 1
    assert len(qbo_documents(stack, later["Order"]["OrderGuid"], "invoices")) == 1
    assert [len(boxes(stack, number)) for number in (7101, 7102, 7103)] == [1, 1, 1]

    stack.nopcommerce.mark_paid(7102)
    stack.nopcommerce.cancel(7103)
    changed = poll_and_settle(stack)

    kinds = {(i.split(":")[2], i.split(":")[3]) for i in changed["event_ids"]}
    assert {(later["Order"]["OrderGuid"], "paid"), (cancelled["Order"]["OrderGuid"], "status")} <= kinds
    assert len(qbo_documents(stack, later["Order"]["OrderGuid"], "payments")) == 1
    (invoice,) = qbo_documents(stack, cancelled["Order"]["OrderGuid"], "invoices")
    assert str(invoice.get("PrivateNote")).startswith("Voided") and float(invoice["TotalAmt"]) == 0
    assert [box["stage"] for box in boxes(stack, 7103)] == ["Cancelled"]
    poll_and_settle(stack)  # the write-back's echoes
    assert poll_and_settle(stack)["events_queued"] == 0
    assert len(qbo_documents(stack, later["Order"]["OrderGuid"], "payments")) == 1


def test_a_delivered_webhook_is_not_swept_again_and_a_lost_one_is_recovered_once(stack: LocalStack) -> None:
    delivered = checkout(stack, 7201, paid=True)
    lost = checkout(stack, 7202, paid=True)
    event = {"type": "order.placed", "timestamp": delivered["Order"]["CreatedOnUtc"], "data": delivered}
    body = json.dumps(event).encode()
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as http:
        status, answer = post_webhook(http, "nopcommerce", body, signed_headers(
            stack.signing_secret, body, event_id=f"nopcommerce:order:{delivered['Order']['OrderGuid']}:placed"))
    assert status == 202, answer
    assert stack.drain(timeout=120)

    report = poll_and_settle(stack)

    assert report["already_pushed"] == 1
    recovered = [i for i in report["event_ids"] if lost["Order"]["OrderGuid"] in i]
    assert sorted(i.rsplit(":", 1)[1] for i in recovered) == ["paid", "placed"]
    assert len(qbo_documents(stack, lost["Order"]["OrderGuid"], "salesReceipts")) == 1
    assert len(qbo_documents(stack, delivered["Order"]["OrderGuid"], "salesReceipts")) == 1
    # the write-back's status change: this shop's sender pushed only order.placed, so the sweep brings it
    assert all(":status:" in i for i in poll_and_settle(stack)["event_ids"])
    assert poll_and_settle(stack)["recovered"] == 0
    assert len(qbo_documents(stack, lost["Order"]["OrderGuid"], "salesReceipts")) == 1


def test_reconcile_reports_an_order_missing_in_quickbooks_and_enqueues_it_once(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import datetime

    from switchyard_cli.reconcile import reconcile_flow

    missing = checkout(stack, 7301, paid=True)  # never polled: QuickBooks has no document for it
    day = datetime.fromisoformat(missing["Order"]["CreatedOnUtc"].replace("Z", "+00:00")).replace(hour=0, minute=0)
    flow = stack.flows["nopcommerce-to-quickbooks"]
    table = next(t for t in stack.client("dynamodb").list_tables()["TableNames"])

    def run(enqueue: bool = False) -> str:
        reconcile_flow("nopcommerce-to-quickbooks", day, day.replace(hour=23, minute=59, second=59),
                       secret_arns=stack.connection_secret_arns, table=table, queue_url=flow.queue_url,
                       enqueue=enqueue, secrets=stack.client("secretsmanager"), sqs=stack.client("sqs"))
        return capsys.readouterr().out

    report = run()
    assert "  missing   7301" in report and report.count("missing   ") == 1, report
    run(enqueue=True)
    assert stack.drain(timeout=120)
    assert len(qbo_documents(stack, missing["Order"]["OrderGuid"], "salesReceipts")) == 1
    assert "missing   " not in run()
    # the poller later sees the order with the ids reconcile used: nothing is created twice
    poll_and_settle(stack)
    assert len(qbo_documents(stack, missing["Order"]["OrderGuid"], "salesReceipts")) == 1


# --------------------------------------------------------------------------- Clarity: the missed-webhook sweep


def clarity_order(stack: LocalStack, number: int) -> dict[str, Any]:
    order = json.loads(json.dumps(DEMO_ORDERS[0]))
    order["customerId"] = order["customer"]["customerId"] = f"C-{number}"
    order["customer"].update(email=f"sweep{number}@company{number}.example", company=f"Sweep Company {number}")
    return stack.clarity.place_order(order)


def test_clarity_webhooks_lost_on_purpose_are_swept_into_streak_once(stack: LocalStack) -> None:
    # Given what the stack already holds swept, and an order whose webhook reached Streak
    stack.poll_source("clarity", grace_seconds=NOW_GRACE)
    assert stack.drain(timeout=120)
    delivered = clarity_order(stack, 8101)
    assert stack.drain(timeout=120)
    assert [b["stage"] for b in boxes_of_clarity(stack, delivered["orderId"])] == ["Processing"]

    # When its status change and a whole new order send no webhook (the sender lost them)
    stack.clarity.lose_next_webhooks(1)
    stack.clarity.set_order_status(delivered["orderId"], "delivered")
    stack.clarity.lose_next_webhooks(1)
    lost = clarity_order(stack, 8102)
    assert [e.type for e in stack.clarity.lost_webhooks] == ["order.status_changed", "order.created"]
    assert stack.drain(timeout=120)
    assert boxes_of_clarity(stack, lost["orderId"]) == []
    # a run inside the grace period holds them: a webhook may still be on its way (a scan reads changes up to
    # the last whole second before it started)
    time.sleep(1.1)
    held = stack.poll_source("clarity")
    assert (held["events_queued"], held["held"]) == (0, 2), held
    report = stack.poll_source("clarity", grace_seconds=NOW_GRACE)
    assert stack.drain(timeout=120)

    # Then the sweep recovered exactly the two lost changes, and Streak shows them once
    assert sorted(report["event_ids"]) == [f"clarity:order:{delivered['orderId']}:v2",
                                           f"clarity:order:{lost['orderId']}:v1"]
    assert report["recovered"] == 2
    assert [b["stage"] for b in boxes_of_clarity(stack, delivered["orderId"])] == ["Complete"]
    assert [b["stage"] for b in boxes_of_clarity(stack, lost["orderId"])] == ["Processing"]
    again = stack.poll_source("clarity", grace_seconds=NOW_GRACE)
    assert (again["events_queued"], again["recovered"]) == (0, 0)


def test_a_delivered_clarity_webhook_is_not_swept_again(stack: LocalStack) -> None:
    order = clarity_order(stack, 8201)
    stack.clarity.set_order_status(order["orderId"], "delivered")
    assert stack.drain(timeout=120)
    time.sleep(1.1)
    report = stack.poll_source("clarity", grace_seconds=NOW_GRACE)
    assert report["already_pushed"] >= 2 and report["event_ids"] == [], report
    assert [b["stage"] for b in boxes_of_clarity(stack, order["orderId"])] == ["Complete"]


def boxes_of_clarity(stack: LocalStack, order_id: str) -> list[dict[str, Any]]:
    return [b for b in stack.streak.snapshot()["boxes"] if b["fields"].get("Order number") == order_id]


def test_reconcile_reports_clarity_orders_missing_or_different_in_streak_and_enqueues_the_missing_once(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from switchyard.systems.streak.client import StreakClient, StreakConnection
    from switchyard_cli.reconcile import reconcile_flow

    # Given an order whose deal's amount was changed in Streak by hand, and one whose webhook was lost
    changed = clarity_order(stack, 8301)
    assert stack.drain(timeout=120)
    (box,) = boxes_of_clarity(stack, changed["orderId"])
    streak = StreakClient(StreakConnection(base_url=stack.streak.base_url, api_key=stack.streak.api_key,
                                           team_key=stack.streak.team_key, pipeline_key=stack.streak.pipeline.key))
    streak.set_field(box["key"], "1002", 1.0)
    stack.clarity.lose_next_webhooks(1)
    missing = clarity_order(stack, 8302)
    assert stack.drain(timeout=120)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    flow = stack.flows["clarity-to-streak"]
    table = next(t for t in stack.client("dynamodb").list_tables()["TableNames"])

    def run(enqueue: bool = False) -> str:
        reconcile_flow("clarity-to-streak", today, today + timedelta(days=1, seconds=-1),
                       secret_arns=stack.connection_secret_arns, table=table, queue_url=flow.queue_url,
                       enqueue=enqueue, secrets=stack.client("secretsmanager"), sqs=stack.client("sqs"))
        return capsys.readouterr().out

    # When reconcile runs, then again with --enqueue
    report = run()
    run(enqueue=True)
    assert stack.drain(timeout=120)
    after = run()

    # Then it reported both, and the missing order now has one deal; the hand-made change is still reported
    assert f"  missing   {missing['orderId']}" in report, report
    assert f"  different {changed['orderId']:<14} amount 1.0 in Streak, 1299" in report, report
    assert [b["stage"] for b in boxes_of_clarity(stack, missing["orderId"])] == ["Processing"]
    assert missing["orderId"] not in after and f"  different {changed['orderId']}" in after, after


def test_reconcile_reports_a_shop_order_missing_in_streak_and_enqueues_it_once(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import datetime, timedelta

    from switchyard_cli.reconcile import reconcile_flow

    missing = checkout(stack, 7401, paid=True)  # never polled: Streak has no deal for it
    day = datetime.fromisoformat(missing["Order"]["CreatedOnUtc"].replace("Z", "+00:00")).replace(
        hour=0, minute=0, second=0, microsecond=0)
    flow = stack.flows["nopcommerce-to-streak"]
    table = next(t for t in stack.client("dynamodb").list_tables()["TableNames"])

    def run(enqueue: bool = False) -> str:
        reconcile_flow("nopcommerce-to-streak", day, day + timedelta(days=1, seconds=-1),
                       secret_arns=stack.connection_secret_arns, table=table, queue_url=flow.queue_url,
                       enqueue=enqueue, secrets=stack.client("secretsmanager"), sqs=stack.client("sqs"))
        return capsys.readouterr().out

    assert "  missing   7401 " in run()
    run(enqueue=True)
    assert stack.drain(timeout=120)
    assert len(boxes(stack, 7401)) == 1
    assert "7401" not in run()


def test_a_poller_whose_connection_is_not_filled_in_yet_skips_its_runs_without_failing(stack: LocalStack) -> None:
    from infra.constructs.secrets import connection_secret_placeholder

    secrets, arn = stack.client("secretsmanager"), stack.connection_secret_arns["clarity"]
    filled = secrets.get_secret_value(SecretId=arn)["SecretString"]
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(connection_secret_placeholder("clarity")))
    try:
        assert stack.poll_source("clarity") == {"skipped": "connection not configured"}
    finally:
        secrets.put_secret_value(SecretId=arn, SecretString=filled)
    assert "pages_read" in stack.poll_source("clarity")


def test_a_clarity_customer_edit_whose_webhook_was_lost_is_swept_into_the_streak_contact(stack: LocalStack) -> None:
    placed = clarity_order(stack, 8401)
    assert stack.drain(timeout=120)
    stack.poll_source("clarity", grace_seconds=NOW_GRACE)  # whatever the stack holds: swept already
    assert stack.drain(timeout=120)
    stack.clarity.lose_next_webhooks(1)
    stack.clarity.update_customer(placed["customerId"], phone="+1 555 0142")
    assert [e.type for e in stack.clarity.lost_webhooks][-1] == "customer.updated"
    time.sleep(1.1)  # a scan reads changes up to the last whole second before it started

    report = stack.poll_source("clarity", grace_seconds=NOW_GRACE)
    assert stack.drain(timeout=120)

    assert report["event_ids"] == [f"clarity:customer:{placed['customerId']}:v2"]
    contacts = [c for c in stack.streak.snapshot()["contacts"] if "sweep8401@company8401.example" in
                c["emailAddresses"]]
    assert len(contacts) == 1 and contacts[0]["phoneNumbers"][0] == "+1 555 0142"
