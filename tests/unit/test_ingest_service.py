"""IngestService: 202 only after every subscribed flow's queue holds the event; 4xx queue nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from switchyard.errors import (
    EnqueueError,
    MalformedBodyError,
    PayloadTooLargeError,
    SchemaError,
    SignatureError,
    UnknownSourceError,
)
from switchyard.events import FlowEvent
from switchyard.ingest import Accepted, IngestService, WebhookRequest
from switchyard.signatures import StandardWebhookAuthenticator, sign

NOW = 1_795_166_100
RECEIVED_AT = datetime(2026, 11, 20, 9, 15, 3, tzinfo=UTC)
STREAK_QUEUE = "https://sqs.test/q/nopcommerce-to-streak"
OTHER_QUEUE = "https://sqs.test/q/nopcommerce-to-other"
ROUTES = {
    "nopcommerce": {
        "order.placed": {"nopcommerce-to-streak": STREAK_QUEUE, "nopcommerce-to-other": OTHER_QUEUE},
        "order.status_changed": {"nopcommerce-to-streak": STREAK_QUEUE},
    }
}


class FakePublisher:
    def __init__(self, fail_on: str | None = None) -> None:
        self.published: list[tuple[str, str, dict[str, str]]] = []
        self._fail_on = fail_on

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        if queue_url == self._fail_on:
            raise ConnectionError("SQS is unreachable")
        self.published += [(queue_url, m.body, dict(m.attributes)) for m in messages]


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def service_for(signing_secret: str) -> Callable[..., IngestService]:
    def build(publisher: Any, *, routes: Mapping[str, Any] = ROUTES, max_body_bytes: int = 256 * 1024):
        authenticator = StandardWebhookAuthenticator([signing_secret], clock=lambda: NOW)
        return IngestService(routes=routes, authenticator_for=lambda _source: authenticator, publisher=publisher,
                             max_body_bytes=max_body_bytes, clock=lambda: RECEIVED_AT)

    return build


@pytest.fixture
def signed(signing_secret: str) -> Callable[..., WebhookRequest]:
    def build(body: bytes, *, event_id: str = "msg_1", source: str = "nopcommerce") -> WebhookRequest:
        return WebhookRequest(source=source, headers=sign(signing_secret, event_id, NOW, body), body=body)

    return build


def test_accept_valid_event_publishes_to_every_subscribed_flow(
    service_for, signed, publisher: FakePublisher, sample_text: Callable[[str], str]
) -> None:
    # Given a signed order.placed webhook, subscribed by two flows
    body = sample_text("nop_order_b2b").encode()

    # When it is accepted
    accepted = service_for(publisher).accept(signed(body, event_id="msg_b2b"))

    # Then the answer carries the event id and both flows, and both queues hold the message
    assert accepted == Accepted(event_ids=("msg_b2b",), event_type="order.placed",
                                flows=("nopcommerce-to-streak", "nopcommerce-to-other"))
    assert accepted.body() == {"event_id": "msg_b2b", "type": "order.placed",
                               "flows": ["nopcommerce-to-streak", "nopcommerce-to-other"]}
    assert [queue for queue, _, _ in publisher.published] == [STREAK_QUEUE, OTHER_QUEUE]
    for (_, message, attributes), flow in zip(publisher.published, accepted.flows, strict=True):
        payload = json.loads(message)
        assert set(payload) == {"flow", "event_id", "source", "type", "timestamp", "received_at", "body", "digest"}
        assert payload["digest"] == hashlib.sha256(body).hexdigest()[:32]  # the id and the body make the event
        assert (payload["flow"], payload["event_id"], payload["source"], payload["type"]) == (
            flow, "msg_b2b", "nopcommerce", "order.placed")
        assert datetime.fromisoformat(payload["timestamp"]) == datetime(2026, 11, 20, 9, 15, 2, tzinfo=UTC)
        assert datetime.fromisoformat(payload["received_at"]) == RECEIVED_AT
        assert payload["body"].encode() == body  # the event exactly as signed, nothing added or lost
        assert attributes == {"event_id": "msg_b2b", "event_type": "order.placed", "source": "nopcommerce"}


def test_accept_money_survives_exactly_into_the_message(service_for, signed, publisher, sample_text) -> None:
    body = sample_text("nop_order_small").encode()

    service_for(publisher).accept(signed(body))

    (_, message, _) = publisher.published[0]
    event = FlowEvent.from_message(message)
    assert event.data["Order"]["OrderTotal"] == Decimal("24.99")


def test_accept_eighteen_digit_money_survives_exactly_to_the_worker(service_for, signed, publisher,
                                                                    sample_text) -> None:
    document = json.loads(sample_text("nop_order_small"))
    body = json.dumps(document).replace('"OrderTotal": 24.99', '"OrderTotal": 12345678901234.5678').encode()
    assert b"12345678901234.5678" in body

    service_for(publisher).accept(signed(body))

    (_, message, _) = publisher.published[0]
    assert FlowEvent.from_message(message).data["Order"]["OrderTotal"] == Decimal("12345678901234.5678")


def test_accept_status_change_routes_only_to_its_subscribers(
    service_for, signed, publisher: FakePublisher, sample_text
) -> None:
    accepted = service_for(publisher).accept(signed(sample_text("nop_status_processing").encode()))

    assert accepted.flows == ("nopcommerce-to-streak",)
    assert [queue for queue, _, _ in publisher.published] == [STREAK_QUEUE]


def test_accept_event_type_without_subscriber_accepted_with_no_flows(
    service_for, signed, publisher: FakePublisher, sample_text
) -> None:
    routes = {"nopcommerce": {"order.placed": {"nopcommerce-to-streak": STREAK_QUEUE}}}

    accepted = service_for(publisher, routes=routes).accept(signed(sample_text("nop_status_processing").encode()))

    assert accepted.event_type == "order.status_changed"
    assert accepted.flows == ()
    assert publisher.published == []


def test_accept_unknown_source_raises_404_and_publishes_nothing(
    service_for, signed, publisher: FakePublisher, sample_text
) -> None:
    request = signed(sample_text("nop_order_b2b").encode(), source="magento")

    with pytest.raises(UnknownSourceError) as raised:
        service_for(publisher).accept(request)

    assert raised.value.status_code == 404
    assert publisher.published == []


def test_accept_oversize_body_raises_413_before_anything_else(service_for, publisher: FakePublisher) -> None:
    # an unsigned body: the size check must come first (no HMAC over megabytes of junk)
    request = WebhookRequest(source="nopcommerce", headers={}, body=b"x" * 2049)

    with pytest.raises(PayloadTooLargeError) as raised:
        service_for(publisher, max_body_bytes=2048).accept(request)

    assert raised.value.status_code == 413
    assert publisher.published == []


def test_accept_body_at_size_limit_accepted(service_for, signed, publisher: FakePublisher, sample_text) -> None:
    body = sample_text("nop_status_processing").encode()

    accepted = service_for(publisher, max_body_bytes=len(body)).accept(signed(body))

    assert accepted.flows == ("nopcommerce-to-streak",)


def test_accept_bad_signature_raises_401_and_publishes_nothing(
    service_for, signed, publisher: FakePublisher, sample_text
) -> None:
    body = sample_text("nop_order_b2b").encode()
    request = signed(body)
    tampered = WebhookRequest(source=request.source, headers=request.headers,
                              body=body.replace(b"1299.00", b"1.00"))

    with pytest.raises(SignatureError) as raised:
        service_for(publisher).accept(tampered)

    assert raised.value.status_code == 401
    assert publisher.published == []


@pytest.mark.parametrize("body", [b'{"type": "order.placed",', b"", b"null x"], ids=["truncated", "empty", "junk"])
def test_accept_malformed_json_raises_400(service_for, signed, publisher: FakePublisher, body: bytes) -> None:
    # Given a correctly signed body that is not JSON
    with pytest.raises(MalformedBodyError) as raised:
        service_for(publisher).accept(signed(body))

    assert raised.value.status_code == 400
    assert raised.value.body()["error"] == "malformed_body"
    assert publisher.published == []


def test_accept_schema_invalid_raises_422_naming_field(service_for, signed, publisher, sample) -> None:
    document = sample("nop_order_b2b")
    document["data"]["Order"]["OrderTotal"] = "lots"

    with pytest.raises(SchemaError) as raised:
        service_for(publisher).accept(signed(json.dumps(document).encode()))

    assert raised.value.status_code == 422
    assert raised.value.body()["fields"][0]["field"] == "data.Order.OrderTotal"
    assert publisher.published == []


def test_accept_publisher_failure_raises_enqueue_error(service_for, signed, sample_text) -> None:
    # Given the second flow's queue cannot be written
    publisher = FakePublisher(fail_on=OTHER_QUEUE)

    # Then the sender gets an EnqueueError (503: it retries, idempotency absorbs the partial fan-out)
    with pytest.raises(EnqueueError, match="nopcommerce-to-other") as raised:
        service_for(publisher).accept(signed(sample_text("nop_order_b2b").encode(), event_id="msg_x"))

    assert "msg_x" in str(raised.value)
    assert isinstance(raised.value.__cause__, ConnectionError)


# --------------------------------------------------------------------------- swept sources (issue 10)


def test_queued_event_ids_are_told_to_the_sweep_log_only_once_queued(
    signing_secret: str, signed, sample_text: Callable[[str], str]
) -> None:
    told: list[tuple[str, list[str]]] = []
    authenticator = StandardWebhookAuthenticator([signing_secret], clock=lambda: NOW)

    def service(publisher: Any) -> IngestService:
        return IngestService(routes=ROUTES, authenticator_for=lambda _source: authenticator, publisher=publisher,
                             max_body_bytes=256 * 1024, clock=lambda: RECEIVED_AT,
                             on_queued=lambda source, events: told.append((source, [e.event_id for e in events])))

    body = sample_text("nop_order_b2b").encode()
    service(FakePublisher()).accept(signed(body, event_id="nopcommerce:order:g:placed"))
    with pytest.raises(EnqueueError):
        service(FakePublisher(fail_on=OTHER_QUEUE)).accept(signed(body, event_id="nopcommerce:order:h:placed"))
    with pytest.raises(SignatureError):
        service(FakePublisher()).accept(WebhookRequest(source="nopcommerce", headers={}, body=body))

    assert told == [("nopcommerce", ["nopcommerce:order:g:placed"])]
