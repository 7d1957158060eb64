"""End to end on the embedded local stack: signed webhooks in, Streak sandbox state out.

The stack is deployed from the synthesized CDK template once for this module; each test uses its
own order numbers and drains the flow queue before it ends.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from switchyard_cli.operations import list_dead_letters, redrive
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FLOW = "nopcommerce-to-streak"


@pytest.fixture
def http(stack):
    stack.streak.reset()
    stack.subscribe_to_vendor_webhooks()  # the stack is shared: the two-way pair needs Streak's webhooks back
    stack.streak.requests.clear()
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as client:
        yield client
    assert stack.drain(timeout=60), "flow queue did not drain"


def order(number: int, *, status: int = 10, total: float = 500.0, company: str | None = "Acme Corp",
          timestamp: str = "2026-11-20T09:15:02Z", kind: str = "order.placed") -> bytes:
    event = json.loads(sample("nop_order_b2b" if kind == "order.placed" else "nop_status_processing"))
    event["type"], event["timestamp"] = kind, timestamp
    event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number), OrderStatusId=status,
                                  OrderTotal=total, OrderGuid=str(uuid.UUID(int=number)))
    if kind == "order.placed":
        event["data"]["Customer"]["Company"] = company
    return json.dumps(event).encode()


def send(stack: LocalStack, http: httpx.Client, body: bytes, **kwargs) -> tuple[int, dict]:
    return post_webhook(http, "nopcommerce", body, signed_headers(stack.signing_secret, body, **kwargs))


def boxes_for(stack: LocalStack, number: int) -> list[dict]:
    return [b for b in stack.streak.snapshot()["boxes"] if b["fields"].get("Order number") == str(number)]


def queue_depth(stack: LocalStack) -> int:
    return stack.flows[FLOW].poller.depth()


def test_webhook_duplicate_delivery_creates_one_box(stack, http):
    # Given an order delivered twice with the same webhook-id
    body = order(2001)
    status1, first = send(stack, http, body, event_id="msg_dup_2001")
    status2, second = send(stack, http, body, event_id="msg_dup_2001")
    # When the worker drains the queue
    assert stack.drain(timeout=30)
    # Then both deliveries were accepted and exactly one box, contact and task exist
    assert (status1, status2) == (202, 202) and first["event_id"] == second["event_id"] == "msg_dup_2001"
    (box,) = boxes_for(stack, 2001)
    assert box["stage"] == "New Order" and len(box["tasks"]) == 1
    assert len(stack.streak.snapshot()["contacts"]) == 1


def test_webhook_bad_signature_gets_401_and_enqueues_nothing(stack, http):
    body = order(2002)
    headers = signed_headers("whsec_" + "QUJD" * 8, body)
    status, answer = post_webhook(http, "nopcommerce", body, headers)
    assert status == 401 and answer["error"] == "invalid_signature"
    assert queue_depth(stack) == 0
    assert stack.streak.requests == [] or all(r[1].startswith("/_sandbox") for r in stack.streak.requests)


def test_webhook_stale_timestamp_gets_401(stack, http):
    body = order(2003)
    status, answer = post_webhook(http, "nopcommerce", body,
                                  signed_headers(stack.signing_secret, body, timestamp=int(time.time()) - 600))
    assert (status, answer["error"]) == (401, "stale_timestamp")
    assert queue_depth(stack) == 0


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/webhooks/shopify", b"{}", 404),
        ("/webhooks/nopcommerce", b"{not json", 400),
        ("/webhooks/nopcommerce", b'{"type": "order.placed", "timestamp": "x", "data": {}}', 422),
        ("/webhooks/nopcommerce", b"{" + b" " * 300_000 + b"}", 413),
    ],
)
def test_webhook_bad_input_gets_4xx_and_enqueues_nothing(stack, http, path, body, expected):
    headers = signed_headers(stack.signing_secret, body)
    response = http.post(path, content=body, headers=headers)
    assert response.status_code == expected
    assert "error" in response.json()
    assert queue_depth(stack) == 0


def test_webhook_invalid_event_names_the_field(stack, http):
    event = json.loads(order(2004))
    event["data"]["Order"]["OrderTotal"] = "lots"
    status, answer = send(stack, http, json.dumps(event).encode())
    assert status == 422
    assert answer["fields"][0]["field"] == "data.Order.OrderTotal"


def test_worker_two_streak_503s_then_success_delivers_once(stack, http):
    stack.streak.faults.fail_next(2, status=503)
    status, _ = send(stack, http, order(2005))
    assert status == 202
    assert stack.drain(timeout=30)
    assert len(boxes_for(stack, 2005)) == 1
    assert sum(1 for method, path, code in stack.streak.requests if code == 503) == 2
    assert list_dead_letters(stack.client("sqs"), stack.flows[FLOW].dlq_url) == []


def test_worker_streak_400_lands_in_dlq_with_reason_and_redrive_creates_once(stack, http):
    # Given Streak refuses the first call for this order
    stack.streak.faults.fail_next(1, status=400)
    status, accepted = send(stack, http, order(2006))
    assert status == 202 and stack.drain(timeout=30)
    sqs, flow = stack.client("sqs"), stack.flows[FLOW]
    # Then it sits in the DLQ with flow, event id, class, reason, target response and attempts
    (letter,) = list_dead_letters(sqs, flow.dlq_url)
    assert letter["flow"] == FLOW and letter["event_id"] == accepted["event_id"]
    assert (letter["error_class"], letter["reason"], letter["target_status"]) == ("permanent", "target_rejected", 400)
    assert letter["attempts"] == 1 and letter["target_response"]["success"] is False
    assert boxes_for(stack, 2006) == []
    # When an operator redrives it (twice, as a careless operator might)
    assert redrive(sqs, flow.dlq_url, flow.queue_url) == 1
    assert stack.drain(timeout=30)
    assert redrive(sqs, flow.dlq_url, flow.queue_url) == 0
    # Then the order is delivered once
    assert len(boxes_for(stack, 2006)) == 1


def test_worker_status_change_before_its_order_is_applied_once_the_order_exists(stack, http):
    # Given the status change arrives first
    send(stack, http, order(2007, status=20, kind="order.status_changed", timestamp="2026-11-20T10:00:00Z"))
    stack.poll_all()  # the worker finds no box yet: retried later, not dead-lettered
    assert boxes_for(stack, 2007) == [] and queue_depth(stack) == 1
    # When the order arrives
    send(stack, http, order(2007, status=10, timestamp="2026-11-20T09:00:00Z"))
    assert stack.drain(timeout=60)
    # Then the box exists and carries the newer stage
    (box,) = boxes_for(stack, 2007)
    assert box["stage"] == "Processing"
    assert list_dead_letters(stack.client("sqs"), stack.flows[FLOW].dlq_url) == []


def test_worker_older_status_change_never_overwrites_a_newer_one(stack, http):
    send(stack, http, order(2008))
    assert stack.drain(timeout=30)
    send(stack, http, order(2008, status=30, kind="order.status_changed", timestamp="2026-11-20T12:00:00Z"))
    assert stack.drain(timeout=30)
    send(stack, http, order(2008, status=20, kind="order.status_changed", timestamp="2026-11-20T11:00:00Z"))
    assert stack.drain(timeout=30)
    (box,) = boxes_for(stack, 2008)
    assert box["stage"] == "Complete"


def test_worker_order_below_the_deal_rule_creates_nothing_and_its_status_changes_are_not_dead_lettered(stack, http):
    send(stack, http, order(2009, total=20.0, company=None))
    send(stack, http, order(2009, status=20, kind="order.status_changed", timestamp="2026-11-20T10:00:00Z"))
    assert stack.drain(timeout=60)
    assert boxes_for(stack, 2009) == []
    assert list_dead_letters(stack.client("sqs"), stack.flows[FLOW].dlq_url) == []


def test_front_door_serves_http_on_loopback(stack, http):
    base = stack.serve()
    body = order(2010)
    response = httpx.post(f"{base}/webhooks/nopcommerce", content=body,
                          headers=signed_headers(stack.signing_secret, body), timeout=10)
    assert response.status_code == 202
    assert stack.drain(timeout=30) and len(boxes_for(stack, 2010)) == 1
