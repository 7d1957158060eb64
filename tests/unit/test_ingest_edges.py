"""Ingest's answers at their edges, pinned after the full mutation run of ingest.py (2026-12-03): the
answer's event types, a failed enqueue's message, the archive's config digest, a missing ``?event=``,
and split_delivery's defaults (the CLI's dry-run calls it without an id or a body)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from switchyard.archive import InMemoryDeliveryArchive
from switchyard.errors import EnqueueError, SchemaError
from switchyard.ingest import Accepted, IngestService, WebhookRequest, split_delivery
from switchyard.signatures import SharedTokenAuthenticator, StandardWebhookAuthenticator, sign
from switchyard.systems.streak.webhooks import TOKEN_HEADER, delivery_event_id

NOW = 1_795_166_100
RECEIVED_AT = datetime(2026, 11, 20, 9, 15, 3, tzinfo=UTC)
TOKEN = "streak-token-edges"
QUEUE = "https://sqs.test/q/edges"


class FailingPublisher:
    def publish_batch(self, queue_url: str, messages: Any) -> None:
        raise ConnectionError("SQS is unreachable")


class KeepingPublisher:
    def __init__(self) -> None:
        self.published: list[str] = []

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        self.published += [m.body for m in messages]


def streak_service(publisher: Any, routes: Mapping[str, str]) -> IngestService:
    return IngestService(routes={"streak": {"BOX_CHANGE_STAGE": routes}},
                         authenticator_for=lambda _source: SharedTokenAuthenticator([TOKEN], header=TOKEN_HEADER),
                         publisher=publisher, max_body_bytes=256 * 1024, formats={"streak": "object-array"},
                         clock=lambda: RECEIVED_AT)


def box(key: str) -> dict[str, Any]:
    return {"key": key, "boxKey": key, "pipelineKey": "pl_orders", "stageKey": "5003", "name": f"order {key}",
            "fields": {"1001": "CL-10001"}, "lastUpdatedTimestamp": 1_795_860_000_000}


def streak_delivery(*keys: str, query: Mapping[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(source="streak", headers={}, body=json.dumps([box(k) for k in keys]).encode(),
                          query={"token": TOKEN, "event": "BOX_CHANGE_STAGE"} if query is None else query)


# --------------------------------------------------------------------------- the answer's body


def test_answer_of_several_events_of_one_type_lists_the_ids_without_their_types() -> None:
    accepted = Accepted(event_ids=("e1", "e2"), event_type="order.placed", flows=("f",),
                        event_types=("order.placed", "order.placed"))

    assert accepted.body() == {"event_id": "e1", "type": "order.placed", "flows": ["f"], "event_ids": ["e1", "e2"]}


def test_answer_of_several_events_of_mixed_types_lists_each_type() -> None:
    accepted = Accepted(event_ids=("e1", "e2"), event_type="a", flows=("f",), event_types=("a", "b"))

    assert accepted.body()["event_types"] == ["a", "b"]


# --------------------------------------------------------------------------- a failed enqueue


def test_enqueue_failure_of_several_events_names_the_first_and_counts_the_other_events_once() -> None:
    # three boxes on one queue read by two flows: six messages, but three events
    service = streak_service(FailingPublisher(), {"flow-b": QUEUE, "flow-a": QUEUE})

    with pytest.raises(EnqueueError) as raised:
        service.accept(streak_delivery("box_1", "box_2", "box_3"))

    first = delivery_event_id("BOX_CHANGE_STAGE", box("box_1"))
    assert str(raised.value) == f"could not queue event {first} (and 2 more) for flow flow-a, flow-b"


@pytest.mark.parametrize("keys", [("box_1",), ("box_1", "box_2")], ids=["one", "two"])
def test_enqueue_failure_message_counts_only_the_events_beyond_the_first(keys: tuple[str, ...]) -> None:
    service = streak_service(FailingPublisher(), {"flow-a": QUEUE})

    with pytest.raises(EnqueueError) as raised:
        service.accept(streak_delivery(*keys))

    first = delivery_event_id("BOX_CHANGE_STAGE", box("box_1"))
    more = "" if len(keys) == 1 else " (and 1 more)"
    assert str(raised.value) == f"could not queue event {first}{more} for flow flow-a"


# --------------------------------------------------------------------------- archive, event parameter


def test_archive_of_a_service_built_without_a_config_digest_records_none(signing_secret: str,
                                                                         sample_text: Callable[[str], str]) -> None:
    archive = InMemoryDeliveryArchive()
    service = IngestService(
        routes={"nopcommerce": {"order.placed": {"flow-a": QUEUE}}},
        authenticator_for=lambda _source: StandardWebhookAuthenticator([signing_secret], clock=lambda: NOW),
        publisher=KeepingPublisher(), max_body_bytes=256 * 1024, clock=lambda: RECEIVED_AT, archive=archive)
    body = sample_text("nop_order_b2b").encode()

    service.accept(WebhookRequest(source="nopcommerce", headers=sign(signing_secret, "msg_edge", NOW, body), body=body))

    assert [delivery.config_digest for delivery in archive.deliveries] == [""]


def test_delivery_without_an_event_parameter_is_judged_as_the_empty_event_type() -> None:
    service = streak_service(KeepingPublisher(), {"flow-a": QUEUE})

    with pytest.raises(SchemaError) as raised:
        service.accept(streak_delivery("box_1", query={"token": TOKEN}))

    assert raised.value.fields == [{"field": "event",
                                    "message": "got '', expected one of: BOX_CHANGE_STAGE, CONTACT_UPDATE"}]


# --------------------------------------------------------------------------- split_delivery's defaults


def test_split_envelope_without_id_or_body_queues_the_document_as_compact_json(sample: Callable[..., Any]) -> None:
    document = sample("nop_order_b2b")

    events, ignored = split_delivery("nopcommerce", "envelope", document, routes={})

    assert ignored is None
    assert [(e.event_id, e.event_type) for e in events] == [("", "order.placed")]
    assert events[0].body == json.dumps(document, separators=(",", ":"))
    assert ", " not in events[0].body and '": ' not in events[0].body


def test_split_object_array_without_an_event_type_is_judged_as_the_empty_one() -> None:
    with pytest.raises(SchemaError) as raised:
        split_delivery("streak", "object-array", [box("box_1")], routes={})

    assert raised.value.fields[0]["message"].startswith("got '',")
