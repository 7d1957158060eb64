"""Day-2 operations on a flow's queues: list and redrive its dead letters.

Works on any SQS client: the deployed stack's (boto3, credentials of the operator) or the local
stack's (moto). Redriving is safe: workers are idempotent per flow + event id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

LISTING_VISIBILITY_SECONDS = 30  # how long a listing keeps what it read hidden, if it dies before releasing it
EMPTY_ANSWER_RETRIES = 3  # long-polled receives before an empty answer is believed while messages are visible


def _receive_batches(sqs: Any, queue_url: str, *, visibility: int) -> Iterator[list[dict[str, Any]]]:
    """Every message the queue holds, each once, batch by batch: a received message stays hidden for
    ``visibility`` seconds, so the next receive returns others. (With visibility 0 SQS answers from the same
    few messages again and again, and a listing that stops at the first batch without a new one misses the
    rest: 10 of 17.)"""
    seen: set[str] = set()
    empty_answers = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility,
                                       WaitTimeSeconds=1 if empty_answers else 0,
                                       MessageAttributeNames=["All"], AttributeNames=["All"]).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            # a short poll samples some of SQS's servers: an empty answer ends the listing only when the queue
            # says nothing is visible, or after a few long polls (which ask every server)
            if _visible(sqs, queue_url) == 0 or empty_answers >= EMPTY_ANSWER_RETRIES:
                return
            empty_answers += 1
            continue
        seen.update(message["MessageId"] for message in fresh)
        yield fresh


def _visible(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def _release(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again at once."""
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
            for number, message in enumerate(chunk)])


def peek_all(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message of a queue (the SQS messages), read without consuming any: what was read is hidden
    while the listing runs, then made visible again."""
    held: list[dict[str, Any]] = []
    try:
        for batch in _receive_batches(sqs, queue_url, visibility=LISTING_VISIBILITY_SECONDS):
            held.extend(batch)
    finally:
        _release(sqs, queue_url, held)
    return held


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
    """Every dead letter of a DLQ, described; none is consumed."""
    return [describe(m) for m in peek_all(sqs, dlq_url)]


def redrive(sqs: Any, dlq_url: str, queue_url: str, *, limit: int | None = None) -> int:
    """Send dead letters back to the flow queue (the original event), then delete them; with ``limit``, the
    letters read beyond it are made visible again."""
    moved = 0
    left: list[dict[str, Any]] = []
    try:
        for batch in _receive_batches(sqs, dlq_url, visibility=LISTING_VISIBILITY_SECONDS):
            for message in batch:
                if limit is not None and moved >= limit:
                    left.append(message)
                    continue
                try:
                    letter = json.loads(message["Body"])
                    original = (letter["original"] if isinstance(letter, dict) and "original" in letter
                                else message["Body"])
                except ValueError:
                    original = message["Body"]
                sqs.send_message(QueueUrl=queue_url, MessageBody=original)
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
            if limit is not None and moved >= limit:
                break
    finally:
        _release(sqs, dlq_url, left)
    return moved
