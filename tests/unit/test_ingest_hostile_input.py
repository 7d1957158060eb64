"""Hostile input at the webhook edge: always a 4xx with a clear JSON error, never a crash (5xx), never
accepted and then dropped. Each class before and after the signature check."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from switchyard.errors import MalformedBodyError, SchemaError, SignatureError, WebhookRejectedError
from switchyard.events import FlowEvent
from switchyard.ingest import IngestService, WebhookRequest
from switchyard.signatures import StandardWebhookAuthenticator, sign

NOW = 1_795_166_100
QUEUE = "https://sqs.test/q/nopcommerce-to-streak"
ROUTES = {"nopcommerce": {"order.placed": {"nopcommerce-to-streak": QUEUE},
                          "order.status_changed": {"nopcommerce-to-streak": QUEUE}}}


class Publisher:
    def __init__(self) -> None:
        self.published: list[str] = []

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        self.published += [m.body for m in messages]


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def service(publisher: Publisher, signing_secret: str) -> IngestService:
    # a float clock, as time.time() is: 10**309 does not convert to a float (OverflowError)
    authenticator = StandardWebhookAuthenticator([signing_secret], clock=lambda: NOW + 0.25)
    return IngestService(routes=ROUTES, authenticator_for=lambda _source: authenticator, publisher=publisher,
                         max_body_bytes=256 * 1024, clock=lambda: datetime(2026, 11, 20, tzinfo=UTC))


@pytest.fixture
def signed(signing_secret: str) -> Callable[..., WebhookRequest]:
    def build(body: bytes | str, *, event_id: str = "msg_hostile") -> WebhookRequest:
        raw = body.encode() if isinstance(body, str) else body
        return WebhookRequest(source="nopcommerce", headers=sign(signing_secret, event_id, NOW, raw), body=raw)

    return build


def rejected(service: IngestService, request: WebhookRequest, expected: type[WebhookRejectedError],
             status: int) -> dict[str, Any]:
    with pytest.raises(expected) as raised:
        service.accept(request)
    assert raised.value.status_code == status
    body = raised.value.body()
    json.dumps(body)  # the answer is JSON
    assert body["error"] and body["message"]
    return body


# --- 10: 500s -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 5_000, 33])
def test_signed_body_nested_deeply_is_400(service, signed, publisher, sample, depth: int) -> None:
    document = sample("nop_order_small")
    document["data"]["Order"]["Extra"] = json.loads("[" * 10 + "]" * 10)  # plausible nesting is fine...
    nested = "[" * depth + "]" * depth  # ...but not this (RecursionError in the decoder: a 500)
    body = json.dumps(document).replace('"Extra": [[[[[[[[[[]]]]]]]]]]', f'"Extra": {nested}')

    answer = rejected(service, signed(body), MalformedBodyError, 400)

    assert "nested deeper than 32 levels" in answer["message"]
    assert publisher.published == []


def test_signed_body_with_a_4301_digit_integer_is_400(service, signed, publisher, sample) -> None:
    body = json.dumps(sample("nop_order_small")).replace('"Id": 5004', '"Id": ' + "7" * 4301, 1)
    assert "7" * 4301 in body

    answer = rejected(service, signed(body), MalformedBodyError, 400)

    assert "more than 20 digits" in answer["message"]
    assert publisher.published == []


@pytest.mark.parametrize("timestamp", ["9" * 309, "9" * 13, "1_795_166_100", " 1795166100", "١٧٩٥١٦٦١٠٠", "-1"])
def test_absurd_webhook_timestamp_is_401_before_any_signature_check(service, publisher, timestamp: str) -> None:
    # no secret at all: any stranger can send this
    request = WebhookRequest(source="nopcommerce", body=b"{}", headers={
        "webhook-id": "msg_x", "webhook-timestamp": timestamp, "webhook-signature": "v1,AAAA"})

    answer = rejected(service, request, SignatureError, 401)

    assert "webhook-timestamp" in answer["message"]
    assert publisher.published == []


def test_absurd_webhook_id_is_401(service, publisher) -> None:
    request = WebhookRequest(source="nopcommerce", body=b"{}", headers={
        "webhook-id": "x" * 10_000, "webhook-timestamp": str(NOW), "webhook-signature": "v1,AAAA"})

    assert "webhook-id" in rejected(service, request, SignatureError, 401)["message"]


# --- 11: accepted but should not be ------------------------------------------------------------------


@pytest.mark.parametrize("total", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_order_total_not_a_finite_number_is_400(service, signed, publisher, sample_text, total: str) -> None:
    body = sample_text("nop_order_small").replace('"OrderTotal": 24.99', f'"OrderTotal": {total}')
    assert total in body

    answer = rejected(service, signed(body), MalformedBodyError, 400)

    assert total.lstrip("-") in answer["message"]
    assert publisher.published == []


def test_order_total_beyond_nopcommerce_decimal_18_4_is_422(service, signed, publisher, sample_text) -> None:
    body = sample_text("nop_order_small").replace('"OrderTotal": 24.99', '"OrderTotal": 1e300')

    answer = rejected(service, signed(body), SchemaError, 422)

    assert answer["fields"][0]["field"] == "data.Order.OrderTotal"
    assert publisher.published == []


def test_custom_order_number_of_200000_characters_is_422(service, signed, publisher, sample) -> None:
    document = sample("nop_order_small")
    document["data"]["Order"]["CustomOrderNumber"] = "7" * 200_000

    answer = rejected(service, signed(json.dumps(document)), SchemaError, 422)

    assert answer["fields"][0]["field"] == "data.Order.CustomOrderNumber"
    assert publisher.published == []


def test_duplicate_keys_are_400_naming_the_key(service, signed, publisher, sample_text) -> None:
    # the validator would see the last OrderTotal; a different parser might read the first
    body = sample_text("nop_order_small").replace('"OrderTotal": 24.99', '"OrderTotal": 0.01, "OrderTotal": 24.99')

    answer = rejected(service, signed(body), MalformedBodyError, 400)

    assert "'OrderTotal' appears twice" in answer["message"]
    assert publisher.published == []


def test_body_in_utf16_is_400(signing_secret, publisher, sample_text) -> None:
    from switchyard.signatures import SharedTokenAuthenticator
    from switchyard.systems.streak.webhooks import TOKEN_HEADER

    body = sample_text("nop_order_small").encode("utf-16")  # json.loads would guess the encoding
    service = IngestService(routes=ROUTES,
                            authenticator_for=lambda _source: SharedTokenAuthenticator(["t"], header=TOKEN_HEADER),
                            publisher=publisher, max_body_bytes=256 * 1024)

    with pytest.raises(MalformedBodyError):
        service.accept(WebhookRequest(source="nopcommerce", headers={"x-streak-webhook-token": "t"}, body=body))
    assert publisher.published == []


def test_reused_webhook_id_with_a_different_body_is_its_own_event(service, signed, publisher, sample) -> None:
    # Given two correctly signed, different bodies sent with one webhook-id
    first = sample("nop_order_small")
    second = sample("nop_order_small")
    second["data"]["Order"]["OrderTotal"] = 99.5

    service.accept(signed(json.dumps(first), event_id="msg_reused"))
    service.accept(signed(json.dumps(second), event_id="msg_reused"))
    service.accept(signed(json.dumps(first), event_id="msg_reused"))  # a true redelivery of the first

    # Then the worker's idempotency key tells the two bodies apart, and a redelivery from the first
    events = [FlowEvent.from_message(message) for message in publisher.published]
    keys = [json.dumps(event.idempotency_key, sort_keys=True) for event in events]
    assert {event.event_id for event in events} == {"msg_reused"}
    assert keys[0] != keys[1]
    assert keys[0] == keys[2]
    assert events[1].data["Order"]["OrderTotal"] == 99.5


def test_idempotency_key_of_a_message_without_digest_is_unchanged() -> None:
    # messages queued before digests existed (in a queue or a DLQ during a deploy) keep their key
    from switchyard.events import flow_message

    message = flow_message(flow="f", event_id="msg_1", source="nopcommerce", event_type="order.placed",
                           timestamp="2026-11-20T09:15:02Z", received_at="2026-11-20T09:15:03Z",
                           body=json.dumps({"data": {}}))
    assert FlowEvent.from_message(message).idempotency_key == {"flow": "f", "event_id": "msg_1"}


# --- found by make fuzz: dates no datetime can hold were 500s -----------------------------------------


@pytest.mark.parametrize("millis", [10**16, -10**15, 2**63 - 1])
def test_streak_change_time_beyond_any_datetime_is_422(millis: int) -> None:
    from switchyard.signatures import SharedTokenAuthenticator
    from switchyard.systems.streak.webhooks import TOKEN_HEADER

    publisher = Publisher()
    service = IngestService(routes={"streak": {"BOX_CHANGE_STAGE": {"streak-to-clarity": QUEUE}}},
                            authenticator_for=lambda _source: SharedTokenAuthenticator(["t"], header=TOKEN_HEADER),
                            publisher=publisher,
                            max_body_bytes=256 * 1024, formats={"streak": "object-array"})
    box = {"key": "box_1", "pipelineKey": "pl", "stageKey": "5001", "lastUpdatedTimestamp": millis}
    request = WebhookRequest(source="streak", headers={"x-streak-webhook-token": "t"},
                             query={"event": "BOX_CHANGE_STAGE"}, body=json.dumps([box]).encode())

    answer = rejected(service, request, SchemaError, 422)

    assert answer["fields"][0]["field"] == "[0].lastUpdatedTimestamp"
    assert publisher.published == []


def test_quickbooks_change_time_before_the_first_utc_datetime_is_422() -> None:
    from switchyard.systems.quickbooks.webhooks import parse_notification

    notification = {"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": [
        {"name": "Item", "id": "7", "operation": "Update", "lastUpdated": "0001-01-01T00:00:00+01:00"}]}}]}

    with pytest.raises(SchemaError) as raised:
        parse_notification(notification)

    assert raised.value.fields[0]["field"] == "eventNotifications[0].dataChangeEvent.entities[0].lastUpdated"


def test_error_answer_stays_small_when_it_quotes_a_huge_value(service, signed, publisher, sample) -> None:
    document = sample("nop_order_small")
    document["type"] = "order." + "x" * 200_000  # the answer names the unknown type it got

    answer = rejected(service, signed(json.dumps(document)), SchemaError, 422)

    assert len(json.dumps(answer)) < 2_000
