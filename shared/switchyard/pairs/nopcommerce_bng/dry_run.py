"""``switchyard dry-run nopcommerce-to-bng``: what a nopCommerce event becomes in BNG, calling nobody."""

from __future__ import annotations

from typing import Any

from switchyard.pairs.nopcommerce_bng.mapping import load_bng_mapping

CUSTOMER_PLACEHOLDER = "<CustomerID from the customer step>"


def dry_run(document: str, event_type: str, data: Any) -> tuple[str, Any]:
    """``order.placed``: the customer and sales order bodies the first two steps send; a status change: the
    cancellation it asks for, if any (the shipment is BNG's to report)."""
    mapping = load_bng_mapping(document)
    if event_type == "order.placed":
        return "create", {"customer": mapping.customer(data),
                          "sales_order": mapping.sales_order(data, CUSTOMER_PLACEHOLDER)}
    if event_type == "order.status_changed":
        status = mapping.bng_status_for(int(data["Order"]["OrderStatusId"]))
        if status == "Cancelled":
            return "cancel", {"external_order_id": mapping.external_order_id(data)}
        return "filtered", {"reason": f"nopCommerce status {data['Order']['OrderStatusId']} changes nothing in BNG"}
    return "filtered", {"reason": f"{event_type} is not sent to BNG"}
