"""``switchyard replay``: a flow's archived events (``switchyard.archive``) shown against today's mapping, then
sent through the flow's queue again.

"What was sent" is the event under the mapping the stack runs (the flows.yaml and mapping documents its
template carries, ``switchyard:config`` on the archive bucket) and what the delivery did (the audit trail:
outcome, the target's record ids). "Now" is the same event under another configuration: this checkout's, or
``--config DIR``. A replayed event is the message the queue first got, so its idempotency key is the same: an
event already delivered is a duplicate, one that never was (discarded, expired) is delivered now.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from switchyard.archive import ArchivedDelivery, ArchivedEvent, S3DeliveryArchive
from switchyard.catalog import Catalog
from switchyard.events import flow_message

from switchyard_cli.errors import CliError, ExitCode
from switchyard_cli.orders import order_refs

CONFIG_METADATA = "switchyard:config"
SEND_BATCH = 10  # SQS SendMessageBatch


@dataclass(frozen=True)
class Replayable:
    delivery: ArchivedDelivery
    event: ArchivedEvent
    orders: tuple[str, ...]

    @property
    def order(self) -> str | None:
        return self.orders[0] if self.orders else None

    def message(self, flow: str) -> str:
        """The flow's queue message exactly as ingest wrote it: the same idempotency key."""
        return flow_message(flow=flow, event_id=self.event.event_id, source=self.delivery.source,
                            event_type=self.event.event_type, timestamp=self.event.timestamp,
                            received_at=self.delivery.received_at, body=self.event.body, digest=self.event.digest)

    def data(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.event.body).get("data")
        except (ValueError, AttributeError):
            return None
        return data if isinstance(data, dict) else None


def select(archive: S3DeliveryArchive, catalog: Catalog, flow: str, since: datetime, until: datetime,
           orders: Iterable[str] = ()) -> list[Replayable]:
    """The archived events queued for ``flow`` in [since, until], oldest first; with ``orders``, of those only."""
    wanted = set(orders)
    source = catalog.flows[flow].source
    found: list[Replayable] = []
    for delivery in archive.read(source, since, until):
        for event in delivery.events:
            if flow not in event.flows:
                continue
            item = Replayable(delivery, event, ())
            refs = tuple(order_refs(catalog, delivery.source, item.data()))
            if wanted and not wanted & set(refs):
                continue
            found.append(Replayable(delivery, event, refs))
    return found


def deployed_config(resource: dict[str, Any]) -> dict[str, Any]:
    """``{"digest", "files"}``: the configuration in the archive bucket's template metadata."""
    config = (resource.get("Metadata") or {}).get(CONFIG_METADATA)
    if not isinstance(config, dict) or not isinstance(config.get("files"), dict):
        raise CliError("the stack's archive carries no configuration (deployed before replay existed?): deploy again",
                       ExitCode.CONFIGURATION)
    return config


def write_config(files: dict[str, str], directory: Path) -> Path:
    for name, text in files.items():
        path = directory / name
        if not path.resolve().is_relative_to(directory.resolve()):
            raise CliError(f"the stack's configuration names a file outside it: {name!r}", ExitCode.CONFIGURATION)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def plans(config_dir: Path | None, flow: str, items: list[Replayable]) -> list[dict[str, Any]]:
    """Each event's plan under the configuration in ``config_dir`` (None: the installed package's)."""
    if not items:
        return []
    request = {"config_dir": str(config_dir) if config_dir is not None else None,
               "events": [{"flow": flow, "event_type": item.event.event_type, "body": item.event.body}
                          for item in items]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-m", "switchyard_cli.plans"], input=json.dumps(request), text=True,
                          capture_output=True, env=env, check=False, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CliError(f"could not apply the mapping of {config_dir or 'this checkout'}: {last}",
                       ExitCode.CONFIGURATION)
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def plan_text(planned: dict[str, Any]) -> list[str]:
    return json.dumps(planned, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def diff(sent: dict[str, Any], now: dict[str, Any], *, sent_label: str, now_label: str) -> list[str]:
    """Unified diff of the two plans (empty: the same)."""
    return list(difflib.unified_diff(plan_text(sent), plan_text(now), fromfile=sent_label, tofile=now_label,
                                     lineterm="", n=2))


@dataclass(frozen=True)
class Comparison:
    item: Replayable
    sent: dict[str, Any]
    now: dict[str, Any]
    diff: list[str]
    outcome: str | None  # what the delivery did (audit trail), None where no record names it
    detail: dict[str, Any]
    mapping_changed_since: bool  # the stack's mapping is no longer the one this event met

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.item.event.event_id, "event_type": self.item.event.event_type,
                "received_at": self.item.delivery.received_at, "order": self.item.order, "outcome": self.outcome,
                "detail": self.detail, "changed": bool(self.diff), "mapping_changed_since": self.mapping_changed_since,
                "sent": self.sent, "now": self.now, "diff": self.diff}


def compare(flow: str, items: list[Replayable], *, deployed: dict[str, Any], now_config: Path | None,
            audit: Callable[[str], list[Any]]) -> list[Comparison]:
    """Per event: its plan under the stack's mapping, under ``now_config``, their diff, and its audit record."""
    with tempfile.TemporaryDirectory(prefix="switchyard-deployed-") as folder:
        sent = plans(write_config(deployed["files"], Path(folder)), flow, items)
    now = plans(now_config, flow, items)
    now_label = f"now ({now_config})" if now_config is not None else "now (this checkout)"
    stories: dict[str, list[Any]] = {}
    compared = []
    for item, was, will in zip(items, sent, now, strict=True):
        entry = None
        if item.order is not None:
            story = stories.setdefault(item.order, audit(item.order))
            entry = next((e for e in reversed(story) if e.event_id == item.event.event_id), None)
        compared.append(Comparison(
            item, was, will, diff(was, will, sent_label=f"sent (stack mapping {deployed.get('digest', '?')})",
                                  now_label=now_label),
            entry.outcome if entry is not None else None, dict(entry.detail) if entry is not None else {},
            bool(item.delivery.config_digest) and item.delivery.config_digest != deployed.get("digest")))
    return compared


def send(sqs: Any, queue_url: str, flow: str, items: list[Replayable],
         progress: Callable[[Replayable, str], None] = lambda item, done: None) -> dict[str, int]:
    """Queue each event again on the flow's queue, as ingest queues (ten and at most 1 MiB a batch, failed
    entries retried); a batch SQS still refuses is reported per event and the rest go on (replay it again)."""
    from switchyard.aws.sqs import SqsQueues
    from switchyard.ingest import OutgoingMessage

    queues = SqsQueues(sqs)
    counts = {"queued": 0, "failed": 0}
    for start in range(0, len(items), SEND_BATCH):
        chunk = items[start:start + SEND_BATCH]
        try:
            queues.publish_batch(queue_url, [OutgoingMessage(item.message(flow), {
                "event_id": item.event.event_id, "event_type": item.event.event_type,
                "source": item.delivery.source, "replayed": "true"}) for item in chunk])
            done = "queued"
        except Exception as exc:  # reported per event; the next batch is tried
            done = f"failed: {type(exc).__name__}: {exc}"
        for item in chunk:
            counts["queued" if done == "queued" else "failed"] += 1
            progress(item, done)
    return counts
