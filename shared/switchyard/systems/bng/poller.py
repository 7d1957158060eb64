"""The sweep of BNG's changed-since lists for ``switchyard.polling``: shipments and products.

BNG's webhooks are the primary path (flows.yaml: ``delivery: both``); this finds what they missed. A page of the
poller is a page of each list (``changedSince`` = the scan's start, ordered by (``UpdatedAt``, id), paged by
BNG's cursor), up to the scan's end (a later change belongs to the next scan):

* a shipment seen for the first time → ``shipment.created`` (it completes the order's wait for the shipment);
* a product at a version not seen yet → ``product.changed`` with the product as BNG holds it (stock and
  attributes are written as absolute values, so one event stands for every change in between: a missed
  ``inventory.changed`` included).

An event's id is the one BNG's webhook for that version carries (``source.change_id``): the poller drops what
the webhooks delivered and queues the rest as recovered. The lists take a cursor, not a page number: page
``n`` of a run is reached by following the cursors of the pages before it (remembered within the run).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from switchyard.errors import PermanentError
from switchyard.polling import Page, PolledEvent, WindowKind
from switchyard.systems.bng.client import BngClient
from switchyard.systems.bng.source import change_id

# the entity -> its list (a ``BngPaths`` field) and its id field
COLLECTIONS = {"shipment": ("shipments", "ShipmentID"), "product": ("products", "ProductID")}


def _moment(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise PermanentError(f"BNG answered an UpdatedAt that is no date: {value!r}", reason="target_bad_response") \
            from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _wire(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BngChangeSource:
    """``switchyard.polling.PollSource`` over BNG's ``/shipments`` and ``/products`` changed-since lists."""

    # read like a window of creation times: each scan re-reads the look-back, so an event held for the sweep's
    # grace period is found again without the ``held_from`` mark a "changed" source needs
    window: WindowKind = "created"

    def __init__(self, bng: BngClient) -> None:
        self._bng = bng
        self._cursors: dict[tuple[str, str, int], str | None] = {}  # (collection, since, page) -> its cursor

    def read_page(self, created_from: datetime, created_to: datetime, page_index: int, page_size: int,
                  token: str | None = None) -> Page:
        """``token`` is unused: two lists page together, so each keeps its own cursors (``_page``)."""
        items: list[dict[str, Any]] = []
        more = False
        for entity, (collection, _id_key) in COLLECTIONS.items():
            rows, has_next = self._page(collection, _wire(created_from), page_index, page_size)
            within = [row for row in rows if _moment(row.get("UpdatedAt")) <= created_to]
            items += [{"entity": entity, "item": row} for row in within]
            more = more or (has_next and len(within) == len(rows))
        return Page(items, more)

    def _page(self, collection: str, since: str, index: int, size: int) -> tuple[list[dict[str, Any]], bool]:
        """Page ``index`` of one list: ([] once the list ended before it)."""
        key = (collection, since, index)
        if index and key not in self._cursors:
            self._page(collection, since, index - 1, size)  # walks the cursors of the pages before it
        if index and self._cursors.get(key) is None:
            return [], False
        rows, following = self._bng.changed_page(collection, since, limit=size, after=self._cursors.get(key))
        self._cursors[(collection, since, index + 1)] = following
        return rows, following is not None

    def key(self, item: Any) -> str:
        _collection, id_key = COLLECTIONS[item["entity"]]
        return f"{item['entity']}-{item['item'][id_key]}".replace("_", "-")

    def snapshot(self, item: Any) -> dict[str, Any]:
        return {"version": item["item"].get("Version")}

    def created_on(self, item: Any) -> datetime:
        return _moment(item["item"].get("UpdatedAt"))

    def events(self, item: Any, previous: Mapping[str, Any] | None, observed_at: datetime) -> list[PolledEvent]:
        entity, row = item["entity"], item["item"]
        if previous is not None and previous.get("version") == row.get("Version"):
            return []
        if entity == "shipment":
            if previous is not None:
                return []  # a shipment is created once; a later version changes nothing Switchyard wrote
            # the webhook carries the order's status after the shipment: read it as the webhook would have
            order = self._bng.get_sales_order(str(row["SalesOrderID"]))
            return [self._event("shipment.created", change_id("shipment", row["ShipmentID"], row.get("Version"),
                                                              row.get("UpdatedAt")),
                                {**row, "OrderStatus": order.get("Status")})]
        return [self._event("product.changed", change_id("product", row["ProductID"], row.get("Version"),
                                                         row.get("UpdatedAt")), row)]

    @staticmethod
    def _event(event_type: str, event_id: str, data: Mapping[str, Any]) -> PolledEvent:
        timestamp = str(data.get("UpdatedAt"))
        body = json.dumps({"type": event_type, "timestamp": timestamp, "data": dict(data)}, separators=(",", ":"))
        return PolledEvent(event_id, event_type, timestamp, body)
