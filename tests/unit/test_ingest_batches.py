"""Amplification: a delivery of many objects is queued ten to a SendMessageBatch (partial failures sent
again), and a delivery above the documented limit is refused with 413 before anything is queued."""

from __future__ import annotations

import json
from typing import Any

import pytest
from switchyard.aws.sqs import BATCH_BYTES, BatchSendError, SqsQueues
from switchyard.errors import EnqueueError, PayloadTooLargeError
from switchyard.ingest import MAX_EVENTS_PER_DELIVERY, IngestService, OutgoingMessage, WebhookRequest
from switchyard.signatures import SharedTokenAuthenticator
from switchyard.systems.streak.webhooks import TOKEN_HEADER

TOKEN = "streak-token"
QUEUE = "https://sqs.test/q/streak-to-clarity"
ROUTES = {"streak": {"BOX_CHANGE_STAGE": {"streak-to-clarity": QUEUE}}}


class FakeSqs:
    """SendMessageBatch as SQS answers it; ``fail`` says which entry ids fail on which call."""

    def __init__(self, fail: dict[int, dict[str, bool]] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.queued: list[str] = []
        self._fail = fail or {}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        assert sum(len(e["MessageBody"].encode()) for e in Entries) <= BATCH_BYTES
        failing = self._fail.get(len(self.calls), {})
        self.calls.append(Entries)
        failed = [{"Id": e["Id"], "SenderFault": failing[e["Id"]], "Code": "InternalError", "Message": "try again"}
                  for e in Entries if e["Id"] in failing]
        self.queued += [e["MessageBody"] for e in Entries if e["Id"] not in failing]
        return {"Successful": [{"Id": e["Id"]} for e in Entries if e["Id"] not in failing], "Failed": failed}

    def send_message(self, **kwargs: Any) -> None:
        raise AssertionError("one SendMessage per event is what made a 1,000-object delivery take 33 s")


def messages(count: int, size: int = 10) -> list[OutgoingMessage]:
    return [OutgoingMessage(f"{index:0{size}d}", {"event_id": f"e{index}"}) for index in range(count)]


def test_publish_batch_sends_ten_per_call() -> None:
    sqs = FakeSqs()

    SqsQueues(sqs).publish_batch(QUEUE, messages(25))

    assert [len(call) for call in sqs.calls] == [10, 10, 5]
    assert sqs.queued == [m.body for m in messages(25)]
    assert sqs.calls[0][0]["MessageAttributes"] == {"event_id": {"DataType": "String", "StringValue": "e0"}}


def test_publish_batch_splits_by_request_size() -> None:
    sqs = FakeSqs()

    SqsQueues(sqs).publish_batch(QUEUE, messages(6, size=300_000))  # 1 MiB per request: three fit

    assert [len(call) for call in sqs.calls] == [3, 3]


def test_publish_batch_sends_failed_entries_again() -> None:
    sqs = FakeSqs(fail={0: {"3": False, "7": False}, 1: {"7": False}})  # call 1 resends "3" and "7"
    sleeps: list[float] = []

    SqsQueues(sqs, sleep=sleeps.append).publish_batch(QUEUE, messages(10))

    assert [[e["Id"] for e in call] for call in sqs.calls] == [[str(i) for i in range(10)], ["3", "7"], ["7"]]
    assert sorted(sqs.queued) == sorted(m.body for m in messages(10))
    assert len(sleeps) == 2


def test_publish_batch_raises_when_entries_keep_failing() -> None:
    sqs = FakeSqs(fail={n: {"2": False} for n in range(5)})

    with pytest.raises(BatchSendError, match="1 of 1 message"):
        SqsQueues(sqs, sleep=lambda _s: None).publish_batch(QUEUE, messages(5))

    assert len(sqs.calls) == 3


def test_publish_batch_does_not_resend_what_the_sender_got_wrong() -> None:
    sqs = FakeSqs(fail={0: {"0": True}})

    with pytest.raises(BatchSendError):
        SqsQueues(sqs, sleep=lambda _s: None).publish_batch(QUEUE, messages(3))

    assert len(sqs.calls) == 1


def box(index: int) -> dict[str, Any]:
    return {"key": f"box_{index}", "pipelineKey": "pl", "stageKey": "5002", "fields": {"1001": f"CL-{index}"},
            "lastUpdatedTimestamp": 1_795_860_000_000 + index}


def service(sqs: Any) -> IngestService:
    return IngestService(routes=ROUTES,
                         authenticator_for=lambda _s: SharedTokenAuthenticator([TOKEN], header=TOKEN_HEADER),
                         publisher=SqsQueues(sqs, sleep=lambda _s: None), max_body_bytes=10 * 1024 * 1024,
                         formats={"streak": "object-array"}, ack_statuses={"streak": 200})


def delivery(count: int) -> WebhookRequest:
    return WebhookRequest(source="streak", headers={"x-streak-webhook-token": TOKEN},
                          query={"event": "BOX_CHANGE_STAGE"}, body=json.dumps([box(i) for i in range(count)]).encode())


def test_streak_delivery_at_the_limit_is_queued_in_batches_before_200() -> None:
    sqs = FakeSqs(fail={4: {"0": False}})

    accepted = service(sqs).accept(delivery(MAX_EVENTS_PER_DELIVERY))

    assert accepted.status == 200
    assert len(accepted.event_ids) == MAX_EVENTS_PER_DELIVERY
    assert len(sqs.queued) == MAX_EVENTS_PER_DELIVERY
    assert len(sqs.calls) == MAX_EVENTS_PER_DELIVERY // 10 + 1  # one partial failure sent again


def test_streak_delivery_above_the_limit_is_413_and_queues_nothing() -> None:
    sqs = FakeSqs()

    with pytest.raises(PayloadTooLargeError) as raised:
        service(sqs).accept(delivery(1_000))

    assert raised.value.status_code == 413
    assert f"at most {MAX_EVENTS_PER_DELIVERY} events" in raised.value.message
    assert sqs.calls == []


def test_streak_delivery_that_cannot_be_queued_is_503_not_200() -> None:
    sqs = FakeSqs(fail={n: {"4": False} for n in range(3)})

    with pytest.raises(EnqueueError, match="streak-to-clarity"):
        service(sqs).accept(delivery(20))
