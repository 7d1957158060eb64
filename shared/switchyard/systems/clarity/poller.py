"""The sweep of Clarity: the orders, then the customers, changed since the last run
(``GET /api/v1/orders?changedSince``, ``GET /api/v1/customers?changedSince``, docs/clarity-contract.md), turned
into exactly the webhooks Clarity sent or should have sent.

An order's ``version`` counts its real changes, and each one is an entry of its ``statusHistory`` (version 1
is its creation, every later version one status change). So every event the webhook path carries can be
rebuilt from the order as it is now: version *n* is ``order.created`` (*n* = 1) or ``order.status_changed``
with the status, change time, history and ``previousStatus`` of that moment (the customer is embedded as it
is now, as Clarity's own answers embed it). The poll emits each version it has not seen yet, oldest first.

A customer keeps no history, but its ``customer.updated`` carries the whole customer with each field's change
time (``fieldUpdatedAt``), so the latest version stands for every missed one: a customer whose version grew
past what was seen is one ``customer.updated``. Version 1 is no event here: a guest's customer is created at
checkout with no ``customer.created``, so a list cannot tell which creation had a webhook.

Clarity's webhook ids are random (``msg_…``), so the sweep recognises a delivered webhook by the change it
carries: ``sweep_key`` gives a webhook the id the poll gives the same change, ``clarity:order:<id>:v<n>`` or
``clarity:customer:<id>:v<n>``, and ingest records that key (``switchyard.polling.PushedLog``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from switchyard.polling import Page, PolledEvent, WindowKind

MAX_PAGE_SIZE = 200  # the contract's limit for lists of changes
ORDER_EVENTS = ("order.created", "order.status_changed")
_TABLE_SAFE = re.compile(r"[A-Za-z0-9-]{1,64}")


class ChangedOrders(Protocol):
    """What the reconcile needs of ``ClarityClient``."""

    def orders_changed_since(self, since: str, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]: ...


class ChangedEntities(ChangedOrders, Protocol):
    """What the sweep needs of ``ClarityClient``."""

    def customers_changed_since(self, since: str, *, limit: int = 100,
                                cursor: str | None = None) -> dict[str, Any]: ...


def order_event_id(order_id: str, version: int) -> str:
    return f"clarity:order:{order_id}:v{version}"


def customer_event_id(customer_id: str, version: int) -> str:
    return f"clarity:customer:{customer_id}:v{version}"


def sweep_key(event_type: str, data: Mapping[str, Any]) -> str | None:
    """The poll's id of the change a webhook carries (None: the sweep does not read such events)."""
    make: Callable[[str, int], str]
    if event_type in ORDER_EVENTS:
        name, make = "orderId", order_event_id
    elif event_type == "customer.updated":
        name, make = "customerId", customer_event_id
    else:
        return None
    key, version = data.get(name), data.get("version")
    if not isinstance(key, str) or not isinstance(version, int) or isinstance(version, bool):
        return None
    return make(key, version)


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


LISTS = ("orders", "customers")  # read in this order within a scan


class ClaritySweep:
    """``switchyard.polling.PollSource`` over one Clarity installation's orders and customers, read by change
    time. A scan reads the orders changed in its window, then the customers; the page token says which list
    and where in it (``{"list", "cursor"}``)."""

    window: WindowKind = "changed"

    def __init__(self, client: ChangedEntities) -> None:
        self._client = client
        self._window_from: datetime | None = None

    def read_page(self, created_from: datetime, created_to: datetime, page_index: int, page_size: int,
                  token: str | None = None) -> Page:
        """Entities whose last change is in ``[created_from, created_to]``; one changed after ``created_to``
        ends its list (the lists are oldest first) and is read by the next scan. A list with nothing in the
        window goes straight on to the next list (an empty page would end the scan)."""
        self._window_from = created_from
        position = json.loads(token) if token else {"list": LISTS[0], "cursor": None}
        while True:
            name, cursor = position["list"], position.get("cursor")
            read = self._client.orders_changed_since if name == "orders" else self._client.customers_changed_since
            page = read(_wire_time(created_from), limit=min(page_size, MAX_PAGE_SIZE), cursor=cursor)
            items = page.get("items") or []
            inside = [entity for entity in items if parse_time(entity["updatedAt"]) <= created_to]
            if page.get("nextCursor") is not None and len(inside) == len(items):
                following: dict[str, Any] | None = {"list": name, "cursor": page["nextCursor"]}
            elif LISTS.index(name) + 1 < len(LISTS):
                following = {"list": LISTS[LISTS.index(name) + 1], "cursor": None}
            else:
                following = None
            if inside or following is None:
                return Page(items=inside, has_next=following is not None,
                            next_token=json.dumps(following) if following else None)
            position = following

    def key(self, item: Mapping[str, Any]) -> str:
        if "orderId" in item:
            return _table_safe(str(item["orderId"]))
        return "customer-" + _table_safe(str(item["customerId"]))

    def created_on(self, item: Mapping[str, Any]) -> datetime:
        return parse_time(item["updatedAt"])

    def snapshot(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"v": int(item["version"])}

    def events(self, item: Mapping[str, Any], previous: Mapping[str, Any] | None,
               observed_at: datetime) -> list[PolledEvent]:
        if "orderId" not in item:
            return self._customer_events(item, previous)
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

    @staticmethod
    def _customer_events(customer: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[PolledEvent]:
        current = int(customer["version"])
        if current < 2 or current <= (int(previous["v"]) if previous else 0):
            return []
        timestamp = str(customer["updatedAt"])
        body = json.dumps({"type": "customer.updated", "timestamp": timestamp, "data": dict(customer)},
                          separators=(",", ":"), ensure_ascii=False)
        return [PolledEvent(customer_event_id(str(customer["customerId"]), current), "customer.updated", timestamp,
                            body)]


def _table_safe(key: str) -> str:
    if _TABLE_SAFE.fullmatch(key):
        return key
    return "h-" + hashlib.sha256(key.encode()).hexdigest()[:40]  # table keys take no other characters
