"""nopCommerce ⇄ BNG order-to-cash: the steps a Step Functions execution runs, one at a time.

    order.placed          customer ─> sales_order ─> [wait for the shipment: task token, completed by BNG's
                          shipment webhook or by ``shipment`` polling] ─> write_shipment
    order.status_changed  cancel: before shipment the BNG order is cancelled (and the waiting execution ends,
    (to Cancelled)        by the state machine); after shipment it is flagged for review, never edited
    salesorder.status_    write_status: BNG's status (Invoiced, Released, ...) → nopCommerce's status ids
    changed (BNG)         as the mapping says, plus a note for an invoice

``BngOrderToCash.run(step, state)`` runs one step: ``state`` is the execution's state, ``{"message": <the
flow's queue message>, <earlier step>: <its result>, ...}``; the result is plain JSON stored under the step's
name. Errors are Switchyard's; ``switchyard.state_machines`` retries or dead-letters them.

Every step can run again (a retry after a timeout, a redrive) without doing anything twice:

* the customer is looked up by its ``ExternalID`` before it is created; a create answered ``409`` (a create
  whose answer was lost, or a race) links to BNG's ``existingId``;
* the sales order is looked up by its ``ExternalOrderID`` first, and a ``409`` links to the existing one: a
  duplicate nopCommerce order never becomes a second sales order (a warning and ``action: "existing"``);
* the nopCommerce shipment carries a marker of its BNG shipment (``[ref …]`` in its admin comment) and is
  only created when none has it; statuses are absolute values written by read-modify-write; notes carry
  markers too.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from switchyard.errors import OutOfOrderError, PermanentError
from switchyard.events import FlowEvent
from switchyard.pairs.nopcommerce_bng.mapping import BngOrderMapping, order_items_for
from switchyard.state_machines import STEP_DROPPED
from switchyard.systems.bng.client import BngClient, DuplicateExternalIdError

STEPS = ("customer", "sales_order", "shipment", "write_shipment", "cancel", "cancel_order", "write_status")
CANCELLABLE = frozenset({"New", "Released"})
logger = logging.getLogger(__name__)


class ShopWriteBack(Protocol):
    """nopCommerce's side (``switchyard.systems.nopcommerce.client.NopCommerceClient``)."""

    def get_order(self, order_id: int) -> dict[str, Any]: ...

    def add_order_note(self, order_id: int, note: str, *, display_to_customer: bool = False,
                       marker: str | None = None) -> bool: ...

    def set_order_statuses(self, order_id: int, statuses: Mapping[str, int], *,
                           never_from: Mapping[str, Collection[int]] | None = None) -> dict[str, int]: ...

    def add_shipment(self, order_id: int, *, tracking_number: str, shipped_date_utc: str | None,
                     items: Mapping[int, int], marker: str, admin_comment: str = "") -> tuple[int, bool]: ...


def marker(flow: str, key: str, what: str) -> str:
    """The same for every attempt, run and redrive of one write-back."""
    return hashlib.sha256(f"{flow}:{key.lower()}:{what}".encode()).hexdigest()[:12]


