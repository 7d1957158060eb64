"""Day-2 operations on a flow's queues: list and redrive its dead letters.

Works on any SQS client: the deployed stack's (boto3, credentials of the operator) or the local
stack's (moto). Redriving is safe: workers are idempotent per flow + event id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def _receive_all(sqs: Any, queue_url: str, *, visibility: int) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility,
                                       MessageAttributeNames=["All"], AttributeNames=["All"]).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def describe(message: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as Switchyard wrote it, or (for one SQS moved after maxReceiveCount) as is."""
    try:
        letter = json.loads(message["Body"])
    except ValueError:
        letter = None
    if isinstance(letter, dict) and "original" in letter and "reason" in letter:
        return {key: value for key, value in letter.items() if key != "original"}
    return {"error_class": "unknown", "reason": "moved_by_redrive_policy",
            "message": "received maxReceiveCount times without an answer (e.g. the worker timed out)",
            "attempts": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0))}


def list_dead_letters(sqs: Any, dlq_url: str) -> list[dict[str, Any]]:
    return [describe(m) for m in _receive_all(sqs, dlq_url, visibility=0)]


def redrive(sqs: Any, dlq_url: str, queue_url: str, *, limit: int | None = None) -> int:
    """Send dead letters back to the flow queue (the original event), then delete them."""
    moved = 0
    for message in _receive_all(sqs, dlq_url, visibility=30):
        if limit is not None and moved >= limit:
            break
        try:
            letter = json.loads(message["Body"])
            original = letter["original"] if isinstance(letter, dict) and "original" in letter else message["Body"]
        except ValueError:
            original = message["Body"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=original)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
        moved += 1
    return moved
