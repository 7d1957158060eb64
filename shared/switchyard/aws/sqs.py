"""SQS adapter: publishing events and dead-lettering with a reason."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchyard.ingest import OutgoingMessage

BATCH_ENTRIES = 10  # SendMessageBatch's limit
BATCH_BYTES = 1_048_576  # of one SendMessageBatch request, all bodies and attributes together
BATCH_ATTEMPTS = 3  # entries a batch reports as failed (not the sender's fault) are sent again


class BatchSendError(Exception):
    """Entries of a SendMessageBatch still failed after retries (or failed by the sender's fault)."""


class SqsQueues:
    def __init__(self, client: Any, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._sleep = sleep

    def publish_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> None:
        """Queue every message, ten (and at most 1 MiB) per SendMessageBatch; the entries a batch reports
        as failed are sent again; raises BatchSendError when any is still not queued."""
        for chunk in _chunks(messages):
            pending = {str(index): message for index, message in enumerate(chunk)}
            for attempt in range(BATCH_ATTEMPTS):
                response = self._client.send_message_batch(QueueUrl=queue_url, Entries=[
                    {"Id": entry_id, "MessageBody": message.body,
                     "MessageAttributes": _attributes(message.attributes)} for entry_id, message in pending.items()])
                failed = response.get("Failed") or []
                if not failed:
                    break
                if any(f.get("SenderFault") for f in failed) or attempt == BATCH_ATTEMPTS - 1:
                    first = failed[0]
                    raise BatchSendError(f"{len(failed)} of {len(pending)} message(s) not queued: "
                                         f"{first.get('Code')}: {first.get('Message')}")
                pending = {f["Id"]: pending[f["Id"]] for f in failed}
                self._sleep(0.05 * 2 ** attempt)

    def publish(self, queue_url: str, body: str, attributes: Mapping[str, str]) -> None:
        self._client.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes=_attributes(attributes),
        )

    def requeue(self, queue_url: str, body: str, delay_seconds: int) -> None:
        """Send ``body`` again as a new message, delivered after ``delay_seconds`` (at most 900)."""
        self._client.send_message(QueueUrl=queue_url, MessageBody=body,
                                  DelaySeconds=max(0, min(delay_seconds, 900)))

    def delay(self, queue_url: str, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again only after ``seconds`` (retry later)."""
        self._client.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, min(seconds, 43200))
        )


class SqsDeadLetters:
    """Sends a flow's dead letters (with their reason) to its DLQ."""

    def __init__(self, client: Any, dlq_url: str) -> None:
        self._client = client
        self._dlq_url = dlq_url

    def send(self, letter: Any) -> None:
        attributes = {"flow": letter.flow, "error_class": letter.error_class, "reason": letter.reason}
        if letter.event_id:
            attributes["event_id"] = letter.event_id
        SqsQueues(self._client).publish(self._dlq_url, letter.to_json(), attributes)


def _attributes(attributes: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}


def _size(message: OutgoingMessage) -> int:
    return len(message.body.encode()) + sum(len(k.encode()) + len(v.encode()) + len("String")
                                             for k, v in message.attributes.items())


def _chunks(messages: Sequence[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    chunks: list[list[OutgoingMessage]] = []
    size = 0
    for message in messages:
        if not chunks or len(chunks[-1]) == BATCH_ENTRIES or size + _size(message) > BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += _size(message)
    return chunks