def _wire_date(value: Any) -> str | None:
    """BNG's RFC 3339 instant as the plugin's DTOs carry dates (UTC, no offset)."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


class BngOrderToCash:
    """The steps, against one BNG account (``bng``) and the nopCommerce shop (``shop``)."""

    def __init__(self, mapping: BngOrderMapping, bng: BngClient, shop: ShopWriteBack, *, flow: str,
                 log: logging.Logger | Any = logger) -> None:
        self.mapping = mapping
        self.bng = bng
        self.shop = shop
        self.flow = flow
        self.log = log
        self._steps: dict[str, Callable[[FlowEvent, Mapping[str, Any]], dict[str, Any]]] = {
            "customer": self.customer, "sales_order": self.sales_order, "shipment": self.shipment,
            "write_shipment": self.write_shipment, "cancel": self.cancel, "cancel_order": self.cancel_order,
            "write_status": self.write_status,
        }

    def run(self, step: str, state: Mapping[str, Any]) -> dict[str, Any]:
        handler = self._steps.get(step)
        if handler is None:
            raise ValueError(f"unknown BNG order-to-cash step {step!r}; the steps are {', '.join(STEPS)}")
        message = state.get("message")
        if not isinstance(message, str):
            raise PermanentError("the execution state has no queue message", reason="malformed_message")
        return handler(FlowEvent.from_message(message), state)

    # ----------------------------------------------------------------- customer

    def customer(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """Upsert by ExternalID: found → the fields that differ are patched; absent → created."""
        desired = self.mapping.customer(event.data)
        found = self.bng.find_customer(desired["ExternalID"])
        if found is None:
            try:
                created = self.bng.create_customer(desired)
                return {"id": created["CustomerID"], "external_id": desired["ExternalID"], "action": "created"}
            except DuplicateExternalIdError as exc:  # created meanwhile (a lost answer, a concurrent order)
                if not exc.existing_id:
                    raise
                found = self.bng.get_customer(exc.existing_id)
        changes = {key: value for key, value in desired.items() if key != "ExternalID" and found.get(key) != value}
        if changes:
            self.bng.update_customer(found["CustomerID"], changes)
        return {"id": found["CustomerID"], "external_id": desired["ExternalID"],
                "action": "updated" if changes else "unchanged"}

    # ----------------------------------------------------------------- sales order

    def sales_order(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """Found by ExternalOrderID, else created (unless cancelled in nopCommerce meanwhile)."""
        external = self.mapping.external_order_id(event.data)
        existing = self.bng.find_sales_order(external)
        if existing is not None:
            self._warn_duplicate(event, existing)
            return self._order_result(existing, "existing")
        order_id = int(event.data["Order"]["Id"])
        if self._cancelled_in_shop(order_id):
            return {"id": None, "external_order_id": external, "status": None, "action": "skipped_cancelled",
                    STEP_DROPPED: "cancelled_before_booking"}
        customer_id = (state.get("customer") or {}).get("id")
        if not customer_id:
            raise PermanentError("the sales_order step needs the customer step's result", reason="missing_step_result")
        body = self.mapping.sales_order(event.data, str(customer_id))
        try:
            created = self.bng.create_sales_order(body)
        except DuplicateExternalIdError as exc:  # the retry after a lost answer, or a concurrent duplicate
            if not exc.existing_id:
                raise
            again = self.bng.get_sales_order(exc.existing_id)
            self._warn_duplicate(event, again)
            return self._order_result(again, "existing")
        return self._order_result(created, "created")

    def _warn_duplicate(self, event: FlowEvent, order: Mapping[str, Any]) -> None:
        self.log.warning("duplicate order: BNG already has it", extra={
            "flow": self.flow, "event_id": event.event_id, "sales_order": order.get("SalesOrderID"),
            "external_order_id": order.get("ExternalOrderID")})

    @staticmethod
    def _order_result(order: Mapping[str, Any], action: str) -> dict[str, Any]:
        return {"id": order["SalesOrderID"], "external_order_id": order["ExternalOrderID"],
                "status": order.get("Status"), "action": action}

    def _cancelled_in_shop(self, order_id: int) -> bool:
        current = self.shop.get_order(order_id)
        status = current.get("order_status_id")
        return status is not None and self.mapping.bng_status_for(int(status)) == "Cancelled"

    # ----------------------------------------------------------------- the shipment (poll or callback)

    def shipment(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """BNG's shipments of the order, read from BNG: the poll that ends the wait when the shipment webhook
        never came (OutOfOrderError ``not_shipped_yet`` while there is none), and what ``write_shipment``
        writes whichever way the wait ended."""
        order = self._bng_order(event, state)
        if order is None:
            return {"action": "no_sales_order", "shipments": [], "status": None}
        shipments = self.bng.shipments_of(order["SalesOrderID"])
        if order["Status"] == "Cancelled":
            return {"action": "cancelled", "shipments": shipments, "status": "Cancelled"}
        if not shipments:
            raise OutOfOrderError(f"BNG sales order {order['SalesOrderID']} has not shipped yet",
                                  reason="not_shipped_yet")
        return {"action": "shipped", "shipments": shipments, "status": order["Status"],
                "sales_order": order["SalesOrderID"]}

    def _bng_order(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any] | None:
        known = (state.get("sales_order") or {}).get("id")
        if known:
            return self.bng.get_sales_order(str(known))
        return self.bng.find_sales_order(self.mapping.external_order_id(event.data))

    # ----------------------------------------------------------------- write the shipment to nopCommerce

    def write_shipment(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """Every BNG shipment of the order as a nopCommerce shipment (tracking number, shipped date, items),
        a note for the customer with carrier and tracking number, then the mapped statuses."""
        # read again whichever way the wait ended: a callback carries one shipment, the order may have several
        shipped = self.shipment(event, state)
        if shipped["action"] != "shipped":
            return {"shipments": [], "complete": False, "statuses": {}, "action": shipped["action"]}
        shipments = shipped["shipments"]
        order_id = int(event.data["Order"]["Id"])
        items = {int(item["Id"]): int(item["Quantity"]) for item in event.data.get("OrderItems") or []}
        skus = {int(item["Id"]): str((item.get("Product") or {}).get("Sku") or "").casefold()
                for item in event.data.get("OrderItems") or []}
        written, shipped_units = [], dict.fromkeys(items, 0)
        texts = self.mapping.doc.shipment
        for shipment in shipments:
            facts = {"carrier": shipment.get("Carrier"), "tracking_number": shipment.get("TrackingNumber"),
                     "shipment_id": shipment.get("ShipmentID"), "sales_order_id": shipment.get("SalesOrderID")}
            per_item = self._shipment_items(shipment, items, skus, shipped_units)
            nop_id, created = self.shop.add_shipment(
                order_id, tracking_number=str(shipment["TrackingNumber"]),
                shipped_date_utc=_wire_date(shipment.get("ShippedDate")), items=per_item,
                marker=marker(self.flow, str(shipment["ShipmentID"]), "shipment"),
                admin_comment=texts.admin_comment.format(**facts))
            self.shop.add_order_note(order_id, texts.notify_note.format(**facts),
                                     display_to_customer=texts.display_to_customer,
                                     marker=marker(self.flow, str(shipment["ShipmentID"]), "shipment-note"))
            written.append({"bng": shipment["ShipmentID"], "nop": nop_id, "created": created, "items": per_item})
        complete = all(shipped_units[item] >= quantity for item, quantity in items.items())
        status = shipped.get("status") or "Shipped"
        statuses = self.mapping.nop_statuses_for(status if complete else "Shipped", partially_shipped=not complete)
        changed = self.shop.set_order_statuses(order_id, statuses, never_from=self.mapping.never_from)
        return {"shipments": written, "complete": complete, "statuses": changed}

    @staticmethod
    def _shipment_items(shipment: Mapping[str, Any], items: Mapping[int, int], skus: Mapping[int, str],
                        shipped_units: dict[int, int]) -> dict[int, int]:
        """BNG shipment lines onto nopCommerce order items: by the line's ExternalLineID (the items it stands
        for, filled in order), else by SKU."""
        per_item: dict[int, int] = {}
        for line in shipment.get("Lines") or []:
            remaining = int(line["Quantity"])
            candidates = [i for i in order_items_for(line.get("ExternalLineID")) if i in items] or [
                i for i, sku in skus.items() if sku == str(line.get("SKU") or "").casefold()]
            for item in candidates:
                room = items[item] - shipped_units[item]
                take = min(room, remaining)
                if take > 0:
                    per_item[item] = per_item.get(item, 0) + take
                    shipped_units[item] += take
                    remaining -= take
            if remaining > 0:
                raise PermanentError(f"BNG shipment {shipment.get('ShipmentID')} line {line.get('LineNo')} "
                                     f"({line.get('SKU')}) ships {remaining} more than the nopCommerce order holds",
                                     reason="shipment_mismatch")
        return per_item

    # ----------------------------------------------------------------- cancel

    def cancel(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """A cancellation in nopCommerce: before shipment the BNG order is cancelled; after, the order is
        flagged (a note in nopCommerce, then PermanentError ``review_required``: the DLQ alarm is the flag)."""
        order = event.data["Order"]
        if self.mapping.bng_status_for(int(order["OrderStatusId"])) != "Cancelled":
            return {"action": "not_cancelled", STEP_DROPPED: "not_cancelled"}
        found = self.bng.find_sales_order(self.mapping.external_order_id(event.data))
        if found is None:  # never booked (cancelled first, or its order.placed is in the DLQ)
            return {"action": "nothing_to_cancel", STEP_DROPPED: "nothing_to_cancel"}
        return self._cancel_in_bng(event, found)

    def cancel_order(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """The placed execution cancels its own sales order, whatever the event's status says: as the
        compensation of a failure after the order exists (a timed-out wait), and when a cancellation reached the
        wait that came before the order existed (the cancel route found nothing to cancel, then this execution
        created it): the cancellation is honoured now. Shipped already: flagged for review, as ``cancel``."""
        found = self._bng_order(event, state)
        if found is None:
            return {"action": "nothing_to_cancel"}
        return self._cancel_in_bng(event, found)

    def _cancel_in_bng(self, event: FlowEvent, found: dict[str, Any]) -> dict[str, Any]:
        order = event.data["Order"]
        if found["Status"] == "Cancelled":
            return {"action": "already_cancelled", "id": found["SalesOrderID"]}
        if found["Status"] in CANCELLABLE:
            try:
                cancelled = self.bng.cancel_sales_order(found["SalesOrderID"], "cancelled in nopCommerce")
                return {"action": "cancelled", "id": cancelled["SalesOrderID"]}
            except PermanentError as exc:
                body = exc.target_response if isinstance(exc.target_response, dict) else {}
                if exc.target_status != 409 or body.get("error") != "invalid_transition":
                    raise
                found = {**found, "Status": body.get("currentStatus") or "Shipped"}  # shipped meanwhile
        note = self.mapping.doc.shipment.review_note.format(sales_order_id=found["SalesOrderID"],
                                                            status=found["Status"])
        self.shop.add_order_note(int(order["Id"]), note,
                                 marker=marker(self.flow, str(found["SalesOrderID"]), "review"))
        raise PermanentError(f"nopCommerce order {order.get('CustomOrderNumber')}: {note}", reason="review_required")

    # ----------------------------------------------------------------- BNG status → nopCommerce

    def write_status(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """``salesorder.status_changed`` from BNG: nopCommerce gets the mapped status ids (and, for an invoice,
        a note with its number). The event names the nopCommerce order by the ExternalOrderID (OrderGuid)
        and its custom field NopOrderId."""
        data = event.data
        status = str(data["Status"])
        nop_id = (data.get("CustomFields") or {}).get("NopOrderId")
        if nop_id is None:
            raise PermanentError(f"BNG sales order {data.get('SalesOrderID')} does not name its nopCommerce order "
                                 "(CustomFields.NopOrderId)", reason="unmapped_order")
        order_id = int(nop_id)
        statuses = self.mapping.nop_statuses_for(status)
        changed = self.shop.set_order_statuses(order_id, statuses, never_from=self.mapping.never_from)
        note_added = False
        if status == "Invoiced" and data.get("InvoiceNumber"):
            note_added = self.shop.add_order_note(
                order_id, self.mapping.doc.shipment.invoiced_note.format(invoice_number=data["InvoiceNumber"]),
                marker=marker(self.flow, str(data["SalesOrderID"]), "invoiced"))
        return {"status": status, "statuses": changed, "note_added": note_added}


def shipment_callback(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """For BNG's ``shipment.created`` webhook: the entity whose waiting task token it completes (the
    ExternalOrderID, which is the nopCommerce OrderGuid) and the task output, in the ``shipment`` step's shape
    (``write_shipment`` reads every shipment of the order again, so one shipment in it is enough)."""
    return str(data["ExternalOrderID"]), {"action": "shipped", "shipments": [dict(data)],
                                          "status": data.get("OrderStatus"), "sales_order": data.get("SalesOrderID")}
