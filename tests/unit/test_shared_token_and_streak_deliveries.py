"""Streak's webhooks at the edge: the shared token, and object-array deliveries split into events."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from switchyard.catalog import load_catalog
from switchyard.errors import SchemaError, SignatureError
from switchyard.events import FlowEvent
from switchyard.ingest import IngestService, WebhookRequest
from switchyard.signatures import SharedTokenAuthenticator, StandardWebhookAuthenticator, sign
from switchyard.systems.streak.webhooks import TOKEN_HEADER, delivery_event_id

TOKEN = "streak-token-1"
NEW_TOKEN = "streak-token-2"
NOW = 1_795_166_100
RECEIVED_AT = datetime(2026, 11, 20, 9, 15, 3, tzinfo=UTC)
STREAK_QUEUE = "https://sqs.test/q/streak-to-clarity"
CLARITY_QUEUE = "https://sqs.test/q/clarity-to-streak"


def shared_token(tokens: list[str]) -> SharedTokenAuthenticator:
    return SharedTokenAuthenticator(tokens, header=TOKEN_HEADER)


def request(*, headers: Mapping[str, str] | None = None, query: Mapping[str, str] | None = None,
            body: bytes = b"[]") -> WebhookRequest:
    return WebhookRequest(source="streak", headers=dict(headers or {}), body=body, query=dict(query or {}))


# --- SharedTokenAuthenticator -------------------------------------------------------------------------


def test_shared_token_in_header_accepted() -> None:
    assert shared_token([TOKEN]).authenticate(request(headers={"x-streak-webhook-token": TOKEN})) is None


def test_shared_token_in_query_accepted() -> None:
    assert shared_token([TOKEN]).authenticate(request(query={"token": TOKEN})) is None


@pytest.mark.parametrize("presented", [
    {"headers": {"x-streak-webhook-token": "streak-token-X"}},
    {"query": {"token": TOKEN + "x"}},
    {"query": {"token": TOKEN[:-1]}},
    {"headers": {"x-streak-webhook-token": TOKEN.upper()}},
])
def test_shared_token_wrong_signature_error(presented: dict[str, Any]) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        shared_token([TOKEN]).authenticate(request(**presented))


@pytest.mark.parametrize("presented", [{}, {"headers": {"x-streak-webhook-token": ""}}, {"query": {"token": ""}}])
def test_shared_token_missing_signature_error(presented: dict[str, Any]) -> None:
    with pytest.raises(SignatureError, match="missing"):
        shared_token([TOKEN]).authenticate(request(**presented))


@pytest.mark.parametrize("configured", [[], [""], ["", ""]])
def test_shared_token_none_configured_signature_error(configured: list[str]) -> None:
    with pytest.raises(SignatureError, match="no token is configured"):
        shared_token(configured).authenticate(request(headers={"x-streak-webhook-token": TOKEN}))


def test_shared_token_none_configured_empty_token_rejected() -> None:
    with pytest.raises(SignatureError):
        shared_token([""]).authenticate(request(query={"token": ""}))


def test_shared_token_rotation_both_tokens_accepted() -> None:
    authenticator = shared_token([TOKEN, NEW_TOKEN])

    assert authenticator.authenticate(request(headers={"x-streak-webhook-token": TOKEN})) is None
    assert authenticator.authenticate(request(query={"token": NEW_TOKEN})) is None


def test_shared_token_rotation_finished_old_token_rejected() -> None:
    authenticator = shared_token([NEW_TOKEN])

    with pytest.raises(SignatureError):
        authenticator.authenticate(request(headers={"x-streak-webhook-token": TOKEN}))
    assert authenticator.authenticate(request(headers={"x-streak-webhook-token": NEW_TOKEN})) is None


def test_shared_token_header_wins_over_query() -> None:
    authenticator = shared_token([TOKEN])

    with pytest.raises(SignatureError):
        authenticator.authenticate(request(headers={"x-streak-webhook-token": "wrong"}, query={"token": TOKEN}))


# --- ingest: object-array deliveries ----------------------------------------------------------------


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, dict[str, str]]] = []

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        self.published += [(queue_url, m.body, dict(m.attributes)) for m in messages]


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def service(publisher: FakePublisher, signing_secret: str) -> IngestService:
    """Ingest as compose builds it: formats and ack statuses from the catalog (config/flows.yaml)."""
    catalog = load_catalog()
    standard = StandardWebhookAuthenticator([signing_secret], clock=lambda: NOW)
    shared = shared_token([TOKEN])
    return IngestService(
        routes={"streak": {"BOX_CHANGE_STAGE": {"streak-to-clarity": STREAK_QUEUE},
                           "CONTACT_UPDATE": {"streak-to-clarity": STREAK_QUEUE}},
                "clarity": {"order.created": {"clarity-to-streak": CLARITY_QUEUE}}},
        authenticator_for=lambda source: shared if source == "streak" else standard,
        publisher=publisher, max_body_bytes=256 * 1024,
        formats={name: source.format for name, source in catalog.sources.items()},
        ack_statuses={name: source.ack_status for name, source in catalog.sources.items()},
        clock=lambda: RECEIVED_AT,
    )


def box(key: str, *, stage: str = "5003", updated_ms: int = 1_795_860_000_000) -> dict[str, Any]:
    return {"key": key, "boxKey": key, "pipelineKey": "pl_orders", "stageKey": stage,
            "name": f"Clarity order of {key}", "fields": {"1001": "CL-10001"}, "lastUpdatedTimestamp": updated_ms}


def delivery(objects: Any, *, event: str | None = "BOX_CHANGE_STAGE") -> WebhookRequest:
    query = {"token": TOKEN} if event is None else {"token": TOKEN, "event": event}
    return request(query=query, body=json.dumps(objects).encode())


def test_accept_streak_delivery_of_two_boxes_two_messages_distinct_ids(
    service: IngestService, publisher: FakePublisher
) -> None:
    accepted = service.accept(delivery([box("box_1"), box("box_2")]))

    assert len(accepted.event_ids) == 2
    assert len(set(accepted.event_ids)) == 2
    assert [json.loads(body)["event_id"] for _, body, _ in publisher.published] == list(accepted.event_ids)
    assert {queue for queue, _, _ in publisher.published} == {STREAK_QUEUE}
    assert accepted.body()["event_ids"] == list(accepted.event_ids)


def test_accept_same_streak_delivery_again_same_ids(service: IngestService) -> None:
    # Streak retries a delivery with the same objects: the ids match, so idempotency drops the copy
    first = service.accept(delivery([box("box_1"), box("box_2")]))
    again = service.accept(delivery([box("box_1"), box("box_2")]))

    assert again.event_ids == first.event_ids


def test_accept_streak_later_change_of_same_box_new_id(service: IngestService) -> None:
    first = service.accept(delivery([box("box_1")]))
    later = service.accept(delivery([box("box_1", updated_ms=1_795_860_000_001)]))

    assert later.event_ids != first.event_ids


def test_accept_streak_event_id_derived_from_event_key_and_change_time(service: IngestService) -> None:
    accepted = service.accept(delivery([box("box_1")]))

    assert accepted.event_ids == (delivery_event_id("BOX_CHANGE_STAGE", box("box_1")),)
    assert accepted.event_id.startswith("streak_")


def test_accept_streak_same_object_other_event_type_other_id(service: IngestService) -> None:
    contact = {"key": "box_1", "lastUpdatedTimestamp": 1_795_860_000_000}

    as_box = service.accept(delivery([box("box_1")]))
    as_contact = service.accept(delivery([contact], event="CONTACT_UPDATE"))

    assert as_box.event_ids != as_contact.event_ids


@pytest.mark.parametrize("event", [None, "", "BOX_CREATE", "box_change_stage"])
def test_accept_streak_event_missing_or_unknown_schema_error_names_event(
    service: IngestService, publisher: FakePublisher, event: str | None
) -> None:
    with pytest.raises(SchemaError) as caught:
        service.accept(delivery([box("box_1")], event=event))

    assert [problem["field"] for problem in caught.value.fields] == ["event"]
    assert caught.value.status_code == 422
    assert publisher.published == []


@pytest.mark.parametrize("body", [{"key": "box_1"}, [], "box_1", 7, None])
def test_accept_streak_body_not_a_non_empty_array_schema_error(
    service: IngestService, publisher: FakePublisher, body: Any
) -> None:
    with pytest.raises(SchemaError) as caught:
        service.accept(delivery(body))

    assert caught.value.fields[0]["field"] == "$"
    assert publisher.published == []


def test_accept_streak_object_missing_key_schema_error_names_index(
    service: IngestService, publisher: FakePublisher
) -> None:
    keyless = {k: v for k, v in box("box_1").items() if k != "key"}

    with pytest.raises(SchemaError) as caught:
        service.accept(delivery([keyless]))

    assert caught.value.fields[0]["field"] == "[0].key"
    assert publisher.published == []


def test_accept_streak_second_object_invalid_nothing_queued(
    service: IngestService, publisher: FakePublisher
) -> None:
    bad = {**box("box_2"), "stageKey": 5003}  # not a string

    with pytest.raises(SchemaError) as caught:
        service.accept(delivery([box("box_1"), bad]))

    assert caught.value.fields[0]["field"] == "[1].stageKey"
    assert publisher.published == []


@pytest.mark.parametrize("updated", ["missing", "yesterday", 1.5, True])
def test_accept_streak_object_without_change_time_schema_error_names_it(
    service: IngestService, publisher: FakePublisher, updated: Any
) -> None:
    item = box("box_1")
    if updated == "missing":
        del item["lastUpdatedTimestamp"]
    else:
        item["lastUpdatedTimestamp"] = updated

    with pytest.raises(SchemaError) as caught:
        service.accept(delivery([box("box_0"), item]))

    assert caught.value.fields[0]["field"] == "[1].lastUpdatedTimestamp"
    assert publisher.published == []


def test_accept_streak_array_item_not_an_object_schema_error_names_index(
    service: IngestService, publisher: FakePublisher
) -> None:
    with pytest.raises(SchemaError) as caught:
        service.accept(delivery([box("box_1"), "box_2"]))

    assert caught.value.fields[0]["field"] == "[1]"
    assert publisher.published == []


def test_accept_streak_delivery_bad_token_rejected_before_parsing(
    service: IngestService, publisher: FakePublisher
) -> None:
    with pytest.raises(SignatureError):
        service.accept(request(query={"token": "nope", "event": "BOX_CHANGE_STAGE"}, body=b"not json"))
    assert publisher.published == []


def test_accept_streak_ack_status_200(service: IngestService) -> None:
    assert service.accept(delivery([box("box_1")])).status == 200


def test_accept_clarity_envelope_ack_status_202(
    service: IngestService, signing_secret: str, sample_text: Callable[[str], str]
) -> None:
    body = sample_text("clarity_order_b2b").encode()

    accepted = service.accept(WebhookRequest(source="clarity", headers=sign(signing_secret, "msg_c1", NOW, body),
                                             body=body))

    assert accepted.status == 202
    assert accepted.event_ids == ("msg_c1",)


def test_accept_streak_message_parses_into_flow_event_with_change_time(
    service: IngestService, publisher: FakePublisher, sample: Callable[..., Any]
) -> None:
    (streak_box,) = sample("streak_box_change_stage")

    accepted = service.accept(delivery([streak_box]))

    (_, message, attributes), = publisher.published
    event = FlowEvent.from_message(message)
    assert event.flow == "streak-to-clarity"
    assert event.source == "streak"
    assert event.type == "BOX_CHANGE_STAGE"
    assert event.event_id == accepted.event_id == attributes["event_id"]
    assert event.timestamp == datetime.fromtimestamp(streak_box["lastUpdatedTimestamp"] / 1000, tz=UTC)
    assert event.data == json.loads(json.dumps(streak_box))  # the object exactly as Streak sent it
    assert attributes == {"event_id": accepted.event_id, "event_type": "BOX_CHANGE_STAGE", "source": "streak"}


def test_accept_streak_contact_delivery_parses_into_flow_event(
    service: IngestService, publisher: FakePublisher, sample: Callable[..., Any]
) -> None:
    contacts = sample("streak_contact_update")

    service.accept(delivery(contacts, event="CONTACT_UPDATE"))

    (_, message, _), = publisher.published
    event = FlowEvent.from_message(message)
    assert event.type == "CONTACT_UPDATE"
    assert event.data["key"] == "contact_1"
    assert event.timestamp == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)  # lastUpdatedTimestamp 1795863600000
