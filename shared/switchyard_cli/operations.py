"""Day-2 operations on a flow's queues: list, show, redrive and discard its dead letters.

Works on any SQS client: the deployed stack's (boto3, credentials of the operator) or the local
stack's (moto). Redriving is safe: workers are idempotent per flow + event id.

SQS cannot address one message, so acting on chosen letters is: read every letter (keeping what was read
hidden), act on those chosen (by SQS message id, as listed), make the rest visible again at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


ACTING_VISIBILITY_SECONDS = 300  # letters held while a redrive or discard works through a long DLQ


@dataclass(frozen=True)
class Letter:
    """A dead letter as an operator reads it: which event of which order, why, what the target said."""

    message_id: str  # SQS's: what ``dlq show``, ``redrive`` and ``discard`` take
    flow: str
    event_id: str | None
    event_type: str | None
    orders: tuple[str, ...]  # what names the order (or other entity) the event is about: the source's order_ref
    reason: str
    error_class: str
    message: str
    target_status: int | None
    target_response: Any
    attempts: int
    failed_at: datetime | None
    original: str = field(repr=False)  # what redrive sends back to the flow queue

    @property
    def order(self) -> str | None:
        return self.orders[0] if self.orders else None

    def summary(self) -> dict[str, Any]:
        """Everything but the original message, JSON-ready."""
        return {"id": self.message_id, "flow": self.flow, "order": self.order, "event_id": self.event_id,
                "event_type": self.event_type, "reason": self.reason, "error_class": self.error_class,
                "message": self.message, "target_status": self.target_status,
                "target_response": self.target_response, "attempts": self.attempts,
                "failed_at": self.failed_at.isoformat() if self.failed_at else None}


def read_letter(message: dict[str, Any], flow: str, order_refs: Callable[[dict[str, Any]], list[str]]) -> Letter:
    """A DLQ message as a :class:`Letter`. ``order_refs`` name the order in an event's queue message."""
    described = describe(message)
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = None
    original = body["original"] if isinstance(body, dict) and "original" in body else message["Body"]
    try:
        queued = json.loads(original) if isinstance(original, str) else None
    except ValueError:
        queued = None
    queued = queued if isinstance(queued, dict) else {}
    sent = message.get("Attributes", {}).get("SentTimestamp")
    failed_at = _parse_time(described.get("failed_at")) or (
        datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None)
    return Letter(
        message_id=message["MessageId"], flow=str(described.get("flow") or flow),
        event_id=described.get("event_id") or queued.get("event_id"), event_type=queued.get("type"),
        orders=tuple(order_refs(queued)), reason=str(described.get("reason")),
        error_class=str(described.get("error_class")),
        message=str(described.get("message") or ""), target_status=described.get("target_status"),
        target_response=described.get("target_response"), attempts=int(described.get("attempts") or 0),
        failed_at=failed_at, original=original if isinstance(original, str) else json.dumps(original))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_letters(sqs: Any, dlq_url: str, flow: str,
                 order_refs: Callable[[dict[str, Any]], list[str]]) -> list[Letter]:
    """Every letter of a DLQ, oldest failure first; none is consumed."""
    letters = [read_letter(m, flow, order_refs) for m in peek_all(sqs, dlq_url)]
    return sorted(letters, key=lambda letter: (letter.failed_at or datetime.min.replace(tzinfo=UTC)))


@dataclass(frozen=True)
class Selection:
    """Which letters a command is about: every field given must match (reasons and orders: any of them)."""

    reasons: tuple[str, ...] = ()
    orders: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()  # SQS message ids or event ids
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: Letter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.orders and not set(self.orders) & set(letter.orders):
            return False
        if self.ids and letter.message_id not in self.ids and letter.event_id not in self.ids:
            return False
        if self.since and (letter.failed_at is None or letter.failed_at < self.since):
            return False
        return not (self.until and (letter.failed_at is None or letter.failed_at > self.until))


@dataclass(frozen=True)
class Outcome:
    letter: Letter
    done: str  # "redriven", "discarded", "gone" (no longer in the DLQ), "failed"
    detail: str = ""


def act_on(sqs: Any, dlq_url: str, letters: Iterable[Letter], *, redrive_to: str | None,
           progress: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    """Redrive (``redrive_to``: the flow queue) or discard (``None``) exactly the given letters, found again by
    SQS message id: a letter another operator moved meanwhile is reported ``gone``, never acted on twice."""
    wanted = {letter.message_id: letter for letter in letters}
    outcomes: list[Outcome] = []
    held: list[dict[str, Any]] = []
    try:
        for batch in _receive_batches(sqs, dlq_url, visibility=ACTING_VISIBILITY_SECONDS):
            for message in batch:
                letter = wanted.pop(message["MessageId"], None)
                if letter is None:
                    held.append(message)
                    continue
                try:
                    if redrive_to is not None:
                        sqs.send_message(QueueUrl=redrive_to, MessageBody=letter.original)
                    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                    outcome = Outcome(letter, "redriven" if redrive_to is not None else "discarded")
                except Exception as exc:  # reported per letter; the others go on
                    held.append(message)
                    outcome = Outcome(letter, "failed", f"{type(exc).__name__}: {exc}")
                outcomes.append(outcome)
                progress(outcome)
            if not wanted:
                break
    finally:
        _release(sqs, dlq_url, held)
    for letter in wanted.values():
        outcome = Outcome(letter, "gone", "no longer in the DLQ (redriven or discarded meanwhile?)")
        outcomes.append(outcome)
        progress(outcome)
    return outcomes


def queue_depth(sqs: Any, queue_url: str) -> dict[str, int]:
    """Messages waiting (visible), being worked on (in flight) and waiting for a retry (delayed)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    visible, in_flight, delayed = (int(attributes.get(name, 0)) for name in names)
    return {"waiting": visible, "in_flight": in_flight, "delayed": delayed}
