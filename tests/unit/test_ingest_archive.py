"""Ingest archives every accepted delivery for replay, after the queueing and without ever failing it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from switchyard.archive import (
    ArchivedDelivery,
    ArchivedEvent,
    InMemoryDeliveryArchive,
    S3DeliveryArchive,
    archive_key,
    config_digest,
)
from switchyard.errors import EnqueueError, SignatureError
from switchyard.events import FlowEvent, flow_message
from switchyard.ingest import IngestService, WebhookRequest
from switchyard.signatures import StandardWebhookAuthenticator, sign

NOW = 1_795_166_100
RECEIVED_AT = datetime(2026, 11, 20, 9, 15, 3, 250_000, tzinfo=UTC)
STREAK_QUEUE = "https://sqs.test/q/nopcommerce-to-streak"
OTHER_QUEUE = "https://sqs.test/q/nopcommerce-to-other"
ROUTES = {"nopcommerce": {"order.placed": {"nopcommerce-to-streak": STREAK_QUEUE, "nopcommerce-to-other": OTHER_QUEUE},
                          "order.status_changed": {"nopcommerce-to-streak": STREAK_QUEUE}}}


class Publisher:
    def __init__(self, *, fail: bool = False, calls: list[str] | None = None) -> None:
        self.published: list[tuple[str, str]] = []
        self._fail = fail
        self._calls = calls if calls is not None else []

    def publish_batch(self, queue_url: str, messages: Any) -> None:
        self._calls.append("queue")
        if self._fail:
            raise ConnectionError("SQS is unreachable")
        self.published += [(queue_url, m.body) for m in messages]


class RecordingArchive(InMemoryDeliveryArchive):
    def __init__(self, calls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._calls = calls

    def write(self, delivery: ArchivedDelivery) -> None:
        self._calls.append("archive")
        super().write(delivery)


@pytest.fixture
def service(signing_secret: str) -> Callable[..., IngestService]:
    def build(publisher: Any, archive: Any) -> IngestService:
        authenticator = StandardWebhookAuthenticator([signing_secret], clock=lambda: NOW)
        return IngestService(routes=ROUTES, authenticator_for=lambda _source: authenticator, publisher=publisher,
                             max_body_bytes=256 * 1024, clock=lambda: RECEIVED_AT, archive=archive,
                             config_digest="cfg123")

    return build


@pytest.fixture
def signed(signing_secret: str) -> Callable[..., WebhookRequest]:
    def build(body: bytes, *, event_id: str = "msg_1", secret: str | None = None) -> WebhookRequest:
        return WebhookRequest(source="nopcommerce", headers=sign(secret or signing_secret, event_id, NOW, body),
                              body=body)

    return build


def test_accepted_delivery_archived_after_queueing_as_queued(service, signed, sample_text) -> None:
    calls: list[str] = []
    publisher, archive = Publisher(calls=calls), RecordingArchive(calls)
    body = sample_text("nop_order_b2b").encode()

    accepted = service(publisher, archive).accept(signed(body, event_id="msg_b2b"))

    assert accepted.archive_error is None
    assert calls == ["queue", "queue", "archive"]  # both flows' queues first
    (delivery,) = archive.deliveries
    assert (delivery.source, delivery.received_at, delivery.config_digest) == (
        "nopcommerce", RECEIVED_AT.isoformat(), "cfg123")
    (event,) = delivery.events
    assert event.event_id == "msg_b2b" and event.body == body.decode()
    assert event.flows == ("nopcommerce-to-streak", "nopcommerce-to-other")
    # what replay rebuilds is byte for byte the message the flow's queue got: the same idempotency key
    rebuilt = flow_message(flow="nopcommerce-to-streak", event_id=event.event_id, source=delivery.source,
                           event_type=event.event_type, timestamp=event.timestamp, received_at=delivery.received_at,
                           body=event.body, digest=event.digest)
    assert (STREAK_QUEUE, rebuilt) in publisher.published
    assert FlowEvent.from_message(rebuilt).idempotency_key == FlowEvent.from_message(
        next(m for q, m in publisher.published if q == STREAK_QUEUE)).idempotency_key


def test_archive_failure_keeps_the_acceptance_and_says_why(service, signed, sample_text) -> None:
    publisher = Publisher()
    archive = InMemoryDeliveryArchive(fail_with=lambda: ConnectionError("S3 is unreachable"))

    accepted = service(publisher, archive).accept(signed(sample_text("nop_order_b2b").encode()))

    assert accepted.status == 202 and len(publisher.published) == 2
    assert accepted.archive_error == "ConnectionError: S3 is unreachable"
    assert "archive" not in json.dumps(accepted.body())  # the sender's answer is unchanged


def test_rejected_or_unqueued_delivery_is_not_archived(service, signed, sample_text, signing_secret) -> None:
    body = sample_text("nop_order_b2b").encode()
    archive = InMemoryDeliveryArchive()
    with pytest.raises(SignatureError):
        service(Publisher(), archive).accept(signed(body, secret="whsec_" + "QUJD" * 8))
    with pytest.raises(EnqueueError):
        service(Publisher(fail=True), archive).accept(signed(body))
    assert archive.deliveries == []


def test_archive_keys_sort_by_time_within_the_hour_and_differ_per_delivery() -> None:
    def delivery(at: datetime, event_id: str) -> ArchivedDelivery:
        return ArchivedDelivery("shop", at.isoformat(), (ArchivedEvent(event_id, "order.placed", "t", "{}", "d",
                                                                       ("flow",)),))

    first = archive_key(delivery(datetime(2026, 12, 3, 9, 59, 59, 999_999, tzinfo=UTC), "b"))
    same_moment = archive_key(delivery(datetime(2026, 12, 3, 9, 59, 59, 999_999, tzinfo=UTC), "a"))
    later = archive_key(delivery(datetime(2026, 12, 3, 10, 0, tzinfo=UTC), "a"))
    assert first.startswith("deliveries/shop/2026/12/03/09/20261203T095959.999999Z-")
    assert later.startswith("deliveries/shop/2026/12/03/10/")
    assert first != same_moment and max(first, same_moment) < later


@mock_aws
def test_s3_archive_reads_back_a_time_range_across_hours_oldest_first() -> None:
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="archive", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    archive = S3DeliveryArchive(s3, "archive")
    times = [datetime(2026, 12, 3, 8, 59, tzinfo=UTC), datetime(2026, 12, 3, 9, 30, tzinfo=UTC),
             datetime(2026, 12, 3, 10, 5, tzinfo=UTC), datetime(2026, 12, 3, 11, 0, 1, tzinfo=UTC)]
    for number, at in enumerate(reversed(times)):
        archive.write(ArchivedDelivery("shop", at.isoformat(), (ArchivedEvent(
            f"evt_{number}", "order.placed", at.isoformat(), '{"amount":1.10}', "d", ("flow",)),)))
    archive.write(ArchivedDelivery("other", times[1].isoformat(), (ArchivedEvent(
        "evt_other", "order.placed", "t", "{}", "d", ("flow",)),)))

    read = list(archive.read("shop", datetime(2026, 12, 3, 9, 0, tzinfo=UTC), datetime(2026, 12, 3, 11, 0, tzinfo=UTC)))

    assert [d.received for d in read] == times[1:3]
    assert read[0].events[0].body == '{"amount":1.10}'  # the body as queued: money not re-serialised


def test_config_digest_changes_with_any_mapping_text() -> None:
    files = {"flows.yaml": "flows: {}", "mappings/a.yaml": "x: 1"}
    assert config_digest(files) == config_digest(dict(reversed(list(files.items()))))
    assert config_digest(files) != config_digest({**files, "mappings/a.yaml": "x: 2"})
