"""The sweep of Clarity orders: the orders changed since the last run (``GET /api/v1/orders?changedSince``,
docs/clarity-contract.md), turned into exactly the webhooks Clarity sent or should have sent.

An order's ``version`` counts its real changes, and each one is an entry of its ``statusHistory`` (version 1
is its creation, every later version one status change). So every event the webhook path carries can be
rebuilt from the order as it is now: version *n* is ``order.created`` (*n* = 1) or ``order.status_changed``
with the status, change time, history and ``previousStatus`` of that moment (the customer is embedded as it
is now, as Clarity's own answers embed it). The poll emits each version it has not seen yet, oldest first.

Clarity's webhook ids are random (``msg_…``), so the sweep recognises a delivered webhook by the change it
carries: ``sweep_key`` gives a webhook the id the poll gives the same change, ``clarity:order:<id>:v<n>``,
and ingest records that key (``switchyard.polling.PushedLog``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from switchyard.polling import Page, PolledEvent, WindowKind

MAX_PAGE_SIZE = 200  # the contract's limit for lists of changes
ORDER_EVENTS = ("order.created", "order.status_changed")
_TABLE_SAFE = re.compile(r"[A-Za-z0-9-]{1,64}")


class ChangedOrders(Protocol):
    """What the sweep needs of ``ClarityClient``."""

    def orders_changed_since(self, since: str, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]: ...


def order_event_id(order_id: str, version: int) -> str:
    return f"clarity:order:{order_id}:v{version}"


def sweep_key(event_type: str, data: Mapping[str, Any]) -> str | None:
    """The poll's id of the change a webhook carries (None: the sweep does not read such events)."""
    if event_type not in ORDER_EVENTS:
        return None
    order_id, version = data.get("orderId"), data.get("version")
    if not isinstance(order_id, str) or not isinstance(version, int) or isinstance(version, bool):
        return None
    return order_event_id(order_id, version)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _wire_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_at_version(order: Mapping[str, Any], version: int) -> tuple[str, str, dict[str, Any]] | None:
    """(event type, timestamp, data) of the webhook Clarity sent when ``order`` reached ``version``; None when
    the order's history does not tell (a history that does not have one entry per version)."""
    history = order.get("statusHistory") or []
    if len(history) != order.get("version") or not 1 <= version <= len(history):
        return None
    entry = history[version - 1]
    data = copy.deepcopy(dict(order))
    data.update(status=entry["status"], statusHistory=copy.deepcopy(history[:version]), updatedAt=entry["at"],
                version=version)
    payment = data.get("paymentInfo")
    refunded_at = next((i for i, h in enumerate(history) if h["status"] == "refunded"), None)
    if isinstance(payment, dict) and payment.get("status") == "refunded" and refunded_at is not None \
            and version - 1 < refunded_at:
        payment["status"] = "paid"  # moving to refunded is what turned a paid payment into refunded
    if version == 1:
        return "order.created", entry["at"], data
    data["previousStatus"] = history[version - 2]["status"]
    return "order.status_changed", entry["at"], data


class ClarityOrderSweep:
    """``switchyard.polling.PollSource`` over one Clarity installation's orders, read by change time."""

    window: WindowKind = "changed"

    def __init__(self, client: ChangedOrders) -> None:
        self._client = client
        self._window_from: datetime | None = None

    def read_page(self, created_from: datetime, created_to: datetime, page_index: int, page_size: int,
                  token: str | None = None) -> Page:
        """Orders whose last change is in ``[created_from, created_to]``; one changed after ``created_to``
        ends the scan (the list is oldest first) and is read by the next one."""
        self._window_from = created_from
        page = self._client.orders_changed_since(_wire_time(created_from), limit=min(page_size, MAX_PAGE_SIZE),
                                                 cursor=token)
        items = page.get("items") or []
        inside = [order for order in items if parse_time(order["updatedAt"]) <= created_to]
        more = page.get("nextCursor") is not None and len(inside) == len(items)
        return Page(items=inside, has_next=more, next_token=page.get("nextCursor") if more else None)

    def key(self, item: Mapping[str, Any]) -> str:
        order_id = str(item["orderId"])
        if _TABLE_SAFE.fullmatch(order_id):
            return order_id
        return "h-" + hashlib.sha256(order_id.encode()).hexdigest()[:40]  # table keys take no other characters

    def created_on(self, item: Mapping[str, Any]) -> datetime:
        return parse_time(item["updatedAt"])

    def snapshot(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"v": int(item["version"])}

    def events(self, item: Mapping[str, Any], previous: Mapping[str, Any] | None,
               observed_at: datetime) -> list[PolledEvent]:
        current = int(item["version"])
        seen = int(previous["v"]) if previous else 0
        events = []
        for version in range(seen + 1, current + 1):
            rebuilt = order_at_version(item, version)
            if rebuilt is None:  # no history to rebuild from: the order as it is now
                if version != current:
                    continue
                history = item.get("statusHistory") or []
                data = dict(item)
                if current > 1 and len(history) >= 2:
                    data["previousStatus"] = history[-2]["status"]
                rebuilt = ("order.created" if current == 1 else "order.status_changed", str(item["updatedAt"]),
                           data)
            event_type, timestamp, data = rebuilt
            if previous is None and self._window_from is not None and version < current \
                    and parse_time(timestamp) < self._window_from:
                continue  # a change before this sweep's first window (or seen before its snapshot expired)
            body = json.dumps({"type": event_type, "timestamp": timestamp, "data": data}, separators=(",", ":"),
                              ensure_ascii=False)
            events.append(PolledEvent(order_event_id(str(item["orderId"]), version), event_type, timestamp, body))
        return events
