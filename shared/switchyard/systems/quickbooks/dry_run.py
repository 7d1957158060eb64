"""What an order-to-cash event becomes, calling nobody (``switchyard dry-run``)."""

from __future__ import annotations

from typing import Any

from switchyard.errors import MappingError


def dry_run(mapping_file: str, event_type: str, data: Any) -> tuple[str, Any]:
    """Order-to-cash: the customer and the document an order becomes (QuickBooks ids shown as placeholders,
    since finding them needs QuickBooks), or what a later event will do to the order's document."""
    from switchyard.connectors.http import jsonable
    from switchyard.systems.quickbooks import order_mapping as orders

    mapping = orders.load_order_mapping(mapping_file)
    order = orders.parse_order(data["Order"])
    number = orders.doc_number(mapping, order.CustomOrderNumber)
    if event_type == "order.placed":
        refs = {sku: f"<Item {sku}>" for sku in orders.item_skus(mapping, data)}
        document = orders.sales_document(mapping, data, customer_id="<Customer>", item_refs=refs)
        return "order_to_cash", jsonable({"customer": orders.customer_fields(mapping, data),
                                          "document": {"entity": document.entity, "body": document.body}})
    if event_type == "order.paid":
        currency, rate = orders.order_currency(mapping, order)
        received = orders.money(order.OrderTotal * rate if rate is not None else order.OrderTotal)
        return "record_payment", {"invoice": number, "linked_txn": "Invoice", "amount": f"{received} {currency}",
                                  "applied": "up to the invoice's open balance"}
    if event_type == "order.status_changed":
        if orders.is_cancelled(order):
            return "cancel", {"document": number, "unpaid_invoice": "void", "paid": "flag for review, change nothing"}
        return "none", {"reason": "only a cancellation changes the QuickBooks document"}
    raise MappingError(f"{mapping_file} does not handle event type {event_type!r}")
