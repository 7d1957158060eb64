"""The archive of accepted webhooks: every delivery ingest queued, as queued, kept for ``switchyard replay``.

One object per delivery (a delivery of 500 events is one PutObject: S3 charges per request, not per event),
written after every event sits on its queues, so archiving never delays or endangers the queueing; a failed
write is reported to the caller, never answered 503 (the events are queued; only their replay is lost).

Objects are keyed by source and the hour they were received, so a replay of a time range lists only the
hours it covers: ``deliveries/<source>/<YYYY>/<MM>/<DD>/<HH>/<received_at>-<digest>.json``. An object names
the flows each event was queued for and the digest of the configuration (flows and mappings) ingest ran
with, so a replay knows what the stack's mapping was when the event arrived.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

PREFIX = "deliveries/"


@dataclass(frozen=True)
class ArchivedEvent:
    event_id: str
    event_type: str
    timestamp: str
    body: str  # the event as queued: as signed (envelope) or rebuilt from one object or change
    digest: str  # of ``body``: part of the idempotency key, so a replay is the same event
    flows: tuple[str, ...]  # every flow it was queued for


@dataclass(frozen=True)
class ArchivedDelivery:
    source: str
    received_at: str  # ISO 8601, UTC: what ingest stamped on every queued message
    events: tuple[ArchivedEvent, ...]
    config_digest: str = ""  # of the stack's flows.yaml and mappings when it was accepted
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ArchivedDelivery:
        raw = json.loads(text)
        events = tuple(ArchivedEvent(**{**event, "flows": tuple(event["flows"])}) for event in raw["events"])
        return cls(source=raw["source"], received_at=raw["received_at"], events=events,
                   config_digest=raw.get("config_digest", ""), extra=raw.get("extra") or {})

    @property
    def received(self) -> datetime:
        return _utc(datetime.fromisoformat(self.received_at))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hour_prefix(source: str, moment: datetime) -> str:
    return f"{PREFIX}{source}/{_utc(moment):%Y/%m/%d/%H}/"


def archive_key(delivery: ArchivedDelivery) -> str:
    """Unique per delivery (two deliveries in one microsecond differ by their events' ids and digests) and
    sorted by time within an hour."""
    identity = "\n".join(f"{e.event_id} {e.digest}" for e in delivery.events)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{hour_prefix(delivery.source, delivery.received)}{delivery.received:%Y%m%dT%H%M%S.%fZ}-{digest}.json"


def hours_between(since: datetime, until: datetime) -> Iterator[datetime]:
    """Every hour (truncated) that holds a moment of [since, until]."""
    hour = _utc(since).replace(minute=0, second=0, microsecond=0)
    while hour <= _utc(until):
        yield hour
        hour += timedelta(hours=1)


class DeliveryArchive(Protocol):
    def write(self, delivery: ArchivedDelivery) -> None: ...


class S3DeliveryArchive:
    """The archive in an S3 bucket (the stack's, encrypted, expiring by the stage's lifecycle rule)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def write(self, delivery: ArchivedDelivery) -> None:
        self._client.put_object(Bucket=self._bucket, Key=archive_key(delivery), Body=delivery.to_json().encode(),
                                ContentType="application/json")

    def read(self, source: str, since: datetime, until: datetime) -> Iterator[ArchivedDelivery]:
        """Every delivery of ``source`` received in [since, until], oldest first (one listing per hour)."""
        paginator = self._client.get_paginator("list_objects_v2")
        for hour in hours_between(since, until):
            keys = [item["Key"] for page in paginator.paginate(Bucket=self._bucket, Prefix=hour_prefix(source, hour))
                    for item in page.get("Contents", [])]
            for key in sorted(keys):
                body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
                delivery = ArchivedDelivery.from_json(body)
                if _utc(since) <= delivery.received <= _utc(until):
                    yield delivery


class InMemoryDeliveryArchive:
    def __init__(self, fail_with: Callable[[], Exception] | None = None) -> None:
        self.deliveries: list[ArchivedDelivery] = []
        self._fail_with = fail_with

    def write(self, delivery: ArchivedDelivery) -> None:
        if self._fail_with is not None:
            raise self._fail_with()
        self.deliveries.append(delivery)


def config_files(directory: Any) -> dict[str, str]:
    """The configuration a stack runs with: ``flows.yaml``, ``mappings/*.yaml`` and the mappings' saved
    ``*.json`` (a saved copy of a target's definition that names resolve against) by relative path."""
    from pathlib import Path

    root = Path(str(directory))
    mappings = root / "mappings"
    files = [root / "flows.yaml", *sorted([*mappings.glob("*.yaml"), *mappings.glob("*.json")])]
    return {path.relative_to(root).as_posix(): path.read_text() for path in files if path.is_file()}


def config_digest(files: dict[str, str]) -> str:
    """One digest of a configuration (:func:`config_files`): equal digests, equal mappings."""
    hasher = hashlib.sha256()
    for name in sorted(files):
        hasher.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return hasher.hexdigest()[:16]
