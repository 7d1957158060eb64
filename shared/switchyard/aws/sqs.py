"""SQS adapter: publishing events and dead-lettering with a reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SqsQueues:
    def __init__(self, client: Any) -> None:
        self._client = client

    def publish(self, queue_url: str, body: str, attributes: Mapping[str, str]) -> None:
        self._client.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            },
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
