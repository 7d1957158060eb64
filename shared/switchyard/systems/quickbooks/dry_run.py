"""``switchyard dry-run`` for order-to-cash (``nopcommerce-to-quickbooks``): what an event becomes, calling nobody.

An ``order.placed`` shows the QuickBooks customer and the SalesReceipt or Invoice its mapping makes (the ids
QuickBooks would give, of the customer and the items, shown as ``<Customer>`` and ``<Item SKU>``); a later
event shows what it will do to the order's document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchyard.connectors.http import jsonable
from switchyard.errors import MappingError
from switchyard.systems.quickbooks import order_mapping as orders

ORDER_EVENTS = frozenset({"order.placed", "order.paid", "order.refunded", "order.status_changed"})


def plan(mapping: orders.QuickBooksOrderMapping, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
    """(action, plan) of one event under ``mapping``; MappingError for an event type the flow does not take."""
    if event_type not in ORDER_EVENTS:  # before reading it: another event of the shop has no Order
        raise MappingError(f"{mapping.flow} does not handle event type {event_type!r}")
    order = orders.parse_order(data["Order"])
    number = orders.document_number(mapping, data)
    if event_type == "order.placed":
        refs = {sku: f"<Item {sku}>" for sku in orders.item_skus(mapping, data)}
        document = orders.sales_document(mapping, data, customer_id="<Customer>", item_refs=refs)
        planned: dict[str, Any] = {"customer": orders.customer_fields(mapping, data),
                                   "document": {"entity": document.entity, "body": document.body}}
        if mapping.new_items is not None:  # what an SKU QuickBooks does not have would be created as
            planned["items_created_if_missing"] = orders.new_items(mapping, data, list(refs))
        return "order_to_cash", jsonable(planned)
    if event_type == "order.paid":
        currency, rate = orders.order_currency(mapping, order)
        received = orders.money(order.OrderTotal * rate if rate is not None else order.OrderTotal)
        details = orders.payment_details(mapping, data)
        return "record_payment", {"invoice": number, "linked_txn": "Invoice", "amount": f"{received} {currency}",
                                  "applied": "up to the invoice's open balance",
                                  "fields": {"PaymentRefNum": number, **details.fields()}}
    if event_type == "order.refunded":
        total = orders.refunded_total(mapping, order)
        if total is None:
            return "none", {"reason": "the order is not (partially) refunded (PaymentStatusId 35/40, RefundedAmount)"}
        currency, _ = orders.order_currency(mapping, order)
        return "refund", {"document": number, "refunded_total": f"{total} {currency}",
                          "sales_receipt": "a RefundReceipt of the refunded total less what is already refunded",
                          "invoice": "a CreditMemo of that amount, applied to the invoice's open balance",
                          "line_item": mapping.refund_sku}
    if event_type == "order.status_changed":
        if orders.is_cancelled(order):
            return "cancel", {"document": number, "unpaid_invoice": "void", "paid": "flag for review, change nothing"}
        return "none", {"reason": "only a cancellation changes the QuickBooks document"}
    raise MappingError(f"{mapping.flow} does not handle event type {event_type!r}")


def dry_run(mapping_file: str, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
    """The plan under a flow's mapping document (``config/mappings/<mapping_file>``)."""
    return plan(orders.load_order_mapping(mapping_file), event_type, data)
